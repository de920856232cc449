"""Known-answer tests for the streamed RWA (against the original's formula
written directly in numpy) and for the Gabor fitter."""
import numpy as np
import pytest
import torch
from torch import nn

from models.base import ProbeableModel
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
from virtual_physiology.gabor import fit_gabors, gabor_frequency, gabor_image, strict_gabor  # noqa: E402


def _true_gabors(n, rng):
    """Random Gabors well inside a 20x20 frame, as gabor_params (n, 8)."""
    return np.column_stack([
        np.ones(n), rng.uniform(7, 12, n), rng.uniform(7, 12, n), rng.uniform(0, np.pi, n),
        2 * np.log(rng.uniform(2, 3.5, n)), 2 * np.log(rng.uniform(2, 3.5, n)),
        np.log(1 / rng.uniform(0.12, 0.25, n) - 2 * np.sqrt(2)), rng.uniform(-np.pi, np.pi, n)])


def test_gabor_image_follows_the_parametrisation():
    # theta = 0: carrier along the columns; phase pi/2 gives a cosine (even) Gabor.
    params = np.array([1, 4.0, 3.0, 0.0, np.log(4.0), np.log(9.0), np.log(1 / 0.25 - 2 * np.sqrt(2)), np.pi / 2])
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
    fit = fit_gabors(rwa, (20, 20), seed=0)
    orientation_error = np.degrees(np.abs(np.angle(np.exp(2j * (fit["gabor_params"][:, 3] - true[:, 3])))) / 2)
    assert orientation_error.max() < 10
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


def test_single_pixel_blobs_fit_well_but_are_not_strict_gabors():
    rng = np.random.default_rng(2)
    blobs = np.zeros((6, 400))
    blobs[np.arange(6), rng.choice(400, 6, replace=False)] = rng.choice([-1.0, 1.0], 6)
    blobs += rng.normal(0, 0.03, blobs.shape)
    fit = fit_gabors(blobs, (20, 20))
    assert (fit["gabor_r"] > 0.7).all()
    assert not fit["strict_gabor"].any()


def test_silent_units_get_nan_fits():
    rwa = np.zeros((3, 400))
    rwa[1] = np.nan
    rwa[2] = gabor_image(_true_gabors(1, np.random.default_rng(3))[0], (20, 20)).ravel()
    fit = fit_gabors(rwa, (20, 20))
    assert np.isnan(fit["gabor_params"][:2]).all() and np.isnan(fit["gabor_r"][:2]).all()
    assert fit["gabor_r"][2] > 0.99 and list(fit["strict_gabor"]) == [False, False, True]
