"""Grating-tuning summaries: tuning slices, modulation-ratio filtering, the
preferred frequencies of direction-selective units, and KS comparisons of
model types with the literature (spec §7 response_parameters)."""
from __future__ import annotations

import numpy as np

from analysis.stats import histogram_cdf_distance, bin_proportions, ks_distance

DS_THRESHOLD = 0.3  # DSI above which a unit counts as direction selective (the original's vphys threshold)
FREQUENCY_EDGES = np.linspace(0, 0.25, 6)  # the original's histogram bins for preferred SF and TF


def tuning_slices(mean_responses, preferred_index) -> dict[str, np.ndarray]:
    """Tuning curves through each unit's preferred grating.

    mean_responses: (n, n_sf, n_dir, n_tf); preferred_index: (n, 3) int grid
    indices (sf, direction, tf). Returns 'sf' (n, n_sf) at the preferred
    direction and tf, 'direction' (n, n_dir) and 'tf' (n, n_tf) likewise.
    """
    m = np.asarray(mean_responses)
    i = np.asarray(preferred_index, int)
    rows = np.arange(len(m))
    return dict(sf=m[rows, :, i[:, 1], i[:, 2]], direction=m[rows, i[:, 0], :, i[:, 2]],
                tf=m[rows, i[:, 0], i[:, 1], :])


def curve_fit_modulation_ratio(table: dict) -> np.ndarray:
    """The figure's F1/F0 (the notebook's curve_fit variant, computed by
    virtual physiology) of each unit in a unit table, nan where that fit was
    not kept (0 <= F1/F0 <= 2 and fit correlation > 0)."""
    ratio = np.asarray(table["modulation_ratio_curve_fit"], float)
    return np.where(np.asarray(table["modulation_ratio_curve_fit_keep"], bool), ratio, np.nan)


def direction_selective(values, dsi, threshold: float = DS_THRESHOLD) -> np.ndarray:
    """Finite ``values`` of the units with DSI > threshold (nan DSI excluded)."""
    values, dsi = np.asarray(values, float), np.asarray(dsi, float)
    with np.errstate(invalid="ignore"):
        keep = (dsi > threshold) & np.isfinite(values)
    return values[keep]


def ks_to_references(model_values: dict[str, dict[str, np.ndarray]], references: dict[str, np.ndarray]):
    """KS distance of each model type's group distribution to its reference.

    model_values: {model label: {group label: values}}; references: {group
    label: reference values}, the groups to compare (e.g. {'G1': V1, 'G2': V2}).
    Returns {model label: {group label: D}} (nan if a sample is empty).
    """
    out = {}
    for model, groups in model_values.items():
        out[model] = {}
        for group, ref in references.items():
            values = np.asarray(groups.get(group, []), float)
            out[model][group] = ks_distance(values, ref) if np.isfinite(values).any() else float("nan")
    return out


def binned_distance_to_histogram(values, edges, reference_proportions) -> float:
    """The original's binned "KS" (max |dCDF| of histograms) between model values
    and a published histogram on the same ``edges``; nan without finite values."""
    values = np.asarray(values, float)
    if not np.isfinite(values).any():
        return float("nan")
    return histogram_cdf_distance(bin_proportions(values, edges), reference_proportions)
