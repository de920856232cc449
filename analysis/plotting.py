"""Figure style and saving shared by the notebooks and the report."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from utils import atomic_path, write_json

GROUP_COLOURS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e")
DATA_COLOUR = "0.35"


def new_figure(n_cols: int = 1, n_rows: int = 1, width: float = 6.0, height: float = 4.0, **kwargs):
    """A (fig, axes) pair at width x height inches per panel, 100 dpi, with the
    top and right spines hidden; ``axes`` is squeezed as in ``plt.subplots``."""
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(width * n_cols, height * n_rows), dpi=100, **kwargs)
    for ax in np.atleast_1d(axes).ravel():
        ax.spines[["top", "right"]].set_visible(False)
    return fig, axes


def group_label(g: int) -> str:
    """Groups are called G1, G2, ... in figures (0-based index g)."""
    return f"G{g + 1}"


def save_figure(fig, out_dir: str | os.PathLike, name: str, formats=("png", "pdf")) -> list[Path]:
    """Write ``fig`` as out_dir/name.png and .pdf (atomically), close it and
    return the paths. Legends, if any, are drawn without a frame."""
    out_dir = Path(out_dir)
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is not None:
            legend.set_frame_on(False)
    fig.tight_layout()
    paths = []
    for fmt in formats:
        path = out_dir / f"{name}.{fmt}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths


def save_summary(out_dir: str | os.PathLike, summary: dict) -> Path:
    """Write the key numbers of an analysis as out_dir/summary.json (nan -> null)."""
    def clean(value):
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple, np.ndarray)):
            return [clean(v) for v in value]
        if isinstance(value, (np.integer, np.floating, float)):
            return float(value) if np.isfinite(value) else None
        return value.item() if isinstance(value, np.generic) else value

    path = Path(out_dir) / "summary.json"
    write_json(path, clean(summary))
    return path


def histogram_against_reference(ax, model_values, edges, reference_proportions, model_label: str,
                                reference_label: str, colour=GROUP_COLOURS[0]):
    """Model histogram (proportions of all finite values) as bars, a literature
    histogram on the same bins as a step line."""
    values = np.asarray(model_values, float)
    values = values[np.isfinite(values)]
    weights = np.full(values.size, 1.0 / max(values.size, 1))
    ax.hist(values, bins=edges, weights=weights, color=colour, alpha=0.6, label=f"{model_label} (n={values.size})")
    ax.stairs(reference_proportions, edges, color=DATA_COLOUR, linewidth=2, label=reference_label)
    ax.set_ylabel("proportion of units")
    ax.legend()


def violins(ax, samples: dict[str, np.ndarray], colours=None):
    """One violin per named sample (finite values only; empty samples leave a
    gap labelled n=0), with the median marked."""
    names = list(samples)
    colours = colours or [GROUP_COLOURS[i % len(GROUP_COLOURS)] for i in range(len(names))]
    for i, name in enumerate(names):
        values = np.asarray(samples[name], float)
        values = values[np.isfinite(values)]
        if values.size > 1 and np.ptp(values) > 0:
            parts = ax.violinplot(values, positions=[i], showmedians=True)
            for body in parts["bodies"]:
                body.set_facecolor(colours[i])
            for key in ("cbars", "cmins", "cmaxes", "cmedians"):
                parts[key].set_color(colours[i])
        elif values.size:
            ax.plot([i] * values.size, values, "o", color=colours[i])
    counts = [int(np.isfinite(np.asarray(samples[n], float)).sum()) for n in names]
    labels = [name.replace(" (", "\n(") + f"\nn={count}" for name, count in zip(names, counts)]
    ax.set_xticks(range(len(names)), labels)
