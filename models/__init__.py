"""Model kinds, selectable by name with ``--model``.

Every kind is a ``models.base.ProbeableModel`` and is built from a run config by
``build_model``; ``models.io`` saves and loads checkpoints of any kind."""
from __future__ import annotations

from losses import FEEDFORWARD_LOSSES
from models.network_feedforward import NetworkFeedforward, NetworkFeedforwardStacked
from models.network_hierarchical_feedforward import NetworkHierarchicalFeedforward
from models.network_hierarchical_recurrent import NetworkHierarchicalRecurrent
from models.network_recurrent import NetworkRecurrent

MODELS = {
    "network_hierarchical_recurrent": NetworkHierarchicalRecurrent,
    # the paper's control models
    "network_recurrent": NetworkRecurrent,  # vanilla RNN: one group
    "network_hierarchical_feedforward": NetworkHierarchicalFeedforward,  # stacks trained jointly
    "network_feedforward": NetworkFeedforward,  # TP_FF: one stack on frozen stacks below
    "network_feedforward_stacked": NetworkFeedforwardStacked,  # TP_FF assembled for analysis
}

# The run settings each kind picks when they are not given: what train.py's
# TrainConfig does not already default to for that kind. EQUAL_BETA is one
# loss weight of 1 per group, however many groups --hidden-units gives.
EQUAL_BETA = "1 per group"
MODEL_DEFAULTS = {
    "network_hierarchical_recurrent": {},  # TrainConfig's defaults are this kind's (the paper's)
    "network_recurrent": dict(hidden_units=(2400,), beta=EQUAL_BETA),  # as many units as the paper's model
    "network_hierarchical_feedforward": dict(loss=FEEDFORWARD_LOSSES[0], beta=EQUAL_BETA),
    "network_feedforward": dict(loss=FEEDFORWARD_LOSSES[0], hidden_units=(800,), beta=EQUAL_BETA),
}  # network_feedforward_stacked is assembled from trained stacks, never trained itself


def with_model_defaults(values: dict, hidden_units_default: tuple) -> dict:
    """``values`` (the settings given, by name) completed with the defaults of
    the kind ``values["model"]`` names, for the settings not given.

    A default never overrides a given value, so only a contradiction the user
    wrote (e.g. --model network_hierarchical_feedforward --beta 0.9,0.1,0.1)
    is refused later, by the model. EQUAL_BETA becomes one 1.0 per group of
    the given --hidden-units, else of the kind's or ``hidden_units_default``.
    An unknown kind adds nothing (validation names it).
    """
    kind_defaults = MODEL_DEFAULTS.get(values.get("model"), {})
    out = {**{k: v for k, v in kind_defaults.items() if k not in values}, **values}
    if out.get("beta") == EQUAL_BETA:
        out["beta"] = (1.0,) * len(out.get("hidden_units", hidden_units_default))
    return out


def describe_model_defaults() -> str:
    """One line per kind for --help: what choosing it sets."""
    def shown(value):
        return ",".join(str(v) for v in value) if isinstance(value, tuple) else str(value)
    return "; ".join(f"{kind}: " + (", ".join(f"{k.replace('_', '-')} {shown(v)}" for k, v in defaults.items())
                                    or "each flag's [default]")
                     for kind, defaults in MODEL_DEFAULTS.items())


def build_model(config: dict):
    """A freshly initialised model from a resolved run config (see train.TrainConfig).
    Draws from torch's global RNG, so seed it first for a reproducible init."""
    name = config["model"]
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(sorted(MODELS))}")
    return MODELS[name].from_config(config)


__all__ = ["MODELS", "MODEL_DEFAULTS", "build_model", "describe_model_defaults", "with_model_defaults",
           "NetworkHierarchicalRecurrent"]
