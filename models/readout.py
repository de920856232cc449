"""The block-diagonal readout of the hierarchical network, with a hand-written
backward pass: group g's hidden units -> output block g, and nothing else.

Why not one ``F.linear`` per group and a ``torch.cat``: the concatenation, the
bias added afterwards and, in the backward pass, the split of the gradient are
each a full pass over the step's largest tensors, which costs as much as the
products themselves at small sizes. Here each block's product writes straight
into its columns of one output, with its bias added inside the product
(``torch.addmm``), and the backward pass writes each group's gradient straight
into its columns of one tensor.

Same function and gradients as the per-group form. In float32 the products
round as ``F.linear`` followed by ``+ bias`` (the bias is added to the
float32 product); in bfloat16 the bias joins the float32 accumulator and the
sum rounds once, instead of the product and then the sum rounding each.
"""
from __future__ import annotations

import torch


class BlockReadout(torch.autograd.Function):
    """pred[..., out_g] = h[..., group_g] @ W_g^T + bias[out_g] for every group g.

    h: (T, B, H) contiguous, every column in one of ``group_slices``; bias: (O,);
    weights: one (O_g, n_g) matrix per group, ``output_slices[g]`` its O_g output
    columns. All in one dtype. Returns (T, B, O), contiguous."""

    @staticmethod
    def forward(ctx, h, bias, output_slices, group_slices, *weights):
        T, B, H = h.shape
        flat = h.view(T * B, H)
        pred = h.new_empty(T * B, bias.shape[0])
        for w, out, group in zip(weights, output_slices, group_slices):
            torch.addmm(bias[out], flat[:, group], w.t(), out=pred[:, out])
        ctx.save_for_backward(h, *weights)
        ctx.slices = (output_slices, group_slices)
        return pred.view(T, B, -1)

    @staticmethod
    def backward(ctx, grad_pred):
        h, *weights = ctx.saved_tensors
        output_slices, group_slices = ctx.slices
        T, B, H = h.shape
        flat, grad = h.view(T * B, H), grad_pred.reshape(T * B, -1)
        grad_h = None
        if ctx.needs_input_grad[0]:
            grad_h = torch.empty_like(flat)
            for w, out, group in zip(weights, output_slices, group_slices):
                torch.mm(grad[:, out], w, out=grad_h[:, group])
            grad_h = grad_h.view(T, B, H)
        grad_weights = [grad[:, out].t() @ flat[:, group] for out, group in zip(output_slices, group_slices)]
        return (grad_h, grad.sum(0), None, None, *grad_weights)
