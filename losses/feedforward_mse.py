"""The feedforward temporal-prediction loss of the original's convolution
controls (docs/faithfulness.md, "Feedforward loss"), on time-aligned outputs."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def feedforward_next_step_mse(out, data, *, output_slices: list[slice], group_slices: list[slice],
                              starts: list[int], trained_groups, l1: torch.Tensor):
    """Unweighted sum of next-step prediction errors of temporal-convolution
    stacks plus an L1 weight penalty.

    Shapes: predictions (B, T, O) and hidden (B, T, H) from the model, both
    aligned with the input and zero before each group's first valid step
    ``starts[g]``; targets (B, T, P). With s = starts[g]:

        MSE_0 = mean( (pred[:, s:T-1, block 0] - y[:, s+1:])^2 )
        MSE_g = mean( (pred[:, s:T-1, block g] - h[:, s+1:, group g-1])^2 ),  g >= 1
        loss  = l1 + sum_{g in trained_groups} MSE_g

    For stacks with kernels of k frames, s = (k-1)(g+1) and this is the
    original's loss on its unpadded outputs: p_g[:, :-1] against y[:, k:] or
    h_{g-1}[:, k:]. The higher-group targets are the live hidden states (not
    detached, as the original). Groups outside ``trained_groups`` are still
    reported, for monitoring, but add nothing to the loss.

    Returns (loss, components) with components {"L1", "mse0", "mse1", ...}, each
    a detached scalar tensor. Raises ValueError for clips shorter than
    starts[-1] + 2 frames (the top group would have no scored step).
    """
    pred, hidden = out
    _, target = data
    T = pred.shape[1]
    if T < starts[-1] + 2:
        raise ValueError(f"clips of {T} frames are too short for the top stack, which needs at least "
                         f"{starts[-1] + 2} frames (fewer stacks or shorter kernels need fewer)")
    preds = torch.split(pred, [s.stop - s.start for s in output_slices], dim=-1)
    groups = torch.split(hidden, [s.stop - s.start for s in group_slices], dim=-1)
    terms = []
    for g, s in enumerate(starts):
        tgt = target if g == 0 else groups[g - 1]
        terms.append(F.mse_loss(preds[g][:, s:T - 1], tgt[:, s + 1:]))
    loss = l1
    for g in trained_groups:
        loss = loss + terms[g]
    components = {"L1": l1.detach()}
    components.update({f"mse{g}": term.detach() for g, term in enumerate(terms)})
    return loss, components
