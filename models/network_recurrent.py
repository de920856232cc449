"""The vanilla (non-hierarchical) recurrent temporal-prediction model: the
hierarchical recurrent network with a single group, whose readout predicts
the next frame. The original's checkpoints include such a "vanilla RNN"
(one of the paper's controls); its ``temporal_prediction`` loss is missing from that code.

    python submit_training_job.py --model network_recurrent   # one group of 2400 units, beta 1

It has no inter-areal feedback to ablate (``supports_feedback_ablation`` is
False); its recurrent weights obey the same Dale's law and initialisation.
"""
from __future__ import annotations

from losses import RECURRENT_LOSSES
from models.network_hierarchical_recurrent import NetworkHierarchicalRecurrent
from utils import UserInputError


class NetworkRecurrent(NetworkHierarchicalRecurrent):
    supports_feedback_ablation = False

    @classmethod
    def from_config(cls, config: dict) -> "NetworkRecurrent":
        """Build from a resolved run config; it must describe one group."""
        if len(config["hidden_units"]) != 1:
            raise UserInputError(f"--model network_recurrent has one group, got --hidden-units "
                                 f"{','.join(str(n) for n in config['hidden_units'])}: pass e.g. --hidden-units 800 --beta 1")
        if config["loss"] not in RECURRENT_LOSSES:
            raise UserInputError(f"--model network_recurrent trains with --loss {' or '.join(RECURRENT_LOSSES)}, "
                                 f"not {config['loss']}")
        return super().from_config(config)
