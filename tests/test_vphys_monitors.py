"""Known-answer tests of the training monitors (virtual_physiology.monitors), the
original's Gabor test and the monitor history's bookkeeping."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from models.base import ProbeableModel
from models.network_hierarchical_recurrent import NetworkHierarchicalRecurrent
from training.step import append_monitor_row, monitor_panels
from virtual_physiology.gabor import original_gabor
from virtual_physiology.monitors import (block_weight_mass, grating_monitor, model_weight_mass, reduced_grating_grid,
                                         reference_values, responsive_units_per_group)
from virtual_physiology.stimuli import grating


def test_responsive_units_follow_the_originals_nonzero_sum_rule():
    total = np.array([0.0, 1e-30, 0.0, -2.0, np.nan, 0.0])  # negative and NaN sums are not zero
    assert responsive_units_per_group(total, [slice(0, 2), slice(2, 5), slice(5, 6)]) == [1, 2, 0]


def test_block_weight_mass_averages_each_block_over_its_connectable_entries():
    slices = [slice(0, 2), slice(2, 4), slice(4, 5)]
    weights = torch.zeros(5, 5)
    weights[0:2, 0:2] = -1.0  # within G1 (|w| counts)
    weights[0:2, 2:4] = torch.tensor([[2.0, 9.0], [4.0, 9.0]])  # feedback G2 -> G1; column 3 masked out
    weights[2:4, 0:2] = 0.5  # feedforward G1 -> G2
    weights[0, 4] = 100.0  # G3 -> G1 is no block of the architecture: never reported
    mask = torch.ones(5, 5)
    mask[0:2, 3] = 0
    mass = block_weight_mass(weights, slices, mask)
    assert mass["w_G1_G1"] == 1.0 and mass["w_G2_to_G1"] == 3.0 and mass["w_G1_to_G2"] == 0.5
    assert mass["w_G2_G2"] == mass["w_G3_G3"] == mass["w_G2_to_G3"] == mass["w_G3_to_G2"] == 0.0
    assert set(mass) == {"w_G1_G1", "w_G2_to_G1", "w_G1_to_G2", "w_G2_G2", "w_G3_to_G2", "w_G2_to_G3", "w_G3_G3"}
    mask[0:2, 2:4] = 0
    assert math.isnan(block_weight_mass(weights, slices, mask)["w_G2_to_G1"])  # nothing connectable


def test_model_weight_mass_reads_the_weights_the_forward_pass_uses():
    torch.manual_seed(0)
    model = NetworkHierarchicalRecurrent(frame_shape=(4, 4), hidden_units=(10, 10, 10))
    with torch.no_grad():
        model.weight_hh.fill_(-0.25)  # Dale's law takes |w|; masked entries do not count
    assert all(v == pytest.approx(0.25) for v in model_weight_mass(model).values())


def test_reduced_grid_spreads_the_full_grids_frequencies():
    grid = reduced_grating_grid((20, 20), n_sf=4, n_directions=8)
    np.testing.assert_allclose(grid["sf"], [0.05, 0.2, 0.35, 0.5])
    np.testing.assert_allclose(grid["directions"], np.arange(0, 360, 45))
    assert len(grid["tf"]) == 12
    with pytest.raises(ValueError, match="multiple of 4"):
        reduced_grating_grid((20, 20), n_directions=6)


class SimpleAndComplexCell(ProbeableModel):
    """Group 1: a half-wave rectified linear filter (a simple cell: F1/F0 = pi/2 for
    a drifting grating), the full-wave rectified filter (its response repeats at
    twice the grating's frequency: F1/F0 < 1) and a silent unit; group 2 one unit."""

    def __init__(self):
        super().__init__()
        self.frame_shape, self.group_sizes = (8, 8), (3, 1)
        self.register_buffer("filter", grating(0.25, 90.0, 0.0, (8, 8), 1, normalise=False)[0, 0])
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        drive = x @ self.filter
        silent = torch.zeros_like(drive)
        return x.clone(), torch.stack([drive.relu(), drive.abs(), silent, drive.relu()], -1)


def test_grating_monitor_tells_a_simple_from_a_complex_cell():
    result = grating_monitor(SimpleAndComplexCell())
    assert result["f1f0_above_1"] == 0.5  # the simple cell only; the silent unit is not counted
    assert result["grating_units"] == 2
    assert math.isnan(result["feedback_peak_ratio"])  # no feedback to remove
    assert result["best_tf"] in reduced_grating_grid((8, 8))["tf"]
    assert result["circular_variance_median"] < 0.5  # both cells prefer one orientation


def test_feedback_reliance_is_one_without_feedback_weights_and_moves_with_them():
    torch.manual_seed(0)
    model = NetworkHierarchicalRecurrent(frame_shape=(8, 8), hidden_units=(12, 12, 12))
    with torch.no_grad():
        model.weight_ih.mul_(4)
        model.weight_hh.copy_(torch.randn_like(model.weight_hh).abs() * 0.05)
        for rows, cols in model.feedback_blocks():
            model.weight_hh[rows, cols] = 0.0
        model.project_weights_()
    assert grating_monitor(model)["feedback_peak_ratio"] == 1.0  # removing nothing changes nothing
    with torch.no_grad():
        model.weight_hh[model.feedback_blocks()[0]] = 0.2  # strong excitatory feedback onto G1
        model.project_weights_()
    assert grating_monitor(model)["feedback_peak_ratio"] < 1.0  # G1 loses drive without it


def test_original_gabor_test_known_answers():
    # (1, x0, y0, theta, lvx, lvy, lkx, phi) on a 10 x 10 frame
    good = [1, 4.0, 5.0, 0, 1.0, 1.0, 0, 0]
    narrow = [1, 4.0, 5.0, 0, 0.4, 1.0, 0, 0]  # along-carrier log-variance 0.4 <= 0.5
    outside = [1, 10.0, 5.0, 0, 1.0, 1.0, 0, 0]  # centre past the last column (9.5)
    params = np.array([good, good, narrow, outside, [np.nan] * 8])
    r = np.array([0.71, 0.7, 0.9, 0.9, 0.9])  # r must exceed 0.7
    np.testing.assert_array_equal(original_gabor(params, r, (10, 10)), [True, False, False, False, False])
    np.testing.assert_array_equal(original_gabor(params, r), [True, False, False, True, False])  # no frame: no centre test


def test_monitor_rows_of_different_versions_share_one_history():
    rows = {"epoch": [10], "step": [100], "clean_mse": [0.5]}  # a row of an older monitor
    append_monitor_row(rows, 20, 200, {"clean_mse": 0.4, "f1f0_above_1": 0.3, "rwa_clips": 500})
    append_monitor_row(rows, 30, 300, {"f1f0_above_1": 0.2, "rwa_clips": 1000})
    assert rows == {"epoch": [10, 20, 30], "step": [100, 200, 300], "clean_mse": [0.5, 0.4, None],
                    "f1f0_above_1": [None, 0.3, 0.2], "rwa_clips": [None, 500, 1000]}
    titles = [panel[0] for panel in monitor_panels(rows)]
    assert titles == ["group-1 receptive fields", "clean next-frame MSE"]


def test_reference_values_carry_their_citations():
    ref = reference_values()
    assert "Ringach" in ref["ringach_2002_macaque_V1"]["citation"]
    assert ref["ringach_2002_macaque_V1"]["f1_f0"]["fraction_above_1"] == pytest.approx(124 / 308, abs=1e-4)
    assert ref["original_TP_full"]["f1f0_above_1_G1"] == pytest.approx(141 / 795, abs=1e-4)


def test_monitor_line_shows_what_a_row_holds():
    from virtual_physiology.rf_summary import monitor_line

    row = {"fraction_original_gabor": 0.5, "median_orientation_index": 0.25, "clean_mse": 0.7,
           "copy_last_frame_mse": 1.2, "w_G1_G1": 0.03}
    assert monitor_line(row) == ("group-1 RFs: Gabor-like (original's test) 0.500 orientation index 0.250 "
                                 "| clean MSE 0.7000 (copy-last 1.2000)")
