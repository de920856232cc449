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


def has_recurrent_weights(model: ProbeableModel) -> bool:
    """Whether the model has a recurrent weight matrix (``recurrent_weights()`` is not None)."""
    return model.recurrent_weights() is not None


@torch.no_grad()
def excitatory_weights(model: ProbeableModel, group: int = 0) -> dict[str, np.ndarray]:
    """``weights`` (E, E) float32 = W_hh[post, pre] among the excitatory units
    of ``group`` and their global ``units`` (E,) int64.

    The excitatory units are the group's first n - int(p n), p =
    ``model.local_inhibitory_prop`` (0 for a model without a Dale split: every
    unit counts). The weights are ``model.recurrent_weights()``: after the
    model's own mask and sign projection (the original applies it at every
    forward pass), i.e. as the network uses them. A model without recurrent
    weights is a TypeError (skip the connectivity stage for it).
    """
    recurrent = model.recurrent_weights()
    if recurrent is None:
        raise TypeError(f"{type(model).__name__} has no recurrent weight matrix")
    n = model.group_sizes[group]
    n_excitatory = n - int(model.local_inhibitory_prop * n)
    excitatory = slice(model.group_slices[group].start, model.group_slices[group].start + n_excitatory)
    weights = recurrent[excitatory, excitatory]
    return dict(weights=weights.float().cpu().numpy(),
                units=np.arange(excitatory.start, excitatory.stop, dtype=np.int64))
