"""What the training monitor (``--rf-monitor-every``) costs, part by part, on a
checkpoint, against what one training epoch of that run cost.

Each part of ``rf_summary.monitor_row`` is timed alone: the white-noise RWA and
Gabor fits, the clean next-frame error with and without feedback, the reduced
grating set (``monitors.grating_monitor``) and the weight mass. The epoch time
is read from the run's own log (seconds since start at the last logged epoch,
over the epochs logged in this process), so the share is

    monitor seconds / (rf_monitor_every * epoch seconds).

    python benchmarks/bench_monitor.py model_checkpoints/pretrained/htp_20x20_3x400_fs2_noise1_bf16 --every 30

Prints one table; writes nothing.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data.dataset import load_clips  # noqa: E402
from models.ablation import without_feedback  # noqa: E402
from models.io import load_model  # noqa: E402
from virtual_physiology.monitors import grating_monitor, model_weight_mass  # noqa: E402
from virtual_physiology.rf_summary import next_frame_errors, receptive_field_stats  # noqa: E402


def epoch_seconds(run: Path) -> float:
    """Mean seconds per epoch from the run's log: the span between the first and the
    last "epoch N/M ... X s since this process started" line of its last process."""
    lines = re.findall(r"\bepoch (\d+)/\d+ .* ([\d.]+) s since this process started$",
                       (run / "logs" / "train.log").read_text(), flags=re.M)
    if len(lines) < 2:
        return float("nan")
    epochs, seconds = zip(*((int(e), float(s)) for e, s in lines))
    first = max(i for i in range(len(seconds)) if i == 0 or seconds[i] < seconds[i - 1])  # the last process
    return (seconds[-1] - seconds[first]) / max(epochs[-1] - epochs[first], 1)


def timed(what, function):
    start = time.perf_counter()
    function()
    return what, time.perf_counter() - start


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="run folder (its latest weights are measured)")
    ap.add_argument("--clips", type=int, default=1000, help="white-noise clips of the RWA (--rf-monitor-clips)")
    ap.add_argument("--every", type=int, default=30, help="the cadence --rf-monitor-every to price it at")
    ap.add_argument("--dataset", help="the run's dataset file, if not where its config says")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    model, config, _ = load_model(args.run)
    model.eval()
    clips = load_clips(args.dataset or config["dataset_path"], tuple(config["frame_shape"]), config["warmup"] + 2)
    ablated = without_feedback(model).eval()
    parts = [timed("RWA + Gabor fits", lambda: receptive_field_stats(model, args.clips)),
             timed("clean MSE", lambda: next_frame_errors(model, clips, config["warmup"])),
             timed("clean MSE, no feedback", lambda: next_frame_errors(ablated, clips, config["warmup"])),
             timed("reduced gratings (F1/F0, feedback)", lambda: grating_monitor(model, ablated=ablated)),
             timed("weight mass", lambda: model_weight_mass(model))]
    epoch = epoch_seconds(args.run)
    total = sum(seconds for _, seconds in parts)
    print(f"{args.run.name}: 1 thread, {args.clips} RWA clips, one epoch of training {epoch:.1f} s (its log)")
    for what, seconds in parts + [("monitor in all", total)]:
        share = seconds / (args.every * epoch)
        print(f"  {what:<38} {seconds:7.1f} s   {100 * share:5.1f}% of {args.every} epochs")


if __name__ == "__main__":
    main()
