"""Model and VGG19 responses to the Allen movies, binned like the neural data.

    python -m neural_fitting.model_responses --movie-dir data/allen/movies \
        --model model_checkpoints/tp_full --label TP_full --out responses/tp_full.npz
    python -m neural_fitting.model_responses --movie-dir data/allen/movies \
        --vgg-weights vgg19-dcbac81e.pth --label VGG19 --out responses/vgg19.npz

Stimulus (as the original's response script): every movie frame is resized to the model's
frame shape (area interpolation by default; "bilinear" is cv2's default, which
the original's ``cv2.resize`` call used) and z-scored per frame. Each
300-frame chunk is one clip (1, 300, P) for ``model.hidden_activity``, with
no warm-up frames dropped (as in the original); chunks are batched, which does
not change the result because clips are independent. Each group's units
(``model.group_slices``) are averaged in 5-frame bins, giving (900, n_units)
per group, in the same chunk and bin order as ``process_sessions``.

Output: one NPZ (no pickle) with ``group_<g>`` (bins, units) float32 arrays,
``group_names``, ``label`` (the model type shown in the figure) and
``meta_json``. VGG19's 16 layers make ~1.7 GB at full size.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from neural_fitting.stimuli import StimulusLayout, bin_mean
from utils import (UserInputError, add_flags, atomic_path, cannot_create, flag, options_from, os_error_reason,
                   resolve_device, run_cli, user_errors_from)

FRAME_BATCH = 100  # frames resized at once: bounds the float copy of a 304x608 movie


def resize_matrix(n_in: int, n_out: int, interpolation: str = "area") -> np.ndarray:
    """(n_out, n_in) weights that resize one image axis; apply one per axis.

    "area": output pixel i averages the input interval [i s, (i + 1) s), s =
    n_in / n_out, weighting each input pixel by its overlap (cv2's INTER_AREA
    when shrinking). "bilinear": output i samples the input at (i + 0.5) s - 0.5,
    clamped to the edges, by linear interpolation between its two neighbours
    (cv2's default INTER_LINEAR, no anti-aliasing). Rows sum to 1.
    """
    scale = n_in / n_out
    out = np.arange(n_out)[:, None]
    if interpolation == "area":
        pixel = np.arange(n_in)[None, :]
        overlap = np.minimum((out + 1) * scale, pixel + 1) - np.maximum(out * scale, pixel)
        return np.clip(overlap, 0, None) / scale
    if interpolation == "bilinear":
        position = np.clip((out[:, 0] + 0.5) * scale - 0.5, 0, n_in - 1)
        left = np.floor(position).astype(int)
        right = np.minimum(left + 1, n_in - 1)
        weights = np.zeros((n_out, n_in))
        np.add.at(weights, (np.arange(n_out), left), 1 - (position - left))
        np.add.at(weights, (np.arange(n_out), right), position - left)
        return weights
    raise ValueError(f"unknown interpolation {interpolation!r}: use area or bilinear")


def prepare_frames(movie: np.ndarray, frame_shape: tuple[int, int], interpolation: str = "area") -> np.ndarray:
    """(T, H0, W0) movie -> (T, H, W) float32 frames, resized and z-scored per frame.

    z = (f - mean(f)) / std(f) over the frame's pixels (ddof 0, as the
    original's ``np.std``); a uniform frame becomes all zeros."""
    rows = resize_matrix(movie.shape[1], frame_shape[0], interpolation)
    cols = resize_matrix(movie.shape[2], frame_shape[1], interpolation)
    out = np.empty((len(movie), *frame_shape), dtype=np.float32)
    for begin in range(0, len(movie), FRAME_BATCH):
        batch = np.asarray(movie[begin:begin + FRAME_BATCH], dtype=np.float64)
        out[begin:begin + FRAME_BATCH] = np.einsum("hi,tij,wj->thw", rows, batch, cols, optimize=True)
    flat = out.reshape(len(out), -1)
    std = flat.std(axis=1, keepdims=True)
    flat -= flat.mean(axis=1, keepdims=True)
    np.divide(flat, std, out=flat, where=std > 0)
    return out


def load_movie(movie_dir: str | Path, name: str, n_frames: int) -> np.ndarray:
    """The template ``<movie_dir>/<name>.npy`` as (T, H0, W0), memory-mapped."""
    path = Path(movie_dir) / f"{name}.npy"
    if not path.is_file():
        raise ValueError(f"movie template {path} not found: fetch it with python -m "
                         f"neural_fitting.download_allen --movies-only, or save allensdk's template there")
    try:
        movie = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable .npy movie ({err}): save the template again") from err
    if movie.ndim != 3 or len(movie) != n_frames:
        raise ValueError(f"{path}: shape {movie.shape}, expected ({n_frames}, height, width): "
                         f"give the Allen template of {name}")
    if movie.dtype.kind == "f":  # Allen's templates are uint8; a float one may hold NaN, frame by frame
        bad = next((t for t in range(len(movie)) if not np.isfinite(movie[t]).all()), None)
        if bad is not None:
            raise ValueError(f"{path}: movie template {name} has NaN or infinite pixels (first in frame {bad}): "
                             "save the template again from allensdk")
    return movie


def stimulus_chunks(movie_dir: str | Path, frame_shape: tuple[int, int], layout: StimulusLayout = StimulusLayout(),
                    interpolation: str = "area") -> np.ndarray:
    """All movies, prepared and cut into chunks: (n_chunks, chunk_frames, H, W) float32."""
    frames = np.concatenate([prepare_frames(load_movie(movie_dir, m.name, m.n_frames), frame_shape, interpolation)
                             for m in layout.movies])
    return frames.reshape(layout.n_chunks, layout.chunk_frames, *frame_shape)


@torch.no_grad()
def model_group_responses(model, chunks: np.ndarray, bin_frames: int, batch_chunks: int = 16) -> list[np.ndarray]:
    """Per-group binned responses of a ``ProbeableModel``.

    ``chunks``: (C, T, H, W) or (C, T, P) stimuli. Returns one (C * T / bin_frames,
    n_units_g) float32 array per group of ``model.group_slices``."""
    chunks = chunks.reshape(len(chunks), chunks.shape[1], -1)
    if chunks.shape[2] != model.n_pixels:
        raise ValueError(f"stimulus frames have {chunks.shape[2]} pixels but the model expects "
                         f"{model.n_pixels} ({model.frame_shape}): prepare frames at the model's frame shape")
    model.eval()
    per_group = [[] for _ in model.group_slices]
    for begin in range(0, len(chunks), batch_chunks):
        x = torch.from_numpy(np.ascontiguousarray(chunks[begin:begin + batch_chunks])).to(model.device)
        hidden = model.hidden_activity(x).float().cpu().numpy()  # (B, T, n_hidden)
        for g, columns in enumerate(model.group_slices):
            binned = bin_mean(hidden[:, :, columns], bin_frames, axis=1)  # (B, T / bin, n_g)
            per_group[g].append(binned.reshape(-1, binned.shape[-1]))
    return [np.concatenate(parts).astype(np.float32) for parts in per_group]


def vgg_layer_responses(net, chunks: np.ndarray, bin_frames: int, device="cpu") -> list[np.ndarray]:
    """Per-layer binned VGG19 responses: (C, T, H, W) chunks -> 16 arrays (C T / bin, features_l)."""
    from neural_fitting.vgg import vgg_frame_features

    per_layer = None
    for chunk in chunks:
        layers = [bin_mean(f, bin_frames, axis=0) for f in vgg_frame_features(net, chunk, device)]
        per_layer = [[] for _ in layers] if per_layer is None else per_layer
        for parts, binned in zip(per_layer, layers):
            parts.append(binned.astype(np.float32))
    return [np.concatenate(parts) for parts in per_layer]


@dataclass
class ResponseSet:
    label: str
    group_names: list[str]
    groups: list[np.ndarray]  # (bins, units) each
    meta: dict


def save_responses(path: str | Path, responses: ResponseSet) -> Path:
    path = Path(path)
    arrays = {f"group_{g}": a for g, a in enumerate(responses.groups)}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, label=np.array(responses.label), group_names=np.array(responses.group_names),
                     meta_json=np.array(json.dumps(responses.meta, default=str)), **arrays)
    return path


def load_responses(path: str | Path) -> ResponseSet:
    try:
        with np.load(path, allow_pickle=False) as data:
            n_groups = len(data["group_names"])
            return ResponseSet(label=str(data["label"]), group_names=[str(n) for n in data["group_names"]],
                               groups=[data[f"group_{g}"] for g in range(n_groups)],
                               meta=json.loads(str(data["meta_json"])))
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"{path}: not a model response file ({err}): make it with "
                         f"python -m neural_fitting.model_responses") from err


@dataclass(frozen=True)
class ResponseOptions:
    """The command's flags, one per field."""
    movie_dir: Path = flag(None, "folder with natural_movie_one.npy and natural_movie_three.npy", type=Path,
                           required=True)
    model: Path | None = flag(None, "a training run folder or weights file (models.io.load_model)", type=Path,
                              exclusive="network")
    vgg_weights: Path | None = flag(None, "torchvision VGG19 state dict (.pth or .safetensors)", type=Path,
                                    exclusive="network")
    label: str = flag(None, "model type shown in the figure, e.g. TP_full, AE, VGG19", required=True)
    out: Path = flag(None, "output .npz", type=Path, required=True)
    frame_shape: tuple = flag((20, 40), "frame shape for VGG19 (models use their own)", nargs=2, metavar=("H", "W"))
    interpolation: str = flag("area", "how frames are resized: area (cv2 INTER_AREA) or bilinear (cv2's default)",
                              choices=("area", "bilinear"))
    device: str = flag("auto", "cpu, cuda, cuda:N, or auto (cuda when available)")


def main(argv: list[str] | None = None, layout: StimulusLayout = StimulusLayout()) -> None:
    """The CLI; ``layout`` is the paper's (900 + 3600 frames) unless a test gives a tiny one."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_flags(parser, ResponseOptions)
    args = options_from(ResponseOptions, parser.parse_args(argv))
    with user_errors_from(ValueError):
        write_model_responses(args, layout)


def write_model_responses(args: ResponseOptions, layout: StimulusLayout) -> None:
    """Compute the responses the options ask for and save them to ``args.out``."""
    device = resolve_device(args.device)
    problem = cannot_create(args.out.parent)
    if problem is not None:  # before the (long) forward passes
        raise UserInputError(f"cannot write --out {args.out}: {problem}: choose another --out")
    meta = {"movie_dir": str(args.movie_dir), "interpolation": args.interpolation, "layout": layout.to_dict()}
    if args.vgg_weights is not None:
        from neural_fitting.vgg import LAYER_NAMES, load_vgg19

        net = load_vgg19(args.vgg_weights)
        chunks = stimulus_chunks(args.movie_dir, tuple(args.frame_shape), layout, args.interpolation)
        groups, names = vgg_layer_responses(net, chunks, layout.bin_frames, device), LAYER_NAMES
        meta.update(source=str(args.vgg_weights), frame_shape=list(args.frame_shape))
    else:
        from models.io import load_model

        if not args.model.exists():
            raise UserInputError(f"--model {args.model} not found: give a training run folder or weights file")
        model, config, _ = load_model(args.model, device=device)
        chunks = stimulus_chunks(args.movie_dir, tuple(model.frame_shape), layout, args.interpolation)
        groups = model_group_responses(model, chunks, layout.bin_frames)
        names = [f"group {g + 1}" for g in range(len(groups))]
        meta.update(source=str(args.model), frame_shape=list(model.frame_shape), model_config=config)
    for name, values in zip(names, groups):
        bad = int((~np.isfinite(values)).sum())
        if bad:  # finite but corrupt weights can overflow; NaN or inf would poison every RSA downstream
            raise UserInputError(f"the {name} responses of {meta['source']} hold {bad} non-finite values (NaN or "
                                 "inf): its weights are corrupt or it diverged; nothing was written")
    try:
        save_responses(args.out, ResponseSet(args.label, names, groups, meta))
    except OSError as err:  # a full disk: atomic_path has removed its temporary
        raise UserInputError(f"cannot write --out {args.out} ({os_error_reason(err)}): free space or choose another "
                             "--out, then run again (nothing was written)") from err
    print(f"wrote {len(groups)} groups of {groups[0].shape[0]} bins to {args.out}")


if __name__ == "__main__":
    run_cli(main)
