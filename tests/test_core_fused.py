"""The step's hand-written pieces around the recurrence against their plain autograd
forms: the loss's one-pass gradients (losses.hierarchical_offset_mse), the
block-diagonal readout (models.readout), the input drive (models.recurrence), and
the allocator setting that keeps a step's freed memory (utils.keep_freed_memory).
The recurrence itself is checked against the dense masked reference
(tests/test_core_model.py)."""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from losses import hierarchical_offset_mse
from models.base import contiguous_slices
from models.readout import BlockReadout
from models.recurrence import InputDrive

GROUPS, PIXELS, B, T = (5, 4, 3), 6, 3, 9
OUTPUTS = (PIXELS,) + GROUPS[:-1]
BETA = (0.7, 0.2, 0.1)
ROOT = Path(__file__).resolve().parents[1]


def per_block_loss(pred, hidden, target, warmup, offset, detach):
    """The loss written with one F.mse_loss per block, as autograd differentiates it."""
    source, future = slice(warmup, T - offset), slice(warmup + offset, T)
    outs, groups = contiguous_slices(OUTPUTS), contiguous_slices(GROUPS)
    terms = [F.mse_loss(pred[:, source, outs[0]].to(target.dtype), target[:, future])]
    for g in range(1, len(outs)):
        lower = hidden[:, future, groups[g - 1]].to(target.dtype)
        terms.append(F.mse_loss(pred[:, source, outs[g]].to(target.dtype), lower.detach() if detach else lower))
    return sum(b * t for b, t in zip(BETA, terms)), terms


def loss_inputs(dtype, time_major, seed=0):
    """pred (B, T, O), hidden (B, T, H), target (B, T, P) leaves; ``time_major``: pred and
    hidden are transposed views of (T, B, n) tensors, as the model returns them."""
    gen = torch.Generator().manual_seed(seed)
    shapes = [(T, B, sum(OUTPUTS)), (T, B, sum(GROUPS))] if time_major else [(B, T, sum(OUTPUTS)), (B, T, sum(GROUPS))]
    pred, hidden = (torch.randn(s, generator=gen).to(dtype).requires_grad_() for s in shapes)
    target = torch.randn(B, T, PIXELS, generator=gen).requires_grad_()
    views = [t.transpose(0, 1) for t in (pred, hidden)] if time_major else [pred, hidden]
    return (pred, hidden, target), (*views, target)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("time_major", [False, True])
@pytest.mark.parametrize("offset, detach", [(1, False), (5, False), (0, False), (1, True)])
def test_fused_loss_values_and_gradients_equal_the_per_block_form(dtype, time_major, offset, detach):
    warmup = 2
    results = []
    for fused in (True, False):
        leaves, (pred, hidden, target) = loss_inputs(dtype, time_major)
        if fused:
            loss, components = hierarchical_offset_mse(
                (pred, hidden), (None, target), output_slices=contiguous_slices(OUTPUTS),
                group_slices=contiguous_slices(GROUPS), beta=BETA, warmup=warmup, offset=offset,
                l1=torch.tensor(0.0), detach_targets=detach)
            terms = [components[f"mse{g}"] for g in range(len(GROUPS))]
        else:
            loss, terms = per_block_loss(pred, hidden, target, warmup, offset, detach)
        loss.backward()
        results.append((loss.detach(), torch.stack([t.detach() for t in terms]), [t.grad for t in leaves]))
    (loss, terms, grads), (ref_loss, ref_terms, ref_grads) = results
    torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=0)
    torch.testing.assert_close(terms, ref_terms, rtol=1e-6, atol=0)
    for name, grad, ref in zip(("pred", "hidden", "target"), grads, ref_grads):
        if detach and name == "hidden":
            assert grad is None and ref is None  # its only use is as a detached target
            continue
        assert grad.dtype == ref.dtype and grad.stride() == ref.stride(), name
        # float32: only the rounding of 2 g / N differs; bfloat16 gradients may round apart by one step
        tol = dict(rtol=1e-6, atol=1e-9) if dtype == torch.float32 else dict(rtol=1e-2, atol=1e-5)
        torch.testing.assert_close(grad, ref, **tol, msg=name)
        assert torch.equal(grad == 0, ref == 0), f"{name}: zero outside the scored steps, as the per-block form"


def test_fused_loss_under_no_grad_gives_the_terms():
    _, (pred, hidden, target) = loss_inputs(torch.float32, True)
    with torch.no_grad():
        _, components = hierarchical_offset_mse(
            (pred, hidden), (None, target), output_slices=contiguous_slices(OUTPUTS),
            group_slices=contiguous_slices(GROUPS), beta=BETA, warmup=2, offset=1, l1=torch.tensor(0.0))
        _, ref_terms = per_block_loss(pred, hidden, target, 2, 1, False)
    torch.testing.assert_close(torch.stack([components[f"mse{g}"] for g in range(3)]), torch.stack(ref_terms))


PRODUCT_TOLERANCES = [(torch.float32, dict(rtol=1e-6, atol=1e-6)), (torch.bfloat16, dict(rtol=2e-2, atol=2e-2))]


def assert_same_function(make_leaves, fused, autograd_form, names, tol):
    """Output and leaf gradients of ``fused(*leaves)`` and ``autograd_form(*leaves)`` on the
    same inputs (``make_leaves(gen)`` builds them) and the same random upstream gradient."""
    results = []
    for function in (fused, autograd_form):
        gen = torch.Generator().manual_seed(0)
        leaves = make_leaves(gen)
        out = function(*leaves)
        (out * torch.randn(out.shape, generator=gen).to(out.dtype)).sum().backward()
        results.append([out.detach(), *(leaf.grad for leaf in leaves)])
    for name, got, ref in zip(names, *results):
        assert got.shape == ref.shape and got.dtype == ref.dtype and got.stride() == ref.stride(), name
        torch.testing.assert_close(got.float(), ref.float(), **tol, msg=name)


def per_group_readout(h, bias, *weights):
    """The readout as one F.linear per group, concatenated, then the bias."""
    groups = torch.split(h, GROUPS, dim=-1)
    return torch.cat([F.linear(hg, w) for hg, w in zip(groups, weights)], -1) + bias


@pytest.mark.parametrize("dtype, tol", PRODUCT_TOLERANCES)
def test_block_readout_equals_one_linear_per_group(dtype, tol):
    def leaves(gen):
        h = torch.randn(T, B, sum(GROUPS), generator=gen).relu().to(dtype)
        bias = torch.randn(sum(OUTPUTS), generator=gen).to(dtype)
        weights = [torch.randn(o, n, generator=gen).to(dtype) for o, n in zip(OUTPUTS, GROUPS)]
        return [t.requires_grad_() for t in (h, bias, *weights)]

    slices = tuple(contiguous_slices(OUTPUTS)), tuple(contiguous_slices(GROUPS))
    assert_same_function(leaves, lambda h, bias, *w: BlockReadout.apply(h, bias, *slices, *w), per_group_readout,
                         ["pred", "h", "bias"] + [f"W{g}" for g in range(3)], tol)


def autograd_drive(x, weight, bias):
    """The drive written with autograd's ops: the frames' product for group 1, then the bias."""
    drive0 = F.linear(x.transpose(0, 1).to(weight.dtype), weight)
    n_in, H = weight.shape[0], bias.shape[0]
    return torch.cat([drive0, drive0.new_zeros(*drive0.shape[:2], H - n_in)], -1) + bias


@pytest.mark.parametrize("dtype, tol", PRODUCT_TOLERANCES)
def test_input_drive_equals_its_autograd_form(dtype, tol):
    def leaves(gen):
        x = torch.randn(B, T, PIXELS, generator=gen)  # float32 frames, as the model gets them
        weight = torch.randn(GROUPS[0], PIXELS, generator=gen).to(dtype)
        bias = torch.randn(sum(GROUPS), generator=gen).to(dtype)
        return [t.requires_grad_() for t in (x, weight, bias)]

    assert InputDrive.apply(*leaves(torch.Generator())).is_contiguous()  # (T, B, H), as ReluRecurrence takes it
    assert_same_function(leaves, InputDrive.apply, autograd_drive, ["drive", "x", "weight", "bias"], tol)


ALLOCATOR_SCRIPT = textwrap.dedent("""
    import ctypes, sys
    from utils import keep_freed_memory

    class MallInfo2(ctypes.Structure):  # glibc's struct mallinfo2 (>= 2.33): ten size_t fields
        _fields_ = [(name, ctypes.c_size_t) for name in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                     "fordblks", "keepcost")]

    libc = ctypes.CDLL(None)
    if not hasattr(libc, "mallinfo2"):
        print("skip"); sys.exit()
    libc.mallinfo2.restype, libc.malloc.restype = MallInfo2, ctypes.c_void_p
    libc.malloc.argtypes, libc.free.argtypes = (ctypes.c_size_t,), (ctypes.c_void_p,)
    kept = keep_freed_memory() if sys.argv[1] == "keep" else False
    before = libc.mallinfo2()
    block = libc.malloc(64 << 20)  # far above glibc's default mmap threshold (128 KiB to 32 MiB)
    mapped = libc.mallinfo2().hblks - before.hblks
    libc.free(block)
    print(kept, mapped, libc.mallinfo2().arena - before.arena >= 64 << 20)
""")


def allocator_after(mode):
    """(setting applied, mmapped blocks while a 64 MiB block is live, heap still holds
    64 MiB after it is freed) in a fresh process, with the allocator ``mode``."""
    proc = subprocess.run([sys.executable, "-c", ALLOCATOR_SCRIPT, mode], capture_output=True, text=True,
                          check=True, cwd=ROOT)
    if proc.stdout.strip() == "skip":
        pytest.skip("this C library has no mallinfo2 (glibc < 2.33 or not glibc)")
    kept, mapped, heap_kept = proc.stdout.split()
    return kept == "True", int(mapped), heap_kept == "True"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_keep_freed_memory_serves_large_blocks_from_the_heap_and_keeps_them_after_free():
    """The allocator's state, not a page-fault count (a property of the machine and its
    load: benchmarks/bench_train.py --allocator measures that)."""
    assert allocator_after("default") == (False, 1, False)  # mmapped, and unmapped again on free
    assert allocator_after("keep") == (True, 0, True)  # from the heap, and the heap keeps it for the next step
