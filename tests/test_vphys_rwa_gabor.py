"""Known-answer tests for the streamed RWA (against the original's formula
written directly in numpy), the Gabor fitter, the whole chain from a
hand-built Gabor unit to its fit, and the spectral orientation index."""
import numpy as np
import pytest
import torch
from torch import nn

from models.base import ProbeableModel
from virtual_physiology import ProbeError
from virtual_physiology.rwa import response_weighted_average
from virtual_physiology.stimuli import white_noise


class TinyRecurrent(ProbeableModel):
    """A random ReLU RNN split into groups; the last unit is silenced so that
    the "not kept" path is exercised."""

    def __init__(self, frame_shape=(3, 4), group_sizes=(4, 3, 3), seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.frame_shape, self.group_sizes = frame_shape, group_sizes
        self.rnn = nn.RNN(self.n_pixels, self.n_hidden, nonlinearity="relu", batch_first=True)
        self.register_buffer("alive", torch.ones(self.n_hidden))
        self.alive[-1] = 0

    def forward(self, x):
        hidden = self.rnn(x)[0] * self.alive
        return x, hidden


def _rwa_like_the_original(model, n_clips, n_frames, seed):
    noise = white_noise(n_clips, n_frames, model.n_pixels, torch.Generator().manual_seed(seed))
    resp = model.hidden_activity(noise).reshape(-1, model.n_hidden).double().numpy()
    noise = noise.reshape(-1, model.n_pixels).double().numpy()
    rwa = np.full((model.n_hidden, model.n_pixels), np.nan)
    for lag, units in zip(model.group_lags, model.group_slices):
        for unit in range(units.start, units.stop):
            if resp[lag:, unit].sum() != 0:
                rwa[unit] = np.average(noise[:len(noise) - lag], axis=0, weights=resp[lag:, unit])
    return rwa


@pytest.mark.parametrize("chunk_clips", [1, 3, 7, 40])
def test_streamed_rwa_equals_the_concatenated_formula(chunk_clips):
    model = TinyRecurrent()
    assert model.group_lags == (0, 1, 2)
    expected = _rwa_like_the_original(model, n_clips=40, n_frames=6, seed=5)
    result = response_weighted_average(model, n_clips=40, n_frames=6, chunk_clips=chunk_clips,
                                       seed=5, progress=False)
    assert result["rwa"].dtype == np.float32 and result["rwa"].shape == (10, 12)
    np.testing.assert_array_equal(result["kept"], ~np.isnan(expected[:, 0]))
    assert not result["kept"][-1] and result["kept"][:-1].all()
    np.testing.assert_allclose(result["rwa"], expected, rtol=1e-4, atol=1e-6)


def test_rwa_recovers_a_linear_filter_at_the_right_lag():
    class DelayedFilter(ProbeableModel):
        """Group 1 responds to <w, x[t - 1]>, rectified: its RWA is along w."""
        frame_shape, group_sizes = (4, 4), (1, 1)

        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.linspace(-1, 1, 16))

        def forward(self, x):
            drive = torch.relu(x @ self.w)
            delayed = torch.cat([torch.zeros_like(drive[:, :1]), drive[:, :-1]], dim=1)
            return x, torch.stack([drive, delayed], dim=-1)

    result = response_weighted_average(DelayedFilter(), n_clips=300, n_frames=10, chunk_clips=64,
                                       progress=False)
    w = np.linspace(-1, 1, 16)
    for unit in range(2):
        assert np.corrcoef(result["rwa"][unit], w)[0, 1] > 0.97


# ---------------------------------------------------------------- Gabor fits
from virtual_physiology.gabor import (fit_gabors, gabor_frequency, gabor_image, gabor_lkx, orientation_index,  # noqa: E402
                                      strict_gabor)


def _true_gabors(n, rng):
    """Random Gabors well inside a 20x20 frame, as gabor_params (n, 8), with
    f * sigma_along >= 0.54: clearly past the strict test's 0.5."""
    return np.column_stack([
        np.ones(n), rng.uniform(7, 12, n), rng.uniform(7, 12, n), rng.uniform(0, np.pi, n),
        2 * np.log(rng.uniform(3, 4, n)), 2 * np.log(rng.uniform(2, 3.5, n)),
        gabor_lkx(rng.uniform(0.18, 0.28, n)), rng.uniform(-np.pi, np.pi, n)])


def _orientation_error_degrees(a, b):
    """|a - b| modulo pi, in degrees."""
    return np.degrees(np.abs(np.angle(np.exp(2j * (np.asarray(a) - np.asarray(b)))))) / 2


def test_gabor_image_follows_the_parametrisation():
    # theta = 0: carrier along the columns; phase pi/2 gives a cosine (even) Gabor.
    params = np.array([1, 4.0, 3.0, 0.0, np.log(4.0), np.log(9.0), gabor_lkx(0.25), np.pi / 2])
    rows, cols = np.mgrid[:7, :9]
    expected = (np.exp(-(cols - 4.0) ** 2 / 8 - (rows - 3.0) ** 2 / 18)
                * np.cos(2 * np.pi * 0.25 * (cols - 4.0)))
    np.testing.assert_allclose(gabor_image(params, (7, 9)), expected / np.linalg.norm(expected), atol=1e-12)
    np.testing.assert_allclose(gabor_frequency(params[6]), 0.25)


def test_noisy_gabors_are_recovered():
    rng = np.random.default_rng(1)
    true = _true_gabors(12, rng)
    rwa = 0.05 * gabor_image(true, (20, 20)).reshape(12, -1)
    rwa += rng.normal(0, 0.05 * 0.03, rwa.shape)
    fit = fit_gabors(rwa, (20, 20), seed=0, progress=False)
    assert _orientation_error_degrees(fit["gabor_params"][:, 3], true[:, 3]).max() < 10
    np.testing.assert_allclose(fit["frequency"], gabor_frequency(true[:, 6]), rtol=0.15)
    np.testing.assert_allclose(fit["gabor_x"], true[:, 1], atol=0.5)
    np.testing.assert_allclose(fit["gabor_y"], true[:, 2], atol=0.5)
    assert (fit["gabor_r"] > 0.8).all()  # noise RMS is ~60% of the signal RMS
    assert fit["strict_gabor"].all() and strict_gabor(true, np.ones(12), (20, 20)).all()
    assert fit["gabor_params"].shape == (12, 8) and (fit["gabor_params"][:, 0] == 1).all()
    assert ((fit["gabor_params"][:, 3] >= 0) & (fit["gabor_params"][:, 3] < np.pi)).all()
    # gabor_loss compares the unit-norm fit with the raw (small) RWA.
    fits = gabor_image(fit["gabor_params"], (20, 20)).reshape(12, -1)
    np.testing.assert_allclose(fit["gabor_loss"], np.mean((fits - rwa) ** 2, axis=1))


def _gabor_patch(frequency, theta, shape=(20, 20), x0=9.3, y0=10.2, sigma_along=3.0, sigma_across=2.5, phi=0.4):
    """A unit-norm Gabor drawn from its definition (not from ``gabor_image``),
    carrier ``frequency`` cycles/px along direction ``theta`` (x = column)."""
    rows, cols = np.mgrid[:shape[0], :shape[1]]
    along = (cols - x0) * np.cos(theta) + (rows - y0) * np.sin(theta)
    across = -(cols - x0) * np.sin(theta) + (rows - y0) * np.cos(theta)
    g = np.exp(-along ** 2 / (2 * sigma_along ** 2) - across ** 2 / (2 * sigma_across ** 2)) * np.sin(
        2 * np.pi * frequency * along + phi)
    return (g / np.linalg.norm(g)).ravel()


def test_carriers_up_to_the_2_px_wavelength_are_fitted():
    """The fitting graph maps k = 2 pi / (2 + e^lkx): carriers at 0.38 and
    0.45 cycles/px (above the 0.354 a 2 sqrt 2 offset allows) fit with r >= 0.95,
    the right frequency and the true along-carrier log-variance 2 log 3 = 2.2
    (which the notebook's filter needs above 0.5)."""
    frequencies, thetas = np.array([0.38, 0.45, 0.38, 0.45]), np.array([0.3, 1.2, 2.0, 2.8])
    rwa = np.stack([_gabor_patch(f, t) for f, t in zip(frequencies, thetas)])
    rwa += np.random.default_rng(5).normal(0, 0.01, rwa.shape)
    fit = fit_gabors(rwa, (20, 20), seed=0, progress=False)
    assert (fit["gabor_r"] >= 0.95).all()
    np.testing.assert_allclose(fit["frequency"], frequencies, rtol=0.1)
    np.testing.assert_allclose(fit["gabor_params"][:, 4], 2 * np.log(3.0), atol=0.3)
    assert _orientation_error_degrees(fit["gabor_params"][:, 3], thetas).max() < 5
    assert fit["strict_gabor"].all()
    np.testing.assert_allclose(gabor_frequency(gabor_lkx(0.45)), 0.45)
    assert gabor_frequency(-6.0) > 0.49  # the lkx bound reaches the 2 px wavelength


def test_carriers_at_or_below_0_32_cycles_per_px_fit_as_before():
    """Below the old ceiling the wider range changes neither the fit (r,
    frequency) nor the strict test nor the orientation index."""
    frequencies, thetas = np.array([0.15, 0.2, 0.32]), np.array([0.7, 1.9, 2.5])
    rwa = np.stack([_gabor_patch(f, t, sigma_along=4.0) for f, t in zip(frequencies, thetas)])
    fit = fit_gabors(rwa, (20, 20), seed=0, progress=False)
    assert (fit["gabor_r"] > 0.99).all() and fit["strict_gabor"].all()
    np.testing.assert_allclose(fit["frequency"], frequencies, rtol=0.05)
    assert _orientation_error_degrees(fit["gabor_params"][:, 3], thetas).max() < 2
    assert (orientation_index(rwa, (20, 20)) > 0.8).all()  # fit-free, so untouched by the range


def test_single_pixel_blobs_fit_well_but_are_not_strict_gabors():
    rng = np.random.default_rng(2)
    blobs = np.zeros((6, 400))
    blobs[np.arange(6), rng.choice(400, 6, replace=False)] = rng.choice([-1.0, 1.0], 6)
    blobs += rng.normal(0, 0.03, blobs.shape)
    fit = fit_gabors(blobs, (20, 20), progress=False)
    assert (fit["gabor_r"] > 0.7).all()
    assert not fit["strict_gabor"].any()


def test_silent_units_get_nan_fits():
    rwa = np.zeros((3, 400))
    rwa[1] = np.nan
    rwa[2] = gabor_image(_true_gabors(1, np.random.default_rng(3))[0], (20, 20)).ravel()
    fit = fit_gabors(rwa, (20, 20), progress=False)
    assert np.isnan(fit["gabor_params"][:2]).all() and np.isnan(fit["gabor_r"][:2]).all()
    assert fit["gabor_r"][2] > 0.99 and list(fit["strict_gabor"]) == [False, False, True]


def test_the_strict_test_asks_for_half_a_carrier_cycle_per_sigma():
    # sigma_along = 4 px: f = 0.13 gives 0.52 cycles per sigma, f = 0.12 gives 0.48.
    params = np.array([[1, 10, 10, 0.3, 2 * np.log(4.0), 2 * np.log(3.0), gabor_lkx(f), 0]
                       for f in (0.13, 0.12)])
    assert list(strict_gabor(params, np.ones(2), (20, 20))) == [True, False]
    assert strict_gabor(params, np.ones(2), (20, 20), min_cycles_per_sigma=0.45).all()


def test_a_unit_fitted_in_a_batch_gets_the_fit_it_gets_alone():
    rng = np.random.default_rng(4)
    rwa = gabor_image(_true_gabors(3, rng), (20, 20)).reshape(3, -1) + rng.normal(0, 0.02, (3, 400))
    batched = fit_gabors(rwa, (20, 20), n_starts=3, steps=60, seed=7, progress=False)
    for unit in range(3):
        alone = fit_gabors(rwa[unit:unit + 1], (20, 20), n_starts=3, steps=60, seed=7, progress=False)
        np.testing.assert_allclose(alone["gabor_params"][0], batched["gabor_params"][unit], rtol=1e-4, atol=1e-4)
    chunked = fit_gabors(rwa[::-1], (20, 20), n_starts=3, steps=60, seed=7, chunk_units=2, progress=False)
    np.testing.assert_allclose(chunked["gabor_params"][::-1], batched["gabor_params"], rtol=1e-4, atol=1e-4)


class GaborUnit(ProbeableModel):
    """One group of one unit responding relu(<gabor, frame>) (group 1: lag 0)."""

    def __init__(self, params, frame_shape):
        super().__init__()
        self.frame_shape, self.group_sizes = frame_shape, (1,)
        self.w = nn.Parameter(torch.as_tensor(gabor_image(params, frame_shape).ravel(), dtype=torch.float32))

    def forward(self, x):
        return x, torch.relu(x @ self.w)[..., None]


_GABOR_UNIT = np.array([1, 7.3, 8.6, 2.1, 2 * np.log(3.0), 2 * np.log(2.5), gabor_lkx(0.2), 0.7])


def test_rwa_then_gabor_fit_recover_a_rectified_gabor_unit():
    """The whole chain: the RWA of relu(<gabor, frame>) is the Gabor, and the
    fit returns its orientation, frequency and centre."""
    model = GaborUnit(_GABOR_UNIT, (16, 16))
    rwa = response_weighted_average(model, n_clips=400, n_frames=20, chunk_clips=100, progress=False)["rwa"]
    assert np.corrcoef(rwa[0], model.w.detach().numpy())[0, 1] > 0.95
    fit = fit_gabors(rwa, (16, 16), seed=0, progress=False)
    assert _orientation_error_degrees(fit["gabor_params"][0, 3], _GABOR_UNIT[3]) < 5
    np.testing.assert_allclose(fit["frequency"][0], 0.2, rtol=0.1)
    np.testing.assert_allclose([fit["gabor_x"][0], fit["gabor_y"][0]], _GABOR_UNIT[1:3], atol=0.5)
    assert fit["gabor_r"][0] > 0.95 and fit["strict_gabor"][0]


def test_rf_summary_stats_of_a_gabor_unit():
    from virtual_physiology.rf_summary import receptive_field_stats

    model = GaborUnit(_GABOR_UNIT, (16, 16))
    stats = receptive_field_stats(model, n_clips=100)["stats"]
    assert stats["units"] == stats["responsive"] == 1
    assert stats["median_gabor_r"] > 0.9 and stats["fraction_r_above_0.7"] == stats["fraction_strict_gabor"] == 1
    # the filter's own index is 0.90; the RWA's estimation noise spreads a little power
    true_index = orientation_index(model.w.detach().numpy()[None], (16, 16))[0]
    assert stats["median_orientation_index"] == pytest.approx(true_index, abs=0.08)


def test_orientation_index_of_gratings_blobs_and_gabors():
    rows, cols = np.mgrid[:20, :20]
    gratings = [np.cos(2 * np.pi * (3 * cols + 2 * rows) / 20 + 0.4), np.sin(2 * np.pi * 5 * rows / 20)]
    blob = np.exp(-((cols - 9.5) ** 2 + (rows - 9.5) ** 2) / (2 * 2.0 ** 2))  # isotropic, centred
    pixel = np.zeros((20, 20))
    pixel[4, 13] = -1  # flat spectrum
    gabor = gabor_image(np.array([1, 9.5, 9.5, 0.6, 2 * np.log(3.0), 2 * np.log(3.0),
                                  gabor_lkx(0.2), 0.3]), (20, 20))
    silent = np.zeros((20, 20))
    oi = orientation_index(np.stack([*gratings, blob, pixel, gabor, silent, silent * np.nan]).reshape(7, -1),
                           (20, 20))
    np.testing.assert_allclose(oi[:2], 1, atol=1e-12)
    np.testing.assert_allclose(oi[2:4], 0, atol=1e-9)
    assert 0.9 < oi[4] < 1 and np.isnan(oi[5:]).all()
    # adding a constant (DC) changes nothing
    np.testing.assert_allclose(orientation_index(gabor.reshape(1, -1) + 3, (20, 20)), oi[4:5], rtol=1e-9)
    with pytest.raises(ProbeError, match="expected"):
        orientation_index(np.zeros((2, 10)), (4, 4))
