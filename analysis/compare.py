"""Several models on one literature scorecard, side by side.

    python -m analysis.compare ARTEFACT [ARTEFACT ...] [--out DIR] [--degrees-per-pixel 0.4] [--seed 0]
                               [--allen-metrics brain_observatory_1.1_analysis_metrics.csv]

Writes DIR/comparison.md and DIR/comparison.html (default DIR: ./comparison),
one offline page (inline style, no script, nothing to load) and prints the
Markdown. Properties are rows and models columns; each cell is the
ceiling-normalised similarity of the model's distribution to the data
(``analysis.scorecard``) +- its bootstrap spread, the best model per row in
bold, "n/a" where a model lacks the measurement (no feedback to remove, no
surround stage, fewer groups). The mean per model is over the rows every
model has. Beneath: the paper's qualitative claims per model, measured, with
the statistic; how the scores in degrees move with the degrees-per-pixel
assumption; and each model's data recipe and training steps from the config
its artefact recorded. ``--allen-metrics`` adds mouse rows from the Allen
Brain Observatory's per-unit metrics table (``python -m
neural_fitting.allen_metrics`` downloads it). Everything comes from the
artefacts: no model is loaded.
"""
from __future__ import annotations

import sys

if __package__ in (None, ""):  # run as a file, the repository's packages are not importable
    print("error: run it as a module from the repository root: "
          "python -m analysis.compare ARTEFACT [ARTEFACT ...]", file=sys.stderr)
    sys.exit(2)

import argparse
import html
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import stats as scipy_stats

from analysis import AnalysisError, gallery, inputs, scorecard
from analysis.response_parameters import curve_fit_modulation_ratio
from analysis.surround_suppression import si_change
from models.checkpoint import optimizer_steps
from utils import MAX_SEED, UserInputError, atomic_path, os_error_reason, run_cli

NEEDS = ("rwa", "gratings")  # the rest is optional: a property whose stage is missing is n/a
SIGNIFICANCE = 0.05
MIX_FRACTION = 0.2  # "a mix": at least this fraction of G1 units is simple (F1/F0 > 1) and as many complex
RECIPE_KEYS = ("model", "dataset", "frame_shape", "hidden_units", "noise_std", "L1", "beta", "lr", "batch_size", "seed")


@dataclass(frozen=True)
class Claim:
    """One qualitative claim of the paper measured on one model: ``verdict``
    "yes", "no" or "n/a", and the ``statistic`` behind it."""

    verdict: str
    statistic: str


@dataclass
class ModelColumn:
    """One model of the comparison."""

    label: str
    artefact: str
    recipe: dict
    steps: int | None
    scores: dict[str, scorecard.PropertyScore | None]
    claims: dict[str, Claim]
    sensitivity: dict[str, dict[float, float]]


# --- the paper's qualitative claims ---------------------------------------------------------

def _finite(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).ravel()
    return x[np.isfinite(x)]


def pattern_index_rises(units: list[dict]) -> Claim:
    """Mean pattern index rises G1 < G2 < G3: each step a one-sided Welch
    t-test (the higher group's mean is larger) with p < 0.05."""
    groups = [_finite(t.get("plaid_pattern_index", [])) for t in units[:3]]
    if len(groups) < 3 or min(g.size for g in groups) < 2:
        return Claim("n/a", "needs the plaid pattern index of at least 2 units in each of 3 groups")
    tests = [scipy_stats.ttest_ind(high, low, equal_var=False, alternative="greater")
             for low, high in zip(groups[:-1], groups[1:])]
    means = ", ".join(f"G{g + 1} {x.mean():.2f} (n={x.size})" for g, x in enumerate(groups))
    steps = "; ".join(f"G{g + 2}>G{g + 1} p={t.pvalue:.2g}" for g, t in enumerate(tests))
    rises = all(t.pvalue < SIGNIFICANCE for t in tests)
    return Claim("yes" if rises else "no", f"mean PI {means}; Welch {steps}")


def feedback_lowers_si(units: list[dict]) -> Claim:
    """G1's surround suppression is lower without feedback: paired t-test
    over units, mean difference < 0 with p < 0.05."""
    table = units[0] if units else {}
    if "nofeedback_surround_suppression_index" not in table or "surround_suppression_index" not in table:
        return Claim("n/a", "no surround suppression without feedback (no feedback to remove, or no nofeedback stage)")
    change = si_change(table["surround_suppression_index"], table["nofeedback_surround_suppression_index"])
    t, p, n = change["paired_t"], change["paired_p"], change["n_pairs"]
    if n < 2:
        return Claim("n/a", f"{n} G1 unit(s) with SI in both conditions")
    lower = bool(change["mean_no_feedback"] < change["mean_full"] and p < SIGNIFICANCE)
    return Claim("yes" if lower else "no", f"mean SI {change['mean_full']:.1f}% -> {change['mean_no_feedback']:.1f}% "
                                           f"without feedback (paired t={t:.2f}, p={p:.2g}, n={n})")


def simple_complex_mix(units: list[dict]) -> Claim:
    """G1 holds both simple (F1/F0 > 1) and complex (F1/F0 < 1) units, each
    at least 20% (macaque V1: 40% simple, Ringach, Shapley & Hawken 2002)."""
    table = units[0] if units else {}
    if "modulation_ratio_curve_fit" not in table:
        return Claim("n/a", "no F1/F0 (modulation stage)")
    ratio = _finite(curve_fit_modulation_ratio(table))
    if ratio.size == 0:
        return Claim("n/a", "no G1 unit with a kept F1/F0 fit")
    simple = float(np.mean(ratio > 1))
    mixed = MIX_FRACTION <= simple <= 1 - MIX_FRACTION
    return Claim("yes" if mixed else "no", f"{simple:.0%} of {ratio.size} G1 units simple (F1/F0 > 1)")


CLAIMS = {
    "pattern index rises G1 < G2 < G3": pattern_index_rises,
    "SI lower without feedback (G1)": feedback_lowers_si,
    f"simple/complex mix in G1 (each >= {MIX_FRACTION:.0%})": simple_complex_mix,
}


# --- one model ----------------------------------------------------------------------------------

def training_record(config: dict) -> tuple[dict, int | None]:
    """The data recipe (``RECIPE_KEYS`` of the training config; the dataset as
    its file name) and the optimizer steps (``models.checkpoint.optimizer_steps``: all
    stacks of a TP_FF checkpoint, 0 for an untrained one, None where the config
    lacks what it takes)."""
    recipe = {key: config[key] for key in RECIPE_KEYS if key in config}
    if "dataset" in recipe:
        recipe["dataset"] = Path(str(recipe["dataset"])).name
    return recipe, optimizer_steps(config)


def model_column(artefact, settings: scorecard.ScorecardSettings,
                 properties: dict[str, scorecard.Property] | None = None) -> ModelColumn:
    """Score one artefact on ``properties`` (default: every registered one); a
    ``ArtefactError`` names a missing file or stage."""
    data = inputs.load_inputs(artefact, NEEDS)
    try:
        vp = data.artefact
        model = scorecard.ModelData(data.units, vp.grid)
        checkpoint = Path(vp.checkpoint["path"])
        run = checkpoint.parent if checkpoint.suffix in (".safetensors", ".pt") else checkpoint  # a weights file's folder
        label = run.name + ("" if vp.ablation == "none" else f" ({vp.ablation})")
        recipe, steps = training_record(vp.metadata["model"].get("config", {}))
        return ModelColumn(label=label, artefact=str(artefact), recipe=recipe, steps=steps,
                           scores=scorecard.scorecard(model, settings, properties),
                           claims={claim: measure(data.units) for claim, measure in CLAIMS.items()},
                           sensitivity=scorecard.degrees_per_pixel_sensitivity(model, settings=settings,
                                                                               properties=properties))
    finally:
        data.artefact.close()


@dataclass
class Comparison:
    """The models (columns), the properties (rows) and the settings they were scored with."""

    columns: list[ModelColumn]
    properties: dict[str, scorecard.Property]
    settings: scorecard.ScorecardSettings


def compare(artefacts, settings: scorecard.ScorecardSettings = scorecard.ScorecardSettings(),
            properties: dict[str, scorecard.Property] | None = None) -> Comparison:
    """One ``ModelColumn`` per artefact, labels made unique (" #2", ...), on
    ``properties`` (default: every registered one)."""
    properties = dict(scorecard.PROPERTIES) if properties is None else properties
    columns = [model_column(a, settings, properties) for a in artefacts]
    seen: dict[str, int] = {}
    for column in columns:
        seen[column.label] = seen.get(column.label, 0) + 1
        if seen[column.label] > 1:
            column.label += f" #{seen[column.label]}"
    return Comparison(columns, properties, settings)


# --- the table -------------------------------------------------------------------------------------

def _ranked(score: scorecard.PropertyScore | None) -> float:
    """What ranks a cell: the score, or the raw similarity where there is no ceiling."""
    if score is None:
        return float("nan")
    return score.score if np.isfinite(score.score) else score.raw


def best_models(comparison: Comparison, name: str) -> set[str]:
    """Labels of the model(s) with the highest score on property ``name`` (none if nobody has it)."""
    ranked = {c.label: _ranked(c.scores[name]) for c in comparison.columns}
    finite = [v for v in ranked.values() if np.isfinite(v)]
    return {label for label, v in ranked.items() if finite and v == max(finite)}


def common_properties(comparison: Comparison) -> list[str]:
    """The properties with a ceiling-normalised score for every model (what the means average)."""
    return [name for name in comparison.properties
            if all(c.scores[name] is not None and np.isfinite(c.scores[name].score) for c in comparison.columns)]


def model_means(comparison: Comparison) -> dict[str, float]:
    """Mean score of each model over ``common_properties`` (NaN if none)."""
    common = common_properties(comparison)
    return {c.label: float(np.mean([c.scores[n].score for n in common])) if common else float("nan")
            for c in comparison.columns}


def cell_text(score: scorecard.PropertyScore | None) -> str:
    """"0.62 +- 0.03 (n=180)"; "raw 0.55 +- 0.04" without a ceiling; "n/a" without values."""
    if score is None:
        return "n/a"
    if not np.isfinite(score.score):
        return f"raw {score.raw:.2f} ± {score.raw_sd:.2f} (n={score.n_units})"
    return f"{score.score:.2f} ± {score.spread:.2f} (n={score.n_units})"


def table_rows(comparison: Comparison) -> list[list[str]]:
    """[property title, reference label, one cell per model] for every
    property, then the mean row; a best cell is marked ``**...**``."""
    columns = comparison.columns
    rows = []
    for name, prop in comparison.properties.items():
        best = best_models(comparison, name)
        cells = [cell_text(c.scores[name]) for c in columns]
        cells = [f"**{text}**" if c.label in best else text for c, text in zip(columns, cells)]
        rows.append([prop.title, prop.reference().label, *cells])
    means = model_means(comparison)
    top = max((v for v in means.values() if np.isfinite(v)), default=float("nan"))
    mean_cells = ["n/a" if not np.isfinite(means[c.label]) else
                  (f"**{means[c.label]:.3f}**" if means[c.label] == top else f"{means[c.label]:.3f}") for c in columns]
    rows.append([f"mean over the {len(common_properties(comparison))} rows every model has", "", *mean_cells])
    return rows


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _settings_line(settings: scorecard.ScorecardSettings) -> str:
    return (f"Degrees per pixel {settings.degrees_per_pixel:g} (assumed; see the sensitivity table), "
            f"{settings.n_bootstrap} bootstrap draws, seed {settings.seed}.")


def _sensitivity_rows(comparison: Comparison) -> list[list[str]]:
    columns = comparison.columns
    rows = []
    for name, prop in comparison.properties.items():
        if prop.in_degrees:
            for dpp in columns[0].sensitivity[name]:
                rows.append([prop.title, f"{dpp:g}"] + [
                    "n/a" if not np.isfinite(v := c.sensitivity[name][dpp]) else f"{v:.2f}" for c in columns])
    return rows


def budget_note(columns: list[ModelColumn]) -> str:
    """Whether every trained model saw the same data file for the same number of
    optimizer steps: the comparison is fair only then. Untrained baselines (0
    steps) are named apart; they are the floor, not a competitor."""
    untrained = [c.label for c in columns if c.steps == 0]
    budgets = {(c.recipe.get("dataset"), c.steps) for c in columns if c.steps != 0}
    if len(budgets) == 1 and None not in next(iter(budgets)):
        dataset, steps = next(iter(budgets))
        return (f"Every trained model was trained on {dataset} for {steps:,} optimizer steps"
                + (f"; untrained baseline: {', '.join(untrained)}." if untrained else "."))
    return ("The models differ in training data or steps (or do not record them): see the last table; "
            "differences between columns may come from the budget, not the model.")


def _recipe_rows(columns: list[ModelColumn]) -> list[list[str]]:
    rows = [["artefact", *[c.artefact for c in columns]],
            ["optimizer steps", *["n/a" if c.steps is None else f"{c.steps:,}" for c in columns]]]
    keys = [k for k in RECIPE_KEYS if any(k in c.recipe for c in columns)]
    return rows + [[key, *[str(c.recipe.get(key, "n/a")) for c in columns]] for key in keys]


def _claim_rows(columns: list[ModelColumn]) -> list[list[str]]:
    return [[claim, *[f"{c.claims[claim].verdict}: {c.claims[claim].statistic}" for c in columns]] for claim in CLAIMS]


def render_markdown(comparison: Comparison) -> str:
    columns, settings = comparison.columns, comparison.settings
    labels = [c.label for c in columns]
    return "\n\n".join([
        "# Literature scorecard",
        "Each cell: similarity to the data / the data's own ceiling (Brain-Score's 1 - KS/KS_max, bootstrapped), "
        "± its bootstrap spread, n = model units with a value; best per row in bold; n/a = the model lacks the "
        "measurement. " + _settings_line(settings),
        _markdown_table(["property", "data", *labels], table_rows(comparison)),
        "## The paper's claims, measured",
        _markdown_table(["claim", *labels], _claim_rows(columns)),
        "## Scores in degrees against the degrees-per-pixel assumption",
        _markdown_table(["property", "deg/px", *labels], _sensitivity_rows(comparison)),
        "## Data recipe and training",
        budget_note(columns),
        _markdown_table(["", *labels], _recipe_rows(columns)),
    ]) + "\n"


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    def cell(text: str, tag: str = "td") -> str:
        if text.startswith("**") and text.endswith("**"):
            return f'<{tag} class="best">★ {html.escape(text[2:-2])}</{tag}>'
        return f"<{tag}>{html.escape(text)}</{tag}>"
    head = "".join(cell(h, "th") for h in header)
    body = "".join("<tr>" + "".join(cell(t) for t in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(comparison: Comparison) -> str:
    """The offline page: the same tables as ``render_markdown``, plus each property's source and citation."""
    columns, settings = comparison.columns, comparison.settings
    labels = [c.label for c in columns]
    sources = [[p.title, p.source, p.reference().citation] for p in comparison.properties.values()]
    style = gallery.STYLE + ".best{background:#e6f4e6;font-weight:bold}"
    return "\n".join([
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Literature scorecard</title>"
        f"<style>{style}</style></head><body>",
        "<h1>Literature scorecard</h1>",
        "<p>Each cell: similarity to the data divided by the data's own ceiling (Brain-Score's 1 - KS/KS_max, "
        "bootstrapped), ± its bootstrap spread, n = model units with a value; ★ marks the best model per row; "
        f"n/a: the model lacks the measurement. {html.escape(_settings_line(settings))}</p>",
        _html_table(["property", "data", *labels], table_rows(comparison)),
        "<h2>The paper's claims, measured</h2>", _html_table(["claim", *labels], _claim_rows(columns)),
        "<h2>Scores in degrees against the degrees-per-pixel assumption</h2>",
        _html_table(["property", "deg/px", *labels], _sensitivity_rows(comparison)),
        "<h2>Data recipe and training</h2>", f"<p>{html.escape(budget_note(columns))}</p>",
        _html_table(["", *labels], _recipe_rows(columns)),
        "<h2>How each property is measured, and its data</h2>",
        _html_table(["property", "model values", "data"], sources),
        "</body></html>",
    ]) + "\n"


def write_comparison(comparison: Comparison, out_dir) -> str:
    """Write comparison.md and comparison.html into ``out_dir`` (each
    atomically); returns the Markdown."""
    out_dir = Path(out_dir)
    markdown = render_markdown(comparison)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, text in (("comparison.md", markdown), ("comparison.html", render_html(comparison))):
            with atomic_path(out_dir / name) as tmp:
                tmp.write_text(text, encoding="utf-8")
    except OSError as err:
        raise AnalysisError(f"cannot write the comparison into {out_dir} ({os_error_reason(err)}): "
                            "give --out a writable folder") from err
    return markdown


def main(argv=None) -> None:
    defaults = scorecard.ScorecardSettings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("artefacts", nargs="+", metavar="ARTEFACT", help="virtual-physiology artefacts (.vphys.h5)")
    parser.add_argument("--out", default="comparison", help="output folder [default: ./comparison]")
    parser.add_argument("--degrees-per-pixel", type=float, default=defaults.degrees_per_pixel,
                        help="visual angle of one frame pixel, for the properties in degrees "
                             f"[default: {defaults.degrees_per_pixel}, Brain-Score's 8 deg over a 20-px frame]")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of the bootstrap draws")
    parser.add_argument("--allen-metrics", default=None, metavar="CSV",
                        help="add mouse rows from the Allen Brain Observatory's per-unit metrics table "
                             "(python -m neural_fitting.allen_metrics downloads it)")
    args = parser.parse_args(argv)
    if not (args.degrees_per_pixel > 0 and math.isfinite(args.degrees_per_pixel)):
        raise UserInputError(f"--degrees-per-pixel must be a positive number, got {args.degrees_per_pixel}")
    if not 0 <= args.seed <= MAX_SEED:  # numpy's generators refuse negative seeds with a traceback
        raise UserInputError(f"--seed must be between 0 and {MAX_SEED}, got {args.seed}")
    settings = scorecard.ScorecardSettings(**dict(asdict(defaults), degrees_per_pixel=args.degrees_per_pixel,
                                                  seed=args.seed))
    properties = dict(scorecard.PROPERTIES)
    if args.allen_metrics:
        allen = scorecard.allen_properties(args.allen_metrics)
        for prop in allen.values():  # read the table now: a bad one is a one-line error (AllenMetricsError)
            prop.reference()
        properties.update(allen)
    print(write_comparison(compare(args.artefacts, settings, properties), args.out))


if __name__ == "__main__":
    run_cli(main)
