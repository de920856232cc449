"""Known-answer tests for the plaid pattern index: the stimulus formula, the
component-prediction shifts, the partial correlations against a literal
scipy version, batched == per-stimulus loop, and synthetic pattern and
component cells."""
import numpy as np
import pytest
import scipy.stats
import torch
from torch import nn

from models.base import ProbeableModel
from virtual_physiology import ProbeError
from virtual_physiology.plaid import (PLAID_ANGLES, pattern_index_from_responses, plaid, plaid_directions,
                                      plaid_pattern_index, plaid_responses)
from virtual_physiology.stimuli import grating, grating_grid

DIRECTIONS_12 = np.arange(0, 360, 30)


class TinyRecurrent(ProbeableModel):
    """A small random ReLU RNN in three groups."""

    def __init__(self, frame_shape=(4, 5), group_sizes=(4, 3, 3), seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.frame_shape, self.group_sizes = frame_shape, group_sizes
        self.rnn = nn.RNN(self.n_pixels, self.n_hidden, nonlinearity="relu", batch_first=True)

    def forward(self, x):
        return x, self.rnn(x)[0]


class MotionEnergyCells(ProbeableModel):
    """Hand-built direction-selective cells on 32x32 frames, constant in time.

    Motion energy E(theta) at 72 directions (every 5 degrees) is the squared
    projection of the whole clip on quadrature drifting gratings at (sf, tf).
    With w(theta) = exp(kappa (cos(theta - 90 deg) - 1)):
    - unit 0, a component cell: sum E(theta) w(theta) / sum E(theta), which
      for a plaid is about the mean of w over its two components;
    - unit 1, a pattern cell: w at the direction of the energy-weighted vector
      average of directions (the plaid's pattern direction), plus 0.2 x unit 0
      so that it is not exactly its grating tuning;
    - unit 2 is silent.
    """

    def __init__(self, sf=0.2, tf=0.1, kappa=4.0):
        super().__init__()
        self.frame_shape, self.group_sizes = (32, 32), (3,)
        self.sf, self.tf = sf, tf
        self.theta = torch.deg2rad(torch.arange(0.0, 360.0, 5.0, dtype=torch.float64))
        self.tuning = torch.exp(kappa * (torch.cos(self.theta - np.pi / 2) - 1))
        self.anchor = nn.Parameter(torch.zeros(1))

    def _energy(self, x):
        """(B, T, P) -> (B, 72) quadrature motion energy over the whole clip."""
        height, width = self.frame_shape
        rows, cols = np.mgrid[:height, :width]
        t = np.arange(x.shape[1])[:, None, None, None]
        theta = self.theta.numpy() - np.pi / 2
        phase = (2 * np.pi * self.sf * (cols * np.cos(theta)[:, None, None] + rows * np.sin(theta)[:, None, None])
                 - 2 * np.pi * self.tf * t)  # (T, 72, H, W)
        phase = torch.as_tensor(phase.transpose(1, 0, 2, 3).reshape(len(theta), -1))
        flat = x.double().reshape(x.shape[0], -1)
        return (flat @ torch.sin(phase).T) ** 2 + (flat @ torch.cos(phase).T) ** 2

    def forward(self, x):
        energy = self._energy(x)
        component = (energy * self.tuning).sum(1) / energy.sum(1)
        vector = (energy * torch.exp(1j * self.theta)).sum(1)
        pattern = torch.exp(4.0 * (torch.cos(torch.angle(vector) - np.pi / 2) - 1)) + 0.2 * component
        units = torch.stack([component, pattern, torch.zeros_like(component)], dim=1).float()
        return x, units[:, None, :].expand(-1, x.shape[1], -1)


def _sweep_means(model, grid, n_frames=54, warmup=4):
    """Mean grating responses (n_hidden, n_sf, n_dir, n_tf) over frames 4..53, as the sweep."""
    sf, direction, tf = (a.ravel() for a in np.meshgrid(grid["sf"], grid["directions"], grid["tf"], indexing="ij"))
    mean = model.hidden_activity(grating(sf, direction, tf, model.frame_shape, n_frames))[:, warmup:].mean(1)
    return mean.T.reshape(model.n_hidden, len(grid["sf"]), len(grid["directions"]), len(grid["tf"])).numpy()


def test_plaid_is_the_sum_of_two_separately_zscored_gratings_written_out():
    height, width, n_frames = 5, 7, 50
    sf, direction, tf, angle = 0.15, 40.0, 0.07, 120.0
    clip = plaid([sf], [direction], [tf], [angle], (height, width), n_frames)[0].numpy()
    rows, cols = np.mgrid[:height, :width]
    expected = 0
    for component in (direction + angle / 2, direction - angle / 2):
        theta = np.deg2rad(component - 90)
        frames = np.stack([np.sin(2 * np.pi * sf * (cols * np.cos(theta) + rows * np.sin(theta)) - 2 * np.pi * tf * t)
                           for t in range(n_frames)])
        expected = expected + (frames - frames.mean()) / frames.std()
    assert clip.shape == (n_frames, height * width)
    np.testing.assert_allclose(clip, expected.reshape(n_frames, -1), atol=2e-5)
    assert clip.std() > 1.2  # not renormalised: two unit-variance components


def test_component_prediction_shifts_by_whole_30_degree_steps_rounded_down():
    pattern = np.zeros((1, 12))
    pattern[0, 0] = 1.0
    component = pattern_index_from_responses(np.random.default_rng(0).random((1, 4, 12)), pattern)[
        "component_prediction"][0]
    for row, shift in zip(component, [1, 1, 2, 2]):  # A = 60, 90, 120, 150
        expected = np.zeros(12)
        expected[[shift, -shift]] = 0.5
        np.testing.assert_allclose(row, expected)


def test_partial_correlations_and_index_match_a_literal_scipy_version():
    rng = np.random.default_rng(1)
    responses, pattern = rng.random((4, 4, 12)), rng.random((4, 12))
    responses[3] = 0.25  # a constant (silent) response: NaN, not a number
    stats = pattern_index_from_responses(responses, pattern)
    for unit in range(3):
        zp, zc = [], []
        for a, shift in enumerate([1, 1, 2, 2]):
            p = pattern[unit]
            c = (np.roll(p, shift) + np.roll(p, -shift)) / 2
            r = responses[unit, a]
            r_rp, r_rc, r_pc = (scipy.stats.pearsonr(u, v)[0] for u, v in ((r, p), (r, c), (p, c)))
            rp = (r_rp - r_rc * r_pc) / np.sqrt((1 - r_rc ** 2) * (1 - r_pc ** 2))
            rc = (r_rc - r_rp * r_pc) / np.sqrt((1 - r_rp ** 2) * (1 - r_pc ** 2))
            np.testing.assert_allclose([stats["rp"][unit, a], stats["rc"][unit, a]], [rp, rc], rtol=1e-9)
            zp.append(0.5 * np.log((1 + rp) / (1 - rp)) * 3)
            zc.append(0.5 * np.log((1 + rc) / (1 - rc)) * 3)
        np.testing.assert_allclose(stats["pattern_index"][unit], np.mean(zp) - np.mean(zc), rtol=1e-9)
    assert np.isnan(stats["rp"][3]).all() and np.isnan(stats["pattern_index"][3])


def test_batched_plaids_equal_a_per_stimulus_loop_at_batch_one():
    model = TinyRecurrent()
    units = np.array([0, 3, 5, 9])
    sf, tf = np.array([0.1, 0.2, 0.1, 0.1]), np.array([0.05, 0.05, 0.05, 0.25])  # units 0 and 3 share a set
    batched = plaid_responses(model, units, sf, tf, batch_size=7, progress=False)
    assert batched.shape == (4, 4, 12)
    for i, unit in enumerate(units):
        for a, angle in enumerate(PLAID_ANGLES):
            for d, direction in enumerate(DIRECTIONS_12):
                clip = (grating(sf[i], direction + angle / 2, tf[i], model.frame_shape, 50)
                        + grating(sf[i], direction - angle / 2, tf[i], model.frame_shape, 50))
                expected = model.hidden_activity(clip)[0, 4:50, unit].mean()
                assert batched[i, a, d] == pytest.approx(float(expected), abs=1e-5)


def test_pattern_cell_gets_a_positive_index_and_component_cell_a_negative_one():
    model = MotionEnergyCells()
    grid = dict(sf=np.array([model.sf]), directions=np.arange(0.0, 360.0, 5.0), tf=np.array([model.tf]))
    means = _sweep_means(model, grid)
    preferred = np.array([np.unravel_index(m.argmax(), m.shape) for m in means])
    out = plaid_pattern_index(model, np.arange(3), means, preferred, grid, batch_size=16, progress=False)
    component, pattern, silent = out["plaid_pattern_index"]
    assert component < -1.0 < 1.0 < pattern
    assert (out["zc_by_angle"][0] > out["zp_by_angle"][0]).all()
    assert np.isnan(silent)
    # the exported fields are the A = 150 ones and the angle means
    np.testing.assert_array_equal(out["plaid_response"], out["response_by_angle"][:, 3])
    np.testing.assert_array_equal(out["plaid_rp"], out["rp_by_angle"][:, 3])
    np.testing.assert_allclose(out["plaid_pattern_index"][:2], out["plaid_zp"][:2] - out["plaid_zc"][:2])
    np.testing.assert_allclose(out["pattern_prediction"][1], means[1, 0, ::6, 0])


def test_plaid_directions_needs_the_30_degree_directions():
    np.testing.assert_array_equal(plaid_directions(grating_grid((20, 20))["directions"]), np.arange(0, 72, 6))
    with pytest.raises(ProbeError):
        plaid_directions(np.arange(0.0, 360.0, 45.0))
