"""Plaid pattern index: does a unit follow the plaid's pattern motion or its
two component gratings? (docs/faithfulness.md, "Plaid construction", "Plaid
fields of the last angle"; method of Movshon et al. 1985 / Smith et al. 2005.)

For a unit with preferred grid indices (sf, tf) from the grating sweep:

1. pattern prediction P(d) = mean grating response at the preferred sf/tf for
   the 12 directions d = 0, 30, .., 330 (every 6th 5-degree grid direction);
2. for each plaid angle A in 60, 90, 120, 150 degrees, with the shift
   s = int((A / 2) / 30) directions (1, 1, 2, 2: 45 and 75 degrees round down,
   reproduced), the component prediction is C = (roll(P, s) + roll(P, -s)) / 2;
3. the plaid moving in direction d is grating(d + A/2) + grating(d - A/2) at the
   preferred sf/tf, each component z-scored on its own and the sum not
   renormalised (std about sqrt 2), 50 frames; the response R(d) is the mean of
   the unit's activity over frames 4 .. 49;
4. partial correlations r_p = (r_RP - r_RC r_PC) / sqrt((1 - r_RC^2)(1 - r_PC^2))
   and r_c = (r_RC - r_RP r_PC) / sqrt((1 - r_RP^2)(1 - r_PC^2)), Fisher
   z = atanh(r) sqrt(12 - 3), and PI = mean_A z_p - mean_A z_c.

Edge cases, kept as NaN rather than guessed: a unit silent to the plaids or
with a flat tuning curve has a constant R or P, so its correlations, z and PI
are NaN; |r| = 1 gives z = +-inf.
"""
from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from models.base import ProbeableModel
from utils import pearson
from virtual_physiology import ProbeError
from virtual_physiology.stimuli import grating

PLAID_ANGLES = (60, 90, 120, 150)
PLAID_DIRECTION_STEP = 30  # degrees between the 12 plaid directions
PLAID_FRAMES = 50
WARMUP = 4


def plaid(sf, direction, tf, angle, frame_shape: tuple[int, int], n_frames: int = PLAID_FRAMES,
          device=None) -> torch.Tensor:
    """Plaids moving in ``direction`` (degrees), batched: (N, n_frames, H*W).

    plaid = grating(direction + angle/2) + grating(direction - angle/2), both
    at ``sf``/``tf``, each z-scored over its own clip (so their amplitude is
    irrelevant) and the sum left as is. Arguments broadcast to length N.
    """
    sf, direction, tf, half = np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, dtype=np.float64))
                                                    for v in (sf, direction, tf, np.asarray(angle) / 2)))
    return (grating(sf, direction + half, tf, frame_shape, n_frames, device=device)
            + grating(sf, direction - half, tf, frame_shape, n_frames, device=device))


def plaid_directions(grid_directions) -> np.ndarray:
    """Indices of 0, 30, .., 330 in the sweep's direction grid (every 6th of
    the original's 72). The grid must be evenly spaced and contain them."""
    grid_directions = np.asarray(grid_directions, dtype=np.float64)
    step = grid_directions[1] - grid_directions[0] if len(grid_directions) > 1 else 0.0
    stride = int(round(PLAID_DIRECTION_STEP / step)) if step > 0 else 0
    wanted = np.arange(0.0, 360.0, PLAID_DIRECTION_STEP)
    picked = grid_directions[::stride] if stride >= 1 else grid_directions[:0]
    if len(picked) != len(wanted) or not np.allclose(picked, wanted):
        raise ProbeError("the grating grid's directions must be evenly spaced over 0..360 and include "
                         "0, 30, .., 330 for plaids: use stimuli.grating_grid")
    return np.arange(0, len(grid_directions), stride)


def pattern_index_from_responses(plaid_responses: np.ndarray, pattern_prediction: np.ndarray,
                                 angles=PLAID_ANGLES) -> dict[str, np.ndarray]:
    """Partial correlations, Fisher z and pattern index (module docstring).

    plaid_responses: (n, n_angles, 12) mean responses to the plaids, direction
    d at index d / 30; pattern_prediction: (n, 12). Returns float64 arrays
    ``rp``, ``rc``, ``zp``, ``zc`` (n, n_angles), ``component_prediction``
    (n, n_angles, 12) and ``pattern_index`` (n,).
    """
    responses = np.asarray(plaid_responses, dtype=np.float64)
    pattern = np.asarray(pattern_prediction, dtype=np.float64)
    n_dirs = pattern.shape[-1]
    shifts = [int((a / 2) / PLAID_DIRECTION_STEP) for a in angles]
    component = np.stack([(np.roll(pattern, s, axis=-1) + np.roll(pattern, -s, axis=-1)) / 2 for s in shifts], 1)
    pattern = np.broadcast_to(pattern[:, None], component.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        r_rp, r_rc, r_pc = pearson(responses, pattern), pearson(responses, component), pearson(pattern, component)
        rp = (r_rp - r_rc * r_pc) / np.sqrt((1 - r_rc ** 2) * (1 - r_pc ** 2))
        rc = (r_rc - r_rp * r_pc) / np.sqrt((1 - r_rp ** 2) * (1 - r_pc ** 2))
        zp, zc = np.arctanh(rp) * np.sqrt(n_dirs - 3), np.arctanh(rc) * np.sqrt(n_dirs - 3)
    return dict(rp=rp, rc=rc, zp=zp, zc=zc, component_prediction=component,
                pattern_index=zp.mean(axis=1) - zc.mean(axis=1))


@torch.no_grad()
def plaid_responses(model: ProbeableModel, units: np.ndarray, sf: np.ndarray, tf: np.ndarray,
                    angles=PLAID_ANGLES, batch_size: int = 256, progress: bool = True) -> np.ndarray:
    """Mean responses of each unit to its own plaids: (n, n_angles, 12) float32.

    ``units`` are columns of ``model.hidden_activity``; ``sf`` and ``tf`` (n,)
    their preferred values. Every distinct (sf, tf) plaid set (12 directions x
    n_angles) is generated and run once, in batches of ``batch_size`` clips,
    and each unit reads the rows of its own set.
    """
    units = np.asarray(units, dtype=np.int64)
    pairs, pair_of_unit = np.unique(np.stack([np.asarray(sf, np.float64), np.asarray(tf, np.float64)], 1),
                                    axis=0, return_inverse=True)
    directions = np.arange(0.0, 360.0, PLAID_DIRECTION_STEP)
    # Clip order: pair-major, then angle, then direction.
    pair_idx, angle_idx, dir_idx = (a.ravel() for a in np.meshgrid(
        np.arange(len(pairs)), np.arange(len(angles)), np.arange(len(directions)), indexing="ij"))
    mean = torch.empty(len(pair_idx), model.n_hidden)
    device = model.device
    for first in tqdm(range(0, len(pair_idx), batch_size), desc="plaids", unit="batch", disable=not progress):
        rows = slice(first, first + batch_size)
        clips = plaid(pairs[pair_idx[rows], 0], directions[dir_idx[rows]], pairs[pair_idx[rows], 1],
                      np.asarray(angles, dtype=np.float64)[angle_idx[rows]], model.frame_shape, device=device)
        mean[rows] = model.hidden_activity(clips)[:, WARMUP:].mean(dim=1).cpu()
    mean = mean.reshape(len(pairs), len(angles), len(directions), model.n_hidden)
    return mean[torch.as_tensor(pair_of_unit.ravel()), :, :, torch.as_tensor(units)].numpy()


def plaid_pattern_index(model: ProbeableModel, units: np.ndarray, mean_responses: np.ndarray,
                        preferred_index: np.ndarray, grid: dict, batch_size: int = 256,
                        progress: bool = True) -> dict[str, np.ndarray]:
    """Pattern index of ``units`` (n,) of ``model`` (module docstring).

    ``mean_responses`` (n, n_sf, n_dir, n_tf) and ``preferred_index`` (n, 3)
    int (sf, direction, tf) grid indices are the tuning the predictions are
    built from; they need not come from ``model``: the no-feedback rerun
    passes the full model's (docs/faithfulness.md, "No-feedback plaids use the
    full model's tuning"). Returns, per unit, every angle's
    ``rp_by_angle``, ``rc_by_angle``, ``zp_by_angle``, ``zc_by_angle`` (n, 4)
    and ``response_by_angle`` (n, 4, 12), the ``pattern_prediction`` (n, 12),
    and the fields the original exported under its names: ``plaid_rp``,
    ``plaid_rc`` and ``plaid_response`` (n, 12) for A = 150 only,
    the angle means ``plaid_zp``, ``plaid_zc`` and ``plaid_pattern_index`` (n,).
    """
    preferred_index = np.asarray(preferred_index, dtype=np.int64).reshape(-1, 3)
    mean_responses = np.asarray(mean_responses)
    dir_rows = plaid_directions(grid["directions"])
    n = len(preferred_index)
    pattern = mean_responses[np.arange(n)[:, None], preferred_index[:, :1], dir_rows[None, :], preferred_index[:, 2:]]
    responses = plaid_responses(model, units, np.asarray(grid["sf"])[preferred_index[:, 0]],
                                np.asarray(grid["tf"])[preferred_index[:, 2]], batch_size=batch_size,
                                progress=progress)
    stats = pattern_index_from_responses(responses, pattern)
    last = PLAID_ANGLES.index(150)
    return dict(rp_by_angle=stats["rp"], rc_by_angle=stats["rc"], zp_by_angle=stats["zp"],
                zc_by_angle=stats["zc"], response_by_angle=responses, pattern_prediction=pattern,
                plaid_rp=stats["rp"][:, last], plaid_rc=stats["rc"][:, last], plaid_response=responses[:, last],
                plaid_zp=stats["zp"].mean(axis=1), plaid_zc=stats["zc"].mean(axis=1),
                plaid_pattern_index=stats["pattern_index"])
