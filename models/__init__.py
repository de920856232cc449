"""Model kinds, selectable by name with ``--model``.

Every kind is a ``models.base.ProbeableModel`` and is built from a run config by
``build_model``; ``models.io`` saves and loads checkpoints of any kind."""
from __future__ import annotations

from models.network_feedforward import NetworkFeedforward, NetworkFeedforwardStacked
from models.network_hierarchical_feedforward import NetworkHierarchicalFeedforward
from models.network_hierarchical_recurrent import NetworkHierarchicalRecurrent
from models.network_recurrent import NetworkRecurrent

MODELS = {
    "network_hierarchical_recurrent": NetworkHierarchicalRecurrent,
    # controls (paper §4)
    "network_recurrent": NetworkRecurrent,  # vanilla RNN: one group
    "network_hierarchical_feedforward": NetworkHierarchicalFeedforward,  # stacks trained jointly
    "network_feedforward": NetworkFeedforward,  # TP_FF: one stack on frozen stacks below
    "network_feedforward_stacked": NetworkFeedforwardStacked,  # TP_FF assembled for analysis
}


def build_model(config: dict):
    """A freshly initialised model from a resolved run config (see train.TrainConfig).
    Draws from torch's global RNG, so seed it first for a reproducible init."""
    name = config["model"]
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(sorted(MODELS))}")
    return MODELS[name].from_config(config)


__all__ = ["MODELS", "build_model", "NetworkHierarchicalRecurrent"]
