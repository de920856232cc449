"""A literature scorecard: each single-neuron property of a model against its
experimental distribution, as a ceiling-normalised similarity.

The metric is Brain-Score's for its Marques2020 V1 property benchmarks
(Marques, Schrimpf & DiCarlo 2021): the model's values and the data are
histogrammed on the data's bins (values outside the bins are clipped into
the end bins), and

    KS     = max_k |cumsum(p)_k - cumsum(q)_k|         p: model, q: data proportions
    KS_max = the larger KS of q against a point mass in its first or in its last bin
    similarity = 1 - KS / KS_max                        in [0, 1]

The raw score is the mean similarity over 1,000 bootstrap draws of as many
model units as the data has rows (with replacement; units whose property is
undefined, e.g. not SF selective, are drawn but not histogrammed); the
ceiling is the same with the data bootstrapped against itself (its sampling
noise at its own n); score = raw / ceiling, spread = SD over draws / ceiling.
The 7 Marques2020 histograms use the ceilings Brain-Score's tests state; every
other reference gets its ceiling computed here.

Every property is a registered ``Property`` (``PROPERTIES``): the model group
it reads, how its per-unit values come from the group's unit table
(``analysis.inputs.unit_table``) and the reference distribution. Properties in
degrees need a degrees-per-pixel convention: ``ScorecardSettings.degrees_per_pixel``
is that one assumption, recorded with every scorecard, and
``degrees_per_pixel_sensitivity`` shows how the scores move with it.
"""
from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from analysis import reference
from analysis.response_parameters import curve_fit_modulation_ratio
from virtual_physiology import surround, tuning

N_BOOTSTRAP = 1000  # Brain-Score's draws per score
UNDEFINED_DRAWS_LIMIT = 0.1  # more undefined draws than this fraction: the raw score is 0 (Brain-Score)


@dataclass(frozen=True)
class ScorecardSettings:
    """What a scorecard depends on besides the artefacts; recorded with it."""

    degrees_per_pixel: float = 0.4
    """Visual angle of one frame pixel, for the properties in degrees (peak SF,
    GSF, surround diameter). 0.4 = Brain-Score's default field of view for a
    model (8 degrees) across the paper's 20-pixel frame. Nothing in the
    training data fixes it: ``degrees_per_pixel_sensitivity`` shows its effect."""
    n_bootstrap: int = N_BOOTSTRAP
    """Bootstrap draws per score and per ceiling (Brain-Score: 1,000)."""
    seed: int = 0
    """Seed of the bootstrap draws, so that a scorecard is reproducible."""


# --- the metric ---------------------------------------------------------------------------------

def bin_index(values, bins) -> np.ndarray:
    """Bin of each value on edges ``bins`` (K+1,), numpy's histogram convention
    (half-open bins, the last closed), after clipping into [bins[0], bins[-1]];
    (n,) int, -1 for NaN."""
    values = np.asarray(values, dtype=np.float64)
    bins = np.asarray(bins, dtype=np.float64)
    finite = np.isfinite(values)
    clipped = np.clip(np.where(finite, values, bins[0]), bins[0], bins[-1])
    index = np.minimum(np.searchsorted(bins, clipped, side="right") - 1, len(bins) - 2)
    return np.where(finite, index, -1)


def ks_similarity(p, q) -> np.ndarray:
    """1 - KS / KS_max of model proportions ``p`` (..., K) against data
    proportions ``q`` (K,) on the same bins (module docstring). NaN where a
    row of p is NaN (an empty draw). q must not be a point mass on one end
    bin (KS_max would be 0)."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    cdf_q = np.cumsum(q)
    ks = np.abs(np.cumsum(p, axis=-1) - cdf_q).max(axis=-1)
    first, last = np.zeros_like(q), np.zeros_like(q)
    first[0], last[-1] = 1, 1
    ks_max = max(np.abs(np.cumsum(first) - cdf_q).max(), np.abs(np.cumsum(last) - cdf_q).max())
    return 1 - ks / ks_max


def draw_similarities(labels: np.ndarray, q: np.ndarray, n_draw: int, n_bootstrap: int,
                      rng: np.random.Generator) -> np.ndarray:
    """Similarity of each of ``n_bootstrap`` draws of ``n_draw`` bin labels
    (with replacement) from ``labels`` (n,) (-1 = undefined) to ``q`` (K,):
    (n_bootstrap,), NaN for a draw with no defined label."""
    n_bins = len(q)
    draws = np.asarray(labels)[rng.integers(0, len(labels), size=(n_bootstrap, n_draw))]
    offsets = (n_bins + 1) * np.arange(n_bootstrap)[:, None]
    counts = np.bincount((draws + 1 + offsets).ravel(), minlength=(n_bins + 1) * n_bootstrap)
    counts = counts.reshape(n_bootstrap, n_bins + 1)[:, 1:].astype(np.float64)
    total = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return ks_similarity(counts / total, q)


def _summarise(similarities: np.ndarray) -> tuple[float, float]:
    """(mean, SD) over draws; (0, 0) when more than 10% are undefined (Brain-Score)."""
    if np.isnan(similarities).mean() > UNDEFINED_DRAWS_LIMIT:
        return 0.0, 0.0
    return float(np.nanmean(similarities)), float(np.nanstd(similarities))


@dataclass(frozen=True)
class Reference:
    """An experimental distribution on its bins.

    ``bins`` (K+1,) edges; ``counts`` (K,) cells per bin (proportions where the
    data's n is unknown); ``n_draw``: rows per bootstrap draw, = the data's
    cells including those without the property (they count as undefined
    rows), None when the data's n is unknown (draws then have the model's
    size and there is no ceiling); ``stated_ceiling``: a published ceiling to
    use instead of computing one."""

    bins: np.ndarray
    counts: np.ndarray
    n_draw: int | None
    label: str
    citation: str
    stated_ceiling: float | None = None

    @property
    def proportions(self) -> np.ndarray:
        return self.counts / self.counts.sum()

    @classmethod
    def from_samples(cls, samples: reference.Samples, bins) -> "Reference":
        """The histogram of one value per cell (NaN = a cell without the
        property, kept as an undefined row)."""
        labels = bin_index(samples.values, bins)
        counts = np.bincount(labels[labels >= 0], minlength=len(bins) - 1).astype(np.float64)
        return cls(np.asarray(bins, float), counts, len(samples.values), samples.label, samples.citation)

    def labels(self) -> np.ndarray:
        """One bin label per data row (-1 for the rows without the property)."""
        counts = np.rint(self.counts).astype(int)
        return np.concatenate([np.repeat(np.arange(len(counts)), counts),
                               np.full(self.n_draw - counts.sum(), -1)])


def ceiling(ref: Reference, n_bootstrap: int = N_BOOTSTRAP, rng: np.random.Generator | None = None) -> float:
    """The data's similarity to itself: mean over ``n_bootstrap`` resamples of
    its ``n_draw`` rows of ``ks_similarity`` to its own histogram (Brain-Score's
    NeuronalPropertyCeiling; ``rng`` default: seed 0). NaN when the data's n
    is unknown."""
    if ref.n_draw is None:
        return float("nan")
    rng = np.random.default_rng(0) if rng is None else rng
    return _summarise(draw_similarities(ref.labels(), ref.proportions, ref.n_draw, n_bootstrap, rng))[0]


@dataclass(frozen=True)
class PropertyScore:
    """One model on one property: ``raw`` mean similarity (``raw_sd`` its SD
    over draws), the reference's ``ceiling``, ``score`` = raw / ceiling,
    ``spread`` = raw_sd / ceiling and ``n_units``, the model units with a
    defined value (of ``n_rows`` drawn from)."""

    raw: float
    raw_sd: float
    ceiling: float
    score: float
    spread: float
    n_units: int
    n_rows: int


def score_values(values, ref: Reference, n_bootstrap: int = N_BOOTSTRAP,
                 rng: np.random.Generator | None = None) -> PropertyScore | None:
    """Score per-unit model ``values`` (n,) (NaN = a unit without the property,
    drawn as an undefined row) against ``ref``, drawing from ``rng``. The
    ceiling is the stated one or ``ceiling(ref)`` with its own fixed seed, so
    every model of a comparison is divided by the same number. None when no
    unit has a value."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if not np.isfinite(values).any():
        return None
    rng = np.random.default_rng(0) if rng is None else rng
    similarities = draw_similarities(bin_index(values, ref.bins), ref.proportions, ref.n_draw or len(values),
                                     n_bootstrap, rng)
    raw, raw_sd = _summarise(similarities)
    ceil = ref.stated_ceiling if ref.stated_ceiling is not None else ceiling(ref, n_bootstrap)
    return PropertyScore(raw=raw, raw_sd=raw_sd, ceiling=ceil, score=raw / ceil, spread=raw_sd / ceil,
                         n_units=int(np.isfinite(values).sum()), n_rows=len(values))


# --- per-unit model values from a unit table ------------------------------------------------------

def responsive(table: dict) -> np.ndarray:
    """Units (bool, (n,)) with a positive mean response to their best grating
    (``max_mean_grating_response``; NaN counts as silent): the model's
    stand-in for Brain-Score's "responds > 5 spikes/s"."""
    return np.nan_to_num(np.asarray(table["max_mean_grating_response"], float), nan=0.0) > 0


def _preferences(table: dict, keep: np.ndarray) -> dict:
    index = np.asarray(table["preferred_index"])[keep]
    return dict(sf_index=index[:, 0], direction_index=index[:, 1], tf_index=index[:, 2])


def grating_orientation(direction_deg) -> np.ndarray:
    """Orientation in Brain-Score's convention (luminance varies along
    x cos(theta) + y sin(theta), y down; theta = 0: vertical bars) of the
    project's drifting direction (0 = moving up, 90 = right,
    ``virtual_physiology.stimuli``): theta = direction - 90 modulo 180,
    wrapped into [-22.5, 157.5) as the benchmark does."""
    theta = np.mod(np.asarray(direction_deg, dtype=np.float64) - 90.0, 180.0)
    return np.where(theta >= 157.5, theta - 180.0, theta)


@dataclass(frozen=True)
class ModelData:
    """What a property reads from one model: its unit tables (one per group,
    ``analysis.inputs.unit_table``) and the grating grid (``sf`` in cycles/px)."""

    units: list[dict]
    grid: dict


def _group(model: ModelData, group: int, *fields: str) -> dict | None:
    if group >= len(model.units) or not all(f in model.units[group] for f in fields):
        return None
    return model.units[group]


def _responsive_tuning(model: ModelData) -> tuple[np.ndarray, dict] | None:
    """G1's responsive units: their mean grating responses (n, n_sf, n_dir, n_tf) and preferences."""
    table = _group(model, 0, "mean_grating_responses", "preferred_index", "max_mean_grating_response")
    if table is None:
        return None
    keep = responsive(table)
    return np.asarray(table["mean_grating_responses"])[keep], _preferences(table, keep)


def _sf_tuning(model: ModelData) -> dict | None:
    found = _responsive_tuning(model)
    if found is None:
        return None
    return tuning.spatial_frequency_tuning(tuning.spatial_frequency_curves(*found), model.grid["sf"])


def _peak_sf_degrees(model: ModelData, settings: ScorecardSettings) -> np.ndarray | None:
    sf = _sf_tuning(model)
    return None if sf is None else sf["peak_sf"] / settings.degrees_per_pixel


def _size_tuning(model: ModelData, field: str, settings: ScorecardSettings) -> np.ndarray | None:
    table = _group(model, 0, "size_tuning_curve", "surround_suppression_index")
    if table is None:
        return None
    probed = np.isfinite(np.asarray(table["surround_suppression_index"], float))
    extents = surround.size_tuning_extents(np.asarray(table["size_tuning_curve"])[probed])
    return extents[field] * settings.degrees_per_pixel


def _orientation_bandwidth(model: ModelData, settings: ScorecardSettings) -> np.ndarray | None:
    found = _responsive_tuning(model)
    return None if found is None else tuning.orientation_bandwidth(tuning.direction_curves(*found))


def _field(group: int, name: str, transform: Callable[[np.ndarray], np.ndarray] = lambda x: x):
    """Values of one unit-table field of one group (finite ones only), transformed."""
    def values(model: ModelData, settings: ScorecardSettings):
        table = _group(model, group, name)
        if table is None:
            return None
        x = np.asarray(table[name], dtype=np.float64)
        return transform(x[np.isfinite(x)])
    return values


def _preferred_orientation(model: ModelData, settings: ScorecardSettings) -> np.ndarray | None:
    table = _group(model, 0, "preferred_direction", "max_mean_grating_response")
    if table is None:
        return None
    return grating_orientation(np.asarray(table["preferred_direction"], float)[responsive(table)])


def _circular_variance(model: ModelData, settings: ScorecardSettings) -> np.ndarray | None:
    table = _group(model, 0, "global_OSI", "max_mean_grating_response")
    if table is None:
        return None
    return 1 - np.asarray(table["global_OSI"], float)[responsive(table)]


def _f1_f0(group: int):
    def values(model: ModelData, settings: ScorecardSettings):
        table = _group(model, group, "modulation_ratio_curve_fit", "modulation_ratio_curve_fit_keep")
        if table is None:
            return None
        ratio = curve_fit_modulation_ratio(table)
        return ratio[np.isfinite(ratio)]
    return values


# --- the registry -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Property:
    """One scorecard row: ``name`` (its key), ``title`` (the row label), the
    model ``group`` it reads (0 = G1), ``values(model, settings)`` -> the
    per-unit values (NaN = drawn but undefined) or None when the model lacks
    the measurement, ``reference()`` -> its ``Reference``, ``source`` (how
    the values are measured, one line), and ``in_degrees`` when the values
    depend on ``ScorecardSettings.degrees_per_pixel``."""

    name: str
    title: str
    group: int
    values: Callable[[ModelData, ScorecardSettings], np.ndarray | None]
    reference: Callable[[], Reference]
    source: str
    in_degrees: bool = False


PROPERTIES: dict[str, Property] = {}


def register(prop: Property) -> Property:
    """Add a property (a new row of every scorecard); ValueError for a taken name."""
    if prop.name in PROPERTIES:
        raise ValueError(f"a scorecard property named {prop.name} is already registered: choose another name")
    PROPERTIES[prop.name] = prop
    return prop


def _marques(name: str) -> Callable[[], Reference]:
    def load() -> Reference:
        h = reference.marques2020_histogram(name)
        return Reference(h["bins"], h["counts"], h["n_draw"], h["label"], h["citation"], stated_ceiling=h["ceiling"])
    return load


def _samples(load: Callable[[], reference.Samples], bins) -> Callable[[], Reference]:
    return lambda: Reference.from_samples(load(), bins)


def _levitt_v2() -> Reference:
    edges, proportions, label = reference.modulation_ratio_histogram("V2")
    return Reference(np.asarray(edges, float), np.asarray(proportions, float), None, label,
                     reference.citation("levitt_1994_V2_histogram"))


F1_F0_BINS = np.linspace(0, 2, 11)  # Brain-Score's Ringach 2002 modulation-ratio bins (= the original's F1/F0 bins)
CIRCULAR_VARIANCE_BINS = np.linspace(0, 1, 14)  # Brain-Score's Ringach 2002 bins
BANDWIDTH_BINS = np.linspace(0, 90, 18)  # Brain-Score's Ringach 2002 bins, degrees
PATTERN_INDEX_BINS = np.arange(-10.0, 10.5, 1.0)  # unit steps over the data's range (-8.4 .. 10.0)
SI_BINS = np.arange(0.0, 111.0, 10.0)  # %, the report's SI histogram bins (Nassi's SI reach 100.5)

_G1_RESPONSIVE = "G1 units kept by the RWA with a positive mean response to their best drifting grating"
_SF_SOURCE = (f"{_G1_RESPONSIVE}; mean response over the grid's SFs at the preferred direction and TF (F0, no blank "
              "subtracted), smoothed and spline-interpolated in log2 SF "
              "(virtual_physiology.tuning.spatial_frequency_tuning)")
_SIZE_SOURCE = ("G1 size-tuning curves (surround stage), aperture diameters 2r px x degrees_per_pixel, "
                "defined where SSI > 0.1 (virtual_physiology.surround.size_tuning_extents)")

for _prop in (
    Property("preferred_orientation", "preferred orientation (deg)", 0, _preferred_orientation,
             _marques("preferred_orientation"),
             f"{_G1_RESPONSIVE}; preferred drifting direction - 90 deg, modulo 180"),
    Property("peak_sf", "peak spatial frequency (c/deg)", 0, _peak_sf_degrees, _marques("peak_sf"), _SF_SOURCE,
             in_degrees=True),
    Property("sf_selective", "SF selective (fraction)", 0,
             lambda m, s: None if (sf := _sf_tuning(m)) is None else sf["sf_selective"],
             _marques("sf_selective"), _SF_SOURCE + "; selective = both 0.707 cut-offs inside the tested range"),
    Property("sf_bandwidth", "SF bandwidth (100 low/high cut-off)", 0,
             lambda m, s: None if (sf := _sf_tuning(m)) is None else sf["sf_bandwidth_ratio"],
             _marques("sf_bandwidth"), _SF_SOURCE + "; NaN (drawn, not histogrammed) for non-selective units"),
    Property("surround_suppression_index", "surround suppression index", 0,
             _field(0, "surround_suppression_index", lambda si: si / 100),
             _marques("surround_suppression_index"), "G1 SI / 100 (surround stage)"),
    Property("grating_summation_field", "grating summation field (deg)", 0,
             lambda m, s: _size_tuning(m, "grating_summation_field", s),
             _marques("grating_summation_field"), _SIZE_SOURCE, in_degrees=True),
    Property("surround_diameter", "surround diameter (deg)", 0,
             lambda m, s: _size_tuning(m, "surround_diameter", s),
             _marques("surround_diameter"), _SIZE_SOURCE, in_degrees=True),
    Property("orientation_bandwidth", "orientation bandwidth (deg)", 0,
             _orientation_bandwidth,
             _samples(lambda: reference.ringach2002("bandwidth"), BANDWIDTH_BINS),
             f"{_G1_RESPONSIVE}; half-width at 1/sqrt(2) of the orientation curve at the preferred SF and TF "
             "(NaN, drawn, for untuned units)"),
    Property("circular_variance", "circular variance (1 - global OSI)", 0,
             _circular_variance,
             _samples(lambda: reference.ringach2002("circular_variance"), CIRCULAR_VARIANCE_BINS),
             f"{_G1_RESPONSIVE}; 1 - vector-sum OSI over directions at the preferred SF and TF"),
    Property("f1_f0_ringach", "F1/F0, G1 vs V1 (Ringach)", 0, _f1_f0(0),
             _samples(lambda: reference.ringach2002("modulation_ratio"), F1_F0_BINS),
             "G1 F1/F0 at the preferred grating (the report's curve_fit variant, kept fits)"),
    Property("f1_f0_v1", "F1/F0, G1 vs V1 (Mata & Ringach)", 0, _f1_f0(0),
             _samples(reference.modulation_ratio_v1, F1_F0_BINS),
             "G1 F1/F0 at the preferred grating (the report's curve_fit variant, kept fits)"),
    Property("f1_f0_v2", "F1/F0, G2 vs V2 (Levitt)", 1, _f1_f0(1), _levitt_v2,
             "G2 F1/F0 (as G1); the V2 data are proportions without n: raw similarity only, no ceiling"),
    Property("pattern_index_v1", "pattern index, G1 vs V1", 0, _field(0, "plaid_pattern_index"),
             _samples(lambda: reference.pattern_index("V1"), PATTERN_INDEX_BINS),
             "G1 plaid pattern index (plaid stage)"),
    Property("pattern_index_v2", "pattern index, G2 vs V2", 1, _field(1, "plaid_pattern_index"),
             _samples(lambda: reference.pattern_index("V2"), PATTERN_INDEX_BINS), "G2 plaid pattern index"),
    Property("pattern_index_mt", "pattern index, G3 vs MT", 2, _field(2, "plaid_pattern_index"),
             _samples(lambda: reference.pattern_index("MT"), PATTERN_INDEX_BINS), "G3 plaid pattern index"),
    Property("si_macaque", "SI %, G1 vs macaque V1", 0, _field(0, "surround_suppression_index"),
             _samples(lambda: reference.surround_index("macaque", "control"), SI_BINS), "G1 SI (surround stage)"),
    Property("si_mouse", "SI %, G1 vs mouse V1", 0, _field(0, "surround_suppression_index"),
             _samples(lambda: reference.surround_index("mouse", "control"), SI_BINS), "G1 SI (surround stage)"),
    Property("si_macaque_no_feedback", "SI %, G1 no feedback vs macaque V1 cooled", 0,
             _field(0, "nofeedback_surround_suppression_index"),
             _samples(lambda: reference.surround_index("macaque", "feedback_suppressed"), SI_BINS),
             "G1 SI with feedback removed (nofeedback stage) against V1 with V2/V3 cooled"),
    Property("si_mouse_no_feedback", "SI %, G1 no feedback vs mouse V1 laser on", 0,
             _field(0, "nofeedback_surround_suppression_index"),
             _samples(lambda: reference.surround_index("mouse", "feedback_suppressed"), SI_BINS),
             "G1 SI with feedback removed against V1 with higher areas silenced"),
):
    register(_prop)


# --- scorecards ----------------------------------------------------------------------------------------

def scorecard(model: ModelData, settings: ScorecardSettings = ScorecardSettings(),
              properties: dict[str, Property] | None = None) -> dict[str, PropertyScore | None]:
    """The ``properties`` (default: every registered one) of one model:
    {name: PropertyScore, or None where the model lacks the measurement or
    no unit has a value}. Each property's draws use their own generator
    seeded from ``settings.seed`` and its name, so a score does not depend on
    which other properties were scored."""
    out = {}
    for name, prop in (PROPERTIES if properties is None else properties).items():
        values = prop.values(model, settings)
        rng = np.random.default_rng([settings.seed, zlib.crc32(name.encode())])
        out[name] = None if values is None else score_values(values, prop.reference(), settings.n_bootstrap, rng)
    return out


def degrees_per_pixel_sensitivity(model: ModelData, degrees_per_pixel=(0.1, 0.2, 0.4, 0.8),
                                  settings: ScorecardSettings = ScorecardSettings(),
                                  properties: dict[str, Property] | None = None) -> dict[str, dict[float, float]]:
    """How the scores of the properties in degrees (of ``properties``, default
    every registered one) move with the one unit assumption: {property name:
    {degrees per pixel: score (NaN if none)}}."""
    in_degrees = {name: prop for name, prop in (PROPERTIES if properties is None else properties).items()
                  if prop.in_degrees}
    out = {name: {} for name in in_degrees}
    for dpp in degrees_per_pixel:
        scores = scorecard(model, ScorecardSettings(**dict(asdict(settings), degrees_per_pixel=float(dpp))), in_degrees)
        for name in in_degrees:
            out[name][float(dpp)] = scores[name].score if scores[name] is not None else float("nan")
    return out


# --- the mouse reference: Allen Brain Observatory per-unit metrics ------------------------------------

ALLEN_SF_BINS = np.array([0.02, 0.04, 0.08, 0.16, 0.32, 0.64]) * 2 ** -0.5  # one octave bin per Allen static SF
ALLEN_AREA_OF_GROUP = {0: "VISp"}  # the area each group is compared with (the peak SF row reads G1 only)


def allen_properties(path) -> dict[str, Property]:
    """Scorecard rows against the mouse units of the Allen Brain Observatory
    metrics table at ``path`` (``reference.allen_unit_metric``): global OSI,
    global DSI, F1/F0 (drifting gratings) and preferred SF (static gratings,
    c/deg) of G1 against VISp. Not registered: pass them to ``scorecard``
    beside ``PROPERTIES``. Reading the table is deferred to the first score."""
    def allen(metric: str, area: str, bins) -> Callable[[], Reference]:
        return lambda: Reference.from_samples(reference.allen_unit_metric(path, metric, area), bins)

    out = {}
    for group, area in ALLEN_AREA_OF_GROUP.items():
        g = f"G{group + 1}"
        source = "the Allen Brain Observatory's definition, at the preferred SF and TF"
        for prop in (
            Property(f"allen_global_osi_{area}", f"global OSI, {g} vs mouse {area}", group,
                     _field(group, "global_OSI"), allen("g_osi_dg", area, CIRCULAR_VARIANCE_BINS),
                     f"{g} vector-sum OSI over directions ({source})"),
            Property(f"allen_global_dsi_{area}", f"global DSI, {g} vs mouse {area}", group,
                     _field(group, "global_DSI"), allen("g_dsi_dg", area, CIRCULAR_VARIANCE_BINS),
                     f"{g} vector-sum DSI over directions ({source})"),
            Property(f"allen_f1_f0_{area}", f"F1/F0, {g} vs mouse {area}", group, _f1_f0(group),
                     allen("f1_f0_dg", area, F1_F0_BINS), f"{g} F1/F0 at the preferred grating (curve_fit variant)"),
            Property(f"allen_pref_sf_{area}", f"peak SF (c/deg), G1 vs mouse {area}", 0, _peak_sf_degrees,
                     allen("pref_sf_sg", area, ALLEN_SF_BINS), _SF_SOURCE, in_degrees=True),
        ):
            out[prop.name] = prop
    return out
