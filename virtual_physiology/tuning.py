"""Drifting-grating tuning: the full (sf, direction, tf) sweep, preferred
parameters, OSI/DSI, and the re-probe of each unit at its preferred grating.

Method of the original (docs/faithfulness.md, "Grating conventions",
"Preferences and OSI/DSI"): each grating has warmup + n_frames = 54 frames and is z-scored per
clip; a unit's response to it is h[warmup:] (50 frames) and its mean over
those frames. Here the stimuli are batched, every unit is read at once, and
the full time courses are streamed to an optional sink instead of being held
(2400 units x 8640 gratings x 50 frames is 4.1 GB in float32).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from models.base import ProbeableModel
from utils import UserInputError
from virtual_physiology.stimuli import grating, grating_grid


@torch.no_grad()
def grating_sweep(model: ProbeableModel, grid: dict | None = None, warmup: int = 4, n_frames: int = 50,
                  batch_size: int = 240, sink: Callable[[slice, np.ndarray], None] | None = None,
                  progress: bool = True) -> dict:
    """Mean response of every unit to every grating of ``grid``.

    ``grid`` is ``grating_grid(model.frame_shape)`` by default; stimulus
    (i, j, k) = (sf[i], directions[j], tf[k]) has flat index
    np.ravel_multi_index((i, j, k), (n_sf, n_dir, n_tf)). ``sink(indices, responses)``,
    if given, receives each batch: ``indices`` a slice of flat indices and
    ``responses`` (batch, n_frames, n_hidden) float32 on the CPU (h[:, warmup:]).

    Returns ``mean_responses`` (n_hidden, n_sf, n_dir, n_tf) float32 and ``grid``.
    """
    grid = grating_grid(model.frame_shape) if grid is None else grid
    shape = (len(grid["sf"]), len(grid["directions"]), len(grid["tf"]))
    sf, direction, tf = (values.ravel() for values in
                         np.meshgrid(grid["sf"], grid["directions"], grid["tf"], indexing="ij"))
    means = torch.empty(len(sf), model.n_hidden, device=model.device)
    for first in tqdm(range(0, len(sf), batch_size), desc="grating sweep", unit="batch", disable=not progress):
        batch = slice(first, min(first + batch_size, len(sf)))
        responses = _probe(model, sf[batch], direction[batch], tf[batch], warmup, n_frames)
        means[batch] = responses.mean(dim=1)
        if sink is not None:
            sink(batch, responses.cpu().numpy())
    mean_responses = means.T.reshape(model.n_hidden, *shape).cpu().numpy()
    return dict(mean_responses=mean_responses, grid=grid)


def preferred_parameters(mean_responses: np.ndarray, grid: dict) -> dict[str, np.ndarray]:
    """Preferred grating of each unit: the FIRST global argmax of its
    (sf, direction, tf) mean responses, in C order, as the original (a silent
    unit therefore "prefers" the first grating).

    Returns per unit: ``sf_index``, ``direction_index``, ``tf_index``, the
    values ``preferred_sf``, ``preferred_direction``, ``preferred_tf`` and
    ``max_mean_grating_response``.
    """
    mean_responses = np.asarray(mean_responses)
    flat = mean_responses.reshape(len(mean_responses), -1)
    best = np.argmax(flat, axis=1)
    sf_index, direction_index, tf_index = np.unravel_index(best, mean_responses.shape[1:])
    return dict(
        sf_index=sf_index, direction_index=direction_index, tf_index=tf_index,
        preferred_sf=np.asarray(grid["sf"])[sf_index],
        preferred_direction=np.asarray(grid["directions"])[direction_index],
        preferred_tf=np.asarray(grid["tf"])[tf_index],
        max_mean_grating_response=flat[np.arange(len(flat)), best],
    )


def orientation_direction_indices(mean_responses: np.ndarray, pref: dict) -> dict[str, np.ndarray]:
    """OSI and DSI of each unit from its direction curve at the preferred sf/tf.

    With c the curve over the D directions (evenly spaced over 360 degrees, D a
    multiple of 4) and p its first argmax, indices wrapping around the circle:
        OSI = (c_p - o) / (c_p + o),  o = (c_{p+D/4} + c_{p-D/4}) / 2
        DSI = (c_p - c_{p+D/2}) / (c_p + c_{p+D/2})
    as the original. A silent unit gives 0/0 = NaN.
    """
    mean_responses = np.asarray(mean_responses, dtype=np.float64)
    n_directions = mean_responses.shape[2]
    if n_directions % 4:
        raise UserInputError(f"{n_directions} directions cannot give orthogonal and opposite directions: "
                             "use directions evenly spaced over 360 degrees, a multiple of 4 of them")
    units = np.arange(len(mean_responses))
    curves = mean_responses[units, pref["sf_index"], :, pref["tf_index"]]
    p = np.argmax(curves, axis=1)
    at = lambda offset: curves[units, (p + offset) % n_directions]
    peak, opposite = at(0), at(n_directions // 2)
    orthogonal = (at(n_directions // 4) + at(-n_directions // 4)) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return dict(OSI=(peak - orthogonal) / (peak + orthogonal), DSI=(peak - opposite) / (peak + opposite))


def is_orientation_selective(osi: np.ndarray, threshold: float = 0.4) -> np.ndarray:
    """OSI > threshold (0.4 in vphys; the connectivity notebook uses 0.3). NaN is False."""
    return np.asarray(osi) > threshold


def is_direction_selective(dsi: np.ndarray, threshold: float = 0.3) -> np.ndarray:
    """DSI > threshold (0.3 in vphys; the connectivity notebook uses 0.4). NaN is False."""
    return np.asarray(dsi) > threshold


@torch.no_grad()
def responses_at(model: ProbeableModel, sf, direction, tf, n_frames: int = 50, warmup: int = 4,
                 units: np.ndarray | None = None, batch_size: int = 240) -> np.ndarray:
    """Each unit's response time course to its own grating: (n_units, n_frames) float32.

    ``sf``, ``direction``, ``tf`` are per-unit arrays (e.g. the preferred
    values: the original's "optimum_grating_response"); ``units`` are the
    hidden columns they belong to (default: all n_hidden, in order). One
    stimulus is run per unique (sf, direction, tf); each unit reads its own
    column from its own stimulus.
    """
    units = np.arange(model.n_hidden) if units is None else np.asarray(units)
    sf, direction, tf = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (sf, direction, tf)))
    if sf.shape != units.shape:
        raise UserInputError(f"got {sf.size} gratings for {units.size} units: pass one (sf, direction, tf) per unit")
    combos, stimulus_of_unit = np.unique(np.stack([sf, direction, tf], axis=1), axis=0, return_inverse=True)
    stimulus_of_unit = stimulus_of_unit.ravel()
    out = torch.empty(len(units), n_frames, device=model.device)
    for first in range(0, len(combos), batch_size):
        stop = min(first + batch_size, len(combos))
        responses = _probe(model, *combos[first:stop].T, warmup, n_frames)
        readers = np.flatnonzero((stimulus_of_unit >= first) & (stimulus_of_unit < stop))
        picked = responses[torch.as_tensor(stimulus_of_unit[readers] - first), :, torch.as_tensor(units[readers])]
        out[torch.as_tensor(readers)] = picked
    return out.cpu().numpy()


def _probe(model: ProbeableModel, sf, direction, tf, warmup: int, n_frames: int) -> torch.Tensor:
    """Responses (batch, n_frames, n_hidden) to z-scored gratings, warm-up dropped."""
    stimuli = grating(sf, direction, tf, model.frame_shape, warmup + n_frames, device=model.device)
    return model.hidden_activity(stimuli)[:, warmup:].float()
