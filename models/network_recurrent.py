"""The vanilla (non-hierarchical) recurrent temporal-prediction model: the
hierarchical recurrent network with a single group, whose readout predicts
the next frame. The original's checkpoints include such a "vanilla RNN"
(one of the paper's controls); its ``temporal_prediction`` loss is missing from that code.

    python submit_training_job.py --model network_recurrent   # one group of 2400 units, beta 1

It has no inter-areal feedback to ablate (``supports_feedback_ablation`` is
False); its recurrent weights obey the same Dale's law and initialisation.
"""
from __future__ import annotations

from models.base import SettingError
from models.network_hierarchical_recurrent import NetworkHierarchicalRecurrent


class NetworkRecurrent(NetworkHierarchicalRecurrent):
    supports_feedback_ablation = False

    @classmethod
    def from_config(cls, config: dict) -> "NetworkRecurrent":
        """Build from a resolved run config; it must describe one group (its
        loss is checked like the hierarchical model's, ``check_loss``)."""
        if len(config["hidden_units"]) != 1:
            sizes = ",".join(str(n) for n in config["hidden_units"])
            raise SettingError(f"{{model}} network_recurrent has one group, got {{hidden_units}} {sizes}: "
                               "pass e.g. {hidden_units} 800 {beta} 1", "model", "hidden_units", "beta")
        return super().from_config(config)
