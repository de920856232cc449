"""Representational similarity: RSMs, their comparison, noise ceilings, statistics.

Conventions: ``responses`` are (bins, units) arrays (one row per 5-frame time
bin, one column per neuron or model unit); an RSM is (bins, bins).

Speed: the original computed every RSM entry with its own ``scipy.stats.pearsonr``
call (810,000 calls per 900x900 RSM, x200 per noise ceiling). Here an
RSM is one matrix product of z-scored rows, and Spearman correlations rank each
upper triangle once. rsatoolbox's ``calc_rdm(method="correlation")`` computes the
same matrix (as 1 - r) but is slower here and returns NaN, not 0, for constant
rows (benchmarks/bench_rsa.py measures both), so it is not used.
"""
from __future__ import annotations

import numpy as np

from utils import paired_ttest, pearson, pearson_matrix  # noqa: F401  (paired_ttest: re-exported)


def rsm(responses: np.ndarray) -> np.ndarray:
    """Pearson RSM across units: (bins, units) -> (bins, bins) float64.

    RSM[a, b] = Pearson r between the population vectors of bins a and b
    (``utils.pearson_matrix``, one matrix product of z-scored rows).
    A constant row (all units equal, e.g. a silent bin) gets r = 0 with every
    bin, itself included, so its diagonal entry is 0, not 1: this reproduces
    the original's rule "0 if either vector is constant" (docs/faithfulness.md,
    "RSM and ceiling"), which it
    applied to the diagonal too. Every other diagonal entry is 1.
    """
    return pearson_matrix(responses, constant="zero")


def upper_triangle(matrix: np.ndarray) -> np.ndarray:
    """Entries above the diagonal (k = 1), row by row: (M, M) -> (M (M - 1) / 2,)."""
    return matrix[np.triu(np.ones(matrix.shape, dtype=bool), k=1)]


# Correlations are rounded to this many decimals before they are ranked. Entries
# that are equal in exact arithmetic (common in real data: identical bins of
# integer spike counts, or any two bins with r = +-1) come out of a matrix
# product 1e-16 apart in an order that depends on the BLAS kernel's summation
# order; ranked raw, those ties are broken at random and a Spearman rho can move
# by tenths. Rounded, they stay ties (unless a tie sits within 1e-16 of a rounding
# boundary, about 1e-4 of ties at random values; never for r = 0 or +-1). Distinct correlations
# closer than 1e-12 are vanishingly rare and never meaningful.
RANK_DECIMALS = 12


def ranked_upper_triangle(matrix: np.ndarray, upper: np.ndarray | None = None) -> np.ndarray:
    """Average ranks of an RSM's upper triangle (k = 1), after rounding to
    ``RANK_DECIMALS``: (M, M) -> (M (M - 1) / 2,). ``upper`` is an optional
    precomputed boolean mask of the triangle, for loops over many RSMs."""
    if upper is None:
        upper = np.triu(np.ones(matrix.shape, dtype=bool), k=1)
    return average_ranks(np.round(matrix[upper], RANK_DECIMALS))


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of a 1-D array, ties sharing their average rank; equal to
    ``scipy.stats.rankdata(x)`` (method "average") but about 3x faster, which
    matters for the 404,550-entry triangles ranked 200 times per ceiling."""
    order = np.argsort(x)
    ordered = x[order]
    tie_starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    tie_sizes = np.diff(np.r_[tie_starts, len(x)])
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(tie_starts + (tie_sizes + 1) / 2, tie_sizes)
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rho of two vectors: Pearson r of their average ranks (ties share
    a rank). NaN if either vector is constant."""
    return pearson(average_ranks(np.asarray(a, float)), average_ranks(np.asarray(b, float)))


def similarity(rsm_a: np.ndarray, rsm_b: np.ndarray) -> float:
    """Spearman rho between the upper triangles (k = 1) of two RSMs, as the
    original scores a model against a session. Entries are rounded to
    ``RANK_DECIMALS`` before ranking, so exact ties stay ties whatever the BLAS
    kernel (see ``RANK_DECIMALS``). NaN if either triangle is constant."""
    if rsm_a.shape != rsm_b.shape:
        raise ValueError(f"RSMs differ in shape: {rsm_a.shape} vs {rsm_b.shape}")
    return pearson(ranked_upper_triangle(rsm_a), ranked_upper_triangle(rsm_b))


def noise_ceiling(responses: np.ndarray, n_splits: int = 100, seed: int = 0) -> np.ndarray:
    """Split-half reliability of a session's RSM: (bins, units) -> (n_splits,).

    For each split the units are shuffled, the first n // 2 form half A and the
    rest half B (as in the original), and the value is the Spearman rho between
    the upper triangles of RSM(A) and RSM(B). There is no Spearman-Brown
    correction (the original has none). Unlike the original, constant bins get
    r = 0 through ``rsm`` instead of NaN. Ranks are taken after rounding to
    ``RANK_DECIMALS``, so theoretical ties (e.g. equal bins of integer counts)
    rank the same on every BLAS kernel. Needs >= 2 units; with one unit per half
    every entry is 0 and the value is NaN.
    """
    x = np.asarray(responses, dtype=np.float64)
    n_units = x.shape[1]
    if n_units < 2:
        raise ValueError(f"a split-half ceiling needs at least 2 units, got {n_units}")
    rng = np.random.default_rng(seed)
    upper = np.triu(np.ones((x.shape[0],) * 2, dtype=bool), k=1)
    values = np.empty(n_splits)
    for i in range(n_splits):
        order = rng.permutation(n_units)
        half = n_units // 2
        a = ranked_upper_triangle(rsm(x[:, order[:half]]), upper)
        b = ranked_upper_triangle(rsm(x[:, order[half:]]), upper)
        values[i] = pearson(a, b)
    return values


def normalised_similarity(similarity_value: float | np.ndarray, ceiling: np.ndarray) -> float | np.ndarray:
    """Similarity divided by the mean of the session's ceiling values, as the original."""
    return similarity_value / np.mean(ceiling)


def best_group(scores: np.ndarray) -> int:
    """Index of the group with the highest mean score over sessions.

    ``scores``: (sessions, groups), NaN for missing values (ignored). Ties go to
    the first (shallowest) group."""
    return int(np.nanargmax(np.nanmean(scores, axis=0)))
