"""The targets of ``analysis.targets`` at the saved steps of one training run:
the full virtual physiology of each checkpoint, measured, then dropped.

    python -m analysis.targets_over_training RUN [--every STEPS] [--out FILE.json]

Writes FILE.json (default RUN/targets_over_training.json): a row per checkpoint
with its epoch, its optimizer steps and each target's text, verdict and numbers,
rewritten after every checkpoint, so that an interrupted call, or a call after
more training, measures only the checkpoints not in it yet. Beside it goes
FILE.png, the measures against steps with each target and the original's value.
``--every`` keeps the checkpoints whose step is a multiple of it, and always the
latest. Each artefact is temporary (about 130 MB and 20 s on one core at 8x8,
3 x 64 units). The memory row and the clean-error row need more than the
artefact (``--nback``, ``rf_summary.json``) and read "not measured" here: the
run's own monitors hold the clean error at every check.
"""
from __future__ import annotations

import sys

if __package__ in (None, ""):  # run as a file, the repository's packages are not importable
    print("error: run it as a module from the repository root: python -m analysis.targets_over_training RUN",
          file=sys.stderr)
    sys.exit(2)

import argparse
import json
import math
import tempfile
from pathlib import Path

import numpy as np
from matplotlib.ticker import FuncFormatter

from analysis import AnalysisError, plotting, targets
from models.checkpoint import Checkpoint, RunFolder
from utils import atomic_path, os_error_reason, run_cli
from virtual_physiology.monitors import reference_values
from virtual_physiology.pipeline import Options, Pipeline

DEFAULT_NAME = "targets_over_training.json"


def checkpoints_to_measure(run, every: int = 0) -> list[tuple[int, int, Path]]:
    """(epoch, optimizer steps, weights file) of each checkpoint of ``run`` whose
    step is a multiple of ``every`` (0: every checkpoint), and of the latest, in
    step order. AnalysisError for a folder without weights or a checkpoint whose
    config does not give its steps."""
    try:
        weights = RunFolder(run).weights_by_epoch()
    except OSError as err:
        raise AnalysisError(f"cannot list {run} ({os_error_reason(err)}): give a training run folder") from err
    if not weights:
        raise AnalysisError(f"{run} holds no N-epochs_model weights: give a training run folder")
    chosen = []
    latest = max(weights)
    for epoch in sorted(weights):
        steps = Checkpoint(weights[epoch]).optimizer_steps
        if steps is None:
            raise AnalysisError(f"{weights[epoch].name}: its config does not give the optimizer steps "
                                "(n_train, batch_size): a checkpoint older than these fields")
        if epoch == latest or not every or steps % every == 0:
            chosen.append((epoch, steps, weights[epoch]))
    return chosen


def measure_checkpoint(weights: Path, workdir: Path, options: Options | None = None) -> dict:
    """Every target of one checkpoint: its full virtual physiology (at
    ``options``, default the pipeline's without progress bars) into a temporary artefact in
    ``workdir``, measured (``targets.measure_all``), then deleted. Returns
    {target name: {"text", "met", "numbers"}}."""
    artefact = Path(workdir) / "checkpoint.vphys.h5"
    try:
        Pipeline(weights, artefact, options=options or Options(progress=False)).run(log=lambda message: None)
        measured = targets.measure_all(targets.read_record(artefact))
    finally:
        artefact.unlink(missing_ok=True)
    return {name: {"text": m.text, "met": m.met, "numbers": m.numbers} for name, m in measured.items()}


def _json_number(value):
    """numpy scalars and tuples as JSON; nan and inf as null (JSON has neither)."""
    if isinstance(value, dict):
        return {k: _json_number(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_json_number(v) for v in value]
    if isinstance(value, (bool, np.bool_)) or value is None or isinstance(value, str):
        return bool(value) if isinstance(value, np.bool_) else value
    value = float(value) if isinstance(value, (float, np.floating)) else int(value)
    return value if not isinstance(value, float) or math.isfinite(value) else None


def read_rows(path: Path) -> list[dict]:
    """The rows of an earlier call ([] if there is none). AnalysisError for a file
    that is not one."""
    if not path.exists():
        return []
    try:
        rows = json.loads(path.read_text())["rows"]
        return [row for row in rows if {"epoch", "steps", "targets"} <= set(row)]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise AnalysisError(f"{path} is not a targets_over_training file: delete it or give another --out") from err


def write_rows(path: Path, run, rows: list[dict]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"run": Path(run).name, "rows": sorted(rows, key=lambda r: r["steps"])},
                                  indent=1) + "\n")


def _series(rows: list[dict], target: str, key: str, index: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    steps, values = [], []
    for row in rows:
        value = row["targets"].get(target, {}).get("numbers", {}).get(key)
        if isinstance(value, list):
            value = value[index] if index is not None and index < len(value) else None
        if value is not None:
            steps.append(row["steps"])
            values.append(value)
    return np.asarray(steps, float), np.asarray(values, float)


def targets_figure(rows: list[dict]):
    """Five panels against optimizer steps: G1's F1/F0 > 1 fraction, G1's peak
    response without / with feedback (mean), G1's SI with and without feedback,
    the pattern-index means per group, the Gabor-like fraction; each with the
    target (dashed) and the original's trained TP_full (dotted) where it has one."""
    ref = reference_values()["original_TP_full"]
    name_of = {target.measure: name for name, target in targets.TARGETS.items()}
    simple, peak, si, pattern, gabor = (name_of[m] for m in (
        targets.simple_fraction, targets.feedback_peak_ratio, targets.surround_suppression_without_feedback,
        targets.pattern_index_hierarchy, targets.gabor_like))
    fig, axes = plotting.new_figure(5, 1, width=3.2, height=3.0)
    panels = [(axes[0], simple, [("fraction", None, "G1", plotting.GROUP_COLOURS[0])], 0.45,
               ref["f1f0_above_1_G1"], "G1 fraction F1/F0 > 1"),
              (axes[1], peak, [("mean", None, "G1", plotting.GROUP_COLOURS[0])], 0.80,
               ref["feedback_peak_ratio_G1"], "G1 peak without / with feedback"),
              (axes[2], si, [("with", None, "with feedback", "k"), ("without", None, "without", "0.5")], None, None,
               "G1 SI (%)"),
              (axes[3], pattern, [("means", g, f"G{g + 1}", plotting.GROUP_COLOURS[g]) for g in range(3)], None, None,
               "pattern index mean"),
              (axes[4], gabor, [("fraction", None, "G1", plotting.GROUP_COLOURS[0])], 0.60, None,
               "G1 Gabor-like (original's test)")]
    for ax, target, series, goal, original, title in panels:
        drawn = False
        for key, index, label, colour in series:
            steps, values = _series(rows, target, key, index)
            if steps.size:
                ax.plot(steps, values, "o-", color=colour, markersize=3, label=label)
                drawn = True
        if not drawn:
            plotting.empty_panel(ax, "not measured")
        if goal is not None:
            ax.axhline(goal, color="k", linestyle="--", linewidth=1, label="target")
        if original is not None:
            ax.axhline(original, color="k", linestyle=":", linewidth=1, label="original's TP_full")
        ax.set(xlabel="optimizer steps", title=title)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1000:g}k"))
        if target in (simple, peak, gabor):
            ax.set_ylim(0, 1.05)  # fractions and ratios on their whole scale, so noise is not magnified
        if drawn and len(series) + (goal is not None) + (original is not None) > 1:
            ax.legend(fontsize="x-small")
    return fig


def targets_over_training(run, every: int = 0, out=None, options: Options | None = None, log=print) -> Path:
    """Measure ``run``'s checkpoints not yet in ``out`` (module docstring); returns ``out``."""
    out = Path(out) if out else Path(run) / DEFAULT_NAME
    rows = read_rows(out)
    done = {row["epoch"] for row in rows}
    todo = [c for c in checkpoints_to_measure(run, every) if c[0] not in done]
    log(f"{len(todo)} checkpoint(s) to measure, {len(done)} already in {out.name}")
    try:
        with tempfile.TemporaryDirectory(prefix="targets_over_training_") as workdir:
            for epoch, steps, weights in todo:
                measured = _json_number(measure_checkpoint(weights, Path(workdir), options))
                rows.append({"epoch": epoch, "steps": steps, "targets": measured})
                write_rows(out, run, rows)
                verdicts = [t["met"] for t in measured.values() if t["met"] is not None]
                log(f"epoch {epoch} ({steps:,} steps): {sum(verdicts)} of {len(verdicts)} measured targets met")
        fig = targets_figure(sorted(rows, key=lambda r: r["steps"]))
        with atomic_path(out.with_suffix(".png")) as tmp:
            plotting.write_figure(fig, tmp, "png")
    except OSError as err:
        raise AnalysisError(f"cannot write {out} ({os_error_reason(err)}): give a writable --out") from err
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", metavar="RUN", help="a training run folder")
    parser.add_argument("--every", type=int, default=0, metavar="STEPS",
                        help="only checkpoints whose optimizer step is a multiple of this (and the latest) [all]")
    parser.add_argument("--out", default=None, metavar="FILE.json", help=f"[RUN/{DEFAULT_NAME}]")
    args = parser.parse_args(argv)
    if args.every < 0:
        raise AnalysisError(f"--every {args.every}: give 0 (every checkpoint) or a positive number of steps")
    print(f"wrote {targets_over_training(args.run, args.every, args.out)} and its .png")


if __name__ == "__main__":
    run_cli(main)
