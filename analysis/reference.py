"""Literature data the model is compared with, loaded from ``reference_data/*.json``.

Every dataset carries its citation (see ``reference_data/README.md`` for how the
numbers were transcribed and their caveats). Labels name the species, area and
condition as they really are: the original notebooks plotted the mouse
*feedback-suppressed* SI list as "V1" and marmoset data (Nurminen 2018) as
"mouse"; here both are labelled for what they are (docs/faithfulness.md,
"Surround data labels").
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from analysis import AnalysisError
from analysis.stats import bin_proportions, fisher_z

DATA_DIR = Path(__file__).with_name("reference_data")

# df used by the original for the Movshon & Newsome (1996) r -> Z conversion: 16 directions - 3.
PLAID_REFERENCE_DF = 13
# Bin edges the original used for the model side of the Ko et al. (2011) comparison.
KO_BIN_EDGES = {"orientation": (0, 22.5, 67.5, 90), "direction": (0, 22.5, 67.5, 112.5, 157.5, 180)}
MODULATION_RATIO_EDGES = np.linspace(0, 2, 11)


@dataclass(frozen=True)
class Samples:
    """One literature distribution: ``values`` (n,), a plot ``label`` and the full ``citation``."""

    values: np.ndarray
    label: str
    citation: str


@functools.cache
def _datasets() -> dict[str, dict]:
    found = {}
    for path in sorted(DATA_DIR.glob("*.json")):
        for entry in json.loads(path.read_text())["datasets"]:
            found[entry["id"]] = entry
    return found


def dataset_ids() -> list[str]:
    """Ids of every stored dataset."""
    return list(_datasets())


def dataset(dataset_id: str) -> dict:
    """The raw JSON entry (id, source, species, area, measure, values, summary, notes)."""
    try:
        return _datasets()[dataset_id]
    except KeyError:
        raise AnalysisError(f"unknown reference dataset {dataset_id!r}: use one of {', '.join(dataset_ids())}") from None


def short_citation(dataset_id: str) -> str:
    """'Surname Year' for one author, 'A & B Year' for two, 'A et al. Year' for more."""
    source = dataset(dataset_id)["source"]
    surnames = [name.strip().rsplit(" ", 1)[0] for name in source["authors"].split(",")]  # "De Valois RL" -> "De Valois"
    if len(surnames) == 1:
        who = surnames[0]
    elif len(surnames) == 2:
        who = f"{surnames[0]} & {surnames[1]}"
    else:
        who = f"{surnames[0]} et al."
    return f"{who} {source['year']}"


def citation(dataset_id: str) -> str:
    """Full reference with DOI; flags an attribution the transcription marked uncertain."""
    s = dataset(dataset_id)["source"]
    text = f"{s['authors']} ({s['year']}) {s['title']}. {s['journal']} {s['volume_pages']}. doi:{s['doi']}"
    if "uncertain" in s.get("identification", ""):
        text += " [attribution uncertain]"
    return text


def _species(dataset_id: str) -> str:
    return dataset(dataset_id)["species"].split()[0]


def _samples(dataset_id: str, values, what: str) -> Samples:
    label = f"{_species(dataset_id)} {what} ({short_citation(dataset_id)})"
    return Samples(np.asarray(values, dtype=float), label, citation(dataset_id))


# --- plaid pattern index -------------------------------------------------------------

PLAID_IDS = {"V1": "movshon_newsome_1996_V1", "V2": "hu_2018_V2", "MT": "movshon_newsome_1996_MT"}


def pattern_index(area: str) -> Samples:
    """Pattern index per cell, PI = Zp - Zc, for area V1, V2 or MT.

    V1/MT store (r_c, r_p) pairs, converted with Z = atanh(r) sqrt(13); V2
    (Hu 2018) stores (Zc, Zp) already, with an unknown df, so its scale is
    not strictly comparable (see README).
    """
    dataset_id = _pick(PLAID_IDS, area, "area")
    pairs = np.asarray(dataset(dataset_id)["values"]["pairs"], dtype=float)
    if area == "V2":
        z_c, z_p = pairs[:, 0], pairs[:, 1]
    else:
        z_c, z_p = fisher_z(pairs[:, 0], PLAID_REFERENCE_DF), fisher_z(pairs[:, 1], PLAID_REFERENCE_DF)
    return _samples(dataset_id, z_p - z_c, area)


# --- modulation ratio -------------------------------------------------------------------

def modulation_ratio_v1() -> Samples:
    """F1/F0 of 64 macaque V1 cells (Mata & Ringach 2005), unbinned."""
    dataset_id = "mata_ringach_2005_V1"
    pairs = np.asarray(dataset(dataset_id)["values"]["pairs"], dtype=float)
    return _samples(dataset_id, pairs[:, 0], "V1")


def modulation_ratio_histogram(area: str) -> tuple[np.ndarray, np.ndarray, str]:
    """(edges (11,), proportions (10,), label) of F1/F0 on 10 bins over [0, 2].

    V1: the Mata & Ringach points binned with weight 1/64 (2 points > 2 dropped,
    sum 62/64, as the original). V2: the Levitt et al. (1994) histogram as given.
    """
    if area == "V1":
        v1 = modulation_ratio_v1()
        return MODULATION_RATIO_EDGES, bin_proportions(v1.values, MODULATION_RATIO_EDGES), v1.label
    if area == "V2":
        dataset_id = "levitt_1994_V2_histogram"
        values = dataset(dataset_id)["values"]
        label = f"{_species(dataset_id)} V2 ({short_citation(dataset_id)})"
        return np.asarray(values["bin_edges"]), np.asarray(values["proportions"]), label
    raise AnalysisError(f"no modulation-ratio data for area {area!r}: use V1 or V2")


# --- preferred spatial / temporal frequency ------------------------------------------------

def preferred_frequency(kind: str) -> dict[str, tuple[float, str]]:
    """Macaque population preferred SF (cycles/deg, kind='sf') or TF (Hz, kind='tf')
    per area: {'V1': (value, label), 'V2': ..., 'MT': ...}. Units differ from the
    model's (cycles/px, cycles/frame): compare trends across areas only."""
    key = {"sf": ("SF", "preferred_sf_cycles_per_degree"), "tf": ("TF", "preferred_tf_hz")}
    if kind not in key:
        raise AnalysisError(f"unknown frequency kind {kind!r}: use 'sf' or 'tf'")
    tag, field = key[kind]
    out = {}
    for area in ("V1", "V2", "MT"):
        dataset_id = f"macaque_preferred_{tag}_{area}"
        out[area] = (float(dataset(dataset_id)["values"][field]), f"macaque {area} ({short_citation(dataset_id)})")
    return out


# --- surround suppression ------------------------------------------------------------------

_SI_LISTS = {
    ("mouse", "control"): ("mouse_V1_SI_laser_off_vs_on", "SI_control_laser_off", "V1 control (laser off)"),
    ("mouse", "feedback_suppressed"): (
        "mouse_V1_SI_laser_off_vs_on", "SI_feedback_suppressed_laser_on", "V1 feedback suppressed (laser on)"),
}


def surround_index(species: str, condition: str) -> Samples:
    """Surround suppression index (%) per cell.

    species 'mouse' (Vangeneugden et al. 2019, attribution uncertain; laser off
    vs on) or 'macaque' (Nassi et al. 2013, control vs V2/V3 cooled);
    condition 'control' or 'feedback_suppressed'. The original's model
    comparison used the mouse feedback-suppressed list, labelled "V1".
    """
    if species == "macaque":
        dataset_id = "nassi_2013_V1_SI_control_vs_cooled"
        column = {"control": 0, "feedback_suppressed": 1}.get(condition)
        if column is not None:
            pairs = np.asarray(dataset(dataset_id)["values"]["pairs"], dtype=float)
            what = "V1 control" if column == 0 else "V1 feedback suppressed (V2/V3 cooled)"
            return _samples(dataset_id, pairs[:, column], what)
    elif (species, condition) in _SI_LISTS:
        dataset_id, field, what = _SI_LISTS[(species, condition)]
        return _samples(dataset_id, dataset(dataset_id)["values"][field], what)
    raise AnalysisError(
        f"no SI data for {species!r}/{condition!r}: use species mouse or macaque, condition control or feedback_suppressed")


def size_tuning(species: str) -> dict:
    """Population size-tuning curves: sizes (deg), control and feedback-suppressed
    normalised responses, label. 'macaque' = Nassi 2013 (cooling), 'mouse' =
    Vangeneugden 2019 (laser), 7 sizes each."""
    if species == "macaque":
        dataset_id, keys = "nassi_2013_V1_population_size_tuning", (
            "control_normalised_response", "cooled_normalised_response")
    elif species == "mouse":
        dataset_id, keys = "mouse_V1_population_size_tuning_laser", (
            "laser_off_control_normalised_response", "laser_on_feedback_suppressed_normalised_response")
    else:
        raise AnalysisError(f"no size-tuning data for {species!r}: use mouse or macaque")
    values = dataset(dataset_id)["values"]
    return dict(size_deg=np.asarray(values["stimulus_size_deg"], float),
                control=np.asarray(values[keys[0]], float),
                feedback_suppressed=np.asarray(values[keys[1]], float),
                label=f"{_species(dataset_id)} V1 ({short_citation(dataset_id)})",
                citation=citation(dataset_id))


def feedback_inactivation_summary() -> dict:
    """Nurminen et al. 2018 (marmoset V1, V2 feedback inactivated): each entry is
    (mean, error) for [control, feedback inactivated]: sRF diameter (deg),
    sRF response (normalised to control) and response with the proximal
    surround (normalised to inactivated). The original labelled it 'Mouse V1'."""
    dataset_id = "nurminen_2018_V1_feedback_inactivation_summary"
    v = dataset(dataset_id)["values"]

    def pick(stem):
        return np.asarray(v[f"{stem}_mean"], float), np.asarray(v[f"{stem}_error"], float)

    return dict(srf_diameter_deg=pick("sRF_diameter_deg"), srf_response=pick("sRF_response_norm"),
                proximal_response=pick("proximal_surround_response_norm"),
                label=f"marmoset V1 ({short_citation(dataset_id)})", citation=citation(dataset_id))


# --- connectivity --------------------------------------------------------------------------

def connection_probability(kind: str) -> dict:
    """Ko et al. 2011 (mouse V1 L2/3): connected and tested pairs per bin of
    difference in preferred orientation (kind='orientation', 3 bins) or
    direction ('direction', 5 bins); with the bin centres, the model-side bin
    edges the original used, the probabilities and a label."""
    edges = _pick(KO_BIN_EDGES, kind, "kind")
    dataset_id = f"ko_2011_{kind}"
    v = dataset(dataset_id)["values"]
    connected, tested = np.asarray(v["connected"], float), np.asarray(v["tested"], float)
    return dict(centres_deg=np.asarray(v["bin_centres_deg"], float), edges_deg=np.asarray(edges, float),
                connected=connected, tested=tested, probability=connected / tested,
                label=f"mouse V1 L2/3 ({short_citation(dataset_id)})", citation=citation(dataset_id))


def long_range_axis_fractions() -> dict:
    """Iacaruso et al. 2017: fractions of 159 long-range inputs by axis (co-axial /
    orthogonal to the postsynaptic preferred orientation) and orientation
    difference (bins centred 0, 45, 90 deg); the six fractions sum to 1."""
    dataset_id = "iacaruso_2017_long_range_inputs_by_axis"
    v = dataset(dataset_id)["values"]
    coaxial, orthogonal = np.asarray(v["coaxial_counts"], float), np.asarray(v["orthogonal_counts"], float)
    total = coaxial.sum() + orthogonal.sum()
    return dict(centres_deg=np.asarray(v["bin_centres_deg"], float), coaxial=coaxial / total,
                orthogonal=orthogonal / total, n=int(total),
                label=f"mouse V1 L2/3 ({short_citation(dataset_id)})", citation=citation(dataset_id))


def _pick(options: dict, key: str, what: str):
    if key not in options:
        raise AnalysisError(f"unknown {what} {key!r}: use one of {', '.join(options)}")
    return options[key]


# --- single-neuron property distributions for the scorecard (analysis/scorecard.py) -------------

MARQUES2020_IDS = {
    "preferred_orientation": "devalois_1982a_V1_preferred_orientation",
    "peak_sf": "devalois_1982b_V1_peak_spatial_frequency",
    "sf_selective": "schiller_1976_V1_sf_selective",
    "sf_bandwidth": "schiller_1976_V1_sf_bandwidth",
    "surround_suppression_index": "cavanaugh_2002a_V1_surround_suppression_index",
    "grating_summation_field": "cavanaugh_2002a_V1_grating_summation_field",
    "surround_diameter": "cavanaugh_2002a_V1_surround_diameter",
}


def marques2020_histogram(name: str) -> dict:
    """One of the 7 macaque V1 histograms that Brain-Score's Marques2020
    benchmarks score (``MARQUES2020_IDS``): ``bins`` (K+1,) edges, ``counts``
    (K,) cells per bin, ``n_draw`` (the rows of the benchmark's assembly; rows
    beyond sum(counts) are cells without the property, e.g. not SF selective),
    ``ceiling`` (the value the benchmark's tests state, +-0.005), ``label``,
    ``citation`` and ``units``."""
    dataset_id = _pick(MARQUES2020_IDS, name, "Marques2020 property")
    d = dataset(dataset_id)
    return dict(bins=np.asarray(d["bins"], float), counts=np.asarray(d["values"], float),
                n_draw=int(d["n_bootstrap_draw"]),
                ceiling=float(d["ceiling"]), units=d["units"], citation=citation(dataset_id),
                label=f"{_species(dataset_id)} V1 ({short_citation(dataset_id)})")


RINGACH_RESPONSE_THRESHOLD = 5.0  # spikes/s above spontaneous: Brain-Score's selection of Ringach 2002 cells
RINGACH_UNTUNED_BANDWIDTH = 90.0  # bandwidths above this mark untuned cells (NaN), as Brain-Score's packaging


def ringach2002(measure: str) -> Samples:
    """Macaque V1 (Ringach, Shapley & Hawken 2002), one value per cell that
    responds more than 5 spikes/s above its spontaneous rate (304 of 308):
    ``bandwidth`` (degrees; NaN for the 6 untuned cells, which stay in the
    sample), ``circular_variance`` or ``modulation_ratio`` (F1/F0 at the
    optimal orientation = maxfirst / maxdc)."""
    dataset_id = "ringach_2002_V1_orientation"
    v = {k: np.asarray(x, float) for k, x in dataset(dataset_id)["values"].items()}
    responsive = v["maxdc"] > v["spont"] + RINGACH_RESPONSE_THRESHOLD
    values = {"bandwidth": np.where(v["bw"] > RINGACH_UNTUNED_BANDWIDTH, np.nan, v["bw"]),
              "circular_variance": v["orivar"], "modulation_ratio": v["maxfirst"] / v["maxdc"]}
    return _samples(dataset_id, _pick(values, measure, "Ringach 2002 measure")[responsive], "V1")


# --- Allen Brain Observatory per-unit metrics (mouse, Neuropixels) -----------------------------------

ALLEN_METRICS_FILE = "brain_observatory_1.1_analysis_metrics.csv"
ALLEN_CITATION = ("Siegle JH, Jia X, Durand S, et al. (2021) Survey of spiking in the mouse visual system reveals "
                  "functional hierarchy. Nature 592:86-92. doi:10.1038/s41586-020-03171-x (Allen Brain Observatory "
                  f"Visual Coding Neuropixels, {ALLEN_METRICS_FILE})")
ALLEN_AREA_COLUMNS = ("ecephys_structure_acronym", "area")  # the file's name for the area, and a short one


class AllenMetricsError(AnalysisError):
    """The Allen metrics table is unreadable or lacks a column."""


@functools.cache
def _allen_table(path: str) -> dict[str, list[str]]:
    import csv

    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise AllenMetricsError(f"cannot read the Allen metrics table {path} ({err}): give the "
                                f"{ALLEN_METRICS_FILE} that python -m neural_fitting.allen_metrics downloads") from err
    columns = rows[0].keys() if rows else []
    area = next((c for c in ALLEN_AREA_COLUMNS if c in columns), None)
    if area is None:
        raise AllenMetricsError(f"the Allen metrics table {path} has no area column "
                                f"({' or '.join(ALLEN_AREA_COLUMNS)}) or no rows: give the {ALLEN_METRICS_FILE} "
                                "of the Allen Brain Observatory")
    return {name: [row[name] for row in rows] for name in columns} | {"__area__": [row[area] for row in rows]}


def allen_unit_metric(path, metric: str, area: str) -> Samples:
    """One per-unit metric of the Allen Brain Observatory Neuropixels table
    (e.g. ``g_osi_dg``, ``g_dsi_dg``, ``f1_f0_dg``, ``pref_sf_sg``) over the
    units of one visual ``area`` (``VISp``, ``VISl``, ...), blanks and NaN
    dropped (units the metric is undefined for). ``AllenMetricsError`` for an
    unreadable table or a missing column."""
    table = _allen_table(str(path))
    if metric not in table:
        raise AllenMetricsError(f"the Allen metrics table {path} has no column {metric!r}: give the "
                                f"{ALLEN_METRICS_FILE} of the Allen Brain Observatory")
    try:
        values = np.array([float(v) if v.strip() else np.nan
                           for v, a in zip(table[metric], table["__area__"]) if a == area], dtype=float)
    except ValueError as err:
        raise AllenMetricsError(f"column {metric!r} of the Allen metrics table {path} holds a non-number ({err}): "
                                f"give the {ALLEN_METRICS_FILE} of the Allen Brain Observatory") from err
    return Samples(values[np.isfinite(values)], f"mouse {area} (Allen Brain Observatory)", ALLEN_CITATION)
