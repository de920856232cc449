"""Stimuli for virtual physiology: the drifting-grating grid, drifting gratings
and white noise, all as (N, T, P) float32 tensors with P = H * W pixels in
row-major order (pixel p sits at row p // W, column p % W).

Conventions, the original's (docs/faithfulness.md, "Grating conventions"):
- the direction value is the direction of motion, in degrees: 0 moves up
  (towards row 0), 90 right, 180 down, 270 left;
- spatial frequency ``sf`` is in cycles/pixel, temporal frequency ``tf`` in
  cycles/frame;
- at the Nyquist frequency (sf = 0.5) opposite directions give the same clip
  (reproduced, not avoided).
"""
from __future__ import annotations

import numpy as np
import torch

from virtual_physiology import ProbeError


def grating_grid(frame_shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """The original's probing grid for ``frame_shape`` (H, W).

    - ``sf`` = i / max(H, W) for i = 1 .. min(H, W) // 2 (0.05 .. 0.5 at 20x20);
    - ``directions`` = 0, 5, .., 355 degrees (72 values);
    - ``tf`` = linspace(1/50, 1/4, 12) cycles/frame.
    """
    height, width = _check_frame_shape(frame_shape)
    return dict(
        sf=np.arange(1, min(height, width) // 2 + 1) / max(height, width),
        directions=np.arange(0.0, 360.0, 5.0),
        tf=np.linspace(1 / 50, 1 / 4, 12),
    )


def grating(sf, direction, tf, frame_shape: tuple[int, int], n_frames: int,
            amplitude: float = 1.0, normalise: bool = True, phase_offset_frames: float = 0,
            device: torch.device | str | None = None) -> torch.Tensor:
    """Drifting sinusoidal gratings, batched: (N, n_frames, H*W) float32.

    ``sf``, ``direction`` and ``tf`` are scalars or 1-D arrays broadcast to a
    common length N. With theta = direction - 90 degrees, x = column, y = row
    and t = phase_offset_frames + 0 .. n_frames-1:

        frame_t = amplitude * sin(2 pi sf (x cos theta + y sin theta) - 2 pi tf t)

    so the crests move along +(cos theta, sin theta) in (column, row), i.e. up
    for direction 0. With ``normalise`` each clip is z-scored with one mean and
    one (population) std over the whole clip, which makes ``amplitude``
    irrelevant; a constant clip (e.g. sf = tf = 0) has std 0 and is left at 0.
    Phases are computed in float64, the clip itself in float32.
    """
    height, width = _check_frame_shape(frame_shape)
    if int(n_frames) < 1:
        raise ProbeError(f"n_frames must be at least 1, got {n_frames}: pass a positive frame count")
    try:
        sf, direction, tf = np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, dtype=np.float64))
                                                  for v in (sf, direction, tf)))
    except ValueError as err:
        raise ProbeError("sf, direction and tf have different lengths: pass scalars or arrays of one length") from err
    if sf.ndim != 1:
        raise ProbeError("sf, direction and tf must be scalars or 1-D arrays: flatten them first")

    opts = dict(dtype=torch.float64, device=device)
    theta = torch.deg2rad(torch.as_tensor(direction, **opts) - 90.0)[:, None]
    rows, cols = torch.meshgrid(torch.arange(height, **opts), torch.arange(width, **opts), indexing="ij")
    # Spatial phase per clip and pixel, temporal phase per clip and frame.
    spatial = 2 * torch.pi * torch.as_tensor(sf, **opts)[:, None] * (
        cols.reshape(1, -1) * torch.cos(theta) + rows.reshape(1, -1) * torch.sin(theta))
    t = torch.arange(n_frames, **opts) + phase_offset_frames
    temporal = 2 * torch.pi * torch.as_tensor(tf, **opts)[:, None] * t[None, :]
    # sin(s - t) = sin s cos t - cos s sin t: two small sin/cos tables in
    # float64, then one float32 batched product instead of a big sin.
    table = lambda v: torch.stack([torch.sin(v), torch.cos(v)], dim=-1).to(torch.float32)
    clips = amplitude * torch.bmm(table(temporal).flip(-1) * torch.tensor([1.0, -1.0], device=device),
                                  table(spatial).transpose(1, 2))
    if normalise:
        clips = clips - clips.mean(dim=(1, 2), keepdim=True)
        std = clips.std(dim=(1, 2), keepdim=True, unbiased=False)
        # A constant clip is all zeros after centring; dividing by 1 keeps it so.
        clips = clips / torch.where(std > 1e-12, std, torch.ones_like(std))
    return clips.to(torch.float32)


def white_noise(n_clips: int, n_frames: int, n_pixels: int, generator: torch.Generator,
                device: torch.device | str | None = None) -> torch.Tensor:
    """N(0, 1) white noise, (n_clips, n_frames, n_pixels) float32, drawn from
    ``generator`` (which must live on ``device``; default: the generator's
    device).

    Each clip is drawn by its own call: torch's normal sampler consumes the
    generator in blocks, so one big draw is not the concatenation of smaller
    ones. Clip by clip, successive calls continue one stream and the noise
    does not depend on how the clips are split into chunks.
    """
    device = generator.device if device is None else torch.device(device)
    noise = torch.empty(int(n_clips), int(n_frames), int(n_pixels), device=device, dtype=torch.float32)
    for clip in noise:
        torch.randn(clip.shape, generator=generator, out=clip)
    return noise


def _check_frame_shape(frame_shape) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in frame_shape)
    except (TypeError, ValueError) as err:
        raise ProbeError(f"frame_shape must be (height, width), got {frame_shape!r}") from err
    if height < 1 or width < 1:
        raise ProbeError(f"frame_shape must be positive, got {frame_shape!r}")
    return height, width
