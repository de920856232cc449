"""Training clips: load and check an (N, T, P) .npy file, split it, serve batches.

The file is memory-mapped, so a dataset larger than RAM works and only the
rows of a batch are read. The trainer samples shuffled positions itself and
calls ``ClipSource.batch``; a split that fits can be held on the device.
"""
from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import numpy as np
import torch

from data import DatasetError

_CHUNK_BYTES = 64 * 2**20  # bounded memory for whole-file checks


def load_clips(path: str | Path, frame_shape: tuple[int, int], min_frames: int) -> np.ndarray:
    """Memory-map a clips file and check it: (N clips, T frames, P = H * W pixels) float16/float32.

    min_frames: the fewest frames a clip may have; the trainer passes
    warm-up + temporal offset + 1 (one scored prediction at least).
    Returns a read-only ``np.memmap`` (never fully read into memory, apart from
    one chunked pass for NaN/inf). Raises ``DatasetError`` for a missing,
    corrupt, truncated, pickled or object file, a wrong dtype, ndim, pixel
    count or clip length, an empty array, or non-finite values.
    """
    path = Path(path)
    if path.is_dir():
        raise DatasetError(f"dataset {path} is a folder: give the path of an (N, T, P) .npy file in it")
    if not path.is_file():
        raise DatasetError(f"dataset file {path} does not exist: give the path of an (N, T, P) .npy file")
    with open(path, "rb") as handle:
        magic = handle.read(6)
    if magic[:4] == b"PK\x03\x04":
        raise DatasetError(f"{path} is an .npz/zip archive, not an .npy file: save the clips array with np.save")
    if magic != b"\x93NUMPY":
        raise DatasetError(f"{path} is not a .npy file: save the (N, T, P) clips array with np.save")
    _check_not_truncated(path)
    try:
        clips = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as err:
        if "object" in str(err).lower() or "pickle" in str(err).lower():
            raise DatasetError(f"{path} holds an object (pickled) array, which is never loaded: "
                               "save a plain float array with np.save") from err
        raise DatasetError(f"{path} is corrupt or truncated ({err}): re-create it with np.save") from err
    except (OSError, EOFError) as err:
        raise DatasetError(f"{path} is corrupt or truncated ({err}): re-create it with np.save") from err
    if clips.dtype not in (np.dtype(np.float16), np.dtype(np.float32)):
        raise DatasetError(f"{path} has dtype {clips.dtype}: convert it with .astype(np.float32) (or float16)")
    if clips.ndim != 3:
        raise DatasetError(f"{path} has shape {clips.shape}: it must be 3-D (clips x frames x pixels)")
    n_clips, n_frames, n_pixels = clips.shape
    h, w = frame_shape
    if n_pixels != h * w:
        raise DatasetError(f"{path} has {n_pixels} pixels per frame but frame shape {h}x{w} needs {h * w}: "
                           f"pass the matching --frame-shape H W")
    if n_clips == 0:
        raise DatasetError(f"{path} holds no clips (shape {clips.shape}): give a file with at least one clip")
    if n_frames < min_frames:
        raise DatasetError(f"{path} has {n_frames}-frame clips but at least {min_frames} are needed "
                           "(warm-up + temporal offset + 1): use longer clips or a shorter warm-up")
    _check_finite(clips, path)
    return clips


def _check_not_truncated(path: Path) -> None:
    """Raise if the file is shorter than its .npy header declares (an interrupted copy
    or write), naming how to rebuild it: a cached default dataset's command
    (``data.default_dataset.rebuild_hint``), else a copy or np.save. A header that does
    not parse is left to np.load's own error."""
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(handle)
            expected = handle.tell() + math.prod(shape) * dtype.itemsize
    except (ValueError, OSError, EOFError):
        return
    size = path.stat().st_size
    if size < expected and not dtype.hasobject:
        from data.default_dataset import rebuild_hint  # only here: it imports the video and image readers

        fix = rebuild_hint(path) or "copy it again, or re-create it with np.save"
        raise DatasetError(f"{path} is truncated: it holds {size:,} of the {expected:,} bytes its header declares "
                           f"(an interrupted copy or write): {fix}")


def _check_finite(clips: np.ndarray, path: Path) -> None:
    """One pass over the file in ~64 MiB chunks; raises on the first NaN or inf."""
    step = _clips_per_chunk(clips)
    for start in range(0, len(clips), step):
        chunk = np.asarray(clips[start:start + step])
        if not np.isfinite(chunk).all():
            bad = start + int(np.flatnonzero(~np.isfinite(chunk).all(axis=(1, 2)))[0])
            raise DatasetError(f"{path} contains NaN or inf (first in clip {bad}): remove or fix those clips")


def _clips_per_chunk(clips: np.ndarray) -> int:
    """How many clips make ~_CHUNK_BYTES (at least one)."""
    return max(1, _CHUNK_BYTES // (clips.itemsize * clips.shape[1] * clips.shape[2]))


_WHOLE_FILE_BYTES = 64 * 2**20  # files up to this size are hashed in full
_SAMPLED_BLOCKS, _BLOCK_BYTES = 256, 64 * 2**10  # larger ones: 256 evenly spaced 64 KiB blocks (16 MiB)


def dataset_identity(path: str | Path, clips: np.ndarray) -> dict:
    """What identifies a clips file across a resume: its size in bytes, shape, dtype
    and a content fingerprint, BLAKE2b of the whole file up to 64 MiB, else of 256
    evenly spaced 64 KiB blocks (the first and the last included), so a 20 GB file
    costs 16 MiB of reads. A change that touches no sampled block of a large file
    goes unseen; a rewrite with new content, or more or fewer clips, does not."""
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        if size <= _WHOLE_FILE_BYTES:
            for block in iter(lambda: handle.read(2**20), b""):
                digest.update(block)
        else:
            for offset in np.linspace(0, size - _BLOCK_BYTES, _SAMPLED_BLOCKS, dtype=np.int64):
                handle.seek(int(offset))
                digest.update(handle.read(_BLOCK_BYTES))
    return {"bytes": size, "shape": list(clips.shape), "dtype": str(clips.dtype), "fingerprint": digest.hexdigest()}


def same_dataset(saved: dict, current: dict) -> str | None:
    """None if two ``dataset_identity`` records agree, else what differs, e.g.
    'shape [44, 12, 16] -> [40, 12, 16]'."""
    for key in ("shape", "dtype", "bytes", "fingerprint"):
        if saved.get(key) != current.get(key):
            return f"{key} {saved.get(key)} -> {current.get(key)}"
    return None


def split_indices(n_clips: int) -> tuple[np.ndarray, np.ndarray]:
    """The original's train/validation split: (train_idx, val_idx), sorted int64 arrays.

    train_size = int(40 * N / 44); val = np.linspace(0, N - 1, N - train_size,
    dtype=int), i.e. N - train_size evenly spaced indices, cast to int by
    truncation exactly as NumPy does it; train = every other index (a set
    difference). Since N - train_size <= N the spacing is >= 1, so val never
    repeats an index. E.g. N=44 -> val [0, 14, 28, 43] and 40 train indices;
    N=1 -> val [0] and an empty train set (the caller must reject that).
    """
    train_size = int(40 * n_clips / 44)
    val = np.linspace(0, n_clips - 1, n_clips - train_size, dtype=int).astype(np.int64)
    train = np.setdiff1d(np.arange(n_clips, dtype=np.int64), val)
    return train, val


class ClipSource:
    """Batches of clips (rows ``rows`` of ``clips``) as float32 tensors (B, T, P).

    Positions passed to ``batch`` index ``rows`` (0 .. len(self) - 1). With
    ``hold_on`` a device, the selected rows are copied onto it once, in the
    file's dtype (float16 halves the footprint), and batches are sliced there;
    otherwise each batch reads just its rows from the memmap, in file order.
    """

    def __init__(self, clips: np.ndarray, rows: np.ndarray | None = None,
                 hold_on: torch.device | str | None = None):
        self.clips = clips
        self.rows = np.arange(len(clips)) if rows is None else np.asarray(rows, dtype=np.int64)
        self.resident = None
        if hold_on is not None:  # filled in ~64 MiB pieces: no full-size host copy
            dtype = torch.from_numpy(np.empty(0, clips.dtype)).dtype
            self.resident = torch.empty((len(self.rows),) + clips.shape[1:], dtype=dtype, device=hold_on)
            step = _clips_per_chunk(clips)
            for start in range(0, len(self.rows), step):
                piece = self._read(np.arange(start, min(start + step, len(self.rows))))
                self.resident[start:start + len(piece)] = torch.from_numpy(piece)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def nbytes(self) -> int:
        """Bytes the selected rows take in the file's dtype (what ``hold_on`` needs)."""
        return len(self.rows) * self.clips.shape[1] * self.clips.shape[2] * self.clips.itemsize

    def batch(self, positions, device: torch.device | str = "cpu") -> torch.Tensor:
        """Clips at ``positions`` (ints into this source) as float32 (B, T, P) on ``device``."""
        positions = torch.as_tensor(positions, dtype=torch.long)
        if self.resident is not None:
            return self.resident[positions.to(self.resident.device)].to(device, torch.float32)
        return torch.from_numpy(self._read(positions.cpu().numpy())).to(device).float()

    def _read(self, positions: np.ndarray) -> np.ndarray:
        """Rows for ``positions`` from the memmap, read in ascending file order (sequential I/O)."""
        wanted = self.rows[positions]
        order = np.argsort(wanted, kind="stable")
        out = np.empty((len(wanted),) + self.clips.shape[1:], dtype=self.clips.dtype)
        out[order] = self.clips[wanted[order]]
        return out


def fits_on(device: torch.device | str, n_bytes: int, fraction: float = 0.5) -> bool:
    """Whether ``n_bytes`` fit in ``fraction`` of the device's free memory
    (CUDA: free memory now; CPU: physical RAM), leaving room for the model."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
    else:
        free = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return n_bytes <= fraction * free
