"""Score every model group against every session and area; tables and figures for RSA.ipynb.

score = Spearman(model RSM, neural RSM) / mean split-half ceiling of the
session, as the original. Per area and model type, the best group is the one with
the highest mean score over sessions; model types are compared on their best
groups with paired t-tests across sessions. Model types come from each
response file's stored ``label``, so legends cannot drift from the data (the
original zipped 4 types with 5 labels and left VGG out).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis import plotting
from neural_fitting.model_responses import load_responses
from neural_fitting.process_sessions import load_processed
from neural_fitting.rsa import noise_ceiling, ranked_upper_triangle, rsm
from utils import paired_ttest, pearson

AREA_TITLES = {"VISp": "VISp (V1)", "VISl": "VISl (lateromedial, ventral)", "VISrl": "VISrl (rostrolateral, dorsal)",
               "VISal": "VISal (anterolateral)", "VISpm": "VISpm (posteromedial)", "VISam": "VISam (anteromedial)"}


def score_table(processed_dir: str | Path, response_files: list[str | Path], areas: list[str],
                n_splits: int = 100, seed: int = 0, min_units: int = 10) -> pd.DataFrame:
    """One row per (session, area, model, group): similarity, ceiling, score.

    Sessions with fewer than ``min_units`` kept units in an area are skipped for
    that area (too few for two meaningful halves; not in the original, where
    such sessions give NaN ceilings). Ceilings use ``n_splits`` splits seeded by
    ``seed``. Columns: session, area, n_units, model, group, group_name,
    similarity, ceiling, score.
    """
    sessions = sorted(Path(processed_dir).glob("session_*.npz"))
    if not sessions:
        raise ValueError(f"no session_*.npz in {processed_dir}: run python -m neural_fitting.process_sessions")
    if not response_files:
        raise ValueError("no model response files given: make them with python -m neural_fitting.model_responses")
    models, n_bins = [], None  # models: (label, group index, group name, ranked upper triangle)
    for path in response_files:
        responses = load_responses(path)
        for g, (name, group) in enumerate(zip(responses.group_names, responses.groups)):
            n_bins = n_bins or len(group)
            if len(group) != n_bins:
                raise ValueError(f"{path} has {len(group)} time bins, other model files {n_bins}: make all "
                                 f"response files from the same movies")
            models.append((responses.label, g, name, ranked_upper_triangle(rsm(group))))

    rows = []
    for path in sessions:
        data = load_processed(path)
        if data["binned"].shape[1] != n_bins:
            raise ValueError(f"{path} has {data['binned'].shape[1]} time bins but the model responses have "
                             f"{n_bins}: process sessions and models with the same movies, chunks and bins")
        session_id = path.stem.removeprefix("session_")
        for area in areas:
            responses = data["binned"][data["unit_areas"] == area].T  # (bins, units)
            if responses.shape[1] < min_units:
                continue
            ceiling = float(np.mean(noise_ceiling(responses, n_splits, seed)))
            neural = ranked_upper_triangle(rsm(responses))
            for label, g, name, ranks in models:
                value = pearson(neural, ranks)
                rows.append({"session": session_id, "area": area, "n_units": responses.shape[1], "model": label,
                             "group": g, "group_name": name, "similarity": value, "ceiling": ceiling,
                             "score": value / ceiling})
    if not rows:
        raise ValueError(f"no session has {min_units} or more units in {' '.join(areas)}: lower min_units "
                         f"or check the areas")
    return pd.DataFrame(rows)


def best_groups(table: pd.DataFrame) -> pd.DataFrame:
    """Per (area, model): the group with the highest mean score over sessions,
    with its mean, SEM (ddof 1) and number of sessions."""
    per_group = table.groupby(["area", "model", "group", "group_name"], sort=False)["score"]
    summary = per_group.agg(mean="mean", sem="sem", n="count").reset_index()
    best = summary.loc[summary.groupby(["area", "model"], sort=False)["mean"].idxmax()]
    return best.reset_index(drop=True)


def paired_tests(table: pd.DataFrame, best: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Paired t-tests (across sessions) of the reference model's best group
    against every other model's best group, per area; sessions are matched by id."""
    rows = []
    for area, chosen in best.groupby("area", sort=False):
        picks = {m: g for m, g in zip(chosen["model"], chosen["group"])}
        if reference not in picks:
            continue
        in_area = table[table["area"] == area]
        ref = in_area[(in_area["model"] == reference) & (in_area["group"] == picks[reference])]
        for model, group in picks.items():
            if model == reference:
                continue
            other = in_area[(in_area["model"] == model) & (in_area["group"] == group)]
            paired = ref.merge(other, on="session", suffixes=("_ref", "_other"))
            if len(paired) < 2:
                continue
            # a NaN score (a constant RSM) makes t and p NaN: the test covers the n_sessions reported
            t, p, _ = paired_ttest(paired["score_ref"], paired["score_other"], missing="propagate")
            rows.append({"area": area, "reference": reference, "other": model, "n_sessions": len(paired),
                         "mean_difference": float((paired["score_ref"] - paired["score_other"]).mean()), "t": t, "p": p})
    return pd.DataFrame(rows, columns=["area", "reference", "other", "n_sessions", "mean_difference", "t", "p"])


def plot_best_scores(best: pd.DataFrame, table: pd.DataFrame, areas: list[str], models: list[str]):
    """Grouped bars: one group of bars per area, one bar per model type (its best
    group), mean +- SEM over sessions, with each session's value as a dot."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.8 + 1.1 * len(areas) * max(len(models), 1) / 2, 3.6))
    width = 0.8 / len(models)
    colours = plt.get_cmap("tab10")
    labelled = set()
    for m, model in enumerate(models):
        offsets = np.arange(len(areas)) + (m - (len(models) - 1) / 2) * width
        for x, area in zip(offsets, areas):
            row = best[(best["area"] == area) & (best["model"] == model)]
            if row.empty:
                continue
            ax.bar(x, row["mean"].iloc[0], width, yerr=row["sem"].iloc[0], color=colours(m), capsize=2,
                   label=None if model in labelled else model)
            labelled.add(model)
            dots = table[(table["area"] == area) & (table["model"] == model) & (table["group"] == row["group"].iloc[0])]
            ax.scatter(np.full(len(dots), x), dots["score"], s=6, color="k", zorder=3)
    sessions = [table.loc[table["area"] == a, "session"].nunique() for a in areas]
    ax.set_xticks(np.arange(len(areas)), [f"{AREA_TITLES.get(a, a)}\nn={n} sessions" for a, n in zip(areas, sessions)],
                  fontsize=8)
    ax.set_ylabel("RSA similarity / noise ceiling")
    for x, n in enumerate(sessions):
        if not n:
            ax.text(x, 0.5, "no sessions", transform=ax.get_xaxis_transform(), ha="center", fontsize=8, color="0.3",
                    gid=plotting.EMPTY_PANEL_GID)
    ax.axhline(0, color="k", linewidth=0.5)
    ax.legend(title="model (best group)", fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def plot_group_profiles(table: pd.DataFrame, areas: list[str], models: list[str]):
    """One panel per area: mean score +- SEM against group/layer depth for every model type."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(areas), figsize=(3.2 * len(areas), 3.0), squeeze=False, sharey=True)
    for ax, area in zip(axes[0], areas):
        for m, model in enumerate(models):
            rows = table[(table["area"] == area) & (table["model"] == model)]
            if rows.empty:
                continue
            stats = rows.groupby("group")["score"].agg(["mean", "sem"])
            depth = (stats.index + 1) / len(stats)  # fraction of the model's depth: 3 groups and 16 layers share an axis
            ax.errorbar(depth, stats["mean"], yerr=stats["sem"], marker="o", markersize=3,
                        label=f"{model} (n={rows['session'].nunique()} sessions)", color=plt.get_cmap("tab10")(m))
        ax.set_title(AREA_TITLES.get(area, area), fontsize=9)
        ax.set_xlabel("relative depth (group or layer / count)")
        if ax.lines:
            ax.legend(fontsize=7, frameon=False)
        else:
            plotting.empty_panel(ax, f"no session with enough units in {area}")
    axes[0][0].set_ylabel("RSA similarity / noise ceiling (y axis shared)")
    fig.tight_layout()
    return fig
