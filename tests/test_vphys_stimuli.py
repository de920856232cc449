"""Known-answer tests for virtual_physiology.stimuli: the grid, the grating
formula and its motion-direction convention, z-scoring, and white noise."""
import numpy as np
import pytest
import torch

from virtual_physiology import ProbeError
from virtual_physiology.stimuli import grating, grating_grid, white_noise


def test_grid_matches_the_original_at_20x20_and_20x40():
    grid = grating_grid((20, 20))
    np.testing.assert_allclose(grid["sf"], np.arange(1, 11) / 20)
    assert grid["directions"].tolist() == list(range(0, 360, 5))
    np.testing.assert_allclose(grid["tf"][[0, -1]], [0.02, 0.25])
    assert len(grid["tf"]) == 12
    assert len(grid["sf"]) * len(grid["directions"]) * len(grid["tf"]) == 8640
    np.testing.assert_allclose(grating_grid((20, 40))["sf"], np.arange(1, 11) / 40)


def test_grating_equals_the_formula_written_out():
    height, width, n_frames = 6, 9, 7
    sf, direction, tf = np.array([0.1, 0.3]), np.array([30.0, 245.0]), np.array([0.05, 0.2])
    clips = grating(sf, direction, tf, (height, width), n_frames, normalise=False, amplitude=2.0).numpy()
    rows, cols = np.mgrid[:height, :width]
    for i in range(2):
        theta = np.deg2rad(direction[i] - 90)
        for t in range(n_frames):
            expected = 2.0 * np.sin(2 * np.pi * sf[i] * (cols * np.cos(theta) + rows * np.sin(theta))
                                    - 2 * np.pi * tf[i] * t)
            np.testing.assert_allclose(clips[i, t].reshape(height, width), expected, atol=1e-5)


def _centre_of_mass_shift(clip: np.ndarray, height: int, width: int) -> np.ndarray:
    """Mean (row, column) displacement per frame of the grating's crests,
    measured by the phase of the cross-spectrum between consecutive frames."""
    frames = clip.reshape(-1, height, width)
    spectra = np.fft.fft2(frames)
    peak = np.unravel_index(np.abs(spectra[0]).argmax(), (height, width))
    k_row, k_col = np.fft.fftfreq(height)[peak[0]], np.fft.fftfreq(width)[peak[1]]
    step = np.angle(np.sum(spectra[1:, peak[0], peak[1]] * np.conj(spectra[:-1, peak[0], peak[1]])))
    # A shift by (dr, dc) multiplies the coefficient by exp(-2 pi i (k_row dr + k_col dc)).
    return -step / (2 * np.pi) / (k_row ** 2 + k_col ** 2) * np.array([k_row, k_col])


@pytest.mark.parametrize("direction, expected", [(0, (-1, 0)), (90, (0, 1)), (180, (1, 0)), (270, (0, -1))])
def test_direction_is_the_direction_of_motion(direction, expected):
    # 0 moves up (rows decrease), 90 right, 180 down, 270 left.
    clip = grating(0.1, direction, 0.1, (20, 20), 10)[0].numpy()
    shift = _centre_of_mass_shift(clip, 20, 20)
    np.testing.assert_allclose(shift / np.linalg.norm(shift), expected, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(shift), 0.1 / 0.1, rtol=1e-6)  # tf / sf px per frame


def test_normalised_clips_are_z_scored_and_amplitude_free():
    clips = grating([0.05, 0.25], [10, 200], [0.02, 0.1], (20, 20), 54, amplitude=3.0)
    assert clips.dtype == torch.float32 and clips.shape == (2, 54, 400)
    np.testing.assert_allclose(clips.mean(dim=(1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(clips.std(dim=(1, 2), unbiased=False), 1, atol=1e-5)
    np.testing.assert_allclose(clips, grating([0.05, 0.25], [10, 200], [0.02, 0.1], (20, 20), 54), atol=1e-5)


def test_constant_clip_stays_zero_and_nyquist_directions_coincide():
    assert torch.equal(grating(0.0, 0.0, 0.0, (4, 4), 3), torch.zeros(1, 3, 16))
    opposite = grating(0.5, [0, 180], 0.1, (20, 20), 5)
    np.testing.assert_allclose(opposite[0], opposite[1], atol=1e-4)


def test_phase_offset_continues_the_clip():
    whole = grating(0.1, 45, 0.1, (8, 8), 10, normalise=False)
    tail = grating(0.1, 45, 0.1, (8, 8), 4, normalise=False, phase_offset_frames=6)
    np.testing.assert_allclose(whole[:, 6:], tail, atol=1e-5)


def test_bad_arguments_raise_user_input_errors():
    with pytest.raises(ProbeError):
        grating([0.1, 0.2], [0, 90, 180], 0.1, (8, 8), 4)
    with pytest.raises(ProbeError):
        grating(0.1, 0, 0.1, (8,), 4)


def test_white_noise_does_not_depend_on_the_chunking():
    whole = white_noise(10, 5, 3, torch.Generator().manual_seed(3))
    generator = torch.Generator().manual_seed(3)
    pieces = torch.cat([white_noise(n, 5, 3, generator) for n in (3, 1, 6)])
    assert torch.equal(whole, pieces)
    big = white_noise(50, 54, 20, torch.Generator().manual_seed(0))
    assert big.dtype == torch.float32
    assert abs(big.mean().item()) < 0.01 and abs(big.std().item() - 1) < 0.01
