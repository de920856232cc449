"""A ReLU recurrence h_t = ReLU(drive_t + W h_{t-1}), h_{-1} = 0, with a hand-written
backward pass.

Why not ``nn.RNN``: its autograd graph accumulates the recurrent weight gradient
as T small outer products and multiplies by the full dense W even where the
hierarchy's block mask guarantees zeros. Here

- each step multiplies only the blocks that can be non-zero (``block_ranges``),
  and the backward pass does the transpose;
- the weight gradient is one large matrix product over all time steps and
  batch entries per block, dW = sum_t dpre_t^T h_{t-1}.

The result is the same function and the same gradients as the dense masked
recurrence (``tests/dense_reference.py`` checks this); only the summation order
differs, so agreement is to float32 rounding.

Two layouts of the same products (``recurrence_blocks``):

- ``block``: only the blocks that can be non-zero, several products per step.
  Fastest for fp32 on CPUs, where each product costs its FLOPs.
- ``dense``: one product per step with the whole (masked, Dale-projected) W.
  ~1.45x the FLOPs at the paper's sizes but 2 kernels per step instead of ~10,
  which is what a GPU needs (it is launch-bound, not FLOP-bound, at B = 100),
  and what small bf16 models need on AMX CPUs, whose bf16 products are cheap.
  Its weight gradient also fills the masked entries (as nn.RNN's does); the
  model's ``mask_gradients`` zeroes them before the optimizer step, as in fp32.

Precision: the recurrence runs in the dtype of ``drive`` and ``weight`` (float32,
or bfloat16 for mixed precision, where the caller casts the fp32 master weight
once per step). bfloat16 products accumulate in float32 inside the kernel and
round once on output.

TF32 (``tf32=True``, train.py's ``--tf32``): the float32 products of the forward
and the backward pass run in TensorFloat-32 on CUDA GPUs (Ampere and newer), and
nothing else does. That is the original's split: cuDNN's RNN, which computed its
input and recurrent products, runs float32 RNNs in TF32 unless told otherwise
(``torch.backends.cudnn.rnn.fp32_precision`` defaults to "tf32"), while its
``nn.Linear`` readout and the loss ran in IEEE float32 (PyTorch's matmul default
since 1.12). CPU products are unaffected: there ``tf32=True`` computes exactly
what fp32 computes.
"""
from __future__ import annotations

import contextlib

import torch


RECURRENCE_BACKENDS = ("block", "dense")


@contextlib.contextmanager
def tf32_products(enabled: bool):
    """CUDA float32 matrix products in TF32 inside the block (when ``enabled``), IEEE
    float32 again after it; CPU products are never changed. Uses the new
    ``fp32_precision`` API only: torch refuses a mix of it and ``allow_tf32``."""
    if not enabled:
        yield
        return
    matmul = torch.backends.cuda.matmul
    before = matmul.fp32_precision
    matmul.fp32_precision = "tf32"
    try:
        yield
    finally:
        matmul.fp32_precision = before


class LinearInTF32(torch.autograd.Function):
    """x @ weight^T + bias with the forward and backward products in TF32 on CUDA
    (``tf32_products``): the batched stack's input projection under --tf32 (the single
    model's is ``InputDrive``), which autograd's own backward of ``F.linear`` would run
    outside the block. x: (..., N, P), weight: (..., O, P), bias: (..., O) -> (..., N, O);
    the leading dimensions (one per stacked model, or none) must match."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        with tf32_products(True):
            return torch.matmul(x, weight.transpose(-1, -2)) + bias.unsqueeze(-2)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        with tf32_products(True):
            grad_x = grad @ weight if ctx.needs_input_grad[0] else None
            grad_weight = grad.transpose(-1, -2) @ x
        return grad_x, grad_weight, grad.sum(-2)


class InputDrive(torch.autograd.Function):
    """The recurrent layer's drive before the recurrence, in one time-major buffer:
    drive[t, b] = [x[b, t] @ weight^T, 0] + bias, so only the first n_in units (group 1)
    receive the frame and every unit gets its bias.

    x: (B, T, P); weight: (n_in, P); bias: (H,), in the dtype of the products (x is
    cast while it is transposed). Returns (T, B, H), contiguous, as ``ReluRecurrence``
    takes it. tf32: the forward and backward products in TF32 on CUDA
    (``tf32_products``). Written by hand so that the frames are transposed once (and
    kept for the weight gradient) and the product lands in its columns directly: the
    autograd form transposes them twice and concatenates the drive."""

    @staticmethod
    def forward(ctx, x, weight, bias, tf32=False):
        B, T, P = x.shape
        n_in, H = weight.shape[0], bias.shape[0]
        frames = torch.empty(T, B, P, dtype=weight.dtype, device=x.device)
        frames.copy_(x.transpose(0, 1))
        frames = frames.view(T * B, P)
        drive = torch.empty(T * B, H, dtype=weight.dtype, device=x.device)
        with tf32_products(tf32):
            torch.addmm(bias[:n_in], frames, weight.t(), out=drive[:, :n_in])
        drive[:, n_in:] = bias[n_in:]
        ctx.save_for_backward(frames, weight)
        ctx.tf32, ctx.x_meta = tf32, (B, T, x.dtype)
        return drive.view(T, B, H)

    @staticmethod
    def backward(ctx, grad_drive):
        frames, weight = ctx.saved_tensors
        B, T, x_dtype = ctx.x_meta
        grad = grad_drive.reshape(T * B, -1)
        grad_in = grad[:, :weight.shape[0]]
        grad_x = None
        with tf32_products(ctx.tf32):
            if ctx.needs_input_grad[0]:
                grad_x = (grad_in @ weight).view(T, B, -1).transpose(0, 1).to(x_dtype)
            grad_weight = grad_in.t() @ frames
        return grad_x, grad_weight, grad.sum(0), None


def recurrence_blocks(backend: str, mask: torch.Tensor, row_groups: list[slice]):
    """The product layout for ``ReluRecurrence``: ``block_ranges`` for "block", or one
    block covering the whole matrix for "dense" (the masked entries are exact zeros
    in the projected weight, so both compute the same function)."""
    if backend == "block":
        return block_ranges(mask, row_groups)
    if backend == "dense":
        n = mask.shape[0]
        return [(0, n, [(0, n)])]
    raise ValueError(f"unknown recurrence backend {backend!r}: choose from {', '.join(RECURRENCE_BACKENDS)}")


def block_ranges(mask: torch.Tensor, row_groups: list[slice]) -> list[tuple[int, int, list[tuple[int, int]]]]:
    """For each row group, the runs of consecutive columns that hold a non-zero
    mask entry in any of its rows: [(row_lo, row_hi, [(col_lo, col_hi), ...]), ...].

    For the hierarchical model this skips the zero blocks (no connection between
    groups two apart) and the inhibitory columns of neighbouring groups, leaving
    only ~69% of the dense matrix at the paper's sizes."""
    blocks = []
    for rows in row_groups:
        used = mask[rows].any(dim=0).tolist()
        runs, start = [], None
        for c, u in enumerate(used + [False]):
            if u and start is None:
                start = c
            elif not u and start is not None:
                runs.append((start, c))
                start = None
        blocks.append((rows.start, rows.stop, runs))
    return blocks


class ReluRecurrence(torch.autograd.Function):
    """Time-major ReLU recurrence. drive: (T, B, H) contiguous; weight: (H, H),
    rows postsynaptic; blocks from ``block_ranges``; tf32: products in TF32 on CUDA
    (``tf32_products``). Returns h: (T, B, H)."""

    @staticmethod
    def forward(ctx, drive, weight, blocks, tf32=False):
        if drive.dtype != weight.dtype:
            raise TypeError(f"drive is {drive.dtype} but weight is {weight.dtype}: cast both to one dtype")
        ctx.tf32 = tf32
        with tf32_products(tf32):
            return ReluRecurrence._forward(ctx, drive, weight, blocks)

    @staticmethod
    def _forward(ctx, drive, weight, blocks):
        T = drive.shape[0]
        h = torch.empty_like(drive)
        torch.clamp_min(drive[0], 0.0, out=h[0])
        for t in range(1, T):
            for r0, r1, runs in blocks:
                pre = drive[t, :, r0:r1]
                for i, (c0, c1) in enumerate(runs):
                    w_t = weight[r0:r1, c0:c1].t()
                    if i == 0:
                        pre = torch.addmm(pre, h[t - 1, :, c0:c1], w_t)
                    else:
                        pre.addmm_(h[t - 1, :, c0:c1], w_t)
                torch.clamp_min(pre, 0.0, out=h[t, :, r0:r1])
        ctx.save_for_backward(h, weight)
        ctx.blocks = blocks
        return h

    @staticmethod
    def backward(ctx, grad_h):
        with tf32_products(ctx.tf32):
            return ReluRecurrence._backward(ctx, grad_h) + (None,)

    @staticmethod
    def _backward(ctx, grad_h):
        h, weight = ctx.saved_tensors
        T, B, H = h.shape
        active = h > 0  # ReLU'(pre) as PyTorch evaluates it: where the output is positive
        dpre = torch.empty_like(h)
        torch.mul(grad_h[T - 1], active[T - 1], out=dpre[T - 1])
        for t in range(T - 2, -1, -1):
            # dL/dh_t = its direct gradient + what flows back from step t+1 through W
            dh = dpre[t].copy_(grad_h[t])  # built in place: no allocation per time step
            for r0, r1, runs in ctx.blocks:
                for c0, c1 in runs:
                    dh[:, c0:c1].addmm_(dpre[t + 1, :, r0:r1], weight[r0:r1, c0:c1])
            dh.mul_(active[t])
        grad_weight = torch.zeros_like(weight)
        if T > 1:
            # one large product per block over all steps and clips: sum_t dpre_t^T h_{t-1}
            d_next = dpre[1:].reshape(-1, H)
            h_prev = h[:-1].reshape(-1, H)
            for r0, r1, runs in ctx.blocks:
                for c0, c1 in runs:
                    grad_weight[r0:r1, c0:c1] = d_next[:, r0:r1].t() @ h_prev[:, c0:c1]
        return dpre, grad_weight, None
