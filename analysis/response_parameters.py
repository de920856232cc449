"""Grating-tuning summaries: tuning slices, modulation-ratio filtering, the
preferred frequencies of direction-selective units, and KS comparisons of
model types with the literature, as the original's response_parameters notebook;
and the figures of the notebook that show them (each returns its Figure)."""
from __future__ import annotations

import numpy as np

from analysis import plotting, reference
from analysis.stats import bin_proportions, histogram_cdf_distance, ks_distance, mean_sem

DS_THRESHOLD = 0.3  # DSI above which a unit counts as direction selective (the original's vphys threshold)


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


# --- figures (each returns its matplotlib Figure; the notebook saves it) ---------------------

MODULATION_RATIO_AREAS = ("V1", "V2")  # the literature counterpart of G1, G2; later groups have none


def _modulation_ratio_reference(area: str):
    """V1: the Mata & Ringach cells themselves (binned like the model); V2:
    the Levitt et al. histogram (its n is not recorded)."""
    if area == "V1":
        return reference.modulation_ratio_v1()
    _, proportions, label = reference.modulation_ratio_histogram(area)
    return proportions, label, None


def modulation_ratio_figure(ratios: list[np.ndarray]):
    """One panel per group: the histogram of its F1/F0 values (``ratios[g]``,
    nan = not kept) as proportions, against V1 for G1 and V2 for G2."""
    fig, axes = plotting.new_figure(len(ratios))
    for g, (ax, mr) in enumerate(zip(np.atleast_1d(axes), ratios)):
        group = plotting.group_label(g)
        empty = f"no units with a kept F1/F0 fit in {group}"
        if g < len(MODULATION_RATIO_AREAS):
            plotting.histogram_against_reference(ax, mr, reference.MODULATION_RATIO_EDGES, group,
                                                 _modulation_ratio_reference(MODULATION_RATIO_AREAS[g]),
                                                 plotting.GROUP_COLOURS[g], empty)
        elif plotting.proportion_histogram(ax, mr, reference.MODULATION_RATIO_EDGES, group, plotting.GROUP_COLOURS[g]):
            ax.legend()
        else:
            plotting.empty_panel(ax, empty)
        ax.set(xlabel="F1/F0", title=group if g >= len(MODULATION_RATIO_AREAS)
               else f"{group} vs macaque {MODULATION_RATIO_AREAS[g]}")
    return fig


def ds_preferences(units: list[dict], threshold: float = DS_THRESHOLD) -> dict[str, list[np.ndarray]]:
    """Preferred SF ('sf') and TF ('tf') of each group's direction-selective
    units (DSI > threshold): {kind: [values of G1, G2, ...]}."""
    return {kind: [direction_selective(t[f"preferred_{kind}"], t["DSI"], threshold) for t in units]
            for kind in ("sf", "tf")}


def grid_bin_edges(levels) -> np.ndarray:
    """Histogram edges with one bin per probed level (sorted, > 1 level):
    midpoints between neighbours, the ends half a step outside. Preferred
    frequencies are grid values, so each bin holds exactly one of them (the
    original's fixed 0-0.25 bins dropped every SF above 0.25 cycles/px)."""
    levels = np.sort(np.asarray(levels, float))
    middle = (levels[1:] + levels[:-1]) / 2
    return np.concatenate([[2 * levels[0] - middle[0]], middle, [2 * levels[-1] - middle[-1]]])


def ds_preference_figure(preferences: dict[str, list[np.ndarray]], grid: dict, threshold: float = DS_THRESHOLD):
    """Top row: histograms (proportions, one bin per level of the probing
    ``grid``) of the preferred SF and TF of each group's DS units
    (``ds_preferences``); a group without DS units is named in the panel.
    Bottom row: the group means (+- SEM) on the left axis, the
    macaque V1, V2, MT means (with citations) on the right axis; the units
    differ, so only the trend is comparable."""
    fig, axes = plotting.new_figure(2, 2)
    units = {"sf": ("SF", "cycles/px", "cycles/deg"), "tf": ("TF", "cycles/frame", "Hz")}
    for col, (kind, values) in enumerate(preferences.items()):
        name, model_unit, data_unit = units[kind]
        groups = [plotting.group_label(g) for g in range(len(values))]
        top, bottom = axes[0, col], axes[1, col]
        drawn = [plotting.proportion_histogram(top, v, grid_bin_edges(grid[kind]), f"{groups[g]} DS units",
                                               plotting.GROUP_COLOURS[g], filled=False) for g, v in enumerate(values)]
        top.set(xlabel=f"preferred {name} ({model_unit})", ylabel="proportion of DS units")
        missing = [groups[g] for g, n in enumerate(drawn) if not n]
        if not any(drawn):
            plotting.empty_panel(top, f"no units with DSI > {threshold:g} in {', '.join(groups)}")
        else:
            if missing:
                top.set_title(f"no units with DSI > {threshold:g} in {', '.join(missing)}", fontsize="small")
            top.legend()
        mean, sem = np.array([mean_sem(v) for v in values]).T
        x = np.arange(len(values))
        refs = reference.preferred_frequency(kind)
        areas = list(refs)[:len(values)]
        twin = bottom.twinx()
        data = [refs[a][0] for a in areas]
        twin.plot(range(len(areas)), data, "s--", color=plotting.DATA_COLOUR, label="macaque (right axis)")
        for i, area in enumerate(areas):  # each point names its area and citation
            twin.annotate(refs[area][1].replace(" (", "\n("), (i, data[i]), textcoords="offset points", xytext=(0, 6),
                          ha="center", fontsize="x-small", color=plotting.DATA_COLOUR)
        twin.set_ylabel(f"macaque mean preferred {name} ({data_unit})", color=plotting.DATA_COLOUR)
        twin.margins(y=0.3)
        twin.legend(loc="upper right", fontsize="small", frameon=False)
        bottom.set(xticks=x, xticklabels=groups, xlim=(-0.5, len(values) - 0.5),
                   ylabel=f"model mean preferred {name} ({model_unit})")
        if np.isfinite(mean).any():
            counts = ", ".join(f"{g} n={v.size}" for g, v in zip(groups, values))
            bottom.errorbar(x, mean, yerr=sem, fmt="o-", color="k", label=f"model DS units ({counts})")
            bottom.legend(loc="lower left", fontsize="small", frameon=False)
        else:
            bottom.set_yticks([])
            bottom.text(0.5, 0.5, f"no units with DSI > {threshold:g}:\nno model means (macaque data only)",
                        transform=bottom.transAxes, ha="center", va="center", color="0.3",
                        gid=plotting.EMPTY_PANEL_GID)
    return fig
