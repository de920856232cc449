"""Does bf16 training learn what fp32 training learns? Train the same model from the
same seed with ``--precision fp32`` and ``--precision bf16`` (train.py itself, on
the embedded natural-movie dataset), then score both trained models in fp32:

- the clean validation next-frame MSE (no input noise; ``rf_summary.next_frame_errors``)
  and its bf16/fp32 ratio (the target is within 1%);
- the group-1 receptive-field statistics (``rf_summary.receptive_field_stats``:
  strict-Gabor fraction, median orientation index, median Gabor r).

With ``--seed-noise`` a second fp32 run with another seed gives the run-to-run
spread that the bf16 differences should be compared with.

    python benchmarks/bench_precision_equivalence.py                      # demo size and 3x400
    python benchmarks/bench_precision_equivalence.py --sizes demo --steps 1000 --seed-noise

Prints one table; writes nothing outside a temporary folder unless --json is given.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import train  # noqa: E402
from models import build_model  # noqa: E402
from training.config import load_dataset  # noqa: E402
from virtual_physiology.rf_summary import next_frame_errors, receptive_field_stats  # noqa: E402

SIZES = {  # name -> train.py flags (the demo preset, and a mid-size model at the paper's L1 scale)
    "demo": ["--preset", "demo", "--rf-monitor-every", "0"],
    "3x400": ["--hidden-units", "400,400,400", "--L1", "-5", "--lr", "1e-3"],
}
RF_KEYS = ("fraction_strict_gabor", "median_orientation_index", "median_gabor_r")


def train_for(size: str, precision: str, seed: int, steps: int, save_dir: Path):
    """Train ``steps`` optimizer steps with train.py and return (model in fp32 eval
    mode, its TrainConfig, seconds per step)."""
    flags = SIZES[size] + ["--precision", precision, "--seed", str(seed), "--name", f"{size}-{precision}",
                           "--save-dir", str(save_dir), "--epochs", "100000", "--stop-after-steps", str(steps),
                           "--validate-every", "100000", "--max-minutes", "0", "--device", "cpu"]
    cfg, _ = train.config_for(train.build_parser().parse_args(flags))
    started = time.perf_counter()
    run = train.train(cfg, progress=False)
    seconds = (time.perf_counter() - started) / steps
    config = json.loads((run / "config.json").read_text())
    state = torch.load(run / "interrupted_state.pt", map_location="cpu", weights_only=True)
    assert state["global_step"] == steps, f"{run} stopped at step {state['global_step']}, not {steps}"
    model = build_model(config)
    model.load_state_dict(state["model"])
    return model.eval(), cfg, seconds


def score(model, cfg, rf_clips: int) -> dict:
    clips, _ = load_dataset(cfg)
    errors = next_frame_errors(model, clips, cfg.warmup)
    rf = receptive_field_stats(model, rf_clips)["stats"]
    return {"clean_mse": float(errors["model"]), "copy_last_frame_mse": float(errors["copy_last_frame"]),
            **{k: float(rf[k]) for k in RF_KEYS}, "responsive": rf["responsive"], "units": rf["units"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", choices=sorted(SIZES), default=["demo", "3x400"])
    ap.add_argument("--steps", type=int, nargs="+", default=[2760, 3000],
                    help="optimizer steps per size (one value for all, or one per size)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seed-noise", action="store_true", help="also train fp32 with --seed + 1 (run-to-run spread)")
    ap.add_argument("--rf-clips", type=int, default=2000, help="white-noise clips for the group-1 RWAs")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    steps = args.steps * len(args.sizes) if len(args.steps) == 1 else args.steps
    if len(steps) != len(args.sizes):
        ap.error("--steps needs one value, or one per size")

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-precision-") as tmp:
        for size, n_steps in zip(args.sizes, steps):
            runs = [("fp32", args.seed), ("bf16", args.seed)] + ([("fp32", args.seed + 1)] if args.seed_noise else [])
            for precision, seed in runs:
                model, cfg, seconds = train_for(size, precision, seed, n_steps, Path(tmp))
                rows.append({"size": size, "precision": precision, "seed": seed, "steps": n_steps,
                             "s_per_step": seconds, **score(model, cfg, args.rf_clips)})
                print(f"trained {size} {precision} seed {seed}: {n_steps} steps, {seconds:.3f} s/step", flush=True)
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


def print_table(rows):
    print(f"{'size':6} {'prec':5} {'seed':>4} {'steps':>5} {'s/step':>6} {'clean MSE':>10} {'vs fp32':>8} "
          f"{'copy-last':>9} {'strict':>6} {'OI':>5} {'gabor r':>7} {'resp':>5}")
    for row in rows:
        base = next(r for r in rows if r["size"] == row["size"] and r["precision"] == "fp32")
        ratio = row["clean_mse"] / base["clean_mse"]
        print(f"{row['size']:6} {row['precision']:5} {row['seed']:4d} {row['steps']:5d} {row['s_per_step']:6.3f} "
              f"{row['clean_mse']:10.5f} {ratio:8.4f} {row['copy_last_frame_mse']:9.5f} "
              f"{row['fraction_strict_gabor']:6.3f} {_f(row['median_orientation_index']):>5} "
              f"{_f(row['median_gabor_r']):>7} {row['responsive']:5d}")
    print("clean MSE: validation next-frame error without noise, both models scored in fp32; "
          "'vs fp32': ratio to the fp32 run of the same size and first seed")


def _f(value):
    return "nan" if math.isnan(value) else f"{value:.3f}"


if __name__ == "__main__":
    main()
