"""Download the Allen Brain Observatory's per-unit metrics table, the mouse
reference of the literature scorecard (``analysis.compare --allen-metrics``).

    python -m neural_fitting.allen_metrics --out data/allen

Fetches ``brain_observatory_1.1_analysis_metrics.csv`` (one row per unit of the
Visual Coding Neuropixels sessions, keyed by unit id, with its area and
metrics such as ``g_osi_dg``, ``g_dsi_dg``, ``pref_tf_dg``, ``pref_sf_sg`` and
``f1_f0_dg``; Siegle et al. 2021) from the Allen bucket into ``<out>``,
resuming a partial download and skipping a complete one, then prints where it
is and how many units each area has. Without a network it says so in one
line and exits 2.
"""
from __future__ import annotations

import sys

if __package__ in (None, ""):  # run as a file, the repository's packages are not importable
    print("error: run it as a module from the repository root: python -m neural_fitting.allen_metrics --out DIR",
          file=sys.stderr)
    sys.exit(2)

import argparse
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from analysis.reference import ALLEN_METRICS_FILE, allen_unit_metric
from neural_fitting import RecordingError
from neural_fitting.fetch import download
from utils import add_flags, flag, options_from, run_cli, user_errors_from

ALLEN_CACHE_URL = "https://allen-brain-observatory.s3.amazonaws.com/visual-coding-neuropixels/ecephys-cache"
AREAS = ("VISp", "VISl", "VISrl", "VISal", "VISpm", "VISam")


@dataclass(frozen=True)
class MetricsOptions:
    """The command's flags."""

    out: Path = flag(None, "data folder (the table goes to OUT/" + ALLEN_METRICS_FILE + ")", type=Path, required=True)
    timeout: float = flag(60.0, "seconds per connection attempt and per read")


def fetch_metrics(out: Path, timeout: float) -> Path:
    """The table at ``out``/ALLEN_METRICS_FILE, downloaded unless complete.
    ``RecordingError`` (one line) when the network is not reachable."""
    try:
        return download(f"{ALLEN_CACHE_URL}/{ALLEN_METRICS_FILE}", Path(out) / ALLEN_METRICS_FILE, timeout=timeout)
    except ConnectionError as err:
        raise RecordingError(f"the Allen metrics table could not be downloaded (no network?): {err}; or copy "
                             f"{ALLEN_METRICS_FILE} into {out} from a machine that has one") from err


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_flags(parser, MetricsOptions)
    args = options_from(MetricsOptions, parser.parse_args(argv))
    with user_errors_from(ValueError):  # a corrupt download, an unreadable table (beyond AllenMetricsError)
        path = fetch_metrics(args.out, args.timeout)
        counts = Counter({area: allen_unit_metric(path, "g_osi_dg", area).values.size for area in AREAS})
    print(f"{path}: units with a global OSI per area: "
          + ", ".join(f"{area} {n}" for area, n in counts.items()))


if __name__ == "__main__":
    run_cli(main)
