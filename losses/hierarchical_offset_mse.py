"""The hierarchical offset MSE of the original (docs/faithfulness.md, "Offset
MSE with warm-up"), written out once."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def hierarchical_offset_mse(
    out,
    data,
    *,
    output_slices: list[slice],
    group_slices: list[slice],
    beta,
    warmup: int,
    offset: int,
    l1: torch.Tensor,
    detach_targets: bool = False,
):
    """Weighted sum of per-group prediction errors plus an L1 weight penalty.

    Shapes: predictions (B, T, O) and hidden (B, T, H) from the model; targets
    (B, T, P). With w = warmup and k = offset (k = 0 is the autoencoder case):

        MSE_0 = mean( (pred[:, w:T-k, block 0] - y[:, w+k:])^2 )
        MSE_g = mean( (pred[:, w:T-k, block g] - h[:, w+k:, group g-1])^2 ),  g >= 1
        loss  = l1 + sum_g beta_g MSE_g

    Each MSE is a mean over all its elements (``F.mse_loss``), in the dtype of the
    targets ``y``: bfloat16 predictions and hidden states (mixed precision) are
    compared in float32. The higher-group
    targets are the live hidden states, so by default gradients flow into the
    lower group through its target too (the original does not detach them);
    ``detach_targets=True`` stops that.

    Returns (loss, components) with components {"L1", "mse0", "mse1", ...}, each a
    detached scalar tensor (no host synchronisation here).
    """
    pred, hidden = out
    _, target = data
    T = pred.shape[1]
    if T <= warmup + offset:
        raise ValueError(f"clips of {T} frames are too short for warm-up {warmup} plus offset {offset}")
    source = slice(warmup, T - offset)
    future = slice(warmup + offset, T)
    # One split per tensor rather than a slice per group: each slice's backward
    # would allocate and fill a zero gradient the size of the whole tensor.
    preds = torch.split(pred, [s.stop - s.start for s in output_slices], dim=-1)
    groups = torch.split(hidden, [s.stop - s.start for s in group_slices], dim=-1)

    terms = [F.mse_loss(preds[0][:, source], target[:, future])]
    for g in range(1, len(preds)):
        tgt = groups[g - 1][:, future].to(target.dtype)  # bf16 hidden states are compared in float32
        terms.append(F.mse_loss(preds[g][:, source], tgt.detach() if detach_targets else tgt))

    loss = l1
    for b, term in zip(beta, terms):
        loss = loss + b * term
    components = {"L1": l1.detach()}
    components.update({f"mse{g}": term.detach() for g, term in enumerate(terms)})
    return loss, components
