"""One-page summary of a model's virtual physiology next to the literature.

    python -m analysis.report ARTEFACT [--out DIR] [--figures FIGURES]

Prints the summary as Markdown and saves it as DIR/report.md and
DIR/report.png (default DIR: ``<artefact name>.report`` beside the artefact),
and DIR/report.html, one offline page with the figure, the tables, every
figure the six notebooks made for this artefact and its checkpoint (run them
with ``python -m analysis.run_notebooks``; ``--figures``, default DIR/figures)
and the run folder's MODEL_CARD.md if it has one. The three files are written
together or not at all: a failure (a full disk) leaves the folder as it was.
Per group: Gabor-like receptive fields, orientation and direction selectivity
(peak-based fractions and vector-sum medians),
modulation ratio (the figure's curve_fit variant), plaid pattern index and,
for G1, surround suppression with and without feedback; then the distance of
each model distribution to its literature counterpart, with the literature
numbers alongside. Everything comes from the artefact: the model is not loaded.
"""
from __future__ import annotations

import sys

if __package__ in (None, ""):  # run as a file, the repository's packages are not importable
    print("error: run it as a module from the repository root: "
          "python -m analysis.report ARTEFACT", file=sys.stderr)
    sys.exit(2)

import argparse
import contextlib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402

from analysis import AnalysisError, gallery, inputs, plotting, reference, stats  # noqa: E402
from analysis.plaid_motion import pattern_index_summary  # noqa: E402
from analysis.response_parameters import binned_distance_to_histogram, curve_fit_modulation_ratio  # noqa: E402
from analysis.surround_suppression import SI_EDGES, si_change  # noqa: E402
from utils import atomic_path, os_error_reason, portable_path, run_cli  # noqa: E402
from virtual_physiology.tuning import is_direction_selective, is_orientation_selective  # noqa: E402

GABOR_R = 0.7
AREAS = ("V1", "V2", "MT")
DISTANCE_COLUMNS = ["measure", "model", "n_model", "reference", "kind", "distance", "reference_summary"]
# what the report reads (connectivity is not among them)
NEEDS = ("rwa", "gabor", "gratings", "modulation", "plaid", "surround", "nofeedback")


def _median(x) -> float:
    return float(np.nanmedian(x)) if np.isfinite(x).any() else np.nan


def _nan_if_missing(table: dict, name: str) -> np.ndarray:
    return np.asarray(table[name], float) if name in table else np.full(len(table["hidden_unit_index"]), np.nan)


def group_rows(units: list[dict]) -> list[dict]:
    """Per-group numbers (fractions are over units with a defined value; nan if none)."""
    rows = []
    for g, table in enumerate(units):
        gabor_r = _nan_if_missing(table, "gabor_r")
        fitted = np.isfinite(gabor_r)
        mr = curve_fit_modulation_ratio(table) if "modulation_ratio_curve_fit" in table else gabor_r * np.nan
        osi, dsi = _nan_if_missing(table, "OSI"), _nan_if_missing(table, "DSI")
        pi = pattern_index_summary(_nan_if_missing(table, "plaid_pattern_index"))
        row = dict(group=plotting.group_label(g), units=len(table["hidden_unit_index"]),
                   gabor_r_fraction=float(np.mean(gabor_r[fitted] >= GABOR_R)) if fitted.any() else np.nan,
                   strict_gabor_fraction=float(np.mean(np.asarray(table["strict_gabor"], bool)[fitted]))
                   if "strict_gabor" in table and fitted.any() else np.nan,
                   os_fraction=float(np.mean(is_orientation_selective(osi[np.isfinite(osi)])))
                   if np.isfinite(osi).any() else np.nan,
                   ds_fraction=float(np.mean(is_direction_selective(dsi[np.isfinite(dsi)])))
                   if np.isfinite(dsi).any() else np.nan,
                   global_osi_median=_median(_nan_if_missing(table, "global_OSI")),
                   global_dsi_median=_median(_nan_if_missing(table, "global_DSI")),
                   mr_n=int(np.isfinite(mr).sum()), mr_median=_median(mr),
                   mr_fraction_above_1=stats.fraction_above(mr, 1.0),
                   pi_mean=pi["mean"], pi_fraction_above_0=pi["fraction_above_0"],
                   pi_fraction_above_1_28=pi["fraction_above_1_28"])
        rows.append(row)
    return rows


def surround_rows(table: dict) -> dict:
    """G1 surround suppression: each condition's SIs (for the distributions),
    the full model's mean and median over every unit with an SI, and
    ``surround_suppression.si_change`` over the units with an SI in both
    conditions (the ``pairs_`` means, which ``paired_t`` tests)."""
    full = _nan_if_missing(table, "surround_suppression_index")
    ablated = _nan_if_missing(table, "nofeedback_surround_suppression_index")
    change = si_change(full, ablated)
    return dict(full=full, no_feedback=ablated, n_full=int(np.isfinite(full).sum()), mean_full=stats.mean_sem(full)[0],
                median_full=_median(full), n_pairs=change["n_pairs"], pairs_mean_full=change["mean_full"],
                pairs_mean_no_feedback=change["mean_no_feedback"],
                pairs_median_no_feedback=change["median_no_feedback"], paired_t=change["paired_t"],
                paired_p=change["paired_p"])


def distance_rows(units: list[dict], surround: dict) -> list[dict]:
    """KS distance of each model distribution to its literature counterpart."""
    rows = []

    def add(measure, model_label, values, ref_label, ref_values, ref_summary, binned_ref=None):
        values = np.asarray(values, float)
        if binned_ref is not None:
            distance, kind = binned_distance_to_histogram(values, reference.MODULATION_RATIO_EDGES, binned_ref), "binned"
        else:
            distance = stats.ks_distance(values, ref_values) if np.isfinite(values).any() else np.nan
            kind = "KS"
        rows.append(dict(measure=measure, model=model_label, n_model=int(np.isfinite(values).sum()),
                         reference=ref_label, distance=distance, kind=kind, reference_summary=ref_summary))

    v1 = reference.modulation_ratio_v1()
    if units and "modulation_ratio_curve_fit" in units[0]:
        add("F1/F0", "G1", curve_fit_modulation_ratio(units[0]), v1.label, v1.values,
            f"median {np.median(v1.values):.2f}, {np.mean(v1.values > 1):.0%} > 1")
        if len(units) > 1:
            _, v2_p, v2_label = reference.modulation_ratio_histogram("V2")
            add("F1/F0", "G2", curve_fit_modulation_ratio(units[1]), v2_label, None,
                f"{v2_p[5:].sum():.0%} > 1", binned_ref=v2_p)
    for g, area in enumerate(AREAS[:len(units)]):
        if "plaid_pattern_index" in units[g]:
            ref = reference.pattern_index(area)
            s = pattern_index_summary(ref.values)
            add("pattern index", plotting.group_label(g), units[g]["plaid_pattern_index"], ref.label, ref.values,
                f"mean {s['mean']:.2f}, {s['fraction_above_0']:.0%} > 0, {s['fraction_above_1_28']:.0%} > 1.28")
    for model_label, values, condition in (("G1 full", surround["full"], "control"),
                                           ("G1 no feedback", surround["no_feedback"], "feedback_suppressed")):
        for species in ("mouse", "macaque"):
            ref = reference.surround_index(species, condition)
            add("SI (%)", model_label, values, ref.label, ref.values,
                f"mean {ref.values.mean():.1f}, median {np.median(ref.values):.1f}")
    return rows


def _fmt(value) -> str:
    if isinstance(value, (float, np.floating)):
        return "n/a" if not np.isfinite(value) else f"{value:.3g}"
    return str(value)


def _table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def render_markdown(checkpoint, artefact, groups: list[dict], surround: dict, distances: list[dict]) -> str:
    surround_row = {k: v for k, v in surround.items() if not isinstance(v, np.ndarray)}
    return "\n\n".join([
        "# Virtual-physiology report",
        f"Checkpoint `{portable_path(checkpoint)}`; artefact `{portable_path(artefact)}`.",  # no folder of this machine
        "## Per group\nFractions are over units with a defined value. Gabor: fit r >= 0.7 (strict: also a real "
        "oriented carrier and envelope); OS: OSI > 0.4; DS: DSI > 0.3 (peak-based); global OSI/DSI: vector sums over "
        "directions at the preferred sf and tf (Allen g_osi_dg/g_dsi_dg; 1 - global OSI = circular variance); F1/F0 "
        "is the figure's curve_fit variant "
        "(units kept if 0 <= F1/F0 <= 2); PI > 1.28 marks pattern cells.",
        _table(groups, list(groups[0])) if groups else "(no groups)",
        "## Surround suppression, G1 (SI %, with feedback removed)\nmean_full and median_full: every unit with an "
        "SI; pairs_: the n_pairs units with an SI in both conditions, which paired_t tests (without minus with: "
        "t < 0 is lower without feedback).",
        _table([surround_row], list(surround_row)),
        "## Distance to the literature\nKS statistic (0 = same distribution, 1 = disjoint); 'binned' = max "
        "|dCDF| on the 10 F1/F0 bins where the data are only a histogram.",
        _table(distances, DISTANCE_COLUMNS),
    ]) + "\n"


def report_figure(units: list[dict], surround: dict):
    """Three panels: G1 F1/F0 against macaque V1, the pattern index of each
    group beside its macaque area, and G1 surround suppression (full, without
    feedback) beside mouse V1. Returns the Figure."""
    fig, axes = plotting.new_figure(3, width=5.5, gridspec_kw={"width_ratios": [1, 1.8, 1]})  # room for 6 labels
    mr = curve_fit_modulation_ratio(units[0]) if units and "modulation_ratio_curve_fit" in units[0] else []
    plotting.histogram_against_reference(axes[0], mr, reference.MODULATION_RATIO_EDGES, "G1",
                                         reference.modulation_ratio_v1(),
                                         empty_message="no G1 units with a kept F1/F0 fit")
    axes[0].set(xlabel="F1/F0", title="modulation ratio")
    samples = {}
    for g, area in enumerate(AREAS[:len(units)]):
        if "plaid_pattern_index" in units[g]:
            samples[plotting.group_label(g)] = units[g]["plaid_pattern_index"]
            samples[reference.pattern_index(area).label] = reference.pattern_index(area).values
    if samples:
        plotting.violins(axes[1], samples, [plotting.GROUP_COLOURS[i // 2] if i % 2 == 0 else plotting.DATA_COLOUR
                                            for i in range(len(samples))])
        axes[1].tick_params(axis="x", labelsize="small")
    else:
        plotting.empty_panel(axes[1], "no plaid pattern index in the artefact")
    axes[1].set(ylabel="pattern index (Zp - Zc)", title="plaids")
    mouse = reference.surround_index("mouse", "control")
    drawn = [plotting.proportion_histogram(axes[2], values, SI_EDGES, label.replace(" (", "\n("), colour, filled=False,
                                           linestyle=style)
             for values, label, colour, style in ((surround["full"], "G1 full", "k", "-"),
                                                  (surround["no_feedback"], "G1 no feedback", "0.5", "--"),
                                                  (mouse.values, mouse.label, plotting.DATA_COLOUR, ":"))]
    axes[2].set(xlabel="SI (%)", ylabel=plotting.PROPORTION_LABEL, title="surround suppression")
    if any(drawn[:2]):
        axes[2].legend(**plotting.LEGEND_BELOW)
    else:
        plotting.empty_panel(axes[2], "no G1 units with a size-tuning curve")
    return fig


def render_figure(units: list[dict], surround: dict, path: Path) -> None:
    """Write ``report_figure`` as a PNG to ``path``."""
    plotting.write_figure(report_figure(units, surround), path, "png")


def report(artefact, out_dir=None, figures_dir=None) -> str:
    """Build the report of an artefact; returns the Markdown and writes
    report.md, report.png and the gallery report.html (with the notebooks'
    figures from ``figures_dir``, default out_dir/figures), all three or none."""
    data = inputs.load_inputs(artefact, NEEDS)
    checkpoint = gallery.checkpoint_of(data.artefact)
    out_dir = Path(out_dir) if out_dir else gallery.report_dir(artefact)
    groups = group_rows(data.units)
    surround = surround_rows(data.units[0]) if data.units else surround_rows({"hidden_unit_index": []})
    distances = distance_rows(data.units, surround)
    markdown = render_markdown(data.artefact.checkpoint["path"], artefact, groups, surround, distances)
    surround_row = {k: v for k, v in surround.items() if not isinstance(v, np.ndarray)}
    tables = [("Per group", groups, list(groups[0]) if groups else []),
              ("Surround suppression, G1 (SI %)", [surround_row], list(surround_row)),
              ("Distance to the literature", distances, DISTANCE_COLUMNS)]
    try:  # all three files or none: each is written to a temporary, renamed into place once all are written
        out_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as staged:
            md, png, page = (staged.enter_context(atomic_path(out_dir / f"report.{suffix}"))
                             for suffix in ("md", "png", "html"))
            md.write_text(markdown)
            render_figure(data.units, surround, png)
            page.write_text(gallery.render_gallery(checkpoint, artefact, png, tables,
                                                   figures_dir or out_dir / "figures"), encoding="utf-8")
    except OSError as err:
        raise AnalysisError(f"cannot write the report into {out_dir} ({os_error_reason(err)}): "
                            "give --out a writable folder") from err
    finally:
        data.artefact.close()
    return markdown


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("artefact", help="the virtual-physiology artefact (.vphys.h5) of a model")
    parser.add_argument("--out", default=None, help="output folder [default: <ARTEFACT>.report]")
    parser.add_argument("--figures", default=None,
                        help="the notebooks' figures, one folder per notebook (python -m analysis.run_notebooks) "
                             "[default: OUT/figures]")
    args = parser.parse_args(argv)
    print(report(args.artefact, args.out, args.figures))
    page = (Path(args.out) if args.out else gallery.report_dir(args.artefact)) / "report.html"
    print(f"report page: {page.resolve().as_uri()} (open it in any browser; it needs no network)")


if __name__ == "__main__":
    run_cli(main)
