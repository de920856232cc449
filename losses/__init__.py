"""Training losses, in one registry: ``LOSSES`` maps each ``--loss`` name to a
``LossSpec``.

A loss compares the model's readout at time t with the target at time t + k
(k: its temporal ``offset``), from the first step the model scores on (its
``loss_warmup``). The recurrent models train with the hierarchical offset MSE
(k = 1, 5 or 0); the temporal-convolution (feedforward) models with the
feedforward MSE (k = 1). A model's ``get_loss`` calls its loss's ``function``;
which model families may train with which loss is checked in one place,
``models.base.TrainableModel.check_loss``.

Adding a loss is one entry: ``LOSSES["name"] = LossSpec(function, offset,
("recurrent",))`` with ``function(model, out, data) -> (loss, components)``.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from losses.feedforward_mse import feedforward_next_step_mse
from losses.hierarchical_offset_mse import hierarchical_offset_mse

# Model families (``models.base.TrainableModel.family``).
RECURRENT = "recurrent"
FEEDFORWARD = "feedforward"
# A beta default meaning one loss weight of 1 per group, however many groups
# there are (resolved by models.with_model_defaults).
EQUAL_BETA = "1 per group"


@dataclass(frozen=True)
class LossSpec:
    """One training loss.

    ``function(model, out, data) -> (loss, components)``: ``out`` is the
    model's ``forward`` output, ``data`` the (input, target) pair after
    ``preprocess_data``; components are detached scalars by name, logged per
    epoch: train.py's loss history has the columns "L1", "mse0" .. "mse{G-1}"
    for G groups, so a loss reports those (0 for a term it does not have).
    ``offset``: k, the frames between a readout and its target.
    ``model_families``: the ``TrainableModel.family`` values that may train
    with it. ``default_beta``: the loss weights a model kind that picks this
    loss by default gets, unless it sets its own (None: the run's default).
    """

    function: Callable
    offset: int
    model_families: tuple[str, ...]
    default_beta: tuple[float, ...] | str | None = None

    def min_frames(self, warmup: int) -> int:
        """Shortest clip this loss can score when scoring starts at step
        ``warmup``: warmup + offset + 1, one readout with a target."""
        return warmup + self.offset + 1


def offset_mse_loss(model, out, data):
    """``losses.hierarchical_offset_mse`` with the recurrent model's settings:
    lam * sum|W| + sum_g beta_g MSE_g at offset ``model.temporal_offset``."""
    return hierarchical_offset_mse(out, data, output_slices=model.output_slices, group_slices=model.group_slices,
                                   beta=model.beta, warmup=model.warmup, offset=model.temporal_offset,
                                   l1=model.lam * model.weight_l1(), detach_targets=model.detach_targets)


def feedforward_mse_loss(model, out, data):
    """``losses.feedforward_next_step_mse`` with a temporal-convolution model's
    settings: lam * sum|W| + the unweighted sum of its trained groups' errors."""
    return feedforward_next_step_mse(out, data, output_slices=model.output_slices, group_slices=model.group_slices,
                                     starts=model.starts, trained_groups=model.trained_groups,
                                     l1=model.lam * model.weight_l1())


LOSSES: dict[str, LossSpec] = {
    # the paper's: predict the next step
    "loss_hierarchical_temporal_prediction": LossSpec(offset_mse_loss, 1, (RECURRENT,)),
    # control: predict 5 steps ahead
    "loss_hierarchical_temporal_prediction_t5": LossSpec(offset_mse_loss, 5, (RECURRENT,)),
    # control: reconstruct the present
    "loss_hierarchical_autoencoder": LossSpec(offset_mse_loss, 0, (RECURRENT,)),
    # feedforward controls (docs/faithfulness.md, "Feedforward loss"): every stack weighted 1
    "loss_hierarchical_temporal_prediction_feedforward": LossSpec(feedforward_mse_loss, 1, (FEEDFORWARD,),
                                                                   default_beta=EQUAL_BETA),
}


class _Offsets(Mapping):
    """Loss name -> offset, read from ``LOSSES`` at each look-up (so a loss
    registered later is in it too); what older code and configs import."""

    def __getitem__(self, name: str) -> int:
        return LOSSES[name].offset

    def __iter__(self) -> Iterator[str]:
        return iter(LOSSES)

    def __len__(self) -> int:
        return len(LOSSES)

    def __repr__(self) -> str:
        return repr(dict(self))


LOSS_OFFSETS: Mapping[str, int] = _Offsets()


def min_clip_frames(warmup: int, loss: str) -> int:
    """Shortest clip the loss named ``loss`` scores with warm-up ``warmup``
    (``LossSpec.min_frames``); the check a dataset can get before the model is
    built. Raises KeyError for an unknown loss."""
    return LOSSES[loss].min_frames(warmup)


__all__ = ["EQUAL_BETA", "FEEDFORWARD", "LOSSES", "LOSS_OFFSETS", "LossSpec", "RECURRENT", "feedforward_mse_loss",
           "feedforward_next_step_mse", "hierarchical_offset_mse", "min_clip_frames", "offset_mse_loss"]
