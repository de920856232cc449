"""Surround suppression with and without feedback, as the original's
surround_suppression notebook.

Size-tuning curves come from ``virtual_physiology.surround`` (radius 2..38 px,
un-normalised gratings, last 4 of 100 frames; docs/faithfulness.md, "Surround
stimulus"). Here:
the per-unit comparisons between the full and the no-feedback model that the
Nurminen et al. (2018) data summarise, and group-mean curves. Units are paired
by index, so both arrays must hold the same units in the same order.
"""
from __future__ import annotations

import numpy as np

from analysis import plotting
from analysis.stats import fit_ratio_of_gaussians
from utils import paired_ttest

PROXIMAL_FRACTION = 0.95


def _valid(curves) -> np.ndarray:
    curves = np.asarray(curves, float)
    return np.isfinite(curves).all(axis=1) & (curves.max(axis=1) > 0)


def feedback_effects(full, no_feedback, radii) -> dict[str, np.ndarray]:
    """Per-unit measures (n,) from paired size-tuning curves (n, R) of the full
    and the no-feedback model; nan where either curve is silent or not finite.

    - ``preferred_size_full`` / ``preferred_size_no_feedback``: radius at the
      first argmax (the summation-field size; the data give diameters);
    - ``peak_ratio``: max(no-feedback) / max(full) (Nurminen: sRF response,
      inactivated / control = 0.668); as in the original's ``get_sRF_FR``, a
      unit that the removal of feedback silences counts as 0, not nan;
    - ``proximal_ratio``: full / no-feedback at the first radius past the full
      curve's peak where the full response falls below 0.95 of its peak, i.e.
      where the near surround starts to suppress (Nurminen: 0.86); nan if the
      full curve never falls that far.
    """
    full, no_feedback, radii = np.asarray(full, float), np.asarray(no_feedback, float), np.asarray(radii, float)
    valid = _valid(full) & _valid(no_feedback)
    safe_full = np.where(valid[:, None], full, 1.0)
    safe_nofb = np.where(valid[:, None], no_feedback, 1.0)
    peak = safe_full.argmax(axis=1)
    past_peak = np.arange(full.shape[1])[None, :] > peak[:, None]
    below = past_peak & (safe_full < PROXIMAL_FRACTION * safe_full.max(axis=1, keepdims=True))
    has_proximal = below.any(axis=1) & valid
    k = below.argmax(axis=1)
    rows = np.arange(len(full))
    with np.errstate(divide="ignore", invalid="ignore"):
        proximal = safe_full[rows, k] / safe_nofb[rows, k]
    nan = np.nan
    return dict(preferred_size_full=np.where(valid, radii[peak], nan),
                preferred_size_no_feedback=np.where(valid, radii[safe_nofb.argmax(axis=1)], nan),
                peak_ratio=np.where(_valid(full) & np.isfinite(no_feedback).all(axis=1),
                                    np.where(valid, safe_nofb.max(axis=1), 0.0) / safe_full.max(axis=1), nan),
                proximal_ratio=np.where(has_proximal, proximal, nan))


def si_change(si_full, si_no_feedback) -> dict:
    """A group's surround suppression index with and without feedback, over the
    units with a finite SI in both, (n,) and (n,) paired by index:
    ``mean_full``, ``median_full``, ``mean_no_feedback``, ``median_no_feedback``,
    and the paired t-test of no-feedback minus full (``utils.paired_ttest``; t < 0:
    lower without feedback) as ``paired_t``, ``paired_p``, ``n_pairs``. The means
    are over the tested pairs, so they cannot point the other way than t (means
    over each condition's own units can: a unit silenced without feedback has no
    SI there). Fewer than 2 pairs: t and p nan; no pair: every mean nan."""
    full, ablated = np.asarray(si_full, float).ravel(), np.asarray(si_no_feedback, float).ravel()
    t, p, n = paired_ttest(ablated, full)
    keep = np.isfinite(full) & np.isfinite(ablated)

    def summary(x, reduce):
        return float(reduce(x[keep])) if keep.any() else np.nan

    return dict(mean_full=summary(full, np.mean), median_full=summary(full, np.median),
                mean_no_feedback=summary(ablated, np.mean), median_no_feedback=summary(ablated, np.median),
                paired_t=t, paired_p=p, n_pairs=n)


def normalised_mean_curves(full, no_feedback) -> tuple[np.ndarray, np.ndarray, int]:
    """Group-mean size-tuning curves, each unit divided by the peak of its
    full-model curve (so the no-feedback curve shows the rate change too).
    Returns (full (R,), no_feedback (R,), number of units used)."""
    full, no_feedback = np.asarray(full, float), np.asarray(no_feedback, float)
    valid = _valid(full) & _valid(no_feedback)
    peak = full[valid].max(axis=1, keepdims=True)
    return (full[valid] / peak).mean(axis=0), (no_feedback[valid] / peak).mean(axis=0), int(valid.sum())


def fit_curves(sizes, *curves) -> list[np.ndarray]:
    """Ratio-of-Gaussians parameters (G_e, W_e, G_i, W_i) for each curve (nan if
    the fit fails or the curve is not finite)."""
    out = []
    for y in curves:
        y = np.asarray(y, float)
        out.append(fit_ratio_of_gaussians(sizes, y) if np.isfinite(y).all() and y.max() > 0 else np.full(4, np.nan))
    return out


SI_EDGES = np.arange(0, 111, 10)  # SI (%) histogram bins


def si_distribution_figure(panels: dict[str, list[tuple[np.ndarray, str]]]):
    """One panel per entry of ``panels`` ({title: [(SI values (%), label), ...]}):
    step histograms as proportions, first sample black, second grey; a panel
    whose samples are all empty says so. Returns the Figure."""
    fig, axes = plotting.new_figure(len(panels))
    for ax, (title, samples) in zip(np.atleast_1d(axes), panels.items()):
        drawn = [plotting.proportion_histogram(ax, values, SI_EDGES, label.replace(" (", "\n("), colour, filled=False)
                 for (values, label), colour in zip(samples, ("k", "0.6"))]
        ax.set(xlabel="SI (%)", ylabel=plotting.PROPORTION_LABEL, title=title)
        if any(drawn):
            ax.legend(**plotting.LEGEND_BELOW)
        else:
            plotting.empty_panel(ax, f"no units with a size-tuning curve ({title})")
    return fig
