"""Time one training step (noise, forward, loss, backward, clip, mask, Adam) of
this project's model and of the plain dense masked reference, in the same run.

    python benchmarks/bench_train.py                 # paper size: B=100, T=50, 20x20, 3x800
    python benchmarks/bench_train.py --device cuda   # on a GPU: also clips/s and hours per run
    python benchmarks/bench_train.py --device cuda --tf32 --amp   # train.py's faster, less exact options

Prints the minimum and median step time of each over --steps timed steps (after
--warmup-steps untimed ones) and their ratio. On a GPU it also estimates the
hours for the paper's 2000 epochs at --dataset-clips clips.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from dense_reference import DenseReference  # noqa: E402
from models.network_hierarchical_recurrent import NetworkHierarchicalRecurrent  # noqa: E402


def fast_step(model, opt, x, gen, amp=False):
    xn, yn = model.preprocess_data((x, x), gen)
    opt.zero_grad(set_to_none=True)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):  # as train.py --amp
        loss, _ = model.get_loss(model(xn), (xn, yn))
    loss.backward()
    torch.nn.utils.clip_grad_value_(model.parameters(), 0.25)
    model.mask_gradients()
    opt.step()


def reference_step(model, opt, x, gen):
    noise = torch.randn(x.shape, generator=gen, device=x.device) * 0.5011
    model.train_step(opt, x + noise, x + noise)


def time_steps(step, device, n_warmup, n_steps):
    times = []
    for i in range(n_warmup + n_steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= n_warmup:
            times.append(time.perf_counter() - t0)
    return times


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--frame-shape", type=int, nargs=2, default=(20, 20))
    ap.add_argument("--hidden-units", default="800,800,800")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup-steps", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dataset-clips", type=int, default=44000, help="for the GPU run-time estimate")
    ap.add_argument("--skip-reference", action="store_true")
    ap.add_argument("--tf32", action="store_true", help="TF32 matrix products (train.py --tf32)")
    ap.add_argument("--amp", action="store_true", help="bfloat16 autocast of this model's step (train.py --amp)")
    args = ap.parse_args()

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda was asked for but no GPU is visible: use --device cpu")
    torch.set_float32_matmul_precision("high" if args.tf32 else "highest")
    groups = tuple(int(n) for n in args.hidden_units.split(","))
    P = args.frame_shape[0] * args.frame_shape[1]
    beta = (0.9,) + (0.1,) * (len(groups) - 1)
    x = torch.randn(args.batch, args.frames, P, device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}; "
          f"B={args.batch} T={args.frames} frame {tuple(args.frame_shape)} groups {groups}; "
          f"tf32 {args.tf32}, amp {args.amp}")

    torch.manual_seed(0)
    fast = NetworkHierarchicalRecurrent(frame_shape=args.frame_shape, hidden_units=groups, beta=beta).to(device)
    opt = torch.optim.Adam(fast.parameters(), lr=1e-4)
    t_fast = time_steps(lambda: fast_step(fast, opt, x, gen, args.amp), device, args.warmup_steps, args.steps)
    print(f"this model:      min {min(t_fast):.3f} s  median {statistics.median(t_fast):.3f} s per step")

    if not args.skip_reference:
        torch.manual_seed(0)
        ref = DenseReference(P, groups, beta).to(device)
        for name in ("ih_mask", "hh_mask", "fc_mask"):
            setattr(ref, name, getattr(ref, name).to(device))
        ref_opt = torch.optim.Adam(ref.parameters(), lr=1e-4)
        t_ref = time_steps(lambda: reference_step(ref, ref_opt, x, gen), device, args.warmup_steps, args.steps)
        print(f"dense reference: min {min(t_ref):.3f} s  median {statistics.median(t_ref):.3f} s per step")
        print(f"speed-up (reference / this model): min {min(t_ref) / min(t_fast):.2f}x, "
              f"median {statistics.median(t_ref) / statistics.median(t_fast):.2f}x")

    step = statistics.median(t_fast)
    print(f"clips per second: {args.batch / step:.0f}")
    if device.type == "cuda":
        steps_per_epoch = -(-int(40 * args.dataset_clips / 44) // args.batch)
        hours = 2000 * steps_per_epoch * step / 3600
        print(f"estimate: 2000 epochs x {steps_per_epoch} steps ({args.dataset_clips} clips) = {hours:.1f} h")


if __name__ == "__main__":
    main()
