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
from scipy.interpolate import CubicSpline
from tqdm.auto import tqdm

from models.base import ProbeableModel
from virtual_physiology import ProbeError
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
    n_directions = np.shape(mean_responses)[2]
    if n_directions % 4:
        raise ProbeError(f"{n_directions} directions cannot give orthogonal and opposite directions: "
                         "use directions evenly spaced over 360 degrees, a multiple of 4 of them")
    curves = direction_curves(mean_responses, pref)
    units = np.arange(len(curves))
    p = np.argmax(curves, axis=1)
    at = lambda offset: curves[units, (p + offset) % n_directions]
    peak, opposite = at(0), at(n_directions // 2)
    orthogonal = (at(n_directions // 4) + at(-n_directions // 4)) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return dict(OSI=(peak - orthogonal) / (peak + orthogonal), DSI=(peak - opposite) / (peak + opposite))


def direction_curves(mean_responses: np.ndarray, pref: dict) -> np.ndarray:
    """Each unit's response over the D directions at its preferred sf and tf:
    (n, D) float64 from ``mean_responses`` (n, n_sf, D, n_tf) and the
    ``sf_index`` and ``tf_index`` of ``preferred_parameters``."""
    mean_responses = np.asarray(mean_responses, dtype=np.float64)
    units = np.arange(len(mean_responses))
    return mean_responses[units, np.asarray(pref["sf_index"]), :, np.asarray(pref["tf_index"])]


def global_orientation_direction_indices(mean_responses: np.ndarray, pref: dict) -> dict[str, np.ndarray]:
    """Vector-sum ("global") OSI and DSI of each unit, from its direction curve
    r_k at the preferred sf and tf over directions theta_k evenly spaced on 360
    degrees (``direction_curves``):

        global OSI = |sum_k r_k e^{2 i theta_k}| / sum_k r_k,   global DSI = |sum_k r_k e^{i theta_k}| / sum_k r_k

    the Allen Brain Observatory's ``g_osi_dg`` / ``g_dsi_dg``; 1 - global OSI
    is the circular variance of Ringach, Shapley & Hawken (2002). Both lie in
    [0, 1] for non-negative responses (ReLU units); a silent unit (sum 0)
    gives NaN. Unlike the peak-based ``orientation_direction_indices`` they use
    the whole curve, so one noisy peak does not decide them.
    """
    curves = direction_curves(mean_responses, pref)
    theta = np.deg2rad(np.arange(curves.shape[1]) * 360.0 / curves.shape[1])
    total = curves.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return dict(global_OSI=np.abs(curves @ np.exp(2j * theta)) / total,
                    global_DSI=np.abs(curves @ np.exp(1j * theta)) / total)


def orientation_bandwidth(direction_curve: np.ndarray, level: float = 1 / np.sqrt(2), step: float = 0.5) -> np.ndarray:
    """Orientation bandwidth in degrees, Ringach, Shapley & Hawken (2002):
    the half-width of the orientation tuning curve at ``level`` (1/sqrt 2) of
    its peak.

    direction_curve: (n, D) responses over D directions evenly spaced on 360
    degrees (D even). The orientation curve (n, D/2) averages each direction
    with its opposite; it is interpolated linearly on the circle every
    ``step`` degrees, and the distance from the peak to the first point below
    level x peak is found on each side; the bandwidth is their mean. NaN when
    the curve never falls below that level within 90 degrees of the peak on
    either side (an untuned unit; Ringach's database marks these 180 and
    Brain-Score sets bandwidths above 90 to NaN) and for a silent unit.
    Resolution: ``step`` degrees.
    """
    curves = np.asarray(direction_curve, dtype=np.float64)
    half = curves.shape[1] // 2
    orientation = (curves[:, :half] + curves[:, half:2 * half]) / 2
    spacing = 180.0 / half
    fine = np.arange(0.0, 180.0, step)
    position = fine / spacing
    lower = np.floor(position).astype(int)
    weight = position - lower
    dense = orientation[:, lower % half] * (1 - weight) + orientation[:, (lower + 1) % half] * weight  # (n, F)
    n_fine = len(fine)
    peak = dense.argmax(axis=1)
    below = dense < level * dense.max(axis=1, keepdims=True)
    offsets = np.arange(1, n_fine // 2 + 1)  # up to 90 degrees each way
    rows = np.arange(len(dense))[:, None]
    right = below[rows, (peak[:, None] + offsets) % n_fine]
    left = below[rows, (peak[:, None] - offsets) % n_fine]
    found = right.any(axis=1) & left.any(axis=1) & (dense.max(axis=1) > 0)
    width = (offsets[right.argmax(axis=1)] + offsets[left.argmax(axis=1)]) * step / 2
    return np.where(found, width, np.nan)


def spatial_frequency_curves(mean_responses: np.ndarray, pref: dict) -> np.ndarray:
    """Each unit's response over the grid's spatial frequencies at its
    preferred direction and tf: (n, n_sf) float64 from ``mean_responses``
    (n, n_sf, n_dir, n_tf) and ``preferred_parameters``."""
    mean_responses = np.asarray(mean_responses, dtype=np.float64)
    units = np.arange(len(mean_responses))
    return mean_responses[units, :, np.asarray(pref["direction_index"]), np.asarray(pref["tf_index"])]


SF_SMOOTHING = np.array([1.0, 5.0, 1.0]) / 7
SF_INTERPOLATION_POINTS = 100
SF_CUTOFF_LEVEL = 0.707


def spatial_frequency_tuning(curves: np.ndarray, sf: np.ndarray) -> dict[str, np.ndarray]:
    """Peak spatial frequency and the cut-offs around it, the way Brain-Score's
    Marques2020 benchmarks read an SF tuning curve (De Valois, Albrecht &
    Thorell 1982; Schiller, Finlay & Volman 1976).

    curves: (n, n_sf) responses at increasing spatial frequencies ``sf`` (n_sf,
    > 0, at least 2). Each curve is padded with its end values (two each),
    smoothed with the kernel (1, 5, 1)/7 and interpolated by a cubic spline in
    log2(sf) at 100 points evenly spaced in log2(sf) over the tested range.
    Returns, per unit:
      - ``peak_sf``: sf at the interpolated maximum (the tested range only);
      - ``low_cutoff``, ``high_cutoff``: the nearest interpolated sf below and
        above the peak where the curve is <= 0.707 x peak (NaN if none);
      - ``sf_selective``: 1.0 when both cut-offs exist, else 0.0;
      - ``sf_bandwidth_ratio``: 100 x low / high cut-off (1 octave = 50), NaN
        unless selective.
    A silent unit (curve all <= 0) gets NaN everywhere.
    """
    curves = np.asarray(curves, dtype=np.float64)
    log_sf = np.log2(np.asarray(sf, dtype=np.float64))
    padded = np.concatenate([curves[:, :1], curves[:, :1], curves, curves[:, -1:], curves[:, -1:]], axis=1)
    smoothed = (SF_SMOOTHING[0] * padded[:, :-2] + SF_SMOOTHING[1] * padded[:, 1:-1]
                + SF_SMOOTHING[2] * padded[:, 2:])[:, 1:-1]
    fine = np.linspace(log_sf[0], log_sf[-1], SF_INTERPOLATION_POINTS)
    dense = CubicSpline(log_sf, smoothed, axis=1)(fine)
    peak = dense.argmax(axis=1)
    rows = np.arange(len(dense))
    below = dense <= SF_CUTOFF_LEVEL * dense[rows, peak][:, None]
    index = np.arange(SF_INTERPOLATION_POINTS)
    low_index = np.where(below & (index < peak[:, None]), index, -1).max(axis=1)
    high_index = np.where(below & (index > peak[:, None]), index, SF_INTERPOLATION_POINTS).min(axis=1)
    responsive = curves.max(axis=1) > 0
    low = np.where((low_index >= 0) & responsive, 2.0 ** fine[np.clip(low_index, 0, None)], np.nan)
    high = np.where((high_index < SF_INTERPOLATION_POINTS) & responsive,
                    2.0 ** fine[np.clip(high_index, None, SF_INTERPOLATION_POINTS - 1)], np.nan)
    selective = np.isfinite(low) & np.isfinite(high)
    return dict(peak_sf=np.where(responsive, 2.0 ** fine[peak], np.nan), low_cutoff=low, high_cutoff=high,
                sf_selective=np.where(responsive, selective.astype(float), np.nan),
                sf_bandwidth_ratio=np.where(selective, 100 * low / high, np.nan))


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
        raise ProbeError(f"got {sf.size} gratings for {units.size} units: pass one (sf, direction, tf) per unit")
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
