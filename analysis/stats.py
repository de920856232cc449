"""Statistics used to compare model units with each other and with the literature.

Pure functions on NumPy arrays. NaNs mark units with no defined value (silent
units, failed fits) and are dropped by every summary here, never counted.
"""
from __future__ import annotations

import numpy as np
from scipy import optimize, special, stats

from utils import paired_ttest, pearson  # noqa: F401  (re-exported: the shared numerics)


def _finite(x) -> np.ndarray:
    x = np.asarray(x, dtype=float).ravel()
    return x[np.isfinite(x)]


def mean_sem(x) -> tuple[float, float]:
    """Mean and standard error of the mean (ddof=1) of the finite values of ``x``.

    Any shape is flattened. Returns (nan, nan) when nothing is finite and
    sem = nan for a single value.
    """
    x = _finite(x)
    if x.size == 0:
        return float("nan"), float("nan")
    sem = x.std(ddof=1) / np.sqrt(x.size) if x.size > 1 else float("nan")
    return float(x.mean()), float(sem)


def fraction_above(x, threshold: float) -> float:
    """Fraction of the finite values of ``x`` strictly above ``threshold`` (nan if none)."""
    x = _finite(x)
    return float(np.mean(x > threshold)) if x.size else float("nan")


# --- distribution distances ---------------------------------------------------

def ks_test(a, b) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov test (scipy ``ks_2samp``, two-sided).

    a, b: samples of any shape (flattened, NaNs dropped). Returns
    (D, p) with D = max_x |F_a(x) - F_b(x)| over the empirical CDFs.
    Raises ValueError if either sample has no finite value.
    """
    a, b = _finite(a), _finite(b)
    if a.size == 0 or b.size == 0:
        raise ValueError("KS test needs at least one finite value in each sample")
    result = stats.ks_2samp(a, b)
    return float(result.statistic), float(result.pvalue)


def ks_distance(a, b) -> float:
    """The KS statistic D of :func:`ks_test` alone (0 = same distribution, 1 = disjoint)."""
    return ks_test(a, b)[0]


def bin_proportions(samples, edges) -> np.ndarray:
    """Histogram of ``samples`` as proportions of all finite samples.

    edges: (K+1,) bin edges; returns (K,). Values outside [edges[0], edges[-1]]
    are dropped *without* renormalising (the proportions then sum to < 1), which
    is how the original binned the Mata & Ringach V1 F1/F0 data (62/64 in range).
    """
    x = _finite(samples)
    if x.size == 0:
        return np.full(len(edges) - 1, np.nan)
    counts, _ = np.histogram(x, bins=edges)
    return counts / x.size


def histogram_cdf_distance(p, q) -> float:
    """The original notebooks' binned "KS": max_k |cumsum(p)_k - cumsum(q)_k|.

    p, q: (K,) proportions on the same bins (e.g. from :func:`bin_proportions`
    or a published histogram). Used when a reference is only available as a
    histogram (Levitt 1994). Coarser than :func:`ks_distance`; it equals the KS
    statistic evaluated at the bin edges only.
    """
    p, q = np.asarray(p, float), np.asarray(q, float)
    if p.shape != q.shape:
        raise ValueError(f"histograms must share bins, got {p.shape} and {q.shape}")
    return float(np.max(np.abs(np.cumsum(p) - np.cumsum(q))))


# --- correlations ---------------------------------------------------------------

def fisher_z(r, df: float) -> np.ndarray:
    """Fisher r-to-Z scaled by the degrees of freedom: Z = atanh(r) * sqrt(df).

    This is the pattern-index convention (Smith, Majaj & Movshon 2005; Movshon
    & Newsome 1996 with df = directions - 3). r = +-1 gives +-inf; |r| > 1 nan.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.arctanh(np.asarray(r, dtype=float)) * np.sqrt(df)


def partial_correlation(x, y, control) -> np.ndarray:
    """Correlation of x and y with ``control`` partialled out, along the last axis.

    r_xy.c = (r_xy - r_xc r_yc) / sqrt((1 - r_xc^2)(1 - r_yc^2)).
    In the plaid analysis x = plaid response, y = pattern prediction and
    control = component prediction gives r_p (swap y and control for r_c).
    nan when either vector is constant or perfectly correlated with ``control``
    (``pearson`` is ``utils.pearson``: batched, NaN for a constant vector).
    """
    r_xy, r_xc, r_yc = pearson(x, y), pearson(x, control), pearson(y, control)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (r_xy - r_xc * r_yc) / np.sqrt((1 - r_xc**2) * (1 - r_yc**2))


# --- tests ------------------------------------------------------------------------

def two_proportion_ztest(successes_1: int, n_1: int, successes_2: int, n_2: int) -> tuple[float, float]:
    """Two-sided z-test for p_1 = p_2 with the pooled standard error.

    p = (x_1 + x_2)/(n_1 + n_2); z = (x_1/n_1 - x_2/n_2) / sqrt(p(1 - p)(1/n_1 + 1/n_2));
    p-value = 2 (1 - Phi(|z|)). The original nback notebook wrote p**(1 - p) for
    p(1 - p) (docs/faithfulness.md, "Two-proportion z-test"); this is the textbook form. If both proportions
    are 0 or both 1 the difference is exactly 0: returns (0.0, 1.0).
    """
    if min(n_1, n_2) <= 0:
        raise ValueError("both samples need at least one trial")
    pooled = (successes_1 + successes_2) / (n_1 + n_2)
    diff = successes_1 / n_1 - successes_2 / n_2
    se = np.sqrt(pooled * (1 - pooled) * (1 / n_1 + 1 / n_2))
    if se == 0:
        return 0.0, 1.0
    z = diff / se
    return float(z), float(2 * stats.norm.sf(abs(z)))


def cochran_armitage_trend(successes, totals, scores=None, variance: str = "binomial") -> tuple[float, float]:
    """Cochran-Armitage test for a linear trend of a proportion over ordered bins.

    successes, totals: (K,) counts per bin (e.g. connected / tested pairs per
    bin of orientation difference); scores: (K,) bin scores, default 0..K-1.
    With N = sum n_i and p = sum x_i / N:
        T = sum s_i (x_i - n_i p),
        Var T = p (1 - p) [sum n_i s_i^2 - (sum n_i s_i)^2 / N]   ("binomial", Armitage 1955),
    or that times N/(N-1) ("permutation": the exact conditional variance, the
    one statsmodels ``Table.test_ordinal_association`` uses on a 2 x K table of
    successes and failures). z = T / sqrt(Var T) (z > 0: proportion rises with
    the score); p two-sided normal. Empty bins add nothing. nan if the
    proportion or the scores do not vary. The original notebook did not report
    either value for the counts: it passed statsmodels the table [connected,
    all tested] (see ``connectivity_trend_tests``).
    """
    x = np.asarray(successes, float)
    n = np.asarray(totals, float)
    s = np.arange(len(x), dtype=float) if scores is None else np.asarray(scores, float)
    if not (x.shape == n.shape == s.shape) or np.any(x > n) or np.any(x < 0):
        raise ValueError("successes, totals and scores must be equal-length counts with successes <= totals")
    big_n = n.sum()
    p = x.sum() / big_n
    t = np.sum(s * (x - n * p))
    var = p * (1 - p) * (np.sum(n * s**2) - np.sum(n * s) ** 2 / big_n)
    if variance == "permutation":
        var *= big_n / (big_n - 1)
    elif variance != "binomial":
        raise ValueError("variance must be 'binomial' or 'permutation'")
    if var <= 0:
        return float("nan"), float("nan")
    z = t / np.sqrt(var)
    return float(z), float(2 * stats.norm.sf(abs(z)))


def connectivity_trend_tests(connected, tested) -> dict[str, float]:
    """The original's Cochran-Armitage statistic for connection counts, and the
    correct one beside it (docs/faithfulness.md, "Cochran-Armitage table").

    connected, tested: (K,) counts per ordered bin. The original passed
    statsmodels ``Table([connected, tested]).test_ordinal_association()``, so
    its second row ("failures") is the total, not the unconnected pairs: that
    tests whether the bins' shares of [connected] and [tested] pairs differ,
    i.e. it is the trend test with successes = tested out of connected + tested.
    The correct table is [connected, tested - connected]. Both are the
    linear-by-linear statistic with row scores (0, 1), column scores 0..K-1
    and the permutation variance, with statsmodels' sign: z > 0 when the second
    row's share rises over the bins, i.e. when the connection probability falls.

    Returns z_original, p_original (what the original reports) and z, p (the
    correct table); nan where a table does not vary.
    """
    connected, tested = np.asarray(connected, float), np.asarray(tested, float)
    z_original, p_original = cochran_armitage_trend(tested, connected + tested, variance="permutation")
    z, p = cochran_armitage_trend(tested - connected, tested, variance="permutation")
    return dict(z_original=z_original, p_original=p_original, z=z, p=p)


def holm(pvalues) -> np.ndarray:
    """Holm-Bonferroni step-down adjusted p-values, same shape and order as input.

    Sorted ascending p_(1..m): adj_(i) = max_{j<=i} min(1, (m - j + 1) p_(j)).
    nan p-values are left nan and do not count towards m.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    flat = p.ravel()
    valid = np.flatnonzero(np.isfinite(flat))
    order = valid[np.argsort(flat[valid], kind="stable")]
    m = order.size
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * flat[order]))
    out.ravel()[order] = adjusted
    return out


def pairwise_ttests_holm(groups: dict[str, np.ndarray]) -> list[dict]:
    """All pairwise independent t-tests (Student, equal variances, as the original)
    between named samples, with Holm-adjusted p-values.

    Returns one dict per pair: a, b, t, p, p_holm, n_a, n_b. NaNs dropped.
    """
    names = list(groups)
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            xa, xb = _finite(groups[a]), _finite(groups[b])
            t, p = (stats.ttest_ind(xa, xb) if min(xa.size, xb.size) > 1 else (np.nan, np.nan))
            rows.append(dict(a=a, b=b, t=float(t), p=float(p), n_a=xa.size, n_b=xb.size))
    for row, adj in zip(rows, holm([r["p"] for r in rows])):
        row["p_holm"] = float(adj)
    return rows


def one_way_anova(*samples) -> tuple[float, float]:
    """One-way ANOVA F and p over the finite values of each sample (scipy ``f_oneway``)."""
    result = stats.f_oneway(*[_finite(s) for s in samples])
    return float(result.statistic), float(result.pvalue)


# --- size tuning ------------------------------------------------------------------

def ratio_of_gaussians(x, gain_e: float, width_e: float, gain_i: float, width_i: float) -> np.ndarray:
    """Ratio-of-Gaussians ("difference of error functions") size-tuning model.

    R(x) = [G_e (Phi_We(x) - Phi_We(-x)) / (1 + G_i (Phi_Wi(x) - Phi_Wi(-x)))]^2,
    where Phi_W is the normal CDF with sd W, so Phi_W(x) - Phi_W(-x) = erf(x / (W sqrt 2))
    is the integral of a centred Gaussian over a stimulus of size x (Cavanaugh,
    Bair & Movshon 2002 use this form; the original notebook squares the ratio).
    x: stimulus sizes (any shape, >= 0); widths must be > 0.
    """
    x = np.asarray(x, dtype=float)
    centre = gain_e * special.erf(x / (width_e * np.sqrt(2)))
    surround = 1 + gain_i * special.erf(x / (width_i * np.sqrt(2)))
    return (centre / surround) ** 2


def fit_ratio_of_gaussians(x, y, p0=None, maxfev: int = 10_000) -> np.ndarray:
    """Least-squares fit of :func:`ratio_of_gaussians` to a size-tuning curve.

    x, y: (n,) sizes and responses (n >= 4). p0: initial (G_e, W_e, G_i, W_i);
    default from the curve: W_e = size at the peak / 2, W_i = 2 W_e, G_i = 1,
    G_e = sqrt(2 * peak). All parameters are bounded to >= 0 (widths > 0);
    ``maxfev`` is the evaluation budget (the original's 1e4). Returns the 4
    parameters, or 4 nans when the fit does not converge.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    if p0 is None:
        peak = int(np.argmax(y))
        width_e = max(x[peak] / 2, 1e-3 * max(x.max(), 1e-9))
        p0 = (np.sqrt(2 * max(y[peak], 1e-12)), width_e, 1.0, 2 * width_e)
    lower = [0.0, 1e-9, 0.0, 1e-9]
    try:
        params, _ = optimize.curve_fit(ratio_of_gaussians, x, y, p0=p0, bounds=(lower, np.inf), max_nfev=maxfev)
    except (RuntimeError, ValueError):
        return np.full(4, np.nan)
    return params
