"""Figure style and saving shared by the notebooks and the report, and the
plotting rule every figure follows:

- a panel with nothing to plot says so in the panel (``empty_panel``) and
  greys its frame, so it cannot be read as an axis of zeros;
- histograms are proportions of the units they show (bin heights sum to 1,
  ``proportion_histogram`` / ``reference_histogram``) with the y label on
  every panel; a histogram of counts says "count" in its y label;
- every legend entry of a population carries its n;
- literature data are labelled with species, area and citation (the labels
  of ``analysis.reference``).
"""
from __future__ import annotations

import os
import textwrap
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
    finish_figure(fig)
    paths = []
    for fmt in formats:
        path = out_dir / f"{name}.{fmt}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths


def write_figure(fig, path: str | os.PathLike, fmt: str = "png") -> None:
    """Write ``fig`` to ``path`` as ``save_figure`` does (not atomically: for a caller
    that writes to a temporary of its own) and close it."""
    finish_figure(fig)
    fig.savefig(path, format=fmt, bbox_inches="tight")
    plt.close(fig)


def finish_figure(fig) -> None:
    """What every saved figure gets: legends without a frame, a tight layout."""
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is not None:
            legend.set_frame_on(False)
    fig.tight_layout()


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


EMPTY_PANEL_GID = "empty-panel"  # gid of the message an empty panel shows (tests look for it)
PROPORTION_LABEL = "proportion of units"
# legend under the x label: long literature labels must not cover the bars
LEGEND_BELOW = dict(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.18))


def empty_panel(ax, message: str) -> None:
    """Show ``message`` (e.g. "no units with DSI > 0.3 in G2") in the middle of
    ``ax`` instead of data: ticks removed, frame and background greyed, any
    legend dropped. The title and axis labels stay, so the reader still sees
    what would have been plotted."""
    ax.tick_params(left=False, bottom=False, labelleft=False, labelbottom=False)  # not set_ticks: axes may be shared
    ax.set_facecolor("0.96")
    for spine in ax.spines.values():
        spine.set_visible(True)
        spine.set_color("0.8")
    if ax.get_legend() is not None:
        ax.get_legend().remove()
    ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center", color="0.3", wrap=True,
            gid=EMPTY_PANEL_GID)


def missing_note(ax, message: str) -> None:
    """Say in ``ax`` that the model has nothing to show (e.g. "no model pairs
    closer than 2.5 px") where the panel still shows literature data, so the
    axes stay; the message sits in the middle in a grey box, above the data."""
    ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center", color="0.3", fontsize="small",
            wrap=True, zorder=10, bbox=dict(facecolor="0.96", edgecolor="0.8"), gid=EMPTY_PANEL_GID)


def range_note(ax, values) -> float:
    """Write in ``ax`` how much ``values`` vary, (max - min) / max in percent,
    and turn the y-axis offset off: an auto-scaled axis makes a 0.1% ripple
    look like strong tuning. Returns the percentage (nan without finite values)."""
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    if not values.size or values.max() <= 0:
        return float("nan")
    percent = 100 * np.ptp(values) / values.max()
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.text(0.02, 0.02, f"range {percent:.2g}% of max", transform=ax.transAxes, fontsize="small", color="0.3")
    return percent


def is_empty_panel(ax) -> bool:
    """Whether ``empty_panel`` marked ``ax``."""
    return any(text.get_gid() == EMPTY_PANEL_GID for text in ax.texts)


def _in_range_note(n_out: int, edges) -> str:
    return f", {n_out} outside {edges[0]:g}-{edges[-1]:g} not shown" if n_out else ""


def proportion_histogram(ax, values, edges, label: str, colour=GROUP_COLOURS[0], filled: bool = True,
                         **style) -> int:
    """Histogram of the finite ``values`` inside ``edges`` as proportions
    (heights sum to 1), labelled "label (n=N)" (plus how many fell outside
    the edges, which are not shown). Filled bars, or a step line with
    ``filled=False``. Draws nothing and returns 0 when no value lies inside
    the edges (the caller decides what the empty panel says); returns N."""
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    edges = np.asarray(edges, float)
    inside = values[(values >= edges[0]) & (values <= edges[-1])]
    if not inside.size:
        return 0
    counts, _ = np.histogram(inside, bins=edges)
    note = _in_range_note(values.size - inside.size, edges)
    style = dict(alpha=0.6, **style) if filled else dict(linewidth=2, **style)
    ax.stairs(counts / inside.size, edges, fill=filled, color=colour, label=f"{label} (n={inside.size}{note})",
              **style)
    ax.set_ylabel(PROPORTION_LABEL)
    return inside.size


def reference_histogram(ax, edges, proportions, label: str, n: int | None, **style) -> None:
    """A published histogram (bin proportions on ``edges``) as a grey step
    line, rescaled to sum to 1 over the bins shown; ``label`` names species,
    area and citation, n is added (``None``: "n not given")."""
    proportions = np.asarray(proportions, float)
    count = f"n={n}" if n is not None else "n not given"
    ax.stairs(proportions / proportions.sum(), edges, color=DATA_COLOUR, linewidth=2, label=f"{label} ({count})",
              **style)
    ax.set_ylabel(PROPORTION_LABEL)


def histogram_against_reference(ax, model_values, edges, model_label: str, reference, colour=GROUP_COLOURS[0],
                                empty_message: str | None = None) -> int:
    """Model histogram (proportions, filled) and a literature one on the same
    bins. ``reference``: a ``reference.Samples`` (its values are binned the same
    way) or (proportions, label, n) for data known only as a histogram. Without
    model values the panel says ``empty_message`` and shows no data. Returns
    the model's n."""
    n = proportion_histogram(ax, model_values, edges, model_label, colour)
    if not n:
        empty_panel(ax, empty_message or f"no {model_label} values to plot")
        return 0
    if hasattr(reference, "values"):
        proportion_histogram(ax, reference.values, edges, reference.label, DATA_COLOUR, filled=False)
    else:
        reference_histogram(ax, edges, *reference)
    ax.legend(**LEGEND_BELOW)
    return n


def violins(ax, samples: dict[str, np.ndarray], colours=None):
    """One violin per named sample (finite values only; an empty sample leaves
    a gap labelled n=0 and "no units"), with the median marked."""
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
        else:
            ax.text(i, 0.5, "no units", transform=ax.get_xaxis_transform(), ha="center", color="0.3",
                    rotation=90, gid=EMPTY_PANEL_GID)
    counts = [int(np.isfinite(np.asarray(samples[n], float)).sum()) for n in names]
    # wrapped, so that long literature labels do not run into their neighbours
    labels = [textwrap.fill(name, 16) + f"\nn={count}" for name, count in zip(names, counts)]
    ax.set_xticks(range(len(names)), labels)
