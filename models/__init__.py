"""Model kinds, selectable by name with ``--model``, in one registry:
``MODEL_KINDS`` maps each name to a ``ModelKind``.

Every kind's class is a ``models.base.TrainableModel``, built from a run
config by ``build_model``; ``models.io`` saves and loads checkpoints of any
kind. Adding a kind is its module plus one entry here:
``MODEL_KINDS["name"] = ModelKind(TheClass, default_loss=..., hidden_units=..., beta=...)``.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from losses import EQUAL_BETA, LOSSES
from models.network_feedforward import NetworkFeedforward, NetworkFeedforwardStacked
from models.network_hierarchical_feedforward import NetworkHierarchicalFeedforward
from models.network_hierarchical_recurrent import NetworkHierarchicalRecurrent
from models.network_recurrent import NetworkRecurrent

FEEDFORWARD_LOSS = "loss_hierarchical_temporal_prediction_feedforward"


@dataclass(frozen=True)
class ModelKind:
    """One ``--model`` choice: its class and the run settings it picks when they
    are not given, beyond what train.py's TrainConfig defaults to.

    ``default_loss``: the loss it trains with by default (None: TrainConfig's);
    its beta default is that loss's ``default_beta`` unless ``beta`` is given.
    ``hidden_units`` and ``beta``: None for TrainConfig's; ``beta`` may be
    ``EQUAL_BETA``. ``trainable``: False for a kind assembled from trained runs
    (it picks no defaults and is not listed in --help).
    """

    cls: type
    default_loss: str | None = None
    hidden_units: tuple[int, ...] | None = None
    beta: tuple[float, ...] | str | None = None
    trainable: bool = True

    @property
    def defaults(self) -> dict:
        """The settings this kind picks, by name, in the order --help lists them."""
        beta = self.beta if self.beta is not None or self.default_loss is None else LOSSES[self.default_loss].default_beta
        picked = (("loss", self.default_loss), ("hidden_units", self.hidden_units), ("beta", beta))
        return {name: value for name, value in picked if value is not None}


MODEL_KINDS: dict[str, ModelKind] = {
    # the paper's model: TrainConfig's defaults are this kind's
    "network_hierarchical_recurrent": ModelKind(NetworkHierarchicalRecurrent),
    # the paper's control models
    # vanilla RNN: one group, as many units as the paper's model
    "network_recurrent": ModelKind(NetworkRecurrent, hidden_units=(2400,), beta=EQUAL_BETA),
    # stacks trained jointly
    "network_hierarchical_feedforward": ModelKind(NetworkHierarchicalFeedforward, default_loss=FEEDFORWARD_LOSS),
    # TP_FF: one stack on frozen stacks below
    "network_feedforward": ModelKind(NetworkFeedforward, default_loss=FEEDFORWARD_LOSS, hidden_units=(800,)),
    # TP_FF assembled for analysis from trained stacks, never trained itself
    "network_feedforward_stacked": ModelKind(NetworkFeedforwardStacked, trainable=False),
}


class _KindView(Mapping):
    """A read-only view of ``MODEL_KINDS``, looked up at each access (so a kind
    registered later is in it): ``value(kind)`` of each kind ``keep(kind)`` admits."""

    def __init__(self, value: Callable[[ModelKind], object], keep: Callable[[ModelKind], bool] = lambda kind: True):
        self._value, self._keep = value, keep

    def __getitem__(self, name: str):
        kind = MODEL_KINDS[name]
        if not self._keep(kind):
            raise KeyError(name)
        return self._value(kind)

    def __iter__(self) -> Iterator[str]:
        return (name for name, kind in MODEL_KINDS.items() if self._keep(kind))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return repr(dict(self))


# Views kept for the code that reads them: kind name -> class, and kind name ->
# the settings it picks (trainable kinds only; EQUAL_BETA is one loss weight of
# 1 per group, however many groups --hidden-units gives).
MODELS: Mapping[str, type] = _KindView(lambda kind: kind.cls)
MODEL_DEFAULTS: Mapping[str, dict] = _KindView(lambda kind: kind.defaults, keep=lambda kind: kind.trainable)


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
    Draws from torch's global RNG, so seed it first for a reproducible init. An
    unknown kind, or a setting the kind refuses, is a ValueError
    (``models.base.SettingError``, whose ``flag_wording`` a CLI shows)."""
    name = config["model"]
    if name not in MODEL_KINDS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(sorted(MODEL_KINDS))}")
    return MODEL_KINDS[name].cls.from_config(config)


__all__ = ["EQUAL_BETA", "MODELS", "MODEL_DEFAULTS", "MODEL_KINDS", "ModelKind", "build_model",
           "describe_model_defaults", "with_model_defaults", "NetworkHierarchicalRecurrent"]
