"""Step time of a train.py training step while other processes compete for the CPU:
torch's thread settings against 0, 1 and 2 CPU hogs (``yes > /dev/null``), all in
one run, so every figure has its quiet baseline beside it.

    python benchmarks/bench_load.py                         # the demo's model (3 x 100, 20x20, batch 100)
    python benchmarks/bench_load.py --hidden-units 400,400,400 --hogs 0 1

Variants (each in its own process, because OpenMP reads its settings when torch
loads; the step is training.step.train_step, as train.py takes it):

- ``default``: torch's default, one thread per core, OpenMP's default wait policy
  (its threads spin for a while after each parallel region);
- ``1 thread``: ``torch.set_num_threads(1)``;
- ``free cores``: one thread per core not busy with another runnable process when
  the step starts (``utils.free_cores``), at least 1;
- ``passive``: the default thread count with ``OMP_WAIT_POLICY=PASSIVE`` (threads
  sleep at once instead of spinning): what train.py and submit_training_job.py do
  by default (``--threads auto``).

For each number of hogs it starts them, times every variant's steps in turn
(``--rounds`` rounds of ``--steps`` steps after ``--warmup`` untimed ones), kills
the hogs and prints the median step time and its ratio to the same variant with no
hog. The hogs are this script's own processes; it kills them on every exit path.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

VARIANTS = {  # name -> (extra environment, --threads setting)
    "default": ({}, "default"),
    "1 thread": ({}, "1"),
    "free cores": ({}, "free"),
    "passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, "default"),
}


def free_cores() -> int:
    """CPU cores this process may use (its affinity) that no other runnable task holds
    right now (the kernel's ``procs_running`` in /proc/stat, less this process), at least 1."""
    cores = len(os.sched_getaffinity(0))
    with open("/proc/stat") as stat:
        running = next(int(line.split()[1]) for line in stat if line.startswith("procs_running"))
    return max(1, min(cores, cores - (running - 1)))


def child(args) -> None:
    """Time ``args.steps`` steps under the thread setting ``args.child``; print JSON."""
    sys.path.insert(0, str(ROOT))
    import dataclasses

    import torch

    from models import build_model
    from training.step import make_optimizer, train_step
    from training.config import TrainConfig
    from utils import keep_freed_memory, set_threads

    keep_freed_memory()
    threads = set_threads({"default": "auto", "free": str(free_cores())}.get(args.child, args.child))
    units = tuple(int(n) for n in args.hidden_units.split(","))
    cfg = TrainConfig(hidden_units=units, beta=(0.9,) + (0.1,) * (len(units) - 1), batch_size=args.batch_size,
                      device="cpu")
    torch.manual_seed(0)
    model = build_model(dataclasses.asdict(cfg))
    optimizer = make_optimizer(model, cfg, torch.device("cpu"))
    batch = torch.randn(cfg.batch_size, 50, 400)
    generator = torch.Generator().manual_seed(1)
    times = []
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        train_step(model, optimizer, batch, generator, cfg, step)
        times.append(time.perf_counter() - start)
    print(json.dumps({"threads": threads, "seconds": times[args.warmup:]}))


def run_variant(name: str, args) -> dict:
    env_extra, setting = VARIANTS[name]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")} | env_extra
    proc = subprocess.run([sys.executable, __file__, "--child", setting, "--hidden-units", args.hidden_units,
                           "--batch-size", str(args.batch_size), "--steps", str(args.steps),
                           "--warmup", str(args.warmup)], env=env, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def start_hogs(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen(["yes"], stdout=subprocess.DEVNULL) for _ in range(n)]


def stop_hogs(hogs: list[subprocess.Popen]) -> None:
    for hog in hogs:
        hog.kill()
        hog.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden-units", default="100,100,100")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--hogs", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        return child(args)

    print(f"{os.cpu_count()} CPUs, {len(os.sched_getaffinity(0))} in this process's affinity; load average "
          f"{os.getloadavg()[0]:.1f} before the run; model {args.hidden_units}, batch {args.batch_size}, 50 frames 20x20",
          flush=True)
    seconds = {}  # (hogs, variant) -> step times
    threads = {}
    for n_hogs in args.hogs:
        hogs = start_hogs(n_hogs)
        try:
            time.sleep(0.5)  # let the hogs take their cores
            for _ in range(args.rounds):
                for name in args.variants:
                    result = run_variant(name, args)
                    seconds.setdefault((n_hogs, name), []).extend(result["seconds"])
                    threads.setdefault((n_hogs, name), set()).add(result["threads"])
                    print(f"  {n_hogs} hog(s), {name}: {statistics.median(result['seconds']):.3f} s/step with "
                          f"{result['threads']} thread(s)", flush=True)
        finally:
            stop_hogs(hogs)
    print(f"\n{'variant':<12} " + " ".join(f"{f'{n} hog(s): s/step (x quiet), threads':>36}" for n in args.hogs))
    for name in args.variants:
        quiet = statistics.median(seconds[(args.hogs[0], name)])
        cells = []
        for n in args.hogs:
            median = statistics.median(seconds[(n, name)])
            used = ",".join(map(str, sorted(threads[(n, name)])))
            cells.append(f"{median:9.3f} ({median / quiet:4.1f}x) {used:>6}")
        print(f"{name:<12} " + " ".join(f"{c:>36}" for c in cells))
    print(f"\nmedians of {args.rounds} x {args.steps} steps per cell; x quiet: against the same variant with "
          f"{args.hogs[0]} hogs; load average {os.getloadavg()[0]:.1f} after the run")


if __name__ == "__main__":
    main()
