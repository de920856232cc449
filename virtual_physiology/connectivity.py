"""Recurrent excitatory -> excitatory weights of the first group, for the
connectivity analyses (as the original's connectivity notebook: W = W_hh[:640, :640],
indexed [post, pre], group-1 E units only).

The per-unit properties those analyses pair with the weights (Gabor centre,
fit quality, preferred direction, OSI, DSI) come from the other stages;
``VirtualPhysiology.connectivity()`` joins them.
"""
from __future__ import annotations

import numpy as np
import torch

from models.base import ProbeableModel
from utils import UserInputError


def has_recurrent_weights(model: ProbeableModel) -> bool:
    return isinstance(getattr(model, "weight_hh", None), torch.Tensor)


@torch.no_grad()
def excitatory_weights(model: ProbeableModel, group: int = 0) -> dict[str, np.ndarray]:
    """``weights`` (E, E) float32 = W_hh[post, pre] among the excitatory units
    of ``group`` and their global ``units`` (E,) int64.

    The excitatory units are the group's first n - int(p n), p =
    ``model.local_inhibitory_prop`` (0 for a model without one: no Dale
    split, every unit counts). The weights are taken after the model's own
    mask and sign projection (``project_weights_``, idempotent; the original
    applies it at every forward pass), i.e. as the network uses them.
    """
    if not has_recurrent_weights(model):
        raise UserInputError(f"{type(model).__name__} has no recurrent weight matrix weight_hh: "
                             "skip the connectivity stage for this model")
    if hasattr(model, "project_weights_"):
        model.project_weights_()
    n = model.group_sizes[group]
    n_excitatory = n - int(getattr(model, "local_inhibitory_prop", 0.0) * n)
    excitatory = slice(model.group_slices[group].start, model.group_slices[group].start + n_excitatory)
    weights = model.weight_hh.detach()[excitatory, excitatory]
    return dict(weights=weights.float().cpu().numpy(),
                units=np.arange(excitatory.start, excitatory.stop, dtype=np.int64))
