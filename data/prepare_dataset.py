"""Turn a folder of your own videos into a training file of (N, 50, H*W) clips.

    python -m data.prepare_dataset VIDEO_DIR OUTPUT.npy [--frame-shape H W] [--frame-step K]
                                   [--downsample F] [--spatial-stride S] [--temporal-stride T]
                                   [--reject-percentile Q] [--dtype float16|float32] [--seed N]

(from the repository root, like every entry point). Same preprocessing as the default
dataset (``data.pipeline``): grayscale, block-mean downsample (default: to
about 600 px wide, like the original's resize), DoG band-pass, frame-sized
patches on a grid, 50-frame clips (default rate about 30 fps: every
round(fps / 30)-th frame), no clip across a detected scene cut, flat and
low-motion clips dropped (per block of up to ~256 MiB of frames of a video),
per-clip z-scoring, shuffled with the seed. Videos are decoded in blocks, so
memory is bounded by the block and by the output, which is held in memory.
A file that cannot be decoded is skipped with a warning.
"""
from __future__ import annotations

import sys

if __package__ in (None, ""):  # run as a file, the repository's packages are not importable
    print("error: run it as a module from the repository root: python -m data.prepare_dataset VIDEO_DIR "
          "OUTPUT.npy", file=sys.stderr)
    sys.exit(2)

import argparse
import os
from pathlib import Path

import numpy as np

from data import DatasetError, pipeline
from utils import UserInputError, atomic_path, os_error_reason, run_cli

TARGET_WIDTH = 600  # px; the original resized its footage to this width
TARGET_FPS = 30.0
BLOCK_BYTES = 256 * 2**20


def video_files(folder: Path) -> list[Path]:
    """Video files directly in ``folder`` (by suffix, case-insensitive), sorted by name."""
    if not folder.is_dir():
        raise DatasetError(f"video folder {folder} does not exist or is not a folder: give a folder of videos")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in pipeline.VIDEO_SUFFIXES)
    if not files:
        raise DatasetError(f"no videos ({', '.join(pipeline.VIDEO_SUFFIXES)}) in {folder}: "
                           "put your videos directly in that folder")
    return files


def clips_of_video(path: Path, frame_shape: tuple[int, int], frame_step: int | None, downsample: int | None,
                   spatial_stride: int, temporal_stride: int, reject_percentile: float,
                   block_bytes: int = BLOCK_BYTES) -> np.ndarray:
    """All kept, z-scored clips (N, 50, H*W) float32 of one video, decoded block by block.

    frame_step / downsample None: round(fps / 30) and round(width / 600), at least 1.
    temporal_stride counts clip frames: consecutive windows start
    temporal_stride * frame_step native frames apart. Frames are decoded in
    blocks of about ``block_bytes`` that overlap by one clip span, so every
    window lies whole in exactly one block.
    """
    width, height, fps = pipeline.video_info(path)
    step = frame_step or max(1, round(fps / TARGET_FPS))
    factor = downsample or max(1, round(width / TARGET_WIDTH))
    native_stride = temporal_stride * step
    span = (pipeline.CLIP_LEN - 1) * step + 1
    block_frames = max(block_bytes // (4 * max(1, (width // factor) * (height // factor))), span)
    # consecutive blocks start `advance` frames apart, a multiple of the stride, so block-local
    # window starts are global ones; each block cuts only the windows starting in its first `advance`
    advance = native_stride * max(1, (block_frames - span + 1) // native_stride)
    blocks = pipeline.iter_gray_blocks(path, factor, block_len=advance + span - 1, overlap=span - 1)
    return np.concatenate([pipeline.video_clips(frames, frame_shape, step, spatial_stride, native_stride,
                                                reject_percentile, max_start=advance) for frames in blocks])


def estimated_clip_bytes(path: Path, frame_shape: tuple[int, int], frame_step: int | None, downsample: int | None,
                         spatial_stride: int, temporal_stride: int) -> int:
    """An upper bound on the float32 bytes of one video's clips, before any is cut:
    every window (no scene cut, nothing rejected) times every patch position, from
    the container's frame count (or duration x fps); 0 when neither is known."""
    import av

    width, height, fps = pipeline.video_info(path)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        n_frames = stream.frames or int((container.duration or 0) / 1e6 * fps)
    step = frame_step or max(1, round(fps / TARGET_FPS))
    factor = downsample or max(1, round(width / TARGET_WIDTH))
    span = (pipeline.CLIP_LEN - 1) * step + 1
    n_windows = max(0, (n_frames - span) // (temporal_stride * step) + 1)
    h, w = frame_shape
    n_patches = max(0, (height // factor - h) // spatial_stride + 1) * max(0, (width // factor - w) // spatial_stride + 1)
    return 4 * n_windows * n_patches * pipeline.CLIP_LEN * h * w


def available_memory() -> int:
    """Bytes of memory available now (Linux MemAvailable; elsewhere all physical memory)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_output_fits(files: list[Path], args) -> None:
    """Refuse, before decoding, settings whose clips (an upper bound) would need more
    than half the available memory: the clips are held in memory until written."""
    total = 0
    for path in files:
        try:
            total += estimated_clip_bytes(path, tuple(args.frame_shape), args.frame_step, args.downsample,
                                          args.spatial_stride, args.temporal_stride)
        except DatasetError:  # an unreadable video: skipped, with a warning, when decoding
            continue
    if total > available_memory() / 2:
        raise DatasetError(f"the clips could take up to {total / 2**30:.1f} GiB in memory but "
                           f"{available_memory() / 2**30:.1f} GiB is available: use a larger --spatial-stride or "
                           "--temporal-stride, a larger --downsample, or fewer videos per file")


def check_writable(output: Path) -> None:
    """Refuse, before any video is decoded, an output that is a folder or lies under
    a file or in a folder this process cannot write (e.g. a read-only file system)."""
    if output.is_dir():
        raise DatasetError(f"output {output} is a folder: give a file name, e.g. {output / 'clips.npy'}")
    existing = next(p for p in output.absolute().parents if p.exists())
    if not existing.is_dir():
        raise DatasetError(f"output {output} lies under the file {existing}: choose another output path")
    if not os.access(existing, os.W_OK):
        raise DatasetError(f"cannot write into {existing} (read-only or not yours): choose another output path")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Turn a folder of videos into an (N, 50, H*W) .npy clips file.")
    parser.add_argument("video_dir", type=Path)
    parser.add_argument("output", type=Path, help="the .npy file to write")
    parser.add_argument("--frame-shape", type=int, nargs=2, default=(20, 20), metavar=("H", "W"))
    parser.add_argument("--frame-step", type=int, default=None,
                        help="keep every k-th frame (default: round(fps / 30), i.e. about 30 fps)")
    parser.add_argument("--downsample", type=int, default=None,
                        help="block-mean factor (default: round(width / 600), i.e. about 600 px wide)")
    parser.add_argument("--spatial-stride", type=int, default=20, help="px between patch corners (default 20)")
    parser.add_argument("--temporal-stride", type=int, default=pipeline.CLIP_LEN,
                        help="clip frames between clip starts (default 50: no overlap)")
    parser.add_argument("--reject-percentile", type=float, default=25.0,
                        help="drop clips below this percentile of SD or of frame-difference energy (default 25)")
    parser.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    parser.add_argument("--seed", type=int, default=0, help="shuffle seed")
    args = parser.parse_args(argv)
    if args.output.suffix != ".npy":
        raise UserInputError(f"output {args.output} must end in .npy: e.g. {args.output.with_suffix('.npy')}")
    for name in ("frame_step", "downsample", "spatial_stride", "temporal_stride"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise UserInputError(f"--{name.replace('_', '-')} must be >= 1: got {getattr(args, name)}")
    if min(args.frame_shape) < 1 or not 0 <= args.reject_percentile < 100:
        raise UserInputError("--frame-shape needs positive sizes and --reject-percentile a value in [0, 100)")
    check_writable(args.output)

    files = video_files(args.video_dir)
    check_output_fits(files, args)
    parts = []
    for path in files:
        try:
            clips = clips_of_video(path, tuple(args.frame_shape), args.frame_step, args.downsample,
                                   args.spatial_stride, args.temporal_stride, args.reject_percentile)
        except DatasetError as err:  # an unreadable video: skipped, with a warning
            print(f"warning: skipping {path.name}: {err}", file=sys.stderr)
            continue
        print(f"{path.name}: {len(clips)} clips")
        parts.append(clips.astype(args.dtype))
    if not parts:
        raise UserInputError(f"none of the videos in {args.video_dir} could be decoded: re-encode them as H.264 mp4")
    clips = np.concatenate(parts)
    if len(clips) == 0:
        raise UserInputError(f"no clip could be cut (videos shorter than {pipeline.CLIP_LEN} kept frames, or smaller "
                             "than the frame shape): use a smaller --frame-step, --downsample or --frame-shape")
    clips = clips[np.random.default_rng(args.seed).permutation(len(clips))]
    try:
        with atomic_path(args.output) as tmp, open(tmp, "wb") as handle:
            np.save(handle, clips)
    except OSError as err:  # e.g. a full disk: atomic_path has removed the partial file
        raise UserInputError(f"cannot write {args.output} ({os_error_reason(err)}, {clips.nbytes / 2**20:.1f} MiB "
                             "needed): free space or choose another output") from err
    print(f"wrote {args.output}: {clips.shape} {clips.dtype}, copy-last-frame MSE "
          f"{pipeline.copy_last_mse(clips):.3f}, {args.output.stat().st_size / 2**20:.1f} MiB")


if __name__ == "__main__":
    run_cli(main)
