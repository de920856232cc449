"""Turn footage into training clips: the preprocessing of the paper's data build.

Steps, in order (as the paper's data were built): decode to grayscale, block-mean downsample,
band-pass every frame with ``skimage.filters.difference_of_gaussians(frame, 1)``,
cut frame-sized patches into fixed-length clips (optionally keeping only every
``frame_step``-th frame), drop flat and low-motion clips, z-score each clip.
Both ``data.default_dataset`` and ``data.prepare_dataset`` use these functions.

Every array of frames is (T, H, W) float32; every array of clips is
(N, T, P) with P = H * W pixels of a frame flattened row-major.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import av
import numpy as np
from skimage.filters import difference_of_gaussians

from data import DatasetError

CLIP_LEN = 50  # frames per clip, as in the paper's data build
REENCODE = "re-encode it, e.g. ffmpeg -i IN -c:v libx264 OUT.mp4"
VIDEO_SUFFIXES = (".mp4", ".webm", ".avi", ".ogv", ".mov", ".mkv")


def video_info(path: str | Path) -> tuple[int, int, float]:
    """(width, height, frames per second) of a video's first video stream."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DatasetError(f"{path} has no video stream: give a video file")
            stream = container.streams.video[0]
            return stream.codec_context.width, stream.codec_context.height, float(stream.average_rate or 0)
    except DatasetError:  # no video stream: said as it is
        raise
    except (av.FFmpegError, OSError, ValueError) as err:
        raise DatasetError(f"cannot open {path} ({err}): {REENCODE}") from err


def iter_gray_blocks(path: str | Path, downsample: int = 1, block_len: int | None = None,
                     overlap: int = 0) -> Iterator[np.ndarray]:
    """Decode a video to grayscale frames in [0, 1], block-mean downsampled on the fly.

    Yields (T_i, H // downsample, W // downsample) float32 blocks of at most
    ``block_len`` frames (None: the whole video in one block); consecutive
    blocks share ``overlap`` frames so that a clip of overlap + 1 frames is
    never split. Downsampling while decoding and decoding in blocks bound the
    memory. A trailing remainder of only already-yielded frames is not yielded.
    Raises ``DatasetError`` when the file cannot be decoded or holds no frames.
    """
    buffer, n_decoded = [], 0
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DatasetError(f"{path} has no video stream: give a video file")
            for frame in container.decode(video=0):
                gray = frame.to_ndarray(format="gray").astype(np.float32) / 255.0
                buffer.append(block_mean(gray[None], downsample)[0])
                n_decoded += 1
                if block_len is not None and len(buffer) == block_len:
                    yield np.stack(buffer)
                    buffer = buffer[block_len - overlap:]
    except DatasetError:  # no video stream: said as it is
        raise
    except (av.FFmpegError, OSError, ValueError) as err:
        raise DatasetError(f"cannot decode {path} ({err}): {REENCODE}") from err
    if n_decoded == 0:
        raise DatasetError(f"{path} holds no decodable frames: {REENCODE}")
    if len(buffer) > overlap or n_decoded == len(buffer):
        yield np.stack(buffer)


def block_mean(frames: np.ndarray, factor: int) -> np.ndarray:
    """Average non-overlapping factor x factor blocks of each frame.

    (T, H, W) -> (T, H // factor, W // factor); the remainder rows/columns at
    the bottom/right are dropped. factor 1 returns the input unchanged.
    """
    if factor == 1:
        return frames
    t, h, w = frames.shape
    h, w = h // factor, w // factor
    blocks = frames[:, : h * factor, : w * factor].reshape(t, h, factor, w, factor)
    return blocks.mean(axis=(2, 4), dtype=np.float32)


def bandpass(frames: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Band-pass every frame independently: ``difference_of_gaussians(frame, sigma)``.

    (T, H, W) -> (T, H, W) float32. skimage's default high sigma is 1.6 * sigma;
    ``channel_axis=0`` filters each frame on its own, identical to a loop.
    """
    return difference_of_gaussians(frames, sigma, channel_axis=0).astype(np.float32)


def find_scene_cuts(frames: np.ndarray, ratio: float = 10.0) -> np.ndarray:
    """Indices t >= 1 where frame t starts a new shot.

    A cut is a spike in the mean squared difference between consecutive frames:
    d_t = mean((f_t - f_{t-1})^2) > ratio * median(d). Cheap and reliable for
    hard cuts (bikes.mp4's five cuts are 21-52x the median; its largest
    in-shot value is ~7x); dissolves are not detected.
    """
    diffs = np.mean((frames[1:] - frames[:-1]) ** 2, axis=(1, 2))
    if diffs.size == 0:
        return np.zeros(0, dtype=int)
    return np.flatnonzero(diffs > ratio * max(np.median(diffs), 1e-12)) + 1


def window_starts(n_frames: int, frame_step: int, temporal_stride: int, cuts=(),
                  clip_len: int = CLIP_LEN) -> np.ndarray:
    """First native frame of every clip that fits and spans no scene cut.

    A clip starting at s uses native frames s, s + k, ..., s + (clip_len - 1) k
    (k = frame_step); starts are 0, stride, 2 stride, ... A start is dropped
    when a cut c satisfies s < c <= last frame. Empty when the video is shorter
    than (clip_len - 1) k + 1 frames.
    """
    span = (clip_len - 1) * frame_step + 1
    starts = np.arange(0, n_frames - span + 1, temporal_stride)
    cuts = np.asarray(cuts)
    crosses = (cuts[None, :] > starts[:, None]) & (cuts[None, :] < starts[:, None] + span)
    return starts[~crosses.any(axis=1)]


def cut_clips(frames: np.ndarray, starts: np.ndarray, frame_shape: tuple[int, int],
              frame_step: int, spatial_stride: int, clip_len: int = CLIP_LEN) -> np.ndarray:
    """Cut every frame_shape patch on a spatial grid from every temporal window.

    frames (T, H, W); returns (len(starts) * n_rows * n_cols, clip_len, h * w)
    float32, ordered by window then patch row then patch column. Patch top-left
    corners are 0, stride, 2 stride, ... while the patch fits.
    """
    h, w = frame_shape
    rows = np.arange(0, frames.shape[1] - h + 1, spatial_stride)
    cols = np.arange(0, frames.shape[2] - w + 1, spatial_stride)
    if len(starts) == 0 or len(rows) == 0 or len(cols) == 0:
        return np.zeros((0, clip_len, h * w), dtype=np.float32)
    times = starts[:, None] + frame_step * np.arange(clip_len)  # (n_windows, clip_len)
    clips = np.empty((len(starts), len(rows), len(cols), clip_len, h, w), dtype=np.float32)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            clips[:, i, j] = frames[times, r:r + h, c:c + w]
    return clips.reshape(-1, clip_len, h * w)


def sweep_image(image: np.ndarray, n_sweeps: int, frame_shape: tuple[int, int], frame_step: int,
                rng: np.random.Generator, clip_len: int = CLIP_LEN, persistence: float = 0.9,
                drift_sd: float = 0.4, saccade_rate: float = 0.02, saccade_sd: float = 3.0) -> np.ndarray:
    """Clips of a still image seen through a window moved by simulated eye motion.

    image (H, W) float32 (already band-passed). The window's top-left corner
    follows, per native frame, v_t = persistence * v_{t-1} + N(0, drift_sd^2)
    (px/frame, an AR(1) velocity walk from v_0 = 0, i.e. smooth drift) plus, with
    probability saccade_rate per frame, a jump N(0, saccade_sd^2) per axis
    (microsaccades). The walk runs for (clip_len - 1) * frame_step + 1 native
    frames and every frame_step-th position is kept, so frame_step means the
    same as for video. Starts are uniform over the image; the corner is
    clamped to stay inside. Pixels are read with bilinear interpolation.
    Returns (n_sweeps, clip_len, h * w) float32.
    """
    h, w = frame_shape
    limit = np.array([image.shape[0] - h - 1, image.shape[1] - w - 1], dtype=np.float64)
    if np.any(limit < 0):
        return np.zeros((0, clip_len, h * w), dtype=np.float32)
    n_native = (clip_len - 1) * frame_step + 1
    kicks = rng.normal(0.0, drift_sd, size=(n_sweeps, n_native, 2))
    velocity = np.zeros((n_sweeps, n_native, 2))
    for t in range(1, n_native):
        velocity[:, t] = persistence * velocity[:, t - 1] + kicks[:, t]
    saccades = rng.normal(0.0, saccade_sd, size=(n_sweeps, n_native, 2))
    saccades *= rng.random((n_sweeps, n_native, 1)) < saccade_rate
    path = rng.uniform(0.0, 1.0, size=(n_sweeps, 1, 2)) * limit + np.cumsum(velocity + saccades, axis=1)
    corner = np.clip(path[:, ::frame_step], 0.0, limit)  # (n, clip_len, 2)
    ys = corner[..., 0, None, None] + np.arange(h)[:, None]  # (n, clip_len, h, 1)
    xs = corner[..., 1, None, None] + np.arange(w)[None, :]  # (n, clip_len, 1, w)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    fy, fx = (ys - y0).astype(np.float32), (xs - x0).astype(np.float32)
    top = image[y0, x0] * (1 - fx) + image[y0, x0 + 1] * fx
    bottom = image[y0 + 1, x0] * (1 - fx) + image[y0 + 1, x0 + 1] * fx
    return (top * (1 - fy) + bottom * fy).reshape(n_sweeps, clip_len, h * w).astype(np.float32)


def keep_moving(clips: np.ndarray, percentile: float) -> np.ndarray:
    """Boolean mask over clips: False for flat or low-motion clips.

    A clip is dropped when its standard deviation or its mean squared frame
    difference mean((x_{t+1} - x_t)^2) is below the given percentile of that
    statistic over ``clips`` (the paper rejects low-motion clips by a
    frame-difference threshold; a zero-variance clip is always dropped since
    it cannot be z-scored). percentile 0 keeps everything that is not flat.
    """
    sd = clips.std(axis=(1, 2))
    motion = np.mean((clips[:, 1:] - clips[:, :-1]) ** 2, axis=(1, 2))
    keep = sd > 1e-6
    if percentile > 0 and len(clips):
        keep &= (sd >= np.percentile(sd, percentile)) & (motion >= np.percentile(motion, percentile))
    return keep


def zscore_clips(clips: np.ndarray) -> np.ndarray:
    """Z-score each clip over all its frames and pixels: (x - mean) / sd, float32.

    Drop flat clips first (``keep_moving``): a zero-variance clip would give NaN.
    """
    mean = clips.mean(axis=(1, 2), keepdims=True)
    sd = clips.std(axis=(1, 2), keepdims=True)
    return ((clips - mean) / sd).astype(np.float32)


def copy_last_mse(clips: np.ndarray, chunk: int = 1024) -> float:
    """MSE of predicting each frame by the previous one: mean((x_{t+1} - x_t)^2).

    The baseline a next-frame predictor must beat; on z-scored clips it is
    2 (1 - lag-1 autocorrelation). Averaged over clips, frames and pixels, in
    float64, read ``chunk`` clips at a time (works on memmaps). NaN for no clips.
    """
    total = 0.0
    for i in range(0, len(clips), chunk):
        x = np.asarray(clips[i:i + chunk], dtype=np.float32)
        total += float(np.sum((x[:, 1:] - x[:, :-1]) ** 2, dtype=np.float64))
    n, t, p = clips.shape
    return total / (n * (t - 1) * p) if n else float("nan")


def video_clips(frames: np.ndarray, frame_shape: tuple[int, int], frame_step: int, spatial_stride: int,
                temporal_stride: int, reject_percentile: float, max_start: int | None = None) -> np.ndarray:
    """Downsampled frames (T, H, W) of one video -> its kept, z-scored clips (N, 50, P) float32.

    Band-pass, skip windows spanning scene cuts, cut patches, drop flat and
    low-motion clips (percentile threshold within these frames), z-score.
    Only windows starting before ``max_start`` are used (for overlapping blocks
    from ``iter_gray_blocks``: the next block covers the later starts).
    """
    starts = window_starts(len(frames), frame_step, temporal_stride, find_scene_cuts(frames))
    if max_start is not None:
        starts = starts[starts < max_start]
    if len(starts) == 0:  # too short for one window: skip the band-pass
        return np.zeros((0, CLIP_LEN, frame_shape[0] * frame_shape[1]), dtype=np.float32)
    clips = cut_clips(bandpass(frames), starts, frame_shape, frame_step, spatial_stride)
    return zscore_clips(clips[keep_moving(clips, reject_percentile)])
