"""Spike counts per movie-frame presentation, repeats, and the noise-ratio filter.

All functions are array-in/array-out. Shapes: U units, P presentations,
R repeats, F frames.
"""
from __future__ import annotations

import numpy as np

NOISE_RATIO_MAX = 60.0  # units above this NP/SP are dropped (docs/faithfulness.md, "Noise-ratio filter")
NOISE_RATIO_REPEATS = 10  # repeats per movie used for the ratio (movie one: the first 10 of 20), as the original


def presentation_counts(spike_times: list[np.ndarray], start: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """Spikes of every unit in every presentation window [start, stop).

    ``spike_times``: U arrays of spike times in seconds (sorted here if they are
    not). ``start``, ``stop``: (P,). Returns (U, P) int64. Two binary searches per
    unit count all windows at once; a spike exactly on a boundary belongs to the
    presentation that starts there.
    """
    start, stop = np.asarray(start, float), np.asarray(stop, float)
    counts = np.empty((len(spike_times), len(start)), dtype=np.int64)
    for u, times in enumerate(spike_times):
        times = np.asarray(times, float)
        if np.any(np.diff(times) < 0):
            times = np.sort(times)
        counts[u] = np.searchsorted(times, stop, "left") - np.searchsorted(times, start, "left")
    return counts


def repeat_index(frames: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Which showing of its frame each presentation is: 0 for the first time a
    frame is shown, 1 for the second, ... in order of start time.

    (P,) frames and start times -> (P,) int. A stable sort by (frame, start) keeps
    the time order inside each frame, so repeat k of every frame comes from the
    k-th pass through the movie (the original's unstable sort scrambled this;
    docs/faithfulness.md, "Repeat order").
    """
    frames, start = np.asarray(frames), np.asarray(start)
    order = np.lexsort((start, frames))
    sorted_frames = frames[order]
    run_starts = np.flatnonzero(np.r_[True, sorted_frames[1:] != sorted_frames[:-1]])
    run_lengths = np.diff(np.r_[run_starts, len(frames)])
    rank = np.arange(len(frames)) - np.repeat(run_starts, run_lengths)
    repeats = np.empty(len(frames), dtype=np.int64)
    repeats[order] = rank
    return repeats


def trials_array(counts: np.ndarray, frames: np.ndarray, repeats: np.ndarray,
                 n_frames: int, n_repeats: int, table: str = "stimulus table") -> np.ndarray:
    """Place (U, P) presentation counts into a (U, R, F) array of repeats x frames.

    Every (repeat, frame) pair in 0..R-1 x 0..F-1 must occur exactly once, else
    a ValueError names the first gap or duplicate (``table`` names the
    source in that message).
    """
    frames, repeats = np.asarray(frames), np.asarray(repeats)
    if frames.size and (frames.min() < 0 or frames.max() >= n_frames):
        raise ValueError(f"{table}: frame numbers run {frames.min()}..{frames.max()}, expected 0..{n_frames - 1}: "
                         f"check the movie's frame count")
    if repeats.size and repeats.max() >= n_repeats:
        raise ValueError(f"{table}: a frame is shown {repeats.max() + 1} times, expected {n_repeats}: "
                         f"check the movie's repeat count")
    cell = repeats * n_frames + frames
    hits = np.bincount(cell, minlength=n_repeats * n_frames)
    if np.any(hits != 1):
        bad = int(np.flatnonzero(hits != 1)[0])
        raise ValueError(f"{table}: repeat {bad // n_frames} of frame {bad % n_frames} occurs {hits[bad]} times, "
                         f"expected once ({n_repeats} repeats x {n_frames} frames): the table is incomplete")
    trials = np.zeros((counts.shape[0], n_repeats, n_frames), dtype=counts.dtype)
    trials[:, repeats, frames] = counts
    return trials


def signal_noise_power(trials: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sahani & Linden (2003) signal, noise and total power of repeated trials.

    ``trials``: (..., N, T) with N >= 2 repeats of T time bins. With variances
    over time (ddof=1):
        TP = mean_n var_t(trials[n]);  SP = (N var_t(mean_n trials) - TP) / (N - 1);
        NP = TP - SP.
    A negative SP estimate becomes NaN (and so does NP), as in the original.
    Returns (SP, NP, TP), each of shape (...).
    """
    n = trials.shape[-2]
    if n < 2:
        raise ValueError("the noise ratio needs at least 2 repeats")
    trials = np.asarray(trials, dtype=np.float64)
    total = trials.var(axis=-1, ddof=1).mean(axis=-1)
    signal = (n * trials.mean(axis=-2).var(axis=-1, ddof=1) - total) / (n - 1)
    signal = np.where(signal < 0, np.nan, signal)
    return signal, total - signal, total


def noise_ratio(trials: np.ndarray) -> np.ndarray:
    """NP / SP of (..., N, T) trials -> (...).

    NaN when SP < 0 or when the unit is silent or constant (0/0); +inf when SP
    is exactly 0 but there is noise.
    """
    signal, noise, _ = signal_noise_power(trials)
    with np.errstate(divide="ignore", invalid="ignore"):
        return noise / signal


def passes_noise_filter(ratio: np.ndarray, max_ratio: float = NOISE_RATIO_MAX,
                        nan_passes: bool = True) -> np.ndarray:
    """Boolean mask of the units kept: ratio <= ``max_ratio``.

    ``nan_passes=True`` reproduces the original, where ``ratio > 60`` is False
    for NaN, so units whose SP estimate was negative (or silent units) are
    kept (docs/faithfulness.md, "Noise-ratio filter"). Set it False to drop them.
    """
    ratio = np.asarray(ratio, dtype=float)
    keep = ratio <= max_ratio
    return keep | np.isnan(ratio) if nan_passes else keep
