"""Known-answer tests for analysis.stats."""
import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.contingency_tables import Table
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportions_ztest

from analysis import stats


def test_mean_sem_known_values_and_nan_dropped():
    mean, sem = stats.mean_sem([1, 2, 3, 4, np.nan])
    assert mean == pytest.approx(2.5)
    assert sem == pytest.approx(np.sqrt(5 / 3) / 2)
    assert np.isnan(stats.mean_sem([np.nan])[0])
    assert np.isnan(stats.mean_sem([3.0])[1])


def test_fraction_above_is_strict_and_ignores_nan():
    assert stats.fraction_above([0, 1, 2, 3, np.nan], 1) == pytest.approx(0.5)


def test_ks_distance_known_answers():
    assert stats.ks_distance([1, 2, 3], [4, 5, 6]) == 1.0
    # CDFs differ most between 2 and 3: F_a = 0.5, F_b = 0.
    assert stats.ks_distance([1, 2, 3, 4], [3, 4, 5, 6]) == pytest.approx(0.5)
    assert stats.ks_distance([1, 2, np.nan], [1, 2]) == 0.0
    with pytest.raises(ValueError):
        stats.ks_test([np.nan], [1.0])


def test_binned_variant_drops_out_of_range_without_renormalising():
    p = stats.bin_proportions([0.1, 0.5, 1.5, 2.5], [0, 1, 2])
    np.testing.assert_allclose(p, [0.5, 0.25])
    assert stats.histogram_cdf_distance([0.5, 0.5, 0], [0, 0.5, 0.5]) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        stats.histogram_cdf_distance([1, 0], [1, 0, 0])


def test_binned_distance_bounded_by_exact_ks():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 400), rng.normal(0.5, 1, 300)
    edges = np.linspace(-6, 6, 13)
    binned = stats.histogram_cdf_distance(stats.bin_proportions(a, edges), stats.bin_proportions(b, edges))
    assert 0 < binned <= stats.ks_distance(a, b) + 1e-12


def test_fisher_z_with_df():
    assert stats.fisher_z(np.tanh(1.0), 9) == pytest.approx(3.0)
    assert np.isinf(stats.fisher_z(1.0, 9))


def test_partial_correlation_matches_residual_correlation():
    rng = np.random.default_rng(1)
    c = rng.normal(size=50)
    x = 0.8 * c + rng.normal(size=50)
    y = -0.5 * c + 0.3 * x + rng.normal(size=50)
    rx = x - np.polyval(np.polyfit(c, x, 1), c)
    ry = y - np.polyval(np.polyfit(c, y, 1), c)
    expected = np.corrcoef(rx, ry)[0, 1]
    assert stats.partial_correlation(x, y, c) == pytest.approx(expected, abs=1e-10)
    # batched along the last axis
    batch = stats.partial_correlation(np.stack([x, x]), np.stack([y, y]), np.stack([c, c]))
    np.testing.assert_allclose(batch, [expected, expected], atol=1e-10)
    assert np.isnan(stats.pearson(np.ones(5), np.arange(5)))


def test_two_proportion_ztest_pooled_known_value():
    z, p = stats.two_proportion_ztest(45, 100, 30, 100)
    assert z == pytest.approx(0.15 / np.sqrt(0.375 * 0.625 * 0.02))
    z_sm, p_sm = proportions_ztest([45, 30], [100, 100])
    assert (z, p) == pytest.approx((z_sm, p_sm))
    # the original's p**(1 - p) slip gives a different (wrong) z
    wrong = 0.15 / np.sqrt(0.375 ** (1 - 0.375) * 0.02)
    assert abs(z - wrong) > 0.5
    assert stats.two_proportion_ztest(0, 10, 0, 20) == (0.0, 1.0)


def _ko_orientation():
    return np.array([10, 11, 4]), np.array([26, 44, 24])


def test_cochran_armitage_matches_textbook_form():
    x, n = _ko_orientation()
    s = np.array([0.0, 1.0, 2.0])
    big_n, p = n.sum(), x.sum() / n.sum()
    s_bar = np.sum(n * s) / big_n
    z_expected = (np.sum(s * x) - x.sum() * s_bar) / np.sqrt(p * (1 - p) * np.sum(n * (s - s_bar) ** 2))
    z, pval = stats.cochran_armitage_trend(x, n)
    assert z == pytest.approx(z_expected)
    assert z < 0  # connection probability falls with orientation difference
    assert pval == pytest.approx(2 * sps.norm.sf(abs(z_expected)))


def test_cochran_armitage_permutation_variance_matches_statsmodels():
    x, n = _ko_orientation()
    table = Table(np.stack([x, n - x], axis=1))  # rows: bins, columns: connected / not
    sm = table.test_ordinal_association()
    z, p = stats.cochran_armitage_trend(x, n, variance="permutation")
    assert abs(z) == pytest.approx(abs(sm.zscore))
    assert p == pytest.approx(sm.pvalue)
    assert np.isnan(stats.cochran_armitage_trend([1, 1], [2, 2], scores=[1, 1])[0])


def test_connectivity_trend_tests_give_the_originals_table_and_the_correct_one():
    """Known answer: connection probability falling over three bins. The
    original's table [connected, all tested] gives z 2.17, p 0.030; the
    correct [connected, not connected] gives z 2.25, p 0.024; both as
    statsmodels computes them on those tables."""
    connected, tested = np.array([16, 6, 5]), np.array([263, 191, 231])
    result = stats.connectivity_trend_tests(connected, tested)
    assert (round(result["z_original"], 2), round(result["p_original"], 3)) == (2.17, 0.030)
    assert (round(result["z"], 2), round(result["p"], 3)) == (2.25, 0.024)
    original = Table(np.stack([connected, tested]).astype(float)).test_ordinal_association()
    correct = Table(np.stack([connected, tested - connected]).astype(float)).test_ordinal_association()
    assert result["z_original"] == pytest.approx(original.zscore) and result["p_original"] == pytest.approx(original.pvalue)
    assert result["z"] == pytest.approx(correct.zscore) and result["p"] == pytest.approx(correct.pvalue)


def test_paired_ttest_refuses_unequal_lengths_and_drops_nan_pairs():
    with pytest.raises(ValueError, match="equal lengths"):
        stats.paired_ttest([1, 2, 3], [1, 2])
    a = np.array([1.0, 2.0, 3.5, np.nan, 5.0])
    b = np.array([0.5, 2.5, 2.0, 1.0, 3.0])
    t, p, n = stats.paired_ttest(a, b)
    ref = sps.ttest_rel(a[[0, 1, 2, 4]], b[[0, 1, 2, 4]])
    assert (t, p, n) == pytest.approx((ref.statistic, ref.pvalue, 4))


def test_holm_matches_statsmodels_and_keeps_order():
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.5])
    np.testing.assert_allclose(stats.holm(p), multipletests(p, method="holm")[1])
    np.testing.assert_allclose(stats.holm([0.02, np.nan, 0.04]), [0.04, np.nan, 0.04])


def test_pairwise_ttests_holm_and_anova():
    rng = np.random.default_rng(2)
    groups = {"G1": rng.normal(0, 1, 30), "G2": rng.normal(1, 1, 30), "G3": rng.normal(2, 1, 30)}
    rows = stats.pairwise_ttests_holm(groups)
    assert [(r["a"], r["b"]) for r in rows] == [("G1", "G2"), ("G1", "G3"), ("G2", "G3")]
    np.testing.assert_allclose([r["p_holm"] for r in rows], multipletests([r["p"] for r in rows], method="holm")[1])
    f, p = stats.one_way_anova(*groups.values())
    assert f == pytest.approx(sps.f_oneway(*groups.values()).statistic) and p < 1e-6


def test_ratio_of_gaussians_shape_and_fit_recovers_parameters():
    true = (2.0, 3.0, 1.5, 8.0)
    x = np.linspace(0.5, 40, 20)
    y = stats.ratio_of_gaussians(x, *true)
    assert stats.ratio_of_gaussians(0.0, *true) == 0.0
    # saturates at (G_e / (1 + G_i))^2 for large sizes
    assert stats.ratio_of_gaussians(1e4, *true) == pytest.approx((2.0 / 2.5) ** 2)
    np.testing.assert_allclose(stats.fit_ratio_of_gaussians(x, y), true, rtol=1e-4)
    noisy = y + np.random.default_rng(3).normal(0, 0.01, y.size)
    np.testing.assert_allclose(stats.fit_ratio_of_gaussians(x, noisy), true, rtol=0.15)
