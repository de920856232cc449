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
    block for every slice, then a concatenation of the blocks), several full
    passes over the largest tensors of the step. Here the forward pass writes
    every error e = pred[:, w:T-k] - target once into one tensor laid out as
    ``pred`` (zero outside the scored steps), and the backward pass turns it into
    each input's gradient in one pass: dL/dpred = (2 g_b / N_b) e in block b,
    and -(2 g_b / N_b) e, shifted k steps later, for the hidden group that is
    block b's target. Same maths as the per-block form; only the summation
    order of the means differs (float rounding).
    """

    @staticmethod
    def forward(ctx, pred, hidden, target, output_slices, group_slices, warmup, offset, detach_targets):
        B, T = pred.shape[:2]
        source, future = slice(warmup, T - offset), slice(warmup + offset, T)
        errors = torch.empty_like(pred, dtype=target.dtype)  # pred's strides: its gradient needs no copy
        errors[:, :warmup].zero_()
        errors[:, T - offset:].zero_()
        torch.sub(pred[:, source, output_slices[0]], target[:, future], out=errors[:, source, output_slices[0]])
        for g in range(1, len(output_slices)):
            lower = hidden[:, future, group_slices[g - 1]].to(target.dtype)  # bf16 states compared in float32
            torch.sub(pred[:, source, output_slices[g]], lower, out=errors[:, source, output_slices[g]])
        column_sums = errors.square().sum(dim=(0, 1))
        counts = [B * (T - warmup - offset) * (s.stop - s.start) for s in output_slices]
        terms = torch.stack([column_sums[s].sum() / n for s, n in zip(output_slices, counts)])
        ctx.save_for_backward(errors)
        ctx.layout = dict(outputs=output_slices, groups=group_slices, source=source, future=future, counts=counts,
                          pred=(pred.dtype, pred.stride()), hidden=(hidden.shape, hidden.stride(), hidden.dtype),
                          target=(target.shape, target.stride(), target.dtype), detach=detach_targets)
        return terms

    @staticmethod
    def backward(ctx, grad_terms):
        (errors,) = ctx.saved_tensors
        lay = ctx.layout
        outputs, source, future = lay["outputs"], lay["source"], lay["future"]
        # per output column: 2 g_b / N_b for the column's block b
        scale = torch.cat([(2.0 / n) * grad_terms[b].expand(s.stop - s.start)
                           for b, (s, n) in enumerate(zip(outputs, lay["counts"]))])
        grads = [None] * 8

        def empty(shape, stride, dtype):
            return torch.empty_strided(shape, stride, dtype=dtype, device=errors.device)

        if ctx.needs_input_grad[0]:  # zero outside the scored steps, as the errors
            pred_dtype = lay["pred"][0]
            if pred_dtype == errors.dtype:
                grads[0] = torch.mul(errors, scale, out=empty(errors.shape, lay["pred"][1], pred_dtype))
            else:  # bf16: a product then a cast is faster than a product written out in bf16
                grads[0] = (errors * scale).to(pred_dtype)
        # the targets' gradient: minus the error's, at the target's (k steps later) time
        targeted = [(2, lay["target"], None)]
        if not lay["detach"]:
            targeted.append((1, lay["hidden"], lay["groups"]))
        for i, (shape, stride, dtype), groups in targeted:
            if not ctx.needs_input_grad[i]:
                continue
            grad = empty(shape, stride, dtype)
            grad[:, :future.start].zero_()
            blocks = [(0, slice(None))] if groups is None else [(b, groups[b - 1]) for b in range(1, len(outputs))]
            if groups is not None:
                for untargeted in groups[len(outputs) - 1:]:
                    grad[:, future, untargeted].zero_()
            for b, cols in blocks:
                torch.mul(errors[:, source, outputs[b]], -scale[outputs[b]], out=grad[:, future, cols])
            grads[i] = grad
        return tuple(grads)
