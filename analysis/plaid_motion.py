"""Plaid analyses beyond the pattern index itself (which virtual physiology
computes): summaries, plaid direction selectivity, example plaid tuning
curves and two-grating response maps, as the original's plaid_motion notebook."""
from __future__ import annotations

import numpy as np
import torch

from analysis.stats import fraction_above
from models.base import ProbeableModel
from virtual_physiology.plaid import PLAID_FRAMES, WARMUP, plaid
from virtual_physiology.stimuli import grating

PATTERN_CELL_THRESHOLD = 1.28  # PI above this: pattern cell (p = 0.1 one-sided; Smith et al. 2005)


def pattern_index_summary(pattern_index) -> dict[str, float]:
    """n, mean and the fractions of finite PIs above 0 (more pattern- than
    component-like, the notebook's criterion) and above 1.28 (pattern cells)."""
    pi = np.asarray(pattern_index, float)
    finite = pi[np.isfinite(pi)]
    return dict(n=int(finite.size), mean=float(finite.mean()) if finite.size else float("nan"),
                fraction_above_0=fraction_above(finite, 0.0),
                fraction_above_1_28=fraction_above(finite, PATTERN_CELL_THRESHOLD))


def direction_selectivity(curves) -> np.ndarray:
    """DSI = (R_p - R_opp) / (R_p + R_opp) of direction curves (n, D) sampled
    evenly over 360 degrees (D even), p = first argmax; nan if R_p + R_opp = 0."""
    curves = np.asarray(curves, float)
    p = np.argmax(curves, axis=1)
    rows = np.arange(len(curves))
    best, opposite = curves[rows, p], curves[rows, (p + curves.shape[1] // 2) % curves.shape[1]]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(best + opposite != 0, (best - opposite) / (best + opposite), np.nan)


@torch.no_grad()
def plaid_tuning_curves(model: ProbeableModel, unit: int, sf: float, tf: float,
                        separations=(0, 30, 60, 90, 120, 150), n_directions: int = 18) -> np.ndarray:
    """Direction tuning of one unit to plaids whose components are
    ``separation`` degrees apart (components at d +- separation / 2, each
    z-scored, 50 frames; separation 0 = one grating at double contrast).

    Returns (n_separations, n_directions) mean responses over frames 4..49,
    every row rolled by the same amount so the separation-0 peak sits at index
    n_directions // 2, as the original's figure.
    """
    directions = np.arange(n_directions) * 360.0 / n_directions
    seps, dirs = np.meshgrid(np.asarray(separations, float), directions, indexing="ij")
    clips = plaid(sf, dirs.ravel(), tf, seps.ravel(), model.frame_shape, device=model.device)
    response = model.hidden_activity(clips)[:, WARMUP:, unit].mean(1).cpu().numpy().reshape(seps.shape)
    return np.roll(response, n_directions // 2 - int(np.argmax(response[0])), axis=1)


@torch.no_grad()
def two_grating_map(model: ProbeableModel, unit: int, sf: float, tf: float, step: float = 25.0) -> tuple:
    """Response of one unit to the sum of gratings moving in directions A and B
    (0 .. 360 - step each), the sum z-scored (as the original's contour plot).

    Returns (directions (K,), responses (K, K) indexed [A, B]), means over frames 4..49.
    """
    directions = np.arange(0.0, 360.0, step)
    a, b = (d.ravel() for d in np.meshgrid(directions, directions, indexing="ij"))
    clips = (grating(sf, a, tf, model.frame_shape, PLAID_FRAMES, device=model.device)
             + grating(sf, b, tf, model.frame_shape, PLAID_FRAMES, device=model.device))
    clips = clips - clips.mean(dim=(1, 2), keepdim=True)
    clips = clips / clips.std(dim=(1, 2), keepdim=True, unbiased=False).clamp_min(1e-12)
    response = model.hidden_activity(clips)[:, WARMUP:, unit].mean(1).cpu().numpy()
    return directions, response.reshape(directions.size, directions.size)
