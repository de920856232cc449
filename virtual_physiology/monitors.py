"""Cheap measures of what the original's trained model shows, for the training
monitor (``--rf-monitor-every``) and ``rf_summary --curve``: how many units
respond per group, how many group-1 units are simple cells, how much group 1
relies on feedback, and how much weight each block of W_hh carries.

Each is a pure function of a model (or of its weights) with its own seeded
draws, so monitoring never changes a training run. The literature and the
original's values they are read against are in ``reference_rf.json``
(``reference_values``).
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import torch

from models.ablation import without_feedback
from models.base import ProbeableModel
from virtual_physiology.modulation import modulation_ratio_curve_fit
from virtual_physiology.stimuli import grating_grid
from virtual_physiology.tuning import (direction_curves, global_orientation_direction_indices, grating_sweep,
                                      orientation_bandwidth, responses_at)

GRATING_WARMUP, GRATING_FRAMES = 4, 50  # the full virtual physiology's (stages.GRATING_FRAMES, plaid.WARMUP)


def responsive_units_per_group(total_response, group_slices) -> list[int]:
    """Units per group whose summed white-noise response is non-zero: the
    original's rule for which units enter its analyses (``if np.sum(unit_responses)``
    in its RWA; ``rwa.response_weighted_average``'s ``kept``).

    total_response: (n_hidden,) summed responses (``rwa``'s ``total_response``);
    group_slices: one slice per group. Returns one count per group. NaN counts
    as responsive (it is not zero), as in the original.
    """
    responsive = np.asarray(total_response) != 0
    return [int(responsive[s].sum()) for s in group_slices]


def block_weight_mass(weights, group_slices, mask=None) -> dict[str, float]:
    """Mean |w| of every block of a recurrent weight matrix, over its connectable
    entries: within each group, feedforward G(g) -> G(g+1) and feedback
    G(g+1) -> G(g).

    weights: (H, H) [post, pre] (``model.recurrent_weights()``); group_slices:
    one slice per group; mask: (H, H) 0/1 of the entries the architecture
    allows (``hh_mask``: the higher group's inhibitory columns carry no
    feedback), all entries when None. Keys ``w_G1_G1``, ``w_G1_to_G2``,
    ``w_G2_to_G1`` ... (groups numbered from 1). A block with no connectable
    entry gives NaN. Formula: sum |w| m / sum m over the block.
    """
    weights = torch.as_tensor(weights).detach().double().abs().cpu()
    mask = torch.ones_like(weights) if mask is None else torch.as_tensor(mask).detach().double().cpu()
    mass = {}
    for g, rows in enumerate(group_slices):
        for h, cols in enumerate(group_slices):
            if abs(g - h) > 1:
                continue
            allowed = mask[rows, cols]
            total = float(allowed.sum())
            value = float((weights[rows, cols] * allowed).sum()) / total if total else float("nan")
            key = f"w_G{g + 1}_G{g + 1}" if g == h else f"w_G{h + 1}_to_G{g + 1}"  # rows are postsynaptic
            mass[key] = value
    return mass


def model_weight_mass(model: ProbeableModel) -> dict[str, float]:
    """``block_weight_mass`` of the model's W_hh as every forward pass uses it
    (masked, Dale-projected), over its mask's entries; {} for a model without
    a recurrent weight matrix."""
    weights = model.recurrent_weights()
    if weights is None:
        return {}
    return block_weight_mass(weights, model.group_slices, getattr(model, "hh_mask", None))


def reduced_grating_grid(frame_shape, n_sf: int = 4, n_directions: int = 8) -> dict[str, np.ndarray]:
    """A coarse subset of the full probing grid (``stimuli.grating_grid``):
    ``n_sf`` of its spatial frequencies, evenly spread over its range (both ends
    included), ``n_directions`` directions evenly spaced over 360 degrees (a
    multiple of 4, so orthogonal and opposite directions exist) and all of its
    temporal frequencies."""
    if n_sf < 1 or n_directions < 4 or n_directions % 4:
        raise ValueError(f"n_sf {n_sf} and n_directions {n_directions}: give n_sf >= 1 and a multiple of 4 directions")
    full = grating_grid(frame_shape)
    picks = np.unique(np.round(np.linspace(0, len(full["sf"]) - 1, min(n_sf, len(full["sf"])))).astype(int))
    return dict(sf=full["sf"][picks], directions=np.arange(n_directions) * 360.0 / n_directions, tf=full["tf"])


@torch.no_grad()
def grating_monitor(model: ProbeableModel, group: int = 0, n_sf: int = 4, n_directions: int = 8,
                    batch_size: int = 240, ablated: ProbeableModel | None = None) -> dict[str, float]:
    """Simple cells and feedback reliance of one group on a reduced drifting-grating set.

    1. Every grating of ``reduced_grating_grid`` (n_sf x n_directions x 12
       TFs, 54 frames, z-scored: ``tuning.grating_sweep``) gives each unit's
       mean response. The model's best TF is the one at which the group's
       units, each at its best (sf, direction), respond most in sum.
    2. At that TF each unit's preferred (sf, direction) is its first argmax, as
       the original; its 50-frame response there (``tuning.responses_at``) is
       fitted by the figure's modulation ratio (``modulation.modulation_ratio_curve_fit``:
       F1/F0 = a / d of a fitted sine, kept where 0 <= F1/F0 <= 2 and r > 0).
    3. The same gratings go through ``ablated`` (default
       ``ablation.without_feedback(model)``).

    Returns (NaN where no unit qualifies):
    - ``f1f0_above_1``: fraction of kept units with F1/F0 > 1 (the original's
      TP_full G1: 0.18; macaque V1, Ringach 2002: 0.40);
    - ``f1f0_median``: their median F1/F0;
    - ``circular_variance_median``: 1 - global OSI (``tuning.global_orientation_direction_indices``)
      of the direction curve at the preferred sf and best TF (Ringach 2002's
      measure; 0 sharply tuned, 1 flat), median over responsive units;
    - ``orientation_bandwidth_median`` (degrees, ``tuning.orientation_bandwidth``:
      NaN for untuned units) of the same curves, median over the tuned
      responsive units: at 8 directions (45 degree steps) the interpolated curve
      widens sharp tuning, so ``rf_summary`` measures it at 24;
    - ``feedback_peak_ratio``: median over responsive units (mean response > 0
      with feedback) of mean response without / with feedback at the preferred
      grating (the original's 0.55 compares size-tuning peaks, which the full
      virtual physiology's surround stage measures);
    - ``best_tf`` (cycles/frame) and ``grating_units``: the units responsive to
      a grating.
    A model without feedback gives NaN for the ratio.
    """
    grid = reduced_grating_grid(model.frame_shape, n_sf, n_directions)
    units = np.arange(model.n_hidden)[model.group_slices[group]]
    mean = grating_sweep(model, grid, warmup=GRATING_WARMUP, n_frames=GRATING_FRAMES, batch_size=batch_size,
                         progress=False)["mean_responses"][units]  # (n, n_sf, n_dir, n_tf)
    best_tf = int(np.argmax(mean.max(axis=(1, 2)).sum(axis=0)))
    at_tf = mean[..., best_tf].reshape(len(units), -1)
    sf_index, direction_index = np.unravel_index(np.argmax(at_tf, axis=1), mean.shape[1:3])
    stimulus = (grid["sf"][sf_index], grid["directions"][direction_index], np.full(len(units), grid["tf"][best_tf]))
    optimum = responses_at(model, *stimulus, n_frames=GRATING_FRAMES, warmup=GRATING_WARMUP, units=units,
                           batch_size=batch_size)
    responsive = optimum.mean(axis=1) > 0

    ratio = modulation_ratio_curve_fit(optimum, progress=False)
    kept = ratio["keep"] & responsive
    preferred = dict(sf_index=sf_index, tf_index=np.full(len(units), best_tf))
    cv = 1 - global_orientation_direction_indices(mean, preferred)["global_OSI"][responsive]
    bandwidth = orientation_bandwidth(direction_curves(mean, preferred))[responsive]

    peak_ratio = float("nan")
    if model.supports_feedback_ablation and responsive.any():
        ablated = without_feedback(model) if ablated is None else ablated
        without = responses_at(ablated, *stimulus, n_frames=GRATING_FRAMES, warmup=GRATING_WARMUP, units=units,
                               batch_size=batch_size)
        peak_ratio = float(np.median(without.mean(axis=1)[responsive] / optimum.mean(axis=1)[responsive]))
    return dict(f1f0_above_1=float(np.mean(ratio["F1F0"][kept] > 1)) if kept.any() else float("nan"),
                f1f0_median=float(np.median(ratio["F1F0"][kept])) if kept.any() else float("nan"),
                circular_variance_median=float(np.nanmedian(cv)) if np.isfinite(cv).any() else float("nan"),
                orientation_bandwidth_median=(float(np.nanmedian(bandwidth)) if np.isfinite(bandwidth).any()
                                              else float("nan")),
                feedback_peak_ratio=peak_ratio, best_tf=float(grid["tf"][best_tf]),
                grating_units=int(responsive.sum()))


@functools.cache
def reference_values() -> dict:
    """The literature's and the original's values the monitors are read against,
    each with its citation (``reference_rf.json`` beside this module)."""
    return json.loads(Path(__file__).with_name("reference_rf.json").read_text())
