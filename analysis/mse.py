"""Prediction quality: next-frame error on held-out clips (``virtual_physiology.prediction``,
re-exported here) and multi-frame
rollouts on moving bars, as the original's mse notebook with its fixes
(docs/faithfulness.md, "Prediction-error baselines").

The model's prediction at step t is the first ``n_pixels`` outputs of
``forward`` and targets frame t + offset (offset = ``model.temporal_offset``,
1 for temporal prediction). Every model call goes through ``model.forward``,
so the weight constraints (mask, Dale's law) apply, unlike the original's
rollout that stepped the raw RNN.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from analysis import AnalysisError
from data.dataset import load_clips, split_indices
from models.base import ProbeableModel
from virtual_physiology.prediction import next_frame_errors, temporal_offset  # noqa: F401 (this module's API)


def split_clips(path, frame_shape, split: str, max_clips: int | None = None, min_frames: int = 6) -> np.ndarray:
    """Clips (n, T, P) float32 of one split of a dataset file, read and checked
    by ``data.dataset.load_clips``: 'validation' (held out from training,
    in-distribution), 'train' (e.g. of another dataset, out-of-distribution) or
    'full'; the first ``max_clips`` of the split."""
    clips = load_clips(path, frame_shape, min_frames)
    train, validation = split_indices(len(clips))
    index = {"validation": validation, "train": train, "full": np.arange(len(clips))}[split]
    return np.asarray(clips[index[:max_clips]], dtype=np.float32)


def moving_bar(angle_deg: float, n_frames: int, frame_shape=(20, 20), bar_width: int = 3, speed: float = 1.0,
               whiten: bool = True, whitening_scale: float = 14.0) -> tuple[np.ndarray, np.ndarray]:
    """A bright bar drifting across a canvas twice the frame size, as the original.

    The bar (``bar_width`` px wide) moves ``speed`` px/frame along +columns; each
    frame is optionally whitened in the Fourier domain with the filter
    rho exp(-(rho / whitening_scale)^2 / 2) (rho = radial frequency index), rotated
    by ``angle_deg`` (counter-clockwise on the image), centre-cropped to
    ``frame_shape`` and the clip z-scored. Returns (clip (n_frames, P) float32,
    motion unit vector (2,) in (column, row)).
    """
    height, width = frame_shape
    size = 2 * max(height, width)
    cols = np.arange(size)
    start = size / 2 - speed * n_frames / 2
    frames = np.zeros((n_frames, size, size))
    for t in range(n_frames):
        centre = start + speed * t
        frames[t][:, np.abs(cols - centre) <= (bar_width - 1) / 2] = 1.0
    if whiten:
        fy, fx = np.meshgrid(np.fft.fftfreq(size) * size, np.fft.fftfreq(size) * size, indexing="ij")
        rho = np.hypot(fx, fy)
        filt = rho * np.exp(-0.5 * (rho / whitening_scale) ** 2)
        frames = np.real(np.fft.ifft2(np.fft.fft2(frames) * filt))
    frames = ndimage.rotate(frames, angle_deg, axes=(2, 1), reshape=False, order=1)
    top, left = (size - height) // 2, (size - width) // 2
    clip = frames[:, top:top + height, left:left + width].reshape(n_frames, -1)
    clip = (clip - clip.mean()) / (clip.std() or 1.0)
    theta = np.deg2rad(angle_deg)
    return clip.astype(np.float32), np.array([np.cos(theta), -np.sin(theta)])


@torch.no_grad()
def rollout(model: ProbeableModel, clips, n_context: int, n_predict: int) -> np.ndarray:
    """Closed-loop prediction: frames 0..n_context-1 are given, then each
    predicted frame is appended to the input and the model is run again.

    clips: (B, T, P) with T >= n_context. Returns (B, n_predict, P): the
    predictions of frames n_context .. n_context + n_predict - 1. Needs a
    model with temporal offset 1.
    """
    if temporal_offset(model) != 1:
        raise AnalysisError("rollouts need a next-frame model (temporal offset 1)")
    seq = torch.as_tensor(np.asarray(clips, np.float32)[:, :n_context]).to(model.device)
    out = []
    for _ in range(n_predict):
        frame = model(seq)[0][:, -1:, :model.n_pixels]
        out.append(frame)
        seq = torch.cat([seq, frame], dim=1)
    return torch.cat(out, dim=1).cpu().numpy()


def centre_of_mass(frames, frame_shape, power: int = 4) -> np.ndarray:
    """Centre of mass (column, row) of frame ** power (even power: sign-free),
    (..., P) -> (..., 2); nan for an all-zero frame."""
    frames = np.asarray(frames, float)
    height, width = frame_shape
    weights = frames.reshape(*frames.shape[:-1], height, width) ** power
    total = weights.sum(axis=(-2, -1))
    rows, cols = np.arange(height), np.arange(width)
    with np.errstate(invalid="ignore", divide="ignore"):
        col = (weights.sum(axis=-2) * cols).sum(-1) / total
        row = (weights.sum(axis=-1) * rows).sum(-1) / total
    return np.stack([col, row], axis=-1)


def rollout_scores(predicted, target, motion, frame_shape) -> dict[str, np.ndarray]:
    """Per-frame MSE and |centre-of-mass error| along the motion axis.

    predicted, target: (B, K, P); motion: (B, 2) unit vectors (column, row).
    Returns 'mse' and 'com_error', each (B, K). (The original reported the MSE
    under the COM name; docs/faithfulness.md, "Prediction-error baselines".)
    """
    predicted, target = np.asarray(predicted, float), np.asarray(target, float)
    mse = ((predicted - target) ** 2).mean(-1)
    delta = centre_of_mass(predicted, frame_shape) - centre_of_mass(target, frame_shape)
    com_error = np.abs((delta * np.asarray(motion)[:, None, :]).sum(-1))
    return dict(mse=mse, com_error=com_error)


def bar_rollout_benchmark(model: ProbeableModel, n_angles: int = 16, n_context: int = 10, n_predict: int = 9,
                          **bar_kwargs) -> dict[str, np.ndarray]:
    """Roll the model out on moving bars at ``n_angles`` evenly spaced angles and
    score it and the copy-last-frame baseline (frame n_context - 1 repeated)
    against the true frames n_context .. n_context + n_predict - 1. Every
    model type is scored on the same angles (the original used 16 vs 8).

    Returns dict with 'model' and 'copy_last', each {'mse', 'com_error'}
    (n_angles, n_predict), and 'angles'.
    """
    angles = np.arange(n_angles) * 360.0 / n_angles
    bars = [moving_bar(a, n_context + n_predict, model.frame_shape, **bar_kwargs) for a in angles]
    clips = np.stack([b[0] for b in bars])
    motion = np.stack([b[1] for b in bars])
    target = clips[:, n_context:]
    predicted = rollout(model, clips, n_context, n_predict)
    copy = np.repeat(clips[:, n_context - 1:n_context], n_predict, axis=1)
    return dict(angles=angles, model=rollout_scores(predicted, target, motion, model.frame_shape),
                copy_last=rollout_scores(copy, target, motion, model.frame_shape))
