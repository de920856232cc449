"""RSMs, Spearman similarity, split-half ceilings and statistics: known answers."""
import numpy as np
import pytest
from scipy import stats

from neural_fitting.rsa import (average_ranks, best_group, noise_ceiling, normalised_similarity, paired_ttest,
                                ranked_upper_triangle, rsm, similarity, spearman, upper_triangle)


def pearsonr_loop(responses):
    """The original's definition, pair by pair: 0 if either vector is constant."""
    n = len(responses)
    out = np.zeros((n, n))
    for a in range(n):
        for b in range(n):
            if np.ptp(responses[a]) and np.ptp(responses[b]):
                out[a, b] = stats.pearsonr(responses[a], responses[b])[0]
    return out


def test_rsm_equals_pearsonr_loop_with_constant_rule():
    rng = np.random.default_rng(0)
    x = rng.poisson(2.0, (25, 12)).astype(float)
    x[3] = 0.0  # silent bin
    x[7] = 0.1  # constant, not representable exactly
    result = rsm(x)
    np.testing.assert_allclose(result, pearsonr_loop(x), atol=1e-12)
    assert result[3, 3] == 0 and result[7, 7] == 0 and result[0, 0] == 1


def test_upper_triangle_order():
    m = np.arange(16).reshape(4, 4)
    np.testing.assert_array_equal(upper_triangle(m), [1, 2, 3, 6, 7, 11])


def test_ranks_and_spearman_match_scipy_with_ties():
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 20, 500).astype(float), rng.normal(size=500)
    np.testing.assert_array_equal(average_ranks(a), stats.rankdata(a))
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b)[0], abs=1e-12)


def test_identical_data_similarity_one_and_order_sensitive():
    x = np.random.default_rng(2).normal(size=(30, 20))
    assert similarity(rsm(x), rsm(x)) == pytest.approx(1.0)
    assert similarity(rsm(x), rsm(x[::-1])) < 0.5


def test_noise_free_ceiling_without_ties_is_near_one():
    # a rank-3 signal read out by 4,000 units with continuous loadings: no two RSM
    # entries are equal, so no kernel's rounding can reorder them, and with 2,000
    # units per half both halves' RSMs order the 435 bin pairs almost identically
    rng = np.random.default_rng(3)
    signal = rng.normal(size=(30, 3))
    loadings = rng.normal(size=(3, 4000)) * rng.uniform(0.5, 2.0, size=4000)
    values = noise_ceiling(signal @ loadings, n_splits=8, seed=0)
    assert values.shape == (8,)
    assert values.min() > 0.995


def test_tied_ceiling_is_one_whatever_the_summation_order():
    # every bin is one +-1 pattern times a gain, so each half's RSM holds only
    # r = +-1: all entries tie in exact arithmetic. A kernel's summation order moves
    # them by ~1e-16; ranked raw, that broke the ties at random (rho 0.63-0.96 on
    # OpenBLAS's SkylakeX kernel). The same jitter is injected here on purpose.
    rng = np.random.default_rng(3)
    pattern = rng.permutation(np.repeat([-1.0, 1.0], 32))
    gains = rng.choice([-2.0, -1.0, 1.0, 2.0], size=30)
    x = gains[:, None] * pattern[None, :]
    np.testing.assert_allclose(noise_ceiling(x, n_splits=8, seed=0), 1.0, atol=1e-12)
    m = rsm(x)
    jittered = m + rng.uniform(-4e-16, 4e-16, size=m.shape)
    assert similarity(m, jittered) == 1.0


def test_ties_in_integer_counts_rank_the_same_under_two_summation_orders():
    # sparse integer counts make many exactly equal correlations (repeated bins).
    # Pearson across units does not depend on the units' order, but the products'
    # summation order does: reversing the units is a second, mathematically equal path.
    rng = np.random.default_rng(8)
    x = rng.poisson(0.3, size=(40, 7)).astype(float)
    x[20:] = x[:20]  # every bin appears twice: r = 1 ties and repeated values
    forward, backward = rsm(x), rsm(x[:, ::-1])
    np.testing.assert_array_equal(ranked_upper_triangle(forward), ranked_upper_triangle(backward))
    assert similarity(forward, backward) == 1.0
    # ties really are there, and rounding keeps the ranks of distinct values
    ranks = ranked_upper_triangle(forward)
    assert len(np.unique(ranks)) < len(ranks) / 2
    np.testing.assert_array_equal(ranked_upper_triangle(forward), stats.rankdata(np.round(upper_triangle(forward), 12)))


def test_pure_noise_ceiling_is_near_zero_and_seeded():
    x = np.random.default_rng(4).normal(size=(40, 60))
    values = noise_ceiling(x, n_splits=20, seed=5)
    assert abs(values.mean()) < 0.05
    np.testing.assert_array_equal(values, noise_ceiling(x, n_splits=20, seed=5))


def test_signal_plus_noise_ceiling_between():
    rng = np.random.default_rng(6)
    signal = rng.normal(size=(40, 1)) * rng.normal(size=(1, 80)) + rng.normal(size=(40, 5)) @ rng.normal(size=(5, 80))
    values = noise_ceiling(signal + rng.normal(size=signal.shape), n_splits=10)
    assert 0.2 < values.mean() < 0.99


def test_scores_and_statistics():
    assert normalised_similarity(0.3, np.array([0.5, 0.7])) == pytest.approx(0.5)
    assert best_group(np.array([[0.1, 0.4, np.nan], [0.3, 0.2, 0.1]])) == 1
    t, p, n = paired_ttest([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])  # d = 1,2,3: t = 2 / (1 / sqrt 3)
    assert t == pytest.approx(2 * np.sqrt(3)) and p == pytest.approx(0.0742, abs=1e-4) and n == 3
    with pytest.raises(ValueError, match="differ in length"):
        paired_ttest([1.0, 2.0], [1.0])


def test_best_groups_and_paired_tests_on_a_hand_made_table():
    import pandas as pd

    from neural_fitting.rsa_report import best_groups, paired_tests

    rows = []
    for session, shift in (("1", 0.0), ("2", 0.1), ("3", 0.3)):
        for model, scores in (("TP_full", [0.2, 0.6, 0.4]), ("AE", [0.3, 0.1])):
            for group, score in enumerate(scores):
                rows.append({"session": session, "area": "VISp", "model": model, "group": group,
                             "group_name": f"group {group + 1}", "score": score + shift * (model == "TP_full")})
    table = pd.DataFrame(rows)
    best = best_groups(table).set_index("model")
    assert best.loc["TP_full", "group"] == 1 and best.loc["AE", "group"] == 0
    assert best.loc["TP_full", "mean"] == pytest.approx(0.6 + 0.4 / 3) and best.loc["AE", "n"] == 3
    tests = paired_tests(table, best_groups(table), "TP_full")
    # differences 0.3, 0.4, 0.6: mean 13/30, sd sqrt(7/300), t = mean / (sd / sqrt 3)
    assert tests["t"].iloc[0] == pytest.approx((13 / 30) / np.sqrt(7 / 300 / 3))
    assert tests["n_sessions"].iloc[0] == 3 and tests["other"].iloc[0] == "AE"
