"""Time the RSA core on this machine against the original's per-pair loop and rsatoolbox.

    .venv/bin/python benchmarks/bench_rsa.py [--bins 900 --units 2400 --ceiling-units 100 --splits 100]

Measures, in one run on the same data:
1. one bins x bins RSM from ``units`` model units (target <= 1 s at 900 x 2400);
2. a ``splits``-split noise ceiling for a session of ``ceiling-units`` neurons (target <= 60 s);
3. the original's loop (a constant check, then ``scipy.stats.pearsonr`` per pair) on a
   random subset of pairs, extrapolated to the full matrix and to the ceiling's 2 RSMs per split;
4. rsatoolbox's ``calc_rdm(method="correlation")`` on the same RSM (RDM = 1 - r).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from neural_fitting.rsa import noise_ceiling, rsm  # noqa: E402


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def loop_seconds_per_pair(responses: np.ndarray, n_pairs: int, rng, constant_check: bool) -> float:
    """Mean time of one ``pearsonr`` call over ``n_pairs`` random pairs of rows,
    optionally preceded by the original RSM script's ``len(set(row)) == 1`` checks."""
    a, b = rng.integers(0, len(responses), (2, n_pairs))
    start = time.perf_counter()
    for i, j in zip(a, b):
        x, y = responses[i], responses[j]
        if not constant_check or (len(set(x)) > 1 and len(set(y)) > 1):
            stats.pearsonr(x, y)
    return (time.perf_counter() - start) / n_pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bins", type=int, default=900)
    parser.add_argument("--units", type=int, default=2400)
    parser.add_argument("--ceiling-units", type=int, default=100)
    parser.add_argument("--splits", type=int, default=100)
    parser.add_argument("--pairs", type=int, default=2000, help="pairs timed in the per-pair loop")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    # binned spike-count-like data: means of Poisson counts over 20 repeats x 5 frames
    model = rng.gamma(2.0, 0.5, (args.bins, args.units)).astype(np.float32)
    rates = rng.gamma(2.0, 0.15, (args.bins, 1)) * rng.gamma(2.0, 0.5, (1, args.ceiling_units))
    session = rng.poisson(rates[..., None], (args.bins, args.ceiling_units, 100)).mean(axis=2)
    full_pairs = args.bins ** 2  # the original filled the whole matrix, both triangles and the diagonal
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; numpy {np.__version__}")

    t_rsm = best_of(lambda: rsm(model), 3)
    print(f"RSM {args.bins}x{args.bins} from {args.units} units: {t_rsm:.3f} s (target <= 1 s)")

    start = time.perf_counter()
    ceiling = noise_ceiling(session, n_splits=args.splits, seed=0)
    t_ceiling = time.perf_counter() - start
    print(f"noise ceiling, {args.splits} splits, {args.ceiling_units} neurons: {t_ceiling:.1f} s "
          f"(target <= 60 s); mean rho {ceiling.mean():.3f}")

    for check in (False, True):
        per_pair = loop_seconds_per_pair(model.astype(np.float64), args.pairs, rng, check)
        per_pair_half = loop_seconds_per_pair(session[:, : args.ceiling_units // 2], args.pairs, rng, check)
        loop_rsm = per_pair * full_pairs
        loop_ceiling = per_pair_half * full_pairs * 2 * args.splits
        name = "pearsonr + the original's constant checks" if check else "pearsonr alone"
        print(f"per-pair loop, {name}: {per_pair * 1e6:.0f} us/pair ({args.units} units) -> {loop_rsm:.0f} s "
              f"per RSM ({full_pairs:,} pairs) = {loop_rsm / t_rsm:.0f}x; ceiling {per_pair_half * 1e6:.0f} us/pair "
              f"({args.ceiling_units // 2} units) -> {loop_ceiling / 3600:.1f} h = {loop_ceiling / t_ceiling:.0f}x")

    try:
        import rsatoolbox
    except ImportError:
        print("rsatoolbox: not installed, skipped")
        return

    def toolbox():
        data = rsatoolbox.data.Dataset(model.astype(np.float64))
        return rsatoolbox.rdm.calc_rdm(data, method="correlation").get_matrices()[0]

    t_toolbox = best_of(toolbox, 2)
    difference = np.nanmax(np.abs((1 - toolbox()) - rsm(model)))
    print(f"rsatoolbox calc_rdm(correlation): {t_toolbox:.3f} s, {t_toolbox / t_rsm:.1f}x the vectorised RSM; "
          f"max |(1 - RDM) - RSM| = {difference:.1e}")


if __name__ == "__main__":
    main()
