"""Like-to-like connectivity among group-1 excitatory units, as the original's
connectivity notebook measures it.

Units are described by their RF centre (gabor_x = column, gabor_y = row, in
pixels) and preferred direction of motion (degrees; 0 = up, 90 = right, as in
``virtual_physiology.stimuli``). ``weights`` is the excitatory block of W_hh,
indexed [post, pre]. Pairs are ordered (post, pre) with post != pre: a unit's
self-weight is not a connection between two cells (but it does enter the
connection thresholds, as in the original).

Axis convention (flagged; docs/faithfulness.md, "Co-axial means the motion
axis"): the original calls a presynaptic RF displaced along the postsynaptic
unit's *motion* axis "co-axial" (``coaxial_axis="motion"``). Iacaruso et al. (2017) define co-axial along the
preferred *orientation* (the bar's long axis), which is perpendicular to the
motion; ``coaxial_axis="orientation"`` gives that convention.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from virtual_physiology.gabor import original_gabor

SHORT_RANGE = (0.0, 2.5)
LONG_RANGE = (5.0, 9.166)


def select_units(gabor_r, gabor_params, n_excitatory: int, r_min: float = 0.7, log_variance_min: float = 0.5):
    """Units the original keeps: excitatory (index < n_excitatory), Gabor fit
    r > r_min and both envelope log-variances (gabor_params[:, 4:6]) > 0.5
    (``virtual_physiology.gabor.original_gabor`` without its centre-in-frame test).

    gabor_r: (n,); gabor_params: (n, 8) in the original's order
    (amplitude, x, y, theta, log var x, log var y, log k, phase). nan fails.
    Returns a bool mask (n,).
    """
    keep = original_gabor(gabor_params, gabor_r, min_r=r_min, min_log_variance=log_variance_min)
    keep[n_excitatory:] = False
    return keep


def orientation_difference(a_deg, b_deg):
    """|a - b| between orientations (direction mod 180), folded into [0, 90]."""
    d = np.abs(np.mod(a_deg, 180.0) - np.mod(b_deg, 180.0))
    return np.minimum(d, 180.0 - d)


def direction_difference(a_deg, b_deg):
    """|a - b| between directions, folded into [0, 180]."""
    d = np.mod(np.abs(np.asarray(a_deg, float) - np.asarray(b_deg, float)), 360.0)
    return np.minimum(d, 360.0 - d)


def unit_pairs(weights, x, y, direction) -> dict[str, np.ndarray]:
    """Every ordered pair (post i, pre j), i != j, of the n given units.

    weights: (n, n) [post, pre]; x, y, direction: (n,). Returns flat (n(n-1),)
    arrays: post, pre, weight, distance, ori_diff, dir_diff, and the pre RF
    displacement from the post RF split into ``along`` the post unit's motion
    vector (sin d, -cos d) in (column, row) and ``across`` it.
    """
    weights = np.asarray(weights, float)
    x, y, direction = (np.asarray(v, float) for v in (x, y, direction))
    n = x.size
    post, pre = np.nonzero(~np.eye(n, dtype=bool))
    dx, dy = x[pre] - x[post], y[pre] - y[post]
    theta = np.deg2rad(direction[post])
    along = dx * np.sin(theta) - dy * np.cos(theta)
    across = dx * np.cos(theta) + dy * np.sin(theta)
    return dict(post=post, pre=pre, weight=weights[post, pre], distance=np.hypot(dx, dy),
                ori_diff=orientation_difference(direction[post], direction[pre]),
                dir_diff=direction_difference(direction[post], direction[pre]),
                along=along, across=across)


def connection_threshold(weights, percentile: float = 95.0, signed: bool = False) -> float:
    """The original's "connected" threshold: the percentile of |W| (``signed=False``,
    short-range cells) or of W (``signed=True``, long-range cells) over every
    entry of ``weights`` (n, n), the self-weights on the diagonal included.

    Pass the whole excitatory block (the original's W[:640, :640]), not only
    the units kept for the analysis. Both thresholds and the diagonal are the
    original's (docs/faithfulness.md, "Connectivity thresholds").
    """
    w = np.asarray(weights, float)
    return float(np.percentile(w if signed else np.abs(w), percentile))


def binned_counts(diff, connected, edges):
    """Connected and total pairs per bin of ``diff`` (degrees).

    Bins are [e_k, e_k+1), the last one closed, so 90 (or 180) falls in the
    last bin. Returns (connected (K,), totals (K,)) as floats.
    """
    diff = np.asarray(diff, float)
    connected = np.asarray(connected, bool)
    edges = np.asarray(edges, float)
    index = np.clip(np.searchsorted(edges, diff, side="right") - 1, 0, edges.size - 2)
    inside = (diff >= edges[0]) & (diff <= edges[-1])
    k = edges.size - 1
    totals = np.bincount(index[inside], minlength=k).astype(float)
    hits = np.bincount(index[inside], weights=connected[inside].astype(float), minlength=k)
    return hits, totals


def _is_coaxial(along, across, coaxial_axis: str):
    if coaxial_axis == "motion":
        return np.abs(along) > np.abs(across)
    if coaxial_axis == "orientation":
        return np.abs(across) > np.abs(along)
    raise ValueError("coaxial_axis must be 'motion' (the original) or 'orientation' (Iacaruso 2017)")


def short_range_counts(pairs: dict, pre_selective, threshold: float, kind: str, edges,
                       distance_range=SHORT_RANGE):
    """Ko-style counts: pairs closer than ``distance_range`` whose presynaptic
    unit is selective, connected if weight > threshold, binned by the
    difference in preferred orientation (kind='orientation') or direction
    ('direction'). Returns (connected (K,), totals (K,))."""
    diff = {"orientation": pairs["ori_diff"], "direction": pairs["dir_diff"]}[kind]
    keep = _in_range(pairs["distance"], distance_range) & np.asarray(pre_selective, bool)[pairs["pre"]]
    return binned_counts(diff[keep], pairs["weight"][keep] > threshold, edges)


def long_range_connected(pairs: dict, pre_selective, threshold: float, distance_range=LONG_RANGE):
    """Mask of Iacaruso-style pairs: long range, selective presynaptic unit, weight > threshold."""
    return (_in_range(pairs["distance"], distance_range) & np.asarray(pre_selective, bool)[pairs["pre"]]
            & (pairs["weight"] > threshold))


def _in_range(distance, bounds):
    return (distance > bounds[0]) & (distance < bounds[1]) if bounds[0] > 0 else distance < bounds[1]


def axis_fractions(ori_diff, along, across, edges, coaxial_axis: str = "motion"):
    """Fractions of pairs per (axis, orientation-difference bin), over all pairs
    of both axes (so the 2K numbers sum to 1, as Iacaruso's n = 159).

    Returns (coaxial (K,), orthogonal (K,)); nan if there are no pairs.
    """
    coaxial, totals = binned_counts(ori_diff, _is_coaxial(np.asarray(along), np.asarray(across), coaxial_axis), edges)
    n = totals.sum()
    if n == 0:
        return np.full(totals.shape, np.nan), np.full(totals.shape, np.nan)
    return coaxial / n, (totals - coaxial) / n


def shuffle_axis_null(post_direction, pre_direction, along, across, edges, n_shuffles: int = 10_000,
                      seed: int = 0, coaxial_axis: str = "motion", chunk: int = 1000, p_rule: str = "original"):
    """Null distribution of :func:`axis_fractions` when the presynaptic preferred
    directions are shuffled within each axis, as the original does: co-axial
    pairs swap presynaptic directions among themselves, orthogonal pairs among
    themselves, so each axis keeps its number of pairs and its presynaptic
    directions (docs/faithfulness.md, "Iacaruso shuffle null").

    Per-pair inputs (m,). Returns (observed (2, K), null (n_shuffles, 2, K),
    p (2, K)) with rows (coaxial, orthogonal) and p from
    :func:`shuffle_p_value` under ``p_rule``. Seeded with
    ``numpy.random.default_rng(seed)``.
    """
    post_direction, pre_direction = np.asarray(post_direction, float), np.asarray(pre_direction, float)
    edges = np.asarray(edges, float)
    coaxial = _is_coaxial(np.asarray(along), np.asarray(across), coaxial_axis)
    observed = np.stack(axis_fractions(orientation_difference(post_direction, pre_direction), along, across,
                                       edges, coaxial_axis))
    k, m = edges.size - 1, post_direction.size
    axes = [np.flatnonzero(coaxial), np.flatnonzero(~coaxial)]
    rng = np.random.default_rng(seed)
    null = np.empty((n_shuffles, 2, k))
    for start in range(0, n_shuffles, chunk):
        s = min(chunk, n_shuffles - start)
        shuffled = np.empty((s, m))
        for members in axes:
            shuffled[:, members] = rng.permuted(np.broadcast_to(pre_direction[members], (s, members.size)), axis=1)
        diff = orientation_difference(post_direction, shuffled)
        bins = np.clip(np.searchsorted(edges, diff, side="right") - 1, 0, k - 1)
        cell = np.arange(s)[:, None] * 2 * k + np.where(coaxial, 0, k) + bins
        counts = np.bincount(cell.ravel(), minlength=s * 2 * k).reshape(s, 2, k)
        null[start:start + s] = counts / max(m, 1)
    return observed, null, shuffle_p_value(observed, null, p_rule)


def shuffle_p_value(observed, null, rule: str = "original") -> np.ndarray:
    """Two-sided p of ``observed`` (...) against ``null`` (N, ...).

    - ``"original"``: p = 2 min(#null < observed, #null >= observed) / N, as the
      original computes it. Ties count on the upper side only, so a null that
      never moves gives p = 0 (docs/faithfulness.md, "Iacaruso p-value").
    - ``"tie_symmetric"``: p = min(1, 2 min(#null >= observed, #null <= observed) / N),
      ties on both sides, so a null that never moves gives p = 1.
    Equality is to within 1e-12 (the fractions are ratios of counts).
    """
    observed, null = np.asarray(observed, float), np.asarray(null, float)
    n = len(null)
    at_least = (null >= observed - 1e-12).sum(0)
    if rule == "original":
        return 2 * np.minimum(n - at_least, at_least) / n
    if rule == "tie_symmetric":
        return np.minimum(1.0, 2 * np.minimum(at_least, (null <= observed + 1e-12).sum(0)) / n)
    raise ValueError("p_rule must be 'original' or 'tie_symmetric'")


def relative_position_map(along, across, connected, half_width: float = 10.0, n_bins: int = 20, sigma: float = 2.0):
    """Connection probability by presynaptic RF position relative to the post RF,
    in the post unit's frame (rows: along its motion axis, columns: across).

    Counts of all and of connected pairs on an n_bins x n_bins grid spanning
    +-half_width pixels, each blurred with a Gaussian (sd ``sigma`` bins)
    before the ratio; nan where no pair falls. Returns (n_bins, n_bins).
    """
    grid = np.linspace(-half_width, half_width, n_bins + 1)
    connected = np.asarray(connected, bool)
    every, _, _ = np.histogram2d(along, across, bins=(grid, grid))
    hits, _, _ = np.histogram2d(np.asarray(along)[connected], np.asarray(across)[connected], bins=(grid, grid))
    every, hits = ndimage.gaussian_filter(every, sigma), ndimage.gaussian_filter(hits, sigma)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(every > 1e-12, hits / every, np.nan)
