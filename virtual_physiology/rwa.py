"""Response-weighted average (RWA) receptive fields from white noise, streamed
in chunks of clips so that memory does not grow with the number of clips.

Method of the original (docs/faithfulness.md, "RWA method"; computed by
chunked matrix products, not in one batch): N white-noise clips
of 54 frames (the 4 warm-up frames included) are run through the model; the
noise X (N*54, P) and the responses R (N*54, n_hidden) are flattened over
clips and time and concatenated in clip order, so that lagged pairs cross
clip boundaries. A unit in group g, whose response lags the input by
g = model.group_lags[g] frames, gets

    RWA = sum_i X[i] R[i + g] / sum_i R[i + g],   i = 0 .. N*54 - g - 1.

Units whose summed response is exactly 0 are not kept (the original drops
them from every later stage); their ``rwa`` row is NaN.
"""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from models.base import ProbeableModel
from virtual_physiology import ProbeError
from virtual_physiology.stimuli import white_noise


@torch.no_grad()
def response_weighted_average(model: ProbeableModel, n_clips: int = 20000, n_frames: int = 54,
                              chunk_clips: int = 250, seed: int = 0, progress: bool = True, lags=None) -> dict:
    """RWA of every hidden unit of ``model`` (formula in the module docstring).

    ``lags`` (one int >= 0 per group) replaces ``model.group_lags``, the
    original's lag g for group g; e.g. ``(0,) * n_groups`` gives the zero-lag
    RWA of a convolution model, whose groups have no synaptic delay.

    Returns ``rwa`` (n_hidden, P) float32 (NaN rows for units not kept),
    ``total_response`` (n_hidden,) float64 = sum_i R[i + g] over the paired
    rows, and ``kept`` (n_hidden,) bool = total_response != 0.

    The noise comes from ``torch.Generator(model.device).manual_seed(seed)``,
    clip by clip, so the result does not depend on ``chunk_clips``: each chunk
    pairs its responses with its own noise plus the last ``g`` noise frames of
    the chunks before it. X^T R is accumulated per chunk by a float32 matrix
    product added into float64 sums.
    """
    if n_clips < 1 or n_frames < 1 or chunk_clips < 1:
        raise ProbeError("n_clips, n_frames and chunk_clips must be positive: pass counts >= 1")
    device = model.device
    lags = list(model.group_lags if lags is None else lags)
    if len(lags) != len(model.group_sizes) or any(int(lag) != lag or lag < 0 for lag in lags):
        raise ProbeError(f"lags {lags} must be one whole number >= 0 per group ({len(model.group_sizes)} groups)")
    lags = [int(lag) for lag in lags]
    max_lag = max(lags)
    if max_lag >= n_clips * n_frames:
        raise ProbeError(f"{n_clips} clips of {n_frames} frames are shorter than the lag {max_lag}: pass more clips")
    generator = torch.Generator(device=device).manual_seed(seed)

    weighted = torch.zeros(model.n_hidden, model.n_pixels, dtype=torch.float64, device=device)
    total = torch.zeros(model.n_hidden, dtype=torch.float64, device=device)
    tail = torch.zeros(0, model.n_pixels, device=device)  # last noise rows of earlier chunks
    start = 0  # global row index of this chunk's first frame
    bar = tqdm(total=n_clips, desc="RWA (white noise)", unit="clip", disable=not progress)
    for first in range(0, n_clips, chunk_clips):
        clips = min(chunk_clips, n_clips - first)
        noise = white_noise(clips, n_frames, model.n_pixels, generator, device=device)
        responses = model.hidden_activity(noise).reshape(clips * n_frames, model.n_hidden)
        noise = noise.reshape(clips * n_frames, model.n_pixels)
        extended = torch.cat([tail, noise])  # row r of the stream sits at r - (start - len(tail))
        length = noise.shape[0]
        for lag, units in zip(lags, model.group_slices):
            # Response rows j in [max(start, lag), start + length) pair with noise rows j - lag.
            first_j = max(start, lag)
            if first_j >= start + length:
                continue
            paired_noise = extended[first_j - lag - start + len(tail): length - lag + len(tail)]
            paired_resp = responses[first_j - start:, units]
            weighted[units] += (paired_resp.T @ paired_noise).double()
            total[units] += paired_resp.double().sum(dim=0)
        tail = extended[len(extended) - min(max_lag, start + length):].clone()
        start += length
        bar.update(clips)
    bar.close()

    kept = total != 0
    rwa = torch.where(kept[:, None], weighted / total[:, None], torch.full_like(weighted, float("nan")))
    return dict(rwa=rwa.float().cpu().numpy(), total_response=total.cpu().numpy(), kept=kept.cpu().numpy())
