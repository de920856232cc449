"""The scorecard's metric against known answers: Brain-Score's stated ceilings,
a model distributed like the data (score ~ 1), a disjoint one (0), and the
measurements behind the rows."""
import shutil

import h5py
import numpy as np
import pytest

from analysis import inputs, scorecard
from tests.analysis_helpers import tiny_run

BINNED = [name for name, prop in scorecard.PROPERTIES.items() if prop.reference().n_draw is not None]


def test_ks_similarity_known_answers():
    """q uniform on 4 bins: p = q gives 1, a point mass on an end bin 0, and
    p = (1/2, 1/2, 0, 0) has KS 1/2 against KS_max 3/4: 1/3."""
    q = np.full(4, 0.25)
    p = np.array([q, [1, 0, 0, 0], [0, 0, 0, 1], [0.5, 0.5, 0, 0]])
    np.testing.assert_allclose(scorecard.ks_similarity(p, q), [1, 0, 0, 1 / 3])


def test_bin_index_clips_into_the_end_bins_and_closes_the_last():
    bins = np.array([0.0, 1.0, 2.0])
    index = scorecard.bin_index([-5, 0, 0.99, 1, 2, 7, np.nan], bins)
    assert index.tolist() == [0, 0, 0, 1, 1, 1, -1]


@pytest.mark.parametrize("name", [n for n in BINNED if scorecard.PROPERTIES[n].reference().stated_ceiling])
def test_ceiling_reproduces_the_stated_one(name):
    """Brain-Score's tests state each Marques2020 ceiling to +-0.005."""
    ref = scorecard.PROPERTIES[name].reference()
    computed = np.mean([scorecard.ceiling(ref, rng=np.random.default_rng(seed)) for seed in range(3)])
    assert computed == pytest.approx(ref.stated_ceiling, abs=0.005)


def _data_as_model(ref: scorecard.Reference) -> np.ndarray:
    """One value per data row: the centre of its bin (NaN for the rows without the property)."""
    centres = (ref.bins[:-1] + ref.bins[1:]) / 2
    labels = ref.labels()
    return np.where(labels >= 0, centres[np.clip(labels, 0, None)], np.nan)


@pytest.mark.parametrize("name", BINNED)
def test_a_model_distributed_like_the_data_scores_about_one(name):
    ref = scorecard.PROPERTIES[name].reference()
    result = scorecard.score_values(_data_as_model(ref), ref, rng=np.random.default_rng(1))
    assert result.score == pytest.approx(1.0, abs=0.015)
    assert result.spread > 0 and result.n_units == np.isfinite(_data_as_model(ref)).sum()


@pytest.mark.parametrize("name", list(scorecard.PROPERTIES))
def test_a_model_on_the_data_s_emptier_end_scores_zero(name):
    """All model units beyond the end bin where the data hold less: KS = KS_max."""
    ref = scorecard.PROPERTIES[name].reference()
    q = ref.proportions
    beyond = ref.bins[0] - 1 if q[0] <= q[-1] else ref.bins[-1] + 1
    result = scorecard.score_values(np.full(50, beyond), ref)
    assert result.raw == 0 and (result.score == 0 or ref.n_draw is None)


def test_mostly_undefined_draws_score_zero_as_brainscore():
    """One defined unit among 1,000: nearly every draw of 5 rows holds no
    defined value; more than 10% of draws undefined make the raw score 0
    (Brain-Score). A model with no value at all has no score."""
    ref = scorecard.Reference(np.array([0.0, 0.5, 1.0]), np.array([1.0, 4.0]), 5, "toy", "toy")
    values = np.concatenate([[1.0], np.full(999, np.nan)])
    assert scorecard.score_values(values, ref).raw == 0.0
    assert scorecard.score_values(np.array([np.nan]), ref) is None


def test_brainscore_orientation_convention():
    """Moving up (0) = horizontal bars = Brain-Score's 90; moving right (90) =
    vertical bars = 0; values at or past 157.5 wrap to negative."""
    np.testing.assert_allclose(scorecard.grating_orientation([0, 90, 45, 247.5, 250]), [90, 0, 135, -22.5, -20])


def test_degrees_per_pixel_moves_only_the_properties_in_degrees():
    model = _tiny_model()
    sensitivity = scorecard.degrees_per_pixel_sensitivity(model, (0.1, 0.8))
    assert set(sensitivity) == {"peak_sf", "grating_summation_field", "surround_diameter"}
    base = scorecard.scorecard(model, scorecard.ScorecardSettings(degrees_per_pixel=0.1))
    assert sensitivity["peak_sf"][0.1] == base["peak_sf"].score
    coarse = scorecard.scorecard(model, scorecard.ScorecardSettings(degrees_per_pixel=0.8))
    assert coarse["preferred_orientation"] == base["preferred_orientation"]
    assert coarse["peak_sf"].score != base["peak_sf"].score


def _tiny_model() -> scorecard.ModelData:
    data = inputs.load_inputs(tiny_run()["artefact"], ("rwa", "gratings"))
    try:
        return scorecard.ModelData(data.units, data.artefact.grid)
    finally:
        data.artefact.close()


def test_a_score_does_not_depend_on_the_other_rows():
    model = _tiny_model()
    only = {"circular_variance": scorecard.PROPERTIES["circular_variance"]}
    assert scorecard.scorecard(model, properties=only)["circular_variance"] == \
        scorecard.scorecard(model)["circular_variance"]


def test_old_artefacts_get_global_indices_derived_from_the_tuning_curves(tmp_path):
    """An artefact whose gratings stage predates global OSI/DSI: the unit table
    derives them from the stored mean responses, equal to what the stage writes."""
    old = tmp_path / "old.vphys.h5"
    shutil.copy(tiny_run()["artefact"], old)
    with h5py.File(old, "a") as f:
        del f["gratings/global_OSI"], f["gratings/global_DSI"]
    new, derived = (inputs.load_inputs(path, ("gratings",)) for path in (tiny_run()["artefact"], old))
    try:
        for g in range(len(new.units)):
            for name in ("global_OSI", "global_DSI"):
                np.testing.assert_allclose(derived.units[g][name], new.units[g][name], rtol=1e-6)
    finally:
        new.artefact.close(), derived.artefact.close()


def test_a_registered_property_becomes_a_row_of_the_comparison(tmp_path):
    """A toy row: G1's best mean grating response against a made-up
    histogram; registered, it is scored and printed by analysis.compare."""
    from analysis import compare

    toy = scorecard.Property(
        "toy_best_response", "best grating response (toy)", 0,
        lambda model, settings: np.asarray(model.units[0]["max_mean_grating_response"], float),
        lambda: scorecard.Reference(np.linspace(0, 2, 5), np.array([5.0, 10, 10, 5]), 30, "toy data", "nobody (2026)"),
        "G1 max_mean_grating_response")
    scorecard.register(toy)
    try:
        with pytest.raises(ValueError, match="already registered"):
            scorecard.register(toy)
        markdown = compare.write_comparison(compare.compare([tiny_run()["artefact"]]), tmp_path)
    finally:
        del scorecard.PROPERTIES["toy_best_response"]
    row = next(line for line in markdown.splitlines() if line.startswith("| best grating response (toy) |"))
    assert "| toy data |" in row and "n=12" in row


def test_every_model_is_divided_by_the_same_ceiling():
    ref = scorecard.PROPERTIES["si_mouse"].reference()
    a = scorecard.score_values(np.linspace(0, 90, 40), ref, rng=np.random.default_rng(3))
    b = scorecard.score_values(np.linspace(10, 50, 7), ref, rng=np.random.default_rng(4))
    assert a.ceiling == b.ceiling == scorecard.ceiling(ref)
