"""Throughput of a sweep: K models trained as one stack (training/batched.py,
submit_training_job.py --batched) against the same K models stepped one after the
other (what K separate runs in one process do), in the same run.

    python benchmarks/bench_sweep.py                         # 3x100 at 20x20 and 3x200 at 12x12, K = 1, 4, 16
    python benchmarks/bench_sweep.py --sizes 3x800@20x20 --models 1 4 --device cuda
    python benchmarks/bench_sweep.py --smoke                 # tiny sizes: checks that it runs

A step is train.py's (noise, forward, loss, backward, clip, mask, Adam) at batch
--batch and --frames frames. Each figure is model-steps per second: K over the
median time of one batched step, or K over the median time of K single-model
steps. The two take their steps in turn, so a change in the machine's load hits
both alike.
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from training.batched import StackedRecurrent, stacked_train_step  # noqa: E402
from models.network_hierarchical_recurrent import NetworkHierarchicalRecurrent  # noqa: E402
from training.step import train_step  # noqa: E402

DEFAULT_SIZES = ["3x100@20x20", "3x200@12x12"]
_SIZE = re.compile(r"^(\d+)x(\d+)@(\d+)x(\d+)$")
LR, GRAD_CLIP = 1e-4, 0.25


def parse_size(text: str) -> tuple[tuple[int, ...], tuple[int, int]]:
    """'3x100@20x20' -> ((100, 100, 100), (20, 20)): groups x units @ frame height x width."""
    match = _SIZE.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"size {text!r} is not GROUPSxUNITS@HxW, e.g. 3x100@20x20")
    groups, units, h, w = (int(g) for g in match.groups())
    return (units,) * groups, (h, w)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def make_models(k: int, hidden, frame_shape, device, recurrence: str):
    models = []
    for seed in range(k):
        torch.manual_seed(seed)
        beta = (0.9,) + (0.1,) * (len(hidden) - 1)
        model = NetworkHierarchicalRecurrent(frame_shape=frame_shape, hidden_units=hidden, beta=beta,
                                             lam=10.0 ** (-6 + seed % 3)).to(device)
        models.append(model.set_recurrence(recurrence))
    return models


def measure(k, hidden, frame_shape, args, device):
    """(batched model-steps/s, sequential model-steps/s) for K models of one size."""
    recurrence = "dense" if device.type == "cuda" else "block"
    step_cfg = argparse.Namespace(precision="fp32", grad_clip=GRAD_CLIP, lr=LR, lr_half_life=0)
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randn(args.batch, args.frames, frame_shape[0] * frame_shape[1], generator=gen).to(device)
               for _ in range(k)]

    singles = make_models(k, hidden, frame_shape, device, recurrence)
    single_opts = [torch.optim.Adam(m.parameters(), lr=LR) for m in singles]
    single_gens = [torch.Generator(device=device).manual_seed(s + 1) for s in range(k)]

    def sequential():
        for model, opt, x, g in zip(singles, single_opts, batches, single_gens):
            train_step(model, opt, x, g, step_cfg, 0)

    members = make_models(k, hidden, frame_shape, device, recurrence)
    stack = StackedRecurrent(members)
    stack_opt = torch.optim.Adam(stack.parameters(), lr=LR)
    stack_gens = [torch.Generator(device=device).manual_seed(s + 1) for s in range(k)]

    def batched():
        stacked_train_step(stack, stack_opt, batches, members, stack_gens, LR, GRAD_CLIP)

    times = {"batched": [], "sequential": []}
    for i in range(args.warmup_steps + args.steps):
        for name, step in (("batched", batched), ("sequential", sequential)):
            sync(device)
            t0 = time.perf_counter()
            step()
            sync(device)
            if i >= args.warmup_steps:
                times[name].append(time.perf_counter() - t0)
    return k / statistics.median(times["batched"]), k / statistics.median(times["sequential"])


def run(args) -> list[dict]:
    device = torch.device(args.device)
    rows = []
    for text in args.sizes:
        hidden, frame_shape = parse_size(text)
        for k in args.models:
            batched, sequential = measure(k, hidden, frame_shape, args, device)
            rows.append({"size": text, "K": k, "batched_model_steps_per_s": batched,
                         "sequential_model_steps_per_s": sequential, "speedup": batched / sequential})
            print(f"{text:14} K={k:<3} batched {batched:9.2f}  sequential {sequential:9.2f} model-steps/s  "
                  f"x{batched / sequential:.2f}", flush=True)
    return rows


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=DEFAULT_SIZES, help=f"GROUPSxUNITS@HxW [default: {DEFAULT_SIZES}]")
    ap.add_argument("--models", type=int, nargs="+", default=[1, 4, 16], help="values of K [default: 1 4 16]")
    ap.add_argument("--batch", type=int, default=100, help="clips per step [default: 100]")
    ap.add_argument("--frames", type=int, default=50, help="frames per clip [default: 50]")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per variant [default: 3]")
    ap.add_argument("--warmup-steps", type=int, default=1, help="untimed steps first [default: 1]")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N [default: cpu]")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (3x6@4x4, batch 4, 8 frames, K 1 and 2)")
    return ap


def parse_args(argv=None) -> argparse.Namespace:
    """The command line, with --smoke's sizes applied and every value checked."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.smoke:
        args.sizes, args.models, args.batch, args.frames, args.steps, args.warmup_steps = \
            ["3x6@4x4"], [1, 2], 4, 8, 1, 1
    try:
        for text in args.sizes:
            parse_size(text)  # every size checked before the first measurement
    except argparse.ArgumentTypeError as err:
        parser.error(str(err))
    if min(args.models) < 1 or args.batch < 1 or args.frames < 6 or args.steps < 1:
        parser.error("--models and --batch need values >= 1, --frames >= 6 (warm-up 4 + offset 1 + 1), --steps >= 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    print(f"device {args.device}, {torch.get_num_threads()} thread(s), batch {args.batch}, {args.frames} frames, "
          f"median of {args.steps} step(s)")
    return run(args)


if __name__ == "__main__":
    main()
