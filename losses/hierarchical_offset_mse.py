"""The hierarchical offset MSE of the original (docs/faithfulness.md, "Offset
MSE with warm-up"), written out once."""
from __future__ import annotations

import torch


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

    Each MSE is a mean over all its elements (as ``F.mse_loss``), in the dtype of
    the targets ``y``: bfloat16 predictions and hidden states (mixed precision)
    are compared in float32. The higher-group targets are the live hidden
    states, so by default gradients flow into the lower group through its
    target too (the original does not detach them); ``detach_targets=True``
    stops that. All terms are computed together (``OffsetSquaredErrors``), so
    their gradients come back as one tensor per input in the input's own layout.

    Returns (loss, components) with components {"L1", "mse0", "mse1", ...}, each a
    detached scalar tensor (no host synchronisation here).
    """
    pred, hidden = out
    _, target = data
    T = pred.shape[1]
    if T <= warmup + offset:
        raise ValueError(f"clips of {T} frames are too short for warm-up {warmup} plus offset {offset}")
    terms = OffsetSquaredErrors.apply(pred, hidden, target, tuple(output_slices), tuple(group_slices),
                                      warmup, offset, detach_targets)
    loss = l1
    for g, b in enumerate(beta):
        loss = loss + b * terms[g]
    components = {"L1": l1.detach()}
    components.update({f"mse{g}": terms[g].detach() for g in range(len(output_slices))})
    return loss, components


class OffsetSquaredErrors(torch.autograd.Function):
    """The G mean squared errors of ``hierarchical_offset_mse`` as one (G,) tensor,
    in the dtype of ``target``.

    Why a Function: written with one ``F.mse_loss`` per block, autograd builds
    each input's gradient from per-block pieces (a zero tensor the size of the
    whole input for every slice, then a concatenation of the blocks), several
    full passes over the largest tensors of the step. Here the forward pass
    writes each block's errors e_b = pred[:, w:T-k, block b] - its target once,
    into a buffer of its own, and the backward pass writes each input's gradient
    once: (2 g_b / N_b) e_b into block b of dL/dpred, and -(2 g_b / N_b) e_b,
    k steps later, into the columns of the target that block b predicts; zero
    elsewhere. Same maths as the per-block form; only the summation order of the
    means differs (float rounding). The blocks predict a prefix of each target's
    columns, in order: the frame's pixels for block 0, groups 1 .. G-1 of
    ``hidden`` for blocks 1 .. G-1 (the model's output layout).
    """

    @staticmethod
    def forward(ctx, pred, hidden, target, output_slices, group_slices, warmup, offset, detach_targets):
        B, T = pred.shape[:2]
        source, future = slice(warmup, T - offset), slice(warmup + offset, T)
        time_major = pred.stride(0) < pred.stride(1)  # as the model's predictions: buffers in pred's order
        errors, terms = [], []
        for b, out in enumerate(output_slices):
            # bf16 hidden states are compared in float32, as the frames
            lower = target[:, future] if b == 0 else hidden[:, future, group_slices[b - 1]].to(target.dtype)
            width = out.stop - out.start
            flat = torch.empty((T - warmup - offset, B, width) if time_major else (B, T - warmup - offset, width),
                               dtype=target.dtype, device=pred.device)
            error = flat.transpose(0, 1) if time_major else flat
            torch.sub(pred[:, source, out], lower, out=error)
            terms.append(flat.square().sum() / flat.numel())
            errors.append(error)
        ctx.save_for_backward(*errors)
        ctx.layout = dict(outputs=output_slices, groups=group_slices, source=source, future=future,
                          detach=detach_targets, **{name: (t.shape, t.stride(), t.dtype) for name, t in
                                                    (("pred", pred), ("hidden", hidden), ("target", target))})
        return torch.stack(terms)

    @staticmethod
    def backward(ctx, grad_terms):
        errors = ctx.saved_tensors
        lay = ctx.layout
        outputs, groups, source, future = lay["outputs"], lay["groups"], lay["source"], lay["future"]
        scales = [(2.0 / e.numel()) * grad_terms[b] for b, e in enumerate(errors)]  # 2 g_b / N_b

        def gradient(meta, rows, blocks, sign):
            """sign * scale_b * e_b in the given columns of ``rows`` for every (block, columns);
            zero in the other rows and in the columns after the last block's (a prefix is written)."""
            shape, stride, dtype = meta
            grad = torch.empty_strided(shape, stride, dtype=dtype, device=errors[0].device)
            grad[:, :rows.start].zero_()
            grad[:, rows.stop:].zero_()
            grad[:, rows, blocks[-1][1].stop:].zero_()
            for b, columns in blocks:
                if dtype == errors[b].dtype:
                    torch.mul(errors[b], sign * scales[b], out=grad[:, rows, columns])
                else:  # bf16: a product then a cast is faster than a product written out in bf16
                    grad[:, rows, columns] = errors[b] * (sign * scales[b])
            return grad

        grad_pred = grad_hidden = grad_target = None
        if ctx.needs_input_grad[0]:
            grad_pred = gradient(lay["pred"], source, list(enumerate(outputs)), 1.0)
        if ctx.needs_input_grad[1] and not lay["detach"] and len(outputs) > 1:
            grad_hidden = gradient(lay["hidden"], future, [(b, groups[b - 1]) for b in range(1, len(outputs))], -1.0)
        if ctx.needs_input_grad[2]:
            grad_target = gradient(lay["target"], future, [(0, slice(0, lay["target"][0][-1]))], -1.0)
        return grad_pred, grad_hidden, grad_target, None, None, None, None, None
