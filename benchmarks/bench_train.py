"""Time one training step (noise, forward, loss, backward, clip, mask, Adam) of
this project's model, in each precision and recurrence backend asked for, and of
the plain dense masked fp32 reference, all in the same run.

    python benchmarks/bench_train.py                              # paper size, fp32 and bf16
    python benchmarks/bench_train.py --hidden-units 400,400,400 --skip-reference
    python benchmarks/bench_train.py --device cuda --recurrence block dense --precision fp32 tf32 bf16

Prints the minimum and median step time of each variant over --steps timed steps
(after --warmup-steps untimed ones), its speed-up over the reference and over the
first variant (this model in fp32), and its achieved GFLOP/s. The variants and the
reference take their steps in turn, so a change in the machine's load hits all of
them alike; the minimum is the least disturbed figure. It also prints each variant's
page faults per step: ``--allocator keep`` (the default, as train.py) has the C
library keep freed memory for the next step (utils.keep_freed_memory); run it once
more with ``--allocator default`` for the allocator's own setting, whose steps take
their memory from the kernel again each time. "tf32" is train.py --tf32:
the recurrent layer's products in TF32 and the readout's in fp32, the original's
split on Ampere+ GPUs (the same as fp32 on a CPU). ``--graph off on`` (CUDA only)
adds each variant replayed as a CUDA graph (train.py --cuda-graph), captured before
the timed steps. On a GPU it also estimates the hours for the paper's 2000 epochs at
--dataset-clips clips.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from dense_reference import DenseReference  # noqa: E402
from models.network_hierarchical_recurrent import NetworkHierarchicalRecurrent  # noqa: E402
from training.cuda_graph import EAGER_STEPS_PER_SHAPE, GraphedTrainStep  # noqa: E402
from models.recurrence import tf32_products  # noqa: E402
from training.step import make_optimizer, train_step  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from utils import keep_freed_memory  # noqa: E402


PRECISION_CHOICES = ("fp32", "tf32", "bf16")


def reference_step(model, opt, x, gen):
    noise = torch.randn(x.shape, generator=gen, device=x.device) * 0.5011
    model.train_step(opt, x + noise, x + noise)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_steps(step, device, n_warmup, n_steps):
    times = []
    for i in range(n_warmup + n_steps):
        sync(device)
        t0 = time.perf_counter()
        step()
        sync(device)
        if i >= n_warmup:
            times.append(time.perf_counter() - t0)
    return times


def step_products(model, batch, frames):
    """The (m, k, n) shapes of every matrix product in one training step of ``model``
    (forward, input/hidden gradients and weight gradients), in the model's layout."""
    B, T, P = batch, frames, model.n_pixels
    shapes = [(B * T, P, model.group_sizes[0]), (model.group_sizes[0], B * T, P)]  # input: forward, dW
    for r0, r1, runs in model._blocks:
        for c0, c1 in runs:
            rows, cols = r1 - r0, c1 - c0
            shapes += [(B, cols, rows)] * (T - 1) + [(B, rows, cols)] * (T - 1)  # forward, dh per step
            shapes.append((rows, B * (T - 1), cols))  # dW over all steps
    for n_out, n_in in zip(model.output_sizes, model.group_sizes):
        shapes += [(B * T, n_in, n_out), (B * T, n_out, n_in), (n_out, B * T, n_in)]  # readout
    return shapes


def bare_products(shapes, dtype, device):
    """A closure that runs the given products bare (torch.mm into preallocated
    outputs): the floor that the step's matrix products could reach."""
    operands = {}
    for m, k, n in set(shapes):
        operands[m, k, n] = tuple(torch.randn(rows, cols, dtype=dtype, device=device)
                                  for rows, cols in ((m, k), (k, n), (m, n)))

    def products():
        for shape in shapes:
            a, b, out = operands[shape]
            torch.mm(a, b, out=out)

    return products


def products_in(precision, products):
    """Run the bare products in a variant's arithmetic (TF32 for "tf32", as its recurrent layer)."""
    with tf32_products(precision == "tf32"):
        products()


def variant_step(args, device, groups, x, recurrence, precision, graph=False):
    """A closure that takes one training step of this model with one backend and
    precision ("tf32": train.py --tf32, the recurrent layer in TF32, the readout not),
    eagerly or (``graph``) as a replayed CUDA graph, already captured."""
    torch.manual_seed(0)
    beta = (0.9,) + (0.1,) * (len(groups) - 1)
    model = NetworkHierarchicalRecurrent(frame_shape=args.frame_shape, hidden_units=groups, beta=beta).to(device)
    model.set_recurrence(recurrence).set_precision("bf16" if precision == "bf16" else "fp32")
    model.set_tf32(precision == "tf32")
    cfg = TrainConfig(precision="bf16" if precision == "bf16" else "fp32")  # the paper's lr and clip
    opt = make_optimizer(model, cfg, device, graphed=graph)
    gen = torch.Generator(device=device).manual_seed(0)
    graphed = GraphedTrainStep(model, opt, cfg) if graph else None

    def step():  # train.py's step: noise, forward, loss, backward, clip, mask, Adam
        if graphed is None:
            train_step(model, opt, x, gen, cfg, global_step=0)
        else:  # the model applies --tf32's split itself, as in the eager step
            graphed(x, gen, global_step=0)

    for _ in range(EAGER_STEPS_PER_SHAPE + 1 if graph else 0):  # the eager warm-up and the capture
        step()
    return model, step


def reference_step_closure(args, device, groups, x):
    """A closure that takes one step of the dense masked reference in full fp32."""
    torch.manual_seed(0)
    P = args.frame_shape[0] * args.frame_shape[1]
    ref = DenseReference(P, groups, (0.9,) + (0.1,) * (len(groups) - 1)).to(device)
    for name in ("ih_mask", "hh_mask", "fc_mask"):
        setattr(ref, name, getattr(ref, name).to(device))
    ref_opt = torch.optim.Adam(ref.parameters(), lr=1e-4)
    gen = torch.Generator(device=device).manual_seed(0)

    def step():
        with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):  # cuDNN's RNN allows TF32 by default
            reference_step(ref, ref_opt, x, gen)

    return step


def interleaved_times(steps, device, n_warmup, n_steps):
    """Step times of several step functions, taken in turn (one step of each per
    round), so that a change in the machine's load hits them all alike, and each
    one's minor page faults per timed step."""
    times, faults = [[] for _ in steps], [0] * len(steps)
    for i in range(n_warmup + n_steps):
        for j, (step, record) in enumerate(zip(steps, times)):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t = time_steps(step, device, 0, 1)[0]
            if i >= n_warmup:
                record.append(t)
                faults[j] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    return times, [f / n_steps for f in faults]


def build_parser():
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
    ap.add_argument("--recurrence", nargs="+", choices=("block", "dense"), default=["block"])
    ap.add_argument("--precision", nargs="+", choices=PRECISION_CHOICES, default=["fp32", "bf16"],
                    help="the first is the baseline of the 'vs first' column")
    ap.add_argument("--graph", nargs="+", choices=("off", "on"), default=["off"],
                    help="eager steps (off) and/or steps replayed as CUDA graphs (on; CUDA only)")
    ap.add_argument("--allocator", choices=("keep", "default"), default="keep",
                    help="keep: freed memory stays with the process, as in train.py (utils.keep_freed_memory); "
                         "default: the C library's own setting")
    ap.add_argument("--floor", action="store_true",
                    help="also time the step's bare matrix products (the floor the step could reach)")
    return ap


def run(args):
    """All measurements of one invocation: {"setup": ..., "reference": ..., "variants": [...]}."""
    device = torch.device(args.device)
    kept = keep_freed_memory() if args.allocator == "keep" else False
    groups = tuple(int(n) for n in args.hidden_units.split(","))
    P = args.frame_shape[0] * args.frame_shape[1]
    x = torch.randn(args.batch, args.frames, P, device=device)
    setup = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
             "batch": args.batch, "frames": args.frames, "frame_shape": list(args.frame_shape), "groups": list(groups),
             "allocator": "keep" if kept else "default"}
    keys = [(rec, prec, graph) for graph in args.graph for rec in args.recurrence for prec in args.precision]
    built = [variant_step(args, device, groups, x, rec, prec, graph == "on") for rec, prec, graph in keys]
    shapes = [step_products(model, args.batch, args.frames) for model, _ in built]
    steps = [step for _, step in built]
    if args.floor:  # timed in the same rotation as the steps, under the same load
        for (_, prec, _), shape_list in zip(keys, shapes):
            products = bare_products(shape_list, torch.bfloat16 if prec == "bf16" else torch.float32, device)
            steps.append(lambda products=products, prec=prec: products_in(prec, products))
    if not args.skip_reference:
        steps.append(reference_step_closure(args, device, groups, x))
    times, faults = interleaved_times(steps, device, args.warmup_steps, args.steps)
    variants = []
    for i, ((rec, prec, graph), shape_list) in enumerate(zip(keys, shapes)):
        floor = min(times[len(keys) + i]) if args.floor else float("nan")
        variants.append({"recurrence": rec, "precision": prec, "graph": graph, "min_s": min(times[i]),
                         "median_s": statistics.median(times[i]), "products_floor_s": floor, "page_faults": faults[i],
                         "gflops": sum(2 * m * k * n for m, k, n in shape_list) / 1e9})
    reference = None if args.skip_reference else {"min_s": min(times[-1]), "median_s": statistics.median(times[-1])}
    return {"setup": setup, "reference": reference, "variants": variants}


def print_results(result, dataset_clips=None):
    setup, ref, variants = result["setup"], result["reference"], result["variants"]
    print(f"device {setup['device']}, torch {setup['torch']}, threads {setup['threads']}; B={setup['batch']} "
          f"T={setup['frames']} frame {tuple(setup['frame_shape'])} groups {tuple(setup['groups'])}; "
          f"allocator {setup['allocator']}")
    if ref:
        print(f"dense fp32 reference: min {ref['min_s']:.3f} s  median {ref['median_s']:.3f} s per step")
    first = variants[0]
    print(f"{'backend':8} {'precision':9} {'graph':5} {'min s':>7} {'median s':>8} {'vs ref':>13} {'vs first':>13} "
          f"{'GFLOP/s':>8} {'floor s':>8} {'floor GFLOP/s':>13} {'faults':>7}")
    for v in variants:
        vs_ref = f"{ref['min_s'] / v['min_s']:.2f}/{ref['median_s'] / v['median_s']:.2f}x" if ref else "-"
        vs_first = f"{first['min_s'] / v['min_s']:.2f}/{first['median_s'] / v['median_s']:.2f}x"
        print(f"{v['recurrence']:8} {v['precision']:9} {v['graph']:5} {v['min_s']:7.3f} {v['median_s']:8.3f} {vs_ref:>13} "
              f"{vs_first:>13} {v['gflops'] / v['min_s']:8.1f} {v['products_floor_s']:8.3f} "
              f"{v['gflops'] / v['products_floor_s']:13.1f} {v['page_faults']:7.0f}")
    print("speed-ups as min/median ratios; GFLOP/s = the variant's own matrix products / min step time; "
          "floor = the same products run bare (torch.mm), timed in the same rotation (--floor); "
          "faults = minor page faults per step")
    if setup["device"].startswith("cuda") and dataset_clips:
        best = min(v["median_s"] for v in variants)
        steps_per_epoch = -(-int(40 * dataset_clips / 44) // setup["batch"])
        print(f"estimate at the fastest variant: 2000 epochs x {steps_per_epoch} steps ({dataset_clips} clips) = "
              f"{2000 * steps_per_epoch * best / 3600:.1f} h")


def main():
    ap = build_parser()
    args = ap.parse_args()
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda was asked for but no GPU is visible: use --device cpu")
    if "on" in args.graph and torch.device(args.device).type != "cuda":
        ap.error("--graph on replays CUDA graphs: use --device cuda, or --graph off")
    print_results(run(args), args.dataset_clips)


if __name__ == "__main__":
    main()
