"""Known-answer tests for surround suppression: a hand-built centre-surround
unit (pixel counts in a disc minus half of those in an annulus) gets the SI
and preferred size that its geometry dictates."""
import numpy as np
import pytest
import torch
from torch import nn

from models.base import ProbeableModel
from virtual_physiology.surround import (APERTURE_RADII, circular_apertures, size_tuning_curves, size_tuning_extents,
                                         suppression_index)

FRAME = (20, 24)


def _disc(centre_col, centre_row, radius):
    """(H*W,) 0/1: pixels whose centre lies within ``radius`` of the point."""
    rows, cols = np.mgrid[:FRAME[0], :FRAME[1]]
    return (np.hypot(cols - centre_col, rows - centre_row) <= radius).ravel().astype(np.float64)


class CentreSurroundUnits(ProbeableModel):
    """Unit u counts the stimulated (non-zero) pixels of each frame in a disc
    of radius r_c around its centre, minus 0.5 x those in the annulus
    r_c < d <= r_s: a linear, instantaneous centre-surround cell."""

    def __init__(self, centres, r_centre, r_surround):
        super().__init__()
        self.frame_shape, self.group_sizes = FRAME, (len(centres),)
        weights = [_disc(c, r, r_centre) - 0.5 * (_disc(c, r, r_surround) - _disc(c, r, r_centre))
                   for c, r in centres]
        self.weights = nn.Parameter(torch.tensor(np.stack(weights, 1), dtype=torch.float32))

    def forward(self, x):
        return x, (x != 0).float() @ self.weights


def test_centre_surround_unit_gets_the_si_and_size_its_geometry_dictates():
    centres = [(10.0, 8.0), (4.0, 13.0), (500.0, 500.0)]  # the last sees nothing: silent
    r_centre, r_surround = 5.5, 9.5
    model = CentreSurroundUnits(centres, r_centre, r_surround)
    # The aperture centre is the Gabor centre - 0.5 px (the notebook's offset).
    gabor_x = np.array([c for c, _ in centres]) + 0.5
    gabor_y = np.array([r for _, r in centres]) + 0.5
    n = len(centres)
    curves = size_tuning_curves(model, np.arange(n), np.full(n, 0.13), np.full(n, 30.0), np.full(n, 0.11),
                                gabor_x, gabor_y, batch_size=7, progress=False)
    for unit, (col, row) in enumerate(centres[:2]):
        # Response to an aperture of radius r: centre pixels inside it minus half the annulus pixels inside it.
        expected = [(_disc(col, row, r) * _disc(col, row, r_centre)).sum()
                    - 0.5 * (_disc(col, row, r) * (_disc(col, row, r_surround) - _disc(col, row, r_centre))).sum()
                    for r in APERTURE_RADII]
        np.testing.assert_allclose(curves[unit], expected)
    np.testing.assert_array_equal(curves[2], 0)

    out = suppression_index(curves)
    for unit, (col, row) in enumerate(centres[:2]):
        n_centre = _disc(col, row, r_centre).sum()
        n_annulus = _disc(col, row, r_surround).sum() - n_centre
        peak = curves[unit, 1]  # radius 6: the whole centre and a thin ring of surround
        assert peak == curves[unit].max() and out["preferred_size"][unit] == 6
        assert out["surround_suppression_index"][unit] == pytest.approx(
            100 * (peak - (n_centre - 0.5 * n_annulus)) / peak)
    assert np.isnan(out["surround_suppression_index"][2]) and np.isnan(out["preferred_size"][2])


def test_curves_do_not_depend_on_batch_size_and_nan_centres_are_skipped():
    model = CentreSurroundUnits([(10.0, 8.0), (3.0, 3.0)], 3.5, 7.5)
    args = (model, np.arange(2), [0.1, 0.2], [0.0, 135.0], [0.05, 0.2], [10.5, np.nan], [8.5, 3.5])
    small = size_tuning_curves(*args, batch_size=3, progress=False)
    large = size_tuning_curves(*args, batch_size=1000, progress=False)
    np.testing.assert_array_equal(small, large)
    assert np.isfinite(small[0]).all() and np.isnan(small[1]).all()


def test_apertures_are_discs_of_the_given_radius():
    masks = circular_apertures([2.0], [3.0], [0.0, 1.0, 1.5], FRAME).numpy()
    assert masks.shape == (1, 3, FRAME[0] * FRAME[1])
    assert masks[0].sum(axis=1).tolist() == [1, 5, 9]
    assert masks[0, 0].reshape(FRAME)[3, 2]


def test_size_tuning_extents_read_the_curve_as_cavanaugh_and_brainscore():
    """Radii 2, 6, 10, .., 38 px (diameters 4, 12, 20, ..): the first curve
    reaches 0.95 x peak at r = 6 (GSF diameter 12) and comes within 5% of its
    plateau 0.3 at r = 18 (surround diameter 36); the second is not
    suppressed enough (SSI 0.05 <= 0.1), the third is silent, the fourth holds
    NaN: all NaN."""
    plateau = np.full(10, 0.3)
    curves = np.stack([np.concatenate([[0.2, 0.96, 1.0, 0.5, 0.31], plateau[5:]]),
                       np.concatenate([[0.5, 1.0], np.full(8, 0.95)]), np.zeros(10),
                       np.concatenate([[np.nan], np.ones(9)])])
    extents = size_tuning_extents(curves, APERTURE_RADII)
    assert extents["grating_summation_field"][0] == 12 and extents["surround_diameter"][0] == 36
    assert np.isnan(extents["grating_summation_field"][1:]).all() and np.isnan(extents["surround_diameter"][1:]).all()
