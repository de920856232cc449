"""Test-time manipulations of inter-areal feedback: the paper's no-feedback
ablation and the nback notebook's shuffled-feedback control.

Both return a modified deep copy and leave the model passed in untouched. The
feedback block of group g+1 -> g is W_hh[rows of g, columns of g+1]
(``model.feedback_blocks()``); a model without feedback
(``supports_feedback_ablation`` False) is a TypeError, a bad shuffle fraction
a ValueError. ``apply_ablation`` reads a user's ``--ablation`` spec and so
reports every problem as a ``SettingError`` naming the spec.
"""
from __future__ import annotations

import copy

import torch

from models.base import ProbeableModel, SettingError


def feedback_blocks(model: ProbeableModel) -> list[tuple[slice, slice]]:
    """(rows, columns) of every feedback block, lowest group first (``model.feedback_blocks()``)."""
    if not model.supports_feedback_ablation:
        raise TypeError(f"{type(model).__name__} has no feedback connections to ablate")
    return model.feedback_blocks()


@torch.no_grad()
def without_feedback(model):
    """Copy of ``model`` with every feedback block zeroed (the paper's ablation:
    W_hh[0:800, 800:1600] and W_hh[800:1600, 1600:2400] at paper size)."""
    ablated = copy.deepcopy(model)
    for rows, cols in feedback_blocks(ablated):
        ablated.weight_hh[rows, cols] = 0.0
    return ablated


@torch.no_grad()
def shuffle_feedback(model, fraction: float, seed: int = 0, mass_preserving: bool = False):
    """Copy of ``model`` in which a random ``fraction`` (0-1) of each feedback
    block's entries swap weights among themselves (a random permutation of the
    chosen entries' values); the other blocks are unchanged.

    By default, as the original's nback control (docs/faithfulness.md,
    "Shuffled feedback"): the entries are drawn from the whole block, the
    masked ones included (the higher group's inhibitory columns, whose feedback
    is 0), and the mask then zeroes whatever landed on a masked entry, as the
    original's next forward pass does. Weight moved there is lost and the zeros
    moved onto allowed entries silence them, so a full shuffle keeps about
    E / n (80% at the paper's 640 of 800) of the feedback weight mass.
    ``mass_preserving=True`` draws only allowed entries, so each block keeps
    its set of weight values.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"shuffle fraction must be in [0, 1], got {fraction}")
    shuffled = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    for rows, cols in feedback_blocks(shuffled):
        block, mask = shuffled.weight_hh[rows, cols], shuffled.hh_mask[rows, cols]
        candidates = (torch.nonzero(mask.cpu().flatten()).flatten() if mass_preserving
                      else torch.arange(block.numel()))
        chosen = candidates[torch.randperm(len(candidates), generator=gen)[: int(round(fraction * len(candidates)))]]
        values = block.flatten()
        chosen = chosen.to(values.device)
        values[chosen] = values[chosen[torch.randperm(len(chosen), generator=gen).to(values.device)]]
        shuffled.weight_hh[rows, cols] = values.view_as(block) * mask
    return shuffled


ABLATION_SPECS = "none, no-feedback or shuffle-feedback:FRACTION[:SEED]"


def apply_ablation(model, spec: str):
    """The model an ``--ablation`` flag asks for:

    - ``none``: ``model`` itself (any model kind);
    - ``no-feedback``: ``without_feedback(model)``;
    - ``shuffle-feedback:FRACTION[:SEED]``: ``shuffle_feedback(model, FRACTION, SEED)``
      (FRACTION in [0, 1], SEED an integer, 0 when left out).

    A bad spec, or a feedback ablation of a model without feedback, is a
    ``SettingError``: the spec is the user's, so this is where the library's
    TypeError and ValueError become a message naming it.
    """
    name, *args = spec.strip().split(":")
    if name == "none" and not args:
        return model
    try:
        if name == "no-feedback" and not args:
            return without_feedback(model)
        if name == "shuffle-feedback" and 1 <= len(args) <= 2:
            try:
                fraction, seed = float(args[0]), int(args[1]) if len(args) == 2 else 0
            except ValueError:
                raise SettingError(f"ablation {spec!r}: FRACTION must be a number and SEED an integer") from None
            return shuffle_feedback(model, fraction, seed)
    except SettingError:  # already names the spec
        raise
    except (TypeError, ValueError) as err:
        raise SettingError(f"ablation {spec!r}: {err}") from err
    raise SettingError(f"unknown ablation {spec!r}: use {ABLATION_SPECS}")
