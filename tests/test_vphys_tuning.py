"""Known-answer tests for virtual_physiology.tuning on hand-built units whose
selectivity follows from the grating formula itself."""
import numpy as np
import pytest
import torch

from models.base import ProbeableModel
from virtual_physiology import ProbeError
from virtual_physiology.modulation import modulation_ratio_curve_fit, modulation_ratio_vphys
from virtual_physiology.stimuli import grating
from virtual_physiology.tuning import (global_orientation_direction_indices, grating_sweep, is_direction_selective,
                                       is_orientation_selective, orientation_bandwidth, orientation_direction_indices,
                                       preferred_parameters, responses_at, spatial_frequency_tuning)

FRAME, SF, TF, DIRECTION, WINDOW = (8, 8), 0.25, 0.1, 90.0, 10
GRID = dict(sf=np.array([0.125, 0.25, 0.375]), directions=np.arange(0.0, 360.0, 15.0), tf=np.array([0.05, 0.1, 0.2]))


class MotionUnits(ProbeableModel):
    """Spatio-temporal filters matched to the grating (SF, DIRECTION, TF) over a
    WINDOW-frame history (one full temporal period), in quadrature pairs:

    - unit 0: motion energy sqrt(s^2 + c^2) for DIRECTION: direction selective;
    - unit 1: the energies for DIRECTION and its opposite, summed: orientation
      selective, direction blind;
    - unit 2: relu(s), a half-wave rectified linear (simple-cell-like) unit;
    - unit 3: silent.
    Over a full period the matched filter sums to a constant for the preferred
    drift and to 0 for the opposite one, so DSI(unit 0) = 1 and DSI(unit 1) = 0.
    """
    frame_shape, group_sizes = FRAME, (2, 2)

    def __init__(self):
        super().__init__()
        clip = lambda d, shift: grating(SF, d, TF, FRAME, WINDOW, normalise=False, phase_offset_frames=shift)[0]
        # Filter frame j (oldest first) is the preferred grating's frame j; the cosine
        # partner is a quarter temporal period later.
        filters = [clip(d, shift) for d in (DIRECTION, DIRECTION + 180) for shift in (0, 2.5)]
        # Scaled so the preferred drive has amplitude ~1, the range real units
        # have (the vphys random search draws in absolute ranges).
        self.register_buffer("filters", torch.stack(filters) / (WINDOW * self.n_pixels / 2))  # (4, WINDOW, P)
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        padded = torch.cat([x.new_zeros(x.shape[0], WINDOW - 1, x.shape[2]), x], dim=1)
        windows = padded.unfold(1, WINDOW, 1).transpose(2, 3)  # (B, T, WINDOW, P)
        drive = torch.einsum("btlp,flp->btf", windows, self.filters)
        energy = drive.pow(2).reshape(*drive.shape[:2], 2, 2).sum(-1).sqrt()
        hidden = torch.stack([energy[..., 0], energy.sum(-1), torch.relu(drive[..., 0]),
                              torch.zeros_like(drive[..., 0])], dim=-1)
        return x, hidden


@pytest.fixture(scope="module")
def swept():
    model = MotionUnits()
    chunks = {}
    sweep = grating_sweep(model, GRID, batch_size=37, progress=False,
                          sink=lambda idx, resp: chunks.update({idx.start: resp}))
    courses = np.concatenate([chunks[k] for k in sorted(chunks)])
    return model, sweep, courses


def test_sweep_equals_one_stimulus_at_a_time(swept):
    model, sweep, courses = swept
    assert sweep["mean_responses"].shape == (4, 3, 24, 3) and sweep["mean_responses"].dtype == np.float32
    assert courses.shape == (3 * 24 * 3, 50, 4) and courses.dtype == np.float32
    for i, j, k in [(0, 0, 0), (1, 6, 1), (2, 23, 2), (1, 18, 0)]:
        alone = model.hidden_activity(grating(GRID["sf"][i], GRID["directions"][j], GRID["tf"][k], FRAME, 54))[0, 4:]
        flat = np.ravel_multi_index((i, j, k), (3, 24, 3))
        np.testing.assert_allclose(courses[flat], alone, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(sweep["mean_responses"][:, i, j, k], alone.mean(0), rtol=1e-5, atol=1e-5)


def test_preferences_and_selectivity_of_known_units(swept):
    _, sweep, _ = swept
    pref = preferred_parameters(sweep["mean_responses"], GRID)
    for unit in range(3):
        assert pref["preferred_sf"][unit] == SF and pref["preferred_tf"][unit] == TF
    assert pref["preferred_direction"][0] == DIRECTION and pref["preferred_direction"][2] == DIRECTION
    assert pref["preferred_direction"][1] in (DIRECTION, DIRECTION + 180)
    # The silent unit "prefers" the first grating (first argmax).
    assert (pref["sf_index"][3], pref["direction_index"][3], pref["tf_index"][3]) == (0, 0, 0)
    assert pref["max_mean_grating_response"][3] == 0

    indices = orientation_direction_indices(sweep["mean_responses"], pref)
    osi, dsi = indices["OSI"], indices["DSI"]
    assert dsi[0] > 0.9 and osi[0] > 0.9
    assert abs(dsi[1]) < 0.05 and osi[1] > 0.9
    assert np.isnan(osi[3]) and np.isnan(dsi[3])
    assert list(is_direction_selective(dsi)) == [True, False, True, False]
    assert list(is_orientation_selective(osi, threshold=0.4)) == [True, True, True, False]


def test_indices_follow_the_formula_with_wrap_around():
    curve = np.array([5.0, 1.0, 2.0, 3.0])  # 4 directions: p = 0, orthogonal 1 and 3, opposite 2
    mean = curve.reshape(1, 1, 4, 1)
    pref = preferred_parameters(mean, dict(sf=[0.1], directions=[0, 90, 180, 270], tf=[0.1]))
    got = orientation_direction_indices(mean, pref)
    np.testing.assert_allclose(got["OSI"], (5 - 2) / (5 + 2))
    np.testing.assert_allclose(got["DSI"], (5 - 2) / (5 + 2))
    with pytest.raises(ProbeError):
        orientation_direction_indices(np.ones((1, 1, 6, 1)), pref)


def test_responses_at_preferred_gratings_match_the_sweep(swept):
    model, sweep, courses = swept
    pref = preferred_parameters(sweep["mean_responses"], GRID)
    optimum = responses_at(model, pref["preferred_sf"], pref["preferred_direction"], pref["preferred_tf"],
                           batch_size=1)
    flat = np.ravel_multi_index((pref["sf_index"], pref["direction_index"], pref["tf_index"]), (3, 24, 3))
    assert optimum.shape == (4, 50)
    np.testing.assert_allclose(optimum, courses[flat, :, np.arange(4)], rtol=1e-5, atol=1e-5)
    subset = responses_at(model, [SF, SF], [0.0, DIRECTION], [TF, TF], units=np.array([2, 0]))
    np.testing.assert_allclose(subset[1], optimum[0], rtol=1e-5, atol=1e-5)


def test_simple_and_complex_units_have_the_expected_modulation_ratio(swept):
    model, _, _ = swept
    optimum = responses_at(model, [SF, SF], [DIRECTION, DIRECTION], [TF, TF], units=np.array([2, 0]))
    simple, energy = modulation_ratio_vphys(optimum, seed=0), modulation_ratio_curve_fit(optimum)
    assert simple["MR_all"][0] > 1 and simple["MR_all"][1] < 1
    assert energy["F1F0"][0] > 1 and energy["F1F0"][1] < 1


def _single_curve_table(curves: np.ndarray) -> tuple[np.ndarray, dict]:
    """mean_responses (n, 1, D, 1) holding direction curves (n, D), and preferences at index 0."""
    curves = np.asarray(curves, float)
    zeros = np.zeros(len(curves), int)
    return curves[:, None, :, None], dict(sf_index=zeros, direction_index=zeros, tf_index=zeros)


def test_global_indices_of_cosine_tuning_have_the_known_values():
    """r = 1 + cos(theta - 40) has only a first harmonic: global DSI = 1/2,
    global OSI = 0; r = 1 + cos 2(theta - 40) the reverse; a one-direction
    spike is 1 and 1; a silent unit NaN. Peak-based DSI of the first is 1."""
    theta = np.deg2rad(np.arange(0, 360, 5.0))
    curves = np.stack([1 + np.cos(theta - np.deg2rad(40)), 1 + np.cos(2 * (theta - np.deg2rad(40))),
                       np.eye(72)[8], np.zeros(72)])
    mean, pref = _single_curve_table(curves)
    indices = global_orientation_direction_indices(mean, pref)
    np.testing.assert_allclose(indices["global_DSI"][:3], [0.5, 0.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(indices["global_OSI"][:3], [0.0, 0.5, 1.0], atol=1e-12)
    assert np.isnan(indices["global_OSI"][3]) and np.isnan(indices["global_DSI"][3])
    assert orientation_direction_indices(mean, pref)["DSI"][0] == pytest.approx(1.0)


def test_orientation_bandwidth_of_a_gaussian_is_its_half_width_at_1_over_sqrt2():
    """An orientation curve exp(-d^2 / 2 sigma^2) (d the orientation distance
    to 30 deg) falls to 1/sqrt(2) at d = sigma sqrt(ln 2); a flat curve and a
    silent one are untuned (NaN), and the direction of motion does not matter
    (both directions carry the orientation curve)."""
    directions = np.arange(0, 360, 5.0)
    distance = (directions - 30 + 90) % 180 - 90
    widths = []
    for sigma in (10.0, 20.0, 35.0):
        widths.append(np.exp(-distance ** 2 / (2 * sigma ** 2)))
    curves = np.stack(widths + [np.ones(72), np.zeros(72)])
    bandwidth = orientation_bandwidth(curves)
    np.testing.assert_allclose(bandwidth[:3], np.array([10.0, 20.0, 35.0]) * np.sqrt(np.log(2)), atol=0.6)
    assert np.isnan(bandwidth[3:]).all()


def test_spatial_frequency_tuning_finds_peak_and_octave_cutoffs():
    """A Gaussian in log2 SF (sd s octaves) centred on 0.15 c/px peaks there and
    is cut at 0.707 x peak s sqrt(2 ln(1/0.707)) octaves each side, so the
    ratio low/high = 2^(-2 s sqrt(2 ln(1/0.707))). The smoothing acts per grid
    step, and the grid is linear in SF (denser in log2 SF at its high end), so
    it widens the curve a little and moves the peak up by ~4%. A monotonic curve is not selective; a silent one is NaN."""
    sf = np.arange(1, 11) / 20
    s = 0.8
    gaussian = np.exp(-(np.log2(sf) - np.log2(0.15)) ** 2 / (2 * s ** 2))
    result = spatial_frequency_tuning(np.stack([gaussian, sf, np.zeros(10)]), sf)
    assert result["peak_sf"][0] == pytest.approx(0.15, rel=0.06)
    expected_ratio = 100 * 2 ** (-2 * s * np.sqrt(2 * np.log(1 / 0.707)))
    assert result["sf_bandwidth_ratio"][0] == pytest.approx(expected_ratio, rel=0.12)
    assert result["low_cutoff"][0] < 0.15 < result["high_cutoff"][0]
    assert result["sf_selective"][:2].tolist() == [1.0, 0.0] and np.isnan(result["sf_bandwidth_ratio"][1])
    assert result["peak_sf"][1] == pytest.approx(0.5)
    assert np.isnan(result["peak_sf"][2]) and np.isnan(result["sf_selective"][2])
