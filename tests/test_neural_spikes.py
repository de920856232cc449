"""Spike counting, repeat identity, the noise-ratio filter and binning: known answers."""
import numpy as np
import pytest

from neural_fitting.spikes import (noise_ratio, passes_noise_filter, presentation_counts, repeat_index,
                                   signal_noise_power, trials_array)
from neural_fitting.stimuli import MovieSpec, StimulusLayout, bin_mean


def test_counts_are_half_open_windows_and_accept_unsorted_spikes():
    spikes = [np.array([2.5, 0.0, 1.0, 0.5, 1.0, 3.0]), np.array([])]
    counts = presentation_counts(spikes, start=[0.0, 1.0, 2.0], stop=[1.0, 2.0, 3.0])
    # 1.0 twice belongs to [1, 2); 3.0 is outside [2, 3)
    np.testing.assert_array_equal(counts, [[2, 2, 1], [0, 0, 0]])


def test_repeat_index_follows_time_not_table_order():
    frames = np.array([0, 1, 2] * 3)
    start = np.arange(9.0)
    shuffle = np.random.default_rng(0).permutation(9)
    repeats = repeat_index(frames[shuffle], start[shuffle])
    np.testing.assert_array_equal(repeats, (start // 3).astype(int)[shuffle])


def test_trials_array_places_counts_and_rejects_gaps():
    frames, repeats = np.array([1, 0, 1, 0]), np.array([0, 0, 1, 1])
    counts = np.array([[10, 20, 30, 40]])
    np.testing.assert_array_equal(trials_array(counts, frames, repeats, 2, 2), [[[20, 10], [40, 30]]])
    with pytest.raises(ValueError, match="occurs 0 times"):
        trials_array(counts[:, :3], frames[:3], repeats[:3], 2, 2)
    with pytest.raises(ValueError, match="expected 0..1"):
        trials_array(counts, frames + 1, repeats, 2, 2)


def test_noise_ratio_hand_computed():
    # TP = (4 + 1) / 2; mean = [0.5, 2, 3.5], var 2.25; SP = (2 * 2.25 - 2.5) / 1 = 2; NP = 0.5
    signal, noise, total = signal_noise_power(np.array([[0.0, 2, 4], [1, 2, 3]]))
    assert (signal, noise, total) == pytest.approx((2.0, 0.5, 2.5))
    assert noise_ratio(np.array([[0.0, 2, 4], [1, 2, 3]])) == pytest.approx(0.25)


def test_deterministic_unit_has_no_noise_power():
    row = np.random.default_rng(1).poisson(3, 50).astype(float)
    signal, noise, _ = signal_noise_power(np.tile(row, (10, 1)))
    assert noise == pytest.approx(0, abs=1e-12) and signal == pytest.approx(row.var(ddof=1))


def test_pure_noise_unit_gives_negative_signal_power_and_nan():
    # the mean over repeats is flat, so SP = -TP / (N - 1) < 0 -> NaN
    trials = np.array([[1.0, 0] * 6, [0, 1.0] * 6])
    assert np.isnan(signal_noise_power(trials)[0]) and np.isnan(noise_ratio(trials))


def test_noise_ratio_is_vectorised_over_units():
    rng = np.random.default_rng(2)
    trials = rng.poisson(2, (5, 4, 30)).astype(float)
    np.testing.assert_allclose(noise_ratio(trials), [noise_ratio(t) for t in trials])


def test_filter_keeps_nan_only_when_asked():
    ratio = np.array([10.0, 60.0, 61.0, np.nan, np.inf])
    np.testing.assert_array_equal(passes_noise_filter(ratio), [True, True, False, True, False])
    np.testing.assert_array_equal(passes_noise_filter(ratio, nan_passes=False), [True, True, False, False, False])


def test_bin_mean_and_layout():
    x = np.arange(12.0).reshape(2, 6)
    np.testing.assert_array_equal(bin_mean(x, 3), [[1, 4], [7, 10]])
    np.testing.assert_array_equal(bin_mean(x.T, 2, axis=0), bin_mean(x, 2).T)
    assert StimulusLayout().n_bins == 900 and StimulusLayout().n_chunks == 15
    with pytest.raises(ValueError, match="multiple of the chunk"):
        StimulusLayout((MovieSpec("m", 10, 2),), chunk_frames=3, bin_frames=1)
