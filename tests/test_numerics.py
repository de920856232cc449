"""The shared numerics in utils.py: Pearson r (paired and all-pairs) and the paired
t-test, against scipy and hand-computed values, including the constant-vector
and missing-value rules every caller relies on."""
import numpy as np
import pytest
from scipy import stats

from utils import paired_ttest, pearson, pearson_matrix


def test_pearson_known_value_and_scipy():
    # x = 1..5, y = (2, 4, 5, 4, 5): xc = (-2..2), yc = (-2, 0, 1, 0, 1), so r = 6 / sqrt(10 * 6)
    r = pearson([1, 2, 3, 4, 5], [2, 4, 5, 4, 5])
    assert r == pytest.approx(6 / np.sqrt(60), abs=1e-15)
    rng = np.random.default_rng(0)
    for _ in range(20):
        x, y = rng.normal(size=(2, 30))
        assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-14)


def test_pearson_is_batched_along_the_last_axis_with_broadcasting():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(3, 4, 12)), rng.normal(size=(3, 1, 12))
    r = pearson(x, y)
    assert r.shape == (3, 4)
    expected = [[stats.pearsonr(x[i, j], y[i, 0])[0] for j in range(4)] for i in range(3)]
    np.testing.assert_allclose(r, expected, atol=1e-14)
    assert np.ndim(pearson(x[0, 0], y[0, 0])) == 0


def test_pearson_constant_rule_nan_or_zero_tested_on_the_values():
    rng = np.random.default_rng(2)
    y = rng.normal(size=7)
    # 0.1 is not representable: centring leaves rounding noise, yet the vector is constant
    for constant_vector in (np.zeros(7), np.full(7, 0.1), np.full(7, 3.0)):
        assert np.isnan(pearson(constant_vector, y))
        assert np.isnan(pearson(y, constant_vector))
        assert pearson(constant_vector, y, constant="zero") == 0.0
    batch = np.stack([y, np.full(7, 0.1), -y])
    np.testing.assert_array_equal(pearson(batch, y), [1.0, np.nan, -1.0])
    np.testing.assert_array_equal(pearson(batch, y, constant="zero"), [1.0, 0.0, -1.0])
    with pytest.raises(ValueError, match="'nan' or 'zero'"):
        pearson(y, y, constant="ignore")


def test_pearson_is_clipped_to_plus_minus_one():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 17))
    assert (pearson(x, x) == 1.0).all() and (pearson(x, -2 * x) == -1.0).all()


def test_pearson_matrix_equals_a_pair_loop_and_keeps_the_constant_rule():
    rng = np.random.default_rng(4)
    x = rng.poisson(2.0, (15, 9)).astype(float)
    x[3] = 0.0
    x[8] = 0.1
    loop = np.array([[stats.pearsonr(a, b)[0] if np.ptp(a) and np.ptp(b) else np.nan for b in x] for a in x])
    np.testing.assert_allclose(pearson_matrix(x), loop, atol=1e-12)
    np.testing.assert_allclose(pearson_matrix(x), pearson(x[:, None], x[None]), atol=1e-12)
    zero = pearson_matrix(x, constant="zero")
    np.testing.assert_allclose(zero, np.nan_to_num(loop, nan=0.0), atol=1e-12)
    assert zero[3, 3] == 0 and zero[8, 8] == 0 and zero[0, 0] == 1
    assert np.isnan(pearson_matrix(x)[8]).all()
    with pytest.raises(ValueError, match="2-D"):
        pearson_matrix(x[0])


def test_paired_ttest_known_value_and_scipy():
    t, p, n = paired_ttest([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])  # d = 1, 2, 3: t = 2 / (1 / sqrt 3)
    assert t == pytest.approx(2 * np.sqrt(3)) and p == pytest.approx(2 * stats.t.sf(2 * np.sqrt(3), 2)) and n == 3
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(2, 25))
    ref = stats.ttest_rel(a, b)
    assert paired_ttest(a, b) == pytest.approx((ref.statistic, ref.pvalue, 25), rel=1e-12)


def test_paired_ttest_missing_values_drop_or_propagate():
    a = np.array([1.0, 2.0, 3.5, np.nan, 5.0, 2.0])
    b = np.array([0.5, 2.5, 2.0, 1.0, 3.0, np.inf])
    ref = stats.ttest_rel(a[[0, 1, 2, 4]], b[[0, 1, 2, 4]])
    assert paired_ttest(a, b) == pytest.approx((ref.statistic, ref.pvalue, 4))
    t, p, n = paired_ttest(a, b, missing="propagate")
    assert np.isnan(t) and np.isnan(p) and n == 6
    t, p, n = paired_ttest([1.0, np.nan], [0.0, 1.0])  # one pair left: no test
    assert np.isnan(t) and np.isnan(p) and n == 1
    with pytest.raises(ValueError, match="differ in length"):
        paired_ttest([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="'drop' or 'propagate'"):
        paired_ttest(a, b, missing="omit")
