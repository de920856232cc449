"""Known-answer tests for analysis.plaid_motion, surround_suppression and response_parameters."""
import numpy as np
import pytest

from analysis import plaid_motion, response_parameters as rp, stats, surround_suppression as ss
from tests.analysis_helpers import CopyLastModel


def test_pattern_index_summary():
    s = plaid_motion.pattern_index_summary([-1.0, 0.5, 2.0, np.nan])
    assert s == dict(n=3, mean=pytest.approx(0.5), fraction_above_0=pytest.approx(2 / 3),
                     fraction_above_1_28=pytest.approx(1 / 3))


def test_direction_selectivity():
    curves = np.array([[4.0, 1, 0, 1], [1, 1, 1, 1], [0, 0, 0, 0], [1, 3, 2, 1]])
    np.testing.assert_allclose(plaid_motion.direction_selectivity(curves), [1.0, 0.0, np.nan, 0.5])


def test_plaid_tuning_curves_and_two_grating_map():
    model = CopyLastModel(frame_shape=(8, 8), group_sizes=(6, 4))
    curves = plaid_motion.plaid_tuning_curves(model, unit=3, sf=0.125, tf=0.1, n_directions=18)
    assert curves.shape == (6, 18) and np.argmax(curves[0]) == 9
    directions, response = plaid_motion.two_grating_map(model, unit=3, sf=0.125, tf=0.1, step=60)
    assert directions.size == 6 and response.shape == (6, 6)
    np.testing.assert_allclose(response, response.T, rtol=1e-4, atol=1e-6)  # A + B = B + A


def test_feedback_effects_known_values():
    full = np.array([[1.0, 3, 2, 1], [0, 0, 0, 0]])
    no_fb = np.array([[1.0, 2, 4, 3], [1, 2, 3, 4]])
    out = ss.feedback_effects(full, no_fb, radii=[2, 6, 10, 14])
    np.testing.assert_allclose(out["preferred_size_full"], [6, np.nan])
    np.testing.assert_allclose(out["preferred_size_no_feedback"], [10, np.nan])
    np.testing.assert_allclose(out["peak_ratio"], [4 / 3, np.nan])
    np.testing.assert_allclose(out["proximal_ratio"], [0.5, np.nan])
    never_falls = ss.feedback_effects(np.array([[1.0, 2, 3, 4]]), np.array([[1.0, 2, 3, 4]]), [1, 2, 3, 4])
    assert np.isnan(never_falls["proximal_ratio"][0])
    silenced = ss.feedback_effects(np.array([[1.0, 2, 1, 1]]), np.zeros((1, 4)), [1, 2, 3, 4])
    assert silenced["peak_ratio"][0] == 0.0  # the original's get_sRF_FR: 0 / peak, not dropped
    assert np.isnan(silenced["preferred_size_no_feedback"][0])


def test_si_change_averages_the_tested_pairs_so_the_means_follow_t():
    # units 0-1 lose their SI without feedback (silenced); over each condition's own units the
    # means would read 42 -> 21.7, lower without feedback, while every tested pair rises
    full = np.array([90.0, 90.0, 0.0, 10.0, 20.0])
    ablated = np.array([np.nan, np.nan, 10.0, 25.0, 30.0])
    change = ss.si_change(full, ablated)
    assert (change["mean_full"], change["median_full"], change["median_no_feedback"]) == (10.0, 10.0, 25.0)
    assert change["mean_no_feedback"] == pytest.approx(65 / 3)
    # differences 10, 15, 10: t = (35/3) / (sqrt(25/3) / sqrt(3)) = 7, two-sided p with 2 df = 0.0198
    assert change["n_pairs"] == 3 and change["paired_t"] == pytest.approx(7.0)
    assert change["paired_p"] == pytest.approx(0.019804, abs=1e-5)
    assert np.isnan(ss.si_change([1.0], [np.nan])["mean_full"])


def test_normalised_mean_curves_and_fit():
    full = np.array([[1.0, 2, 1], [2, 4, 2], [0, 0, 0]])
    no_fb = np.array([[1.0, 2, 2], [2, 4, 4], [1, 1, 1]])
    f, n, count = ss.normalised_mean_curves(full, no_fb)
    np.testing.assert_allclose(f, [0.5, 1, 0.5])
    np.testing.assert_allclose(n, [0.5, 1, 1])
    assert count == 2
    sizes = np.arange(2, 42, 4.0)
    curve = stats.ratio_of_gaussians(sizes, 1.5, 3.0, 1.0, 10.0)
    fitted, silent = ss.fit_curves(sizes, curve, np.zeros_like(sizes))
    np.testing.assert_allclose(stats.ratio_of_gaussians(sizes, *fitted), curve, atol=1e-4)
    assert np.isnan(silent).all()


def test_tuning_slices_pick_the_preferred_grating():
    m = np.arange(2 * 3 * 4 * 5, dtype=float).reshape(2, 3, 4, 5)
    out = rp.tuning_slices(m, [[1, 2, 3], [0, 0, 0]])
    np.testing.assert_array_equal(out["sf"][0], m[0, :, 2, 3])
    np.testing.assert_array_equal(out["direction"][0], m[0, 1, :, 3])
    np.testing.assert_array_equal(out["tf"][1], m[1, 0, 0, :])


def test_modulation_filter_ds_selection_and_ks_table():
    table = dict(modulation_ratio_curve_fit=np.array([0.5, 2.5]), modulation_ratio_curve_fit_keep=np.array([1, 0]))
    np.testing.assert_array_equal(rp.curve_fit_modulation_ratio(table), [0.5, np.nan])
    np.testing.assert_array_equal(rp.direction_selective([1.0, 2, 3, np.nan], [0.5, 0.1, np.nan, 0.9]), [1.0])
    table = rp.ks_to_references({"TP": {"G1": [1, 2, 3], "G2": []}}, {"G1": [4, 5, 6], "G2": [1]})
    assert table["TP"]["G1"] == 1.0 and np.isnan(table["TP"]["G2"])
    assert rp.binned_distance_to_histogram([0.1, 0.3], [0, 0.2, 0.4], [0.0, 1.0]) == pytest.approx(0.5)
