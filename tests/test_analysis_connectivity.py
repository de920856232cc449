"""Known-answer tests for analysis.connectivity."""
import numpy as np
import pytest

from analysis import connectivity as conn


def test_angle_differences_fold():
    np.testing.assert_allclose(conn.orientation_difference([10, 0, 45, 100], [170, 90, 225, 280]), [20, 90, 0, 0])
    np.testing.assert_allclose(conn.direction_difference([350, 0, 90], [10, 180, 300]), [20, 180, 150])


def test_select_units_needs_excitatory_good_fit_and_wide_envelope():
    r = np.array([0.9, 0.9, 0.6, 0.9, np.nan])
    params = np.zeros((5, 8))
    params[:, 4:6] = 1.0
    params[1, 5] = 0.2
    np.testing.assert_array_equal(conn.select_units(r, params, n_excitatory=4), [True, False, False, True, False])


def test_unit_pairs_geometry_in_motion_frame():
    # unit 0 moves up (direction 0) at (5, 5); unit 1 two rows above it; unit 2 three columns right.
    x, y, d = np.array([5.0, 5.0, 8.0]), np.array([5.0, 3.0, 5.0]), np.array([0.0, 90.0, 180.0])
    w = np.arange(9.0).reshape(3, 3)
    pairs = conn.unit_pairs(w, x, y, d)
    assert pairs["post"].size == 6 and not np.any(pairs["post"] == pairs["pre"])

    def row(post, pre):
        return np.flatnonzero((pairs["post"] == post) & (pairs["pre"] == pre))[0]

    i = row(0, 1)
    assert pairs["along"][i] == pytest.approx(2.0) and pairs["across"][i] == pytest.approx(0.0, abs=1e-12)
    assert pairs["weight"][i] == 1.0 and pairs["dir_diff"][i] == 90 and pairs["ori_diff"][i] == 90
    j = row(1, 2)  # post 1 moves right; pre 2 sits 3 right and 2 down of it
    assert pairs["along"][j] == pytest.approx(3.0) and abs(pairs["across"][j]) == pytest.approx(2.0)
    assert pairs["distance"][j] == pytest.approx(np.hypot(3, 2))


def test_threshold_and_binned_counts():
    # the original's percentile runs over every entry, the self-weights included
    w = np.array([[9.0, -4.0, 1.0], [2.0, 9.0, 3.0], [0.5, -6.0, 9.0]])
    assert conn.connection_threshold(w, 50) == 4.0  # median |W| of 0.5, 1, 2, 3, 4, 6, 9, 9, 9 (2.5 off-diagonal)
    assert conn.connection_threshold(w, 100, signed=True) == 9.0
    assert conn.connection_threshold(w, 25, signed=True) == 0.5  # of -6, -4, 0.5, 1, 2, 3, 9, 9, 9
    hits, totals = conn.binned_counts([0, 30, 90, 90, 95], [1, 0, 1, 0, 1], [0, 22.5, 67.5, 90])
    np.testing.assert_array_equal(hits, [1, 0, 1])
    np.testing.assert_array_equal(totals, [1, 1, 2])


def test_short_range_counts_use_selective_presynaptic_units_only():
    x, y, d = np.array([0.0, 1.0, 2.0]), np.zeros(3), np.array([0.0, 0.0, 90.0])
    w = np.ones((3, 3))
    pairs = conn.unit_pairs(w, x, y, d)
    hits, totals = conn.short_range_counts(pairs, [True, True, False], 0.5, "orientation", [0, 22.5, 67.5, 90])
    # pre in {0, 1}, distance < 2.5: (1,0), (2,0) [dist 2], (0,1), (2,1); orientation diffs 0, 90, 0, 90
    np.testing.assert_array_equal(totals, [2, 0, 2])
    np.testing.assert_array_equal(hits, [2, 0, 2])


def test_axis_fractions_both_conventions():
    ori = np.array([0.0, 0.0, 90.0, 45.0])
    along = np.array([5.0, 4.0, 0.5, 1.0])
    across = np.array([1.0, 0.0, 6.0, 3.0])
    co, orth = conn.axis_fractions(ori, along, across, [0, 22.5, 67.5, 90])
    np.testing.assert_allclose(co, [0.5, 0, 0])
    np.testing.assert_allclose(orth, [0, 0.25, 0.25])
    co2, orth2 = conn.axis_fractions(ori, along, across, [0, 22.5, 67.5, 90], coaxial_axis="orientation")
    np.testing.assert_allclose(co2, orth)
    np.testing.assert_allclose(orth2, co)
    with pytest.raises(ValueError):
        conn.axis_fractions(ori, along, across, [0, 90], coaxial_axis="bar")


def _axis_structured_pairs(m=200, seed=0):
    """Co-axial inputs iso-oriented, orthogonal ones cross-oriented."""
    rng = np.random.default_rng(seed)
    post = rng.uniform(0, 360, m)
    coaxial = np.arange(m) < m // 2
    pre = np.where(coaxial, post, post + 90)
    return post, pre, np.where(coaxial, 6.0, 0.5), np.where(coaxial, 0.5, 6.0)


def test_shuffle_null_detects_structure():
    post, pre, along, across = _axis_structured_pairs()
    edges = [0, 22.5, 67.5, 90]
    observed, null, p = conn.shuffle_axis_null(post, pre, along, across, edges, n_shuffles=300, seed=1)
    np.testing.assert_allclose(observed, [[0.5, 0, 0], [0, 0, 0.5]])
    assert null.shape == (300, 2, 3) and np.allclose(null.sum(axis=(1, 2)), 1.0)
    assert p[0, 0] < 0.01 and p[1, 2] < 0.01
    again = conn.shuffle_axis_null(post, pre, along, across, edges, n_shuffles=300, seed=1)[1]
    np.testing.assert_array_equal(null, again)


def test_shuffle_null_permutes_within_each_axis():
    """Known answer: every co-axial input has the post unit's orientation and
    every orthogonal one is cross-oriented, and all post units share one
    direction. Shuffling within an axis then changes nothing: the null is the
    observation in every shuffle (a shuffle across the axes would mix them),
    and the original's p-rule gives 2 min(0, N) / N = 0, the tie-symmetric 1."""
    m = 40
    coaxial = np.arange(m) < 25
    post, pre = np.full(m, 30.0), np.where(coaxial, 30.0, 120.0)
    along, across = np.where(coaxial, 6.0, 0.5), np.where(coaxial, 0.5, 6.0)
    edges = [0, 22.5, 67.5, 90]
    observed, null, p = conn.shuffle_axis_null(post, pre, along, across, edges, n_shuffles=50, seed=2)
    np.testing.assert_allclose(observed, [[25 / 40, 0, 0], [0, 0, 15 / 40]])
    np.testing.assert_array_equal(null, np.broadcast_to(observed, null.shape))
    np.testing.assert_array_equal(p, 0.0)
    tie_symmetric = conn.shuffle_axis_null(post, pre, along, across, edges, n_shuffles=50, seed=2,
                                           p_rule="tie_symmetric")[2]
    np.testing.assert_array_equal(tie_symmetric, 1.0)
    # the co-axial share is the same in every shuffle, as the original's null keeps it
    _, null, _ = conn.shuffle_axis_null(*_axis_structured_pairs(), edges, n_shuffles=100)
    np.testing.assert_allclose(null[:, 0].sum(axis=1), 0.5)


def test_shuffle_p_value_rules():
    """Known answer: null 0..9 (N = 10) against 3 has 3 below and 7 at or
    above: the original's 2 min(3, 7) / 10 = 0.6; tie-symmetric counts 4 at or
    below: 2 min(7, 4) / 10 = 0.8."""
    null = np.arange(10.0)[:, None]
    assert conn.shuffle_p_value(np.array([3.0]), null)[0] == pytest.approx(0.6)
    assert conn.shuffle_p_value(np.array([3.0]), null, "tie_symmetric")[0] == pytest.approx(0.8)
    assert conn.shuffle_p_value(np.array([9.5]), null)[0] == 0.0  # 10 below, 0 at or above
    with pytest.raises(ValueError, match="p_rule"):
        conn.shuffle_p_value(np.array([3.0]), null, "one_sided")


def test_relative_position_map():
    along = np.array([1.0, 1.0, -3.0])
    across = np.array([0.0, 0.0, 4.0])
    ratio = conn.relative_position_map(along, across, [True, False, True], sigma=0)
    assert np.nanmax(ratio) == 1.0 and np.nanmin(ratio) == 0.5
    assert np.isfinite(ratio).sum() == 2
