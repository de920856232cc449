"""Surround suppression: size tuning to drifting gratings seen through a
circular aperture centred on each unit's receptive field (docs/faithfulness.md,
"Surround stimulus"; the notebook probes group 1 only).

For each unit, the un-normalised grating at its preferred sf, direction and
tf, amplitude 2, 100 frames (``stimuli.grating`` with ``normalise=False``),
is shown through apertures of RADIUS r = 2, 6, .., 38 px (the notebook's
"size" is a radius) centred at (column, row) = (gabor_x - 0.5, gabor_y - 0.5);
pixel (row i, column j) is inside when sqrt((j - cx)^2 + (i - cy)^2) <= r, and
0 outside. The response is the unit's mean activity over the last 4 frames,
giving a size-tuning curve R(r) per unit, then

    SI = 100 (max_r R - R(38)) / max_r R,     preferred size = the first argmax r.

Edge cases: a curve whose mean is 0 (a silent unit; the notebook's test)
gets NaN SI and preferred size; a unit whose Gabor centre is NaN (no fit) is
not probed and gets a NaN curve.
"""
from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from models.base import ProbeableModel
from virtual_physiology.stimuli import grating

APERTURE_RADII = np.arange(2, 42, 4)  # px
SURROUND_FRAMES = 100
RESPONSE_FRAMES = 4  # the last frames averaged
GRATING_AMPLITUDE = 2.0
CENTRE_OFFSET = 0.5  # aperture centre = Gabor centre - 0.5 px, as the notebook


def circular_apertures(centre_x, centre_y, radii, frame_shape: tuple[int, int], device=None) -> torch.Tensor:
    """Disc masks, (n, n_radii, H*W) bool, for aperture centres ``centre_x``
    (column) and ``centre_y`` (row), (n,) each: sqrt(dx^2 + dy^2) <= r."""
    height, width = frame_shape
    opts = dict(dtype=torch.float64, device=device)
    rows, cols = torch.meshgrid(torch.arange(height, **opts), torch.arange(width, **opts), indexing="ij")
    dx = cols.reshape(1, -1) - torch.as_tensor(np.asarray(centre_x, np.float64), **opts).reshape(-1, 1)
    dy = rows.reshape(1, -1) - torch.as_tensor(np.asarray(centre_y, np.float64), **opts).reshape(-1, 1)
    distance = torch.sqrt(dx ** 2 + dy ** 2)
    return distance[:, None, :] <= torch.as_tensor(np.asarray(radii, np.float64), **opts).reshape(1, -1, 1)


@torch.no_grad()
def size_tuning_curves(model: ProbeableModel, units, sf, direction, tf, gabor_x, gabor_y,
                       radii=APERTURE_RADII, amplitude: float = GRATING_AMPLITUDE,
                       n_frames: int = SURROUND_FRAMES, batch_size: int = 250,
                       progress: bool = True) -> np.ndarray:
    """Size-tuning curves (n, n_radii) float32 of ``units`` (n,) (columns of
    ``model.hidden_activity``), each probed at its own preferred ``sf``,
    ``direction``, ``tf`` and Gabor centre (all (n,)); module docstring.

    Clips are (unit, radius) pairs, unit-major, run ``batch_size`` at a time,
    so memory is bounded by one batch of (batch, n_frames, P) stimuli and
    (batch, n_frames, n_hidden) responses.
    """
    units = np.asarray(units, dtype=np.int64)
    radii = np.asarray(radii, dtype=np.float64)
    centre_x = np.asarray(gabor_x, np.float64) - CENTRE_OFFSET
    centre_y = np.asarray(gabor_y, np.float64) - CENTRE_OFFSET
    curves = np.full((len(units), len(radii)), np.nan, dtype=np.float32)
    probed = np.flatnonzero(np.isfinite(centre_x) & np.isfinite(centre_y))
    clip_unit = np.repeat(probed, len(radii))
    clip_radius = np.tile(np.arange(len(radii)), len(probed))
    sf, direction, tf = (np.asarray(v, np.float64) for v in (sf, direction, tf))
    device = model.device
    for first in tqdm(range(0, len(clip_unit), batch_size), desc="surround", unit="batch", disable=not progress):
        unit_of_clip, radius_of_clip = clip_unit[first:first + batch_size], clip_radius[first:first + batch_size]
        batch_units, local = np.unique(unit_of_clip, return_inverse=True)
        gratings = grating(sf[batch_units], direction[batch_units], tf[batch_units], model.frame_shape, n_frames,
                           amplitude=amplitude, normalise=False, device=device)
        masks = circular_apertures(centre_x[batch_units], centre_y[batch_units], radii, model.frame_shape, device)
        local = torch.as_tensor(local.ravel(), device=device)
        clips = gratings[local] * masks[local, torch.as_tensor(radius_of_clip, device=device)][:, None, :]
        hidden = model.hidden_activity(clips)[:, -RESPONSE_FRAMES:]
        columns = torch.as_tensor(units[unit_of_clip], device=device)
        response = hidden[torch.arange(len(columns), device=device), :, columns].mean(dim=1)
        curves[unit_of_clip, radius_of_clip] = response.cpu().numpy()
    return curves


def suppression_index(curves: np.ndarray, radii=APERTURE_RADII) -> dict[str, np.ndarray]:
    """SI = 100 (max - R_largest) / max and preferred size = radii[first
    argmax], (n,) each, from size-tuning ``curves`` (n, n_radii). NaN for
    curves whose mean is 0 or that contain NaN."""
    curves = np.asarray(curves, dtype=np.float64)
    valid = np.isfinite(curves).all(axis=1) & (np.nan_to_num(curves).mean(axis=1) != 0)
    safe = np.where(valid[:, None], curves, 1.0)
    peak = safe.max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):  # peak 0 only for curves with negative values
        index = 100 * (peak - safe[:, -1]) / peak
    size = np.asarray(radii, dtype=np.float64)[safe.argmax(axis=1)]
    return dict(surround_suppression_index=np.where(valid, index, np.nan),
                preferred_size=np.where(valid, size, np.nan))


GSF_LEVEL = 0.95  # the grating summation field reaches this fraction of the peak
SURROUND_PLATEAU_TOLERANCE = 0.05  # the surround diameter comes within this fraction of |R_largest|
STRONGLY_SUPPRESSED = 0.1  # GSF and surround diameter are defined for SSI above this


def size_tuning_extents(curves: np.ndarray, radii=APERTURE_RADII) -> dict[str, np.ndarray]:
    """Grating summation field and surround diameter of size-tuning ``curves``
    (n, n_radii) over increasing aperture ``radii`` (px), as Brain-Score's
    Marques2020 benchmarks read Cavanaugh, Bair & Movshon (2002):

    - ``grating_summation_field``: the DIAMETER 2r of the smallest aperture
      whose response is >= 0.95 x the curve's peak;
    - ``surround_diameter``: the diameter of the first aperture larger than the
      peak's whose response is <= R_largest + 0.05 |R_largest|, i.e. where the
      curve has come down to its large-size plateau.

    Both in px, quantised to the tested diameters, and defined only where the
    peak is > 0 and the suppression index (peak - R_largest) / peak > 0.1 (NaN
    otherwise, and for a curve holding NaN).
    """
    curves = np.asarray(curves, dtype=np.float64)
    diameters = 2 * np.asarray(radii, dtype=np.float64)
    valid = np.isfinite(curves).all(axis=1)
    safe = np.where(valid[:, None], curves, 0.0)
    peak_index = safe.argmax(axis=1)
    peak = safe.max(axis=1)
    largest = safe[:, -1]
    with np.errstate(divide="ignore", invalid="ignore"):
        defined = valid & (peak > 0) & ((peak - largest) / peak > STRONGLY_SUPPRESSED)
    reached = safe >= GSF_LEVEL * peak[:, None]
    index = np.arange(curves.shape[1])
    near_plateau = safe <= (largest + SURROUND_PLATEAU_TOLERANCE * np.abs(largest))[:, None]
    plateau = near_plateau & (index > peak_index[:, None])
    surround_index = np.where(plateau, index, curves.shape[1] - 1).min(axis=1)
    return dict(grating_summation_field=np.where(defined, diameters[reached.argmax(axis=1)], np.nan),
                surround_diameter=np.where(defined, diameters[surround_index], np.nan))
