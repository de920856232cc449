"""Test-time manipulations of inter-areal feedback (spec §4 "no feedback", §7 nback).

Both return a modified deep copy and leave the model passed in untouched. The
feedback block of group g+1 -> g is W_hh[rows of g, columns of g+1].
"""
from __future__ import annotations

import copy

import torch

from utils import UserInputError


def feedback_blocks(model) -> list[tuple[slice, slice]]:
    """(rows, columns) of every feedback block, lowest group first."""
    if not getattr(model, "supports_feedback_ablation", False):
        raise UserInputError(f"{type(model).__name__} has no feedback connections to ablate")
    s = model.group_slices
    return [(s[g], s[g + 1]) for g in range(len(s) - 1)]


@torch.no_grad()
def without_feedback(model):
    """Copy of ``model`` with every feedback block zeroed (the paper's ablation:
    W_hh[0:800, 800:1600] and W_hh[800:1600, 1600:2400] at paper size)."""
    ablated = copy.deepcopy(model)
    for rows, cols in feedback_blocks(ablated):
        ablated.weight_hh[rows, cols] = 0.0
    return ablated


@torch.no_grad()
def shuffle_feedback(model, fraction: float, seed: int = 0):
    """Copy of ``model`` in which a random ``fraction`` (0-1) of the connections
    allowed in each feedback block swap weights among themselves (a random
    permutation of the chosen entries' values). Masked-out entries, the other
    blocks and the total set of feedback weight values are unchanged.
    """
    if not 0.0 <= fraction <= 1.0:
        raise UserInputError(f"shuffle fraction must be in [0, 1], got {fraction}")
    shuffled = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    for rows, cols in feedback_blocks(shuffled):
        block = shuffled.weight_hh[rows, cols]
        allowed = torch.nonzero(shuffled.hh_mask[rows, cols].cpu().flatten()).flatten()
        chosen = allowed[torch.randperm(len(allowed), generator=gen)[: int(round(fraction * len(allowed)))]]
        values = block.flatten()
        chosen = chosen.to(values.device)
        values[chosen] = values[chosen[torch.randperm(len(chosen), generator=gen).to(values.device)]]
        shuffled.weight_hh[rows, cols] = values.view_as(block)
    return shuffled
