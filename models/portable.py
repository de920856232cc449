"""Make a run folder portable: no folder of the machine that trained it in its
config.json, its weights' metadata, its log or its report, and its data named by
recipe, so its analyses run on any machine (models written since train.py records
``dataset_recipe`` need this only for their log and report).

    python -m models.portable RUN_FOLDER [--frame-step K --more-photos]

- config.json and every ``*-epochs_model.safetensors``' metadata config (the tensors
  are copied bit for bit): ``dataset`` and ``dataset_path`` become the repository's
  ``data/cache/NAME`` for an embedded-dataset build, ``save_dir`` the folder the run
  now lives in, and ``dataset_recipe`` is added: read from the cache file's sidecar
  when the file is here, else from the flags given (``--frame-step``,
  ``--more-photos``, ``--system-footage``; the frame shape is the run's), checked
  by building it and comparing the recorded fingerprint or clip count;
- ``logs/*.log`` and ``report/*.md|html``: an absolute path under a machine's
  working folders (``/tmp/``, ``/work/``, ``/home/``, ...) becomes ``data/cache/NAME``
  for a cache file, ``model_checkpoints/...`` for a checkout's run folder, the
  repository-relative path inside this checkout, else its last component.
"""
from __future__ import annotations

import sys

if __package__ in (None, ""):  # run as a file, the repository's packages are not importable
    print("error: run it as a module from the repository root: python -m models.portable RUN_FOLDER",
          file=sys.stderr)
    sys.exit(2)

import argparse
import json
import re
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file

from data.default_dataset import recipe_of, training_data
from models.checkpoint import RunFolder
from utils import REPO_ROOT, UserInputError, atomic_path, portable_path, run_cli, write_json

MACHINE_PATH = re.compile(r"(?<![A-Za-z0-9+/=._-])/(?:tmp|work|home|root|mnt|scratch|data|Users)/[^\s`'\"<>();,]+")


def portable_text_path(path: str) -> str:
    """How a log or report names ``path`` (an absolute path of some machine)."""
    parts = Path(path).parts
    if len(parts) >= 3 and parts[-3:-1] == ("data", "cache"):
        return "data/cache/" + parts[-1]
    if "model_checkpoints" in parts:  # a checkout's run folder: from the repository root on
        return str(Path(*parts[parts.index("model_checkpoints"):]))
    local = portable_path(path)
    return local if not Path(local).is_absolute() else parts[-1]


def portable_config(config: dict, run_dir: Path, recipe: dict | None) -> dict:
    """``config`` with portable paths and a ``dataset_recipe`` (module docstring)."""
    config = dict(config)
    for key in ("dataset", "dataset_path"):
        if config.get(key) not in (None, "default") and Path(config[key]).is_absolute():
            config[key] = portable_text_path(config[key])
    config["save_dir"] = portable_path(run_dir.parent)
    if config.get("stacked_from"):  # TP_FF's stack folders: a record only (the stacked weights hold every stack)
        config["stacked_from"] = [portable_text_path(run) if Path(run).is_absolute() else run
                                  for run in config["stacked_from"]]
    if recipe is not None:
        config["dataset_recipe"] = recipe
    return config


def make_portable(run_dir, recipe: dict | None = None) -> list[Path]:
    """Rewrite ``run_dir`` in place (module docstring); returns the files changed.
    ``recipe`` is needed only when the run's cache file is not on this machine and
    the config has none; TrainingDataError if it does not rebuild the run's data."""
    run_dir = Path(run_dir)
    run = RunFolder(run_dir)
    config = portable_config(run.read_config(), run_dir, None)
    if config.get("dataset_recipe") is None and config.get("dataset_path"):
        found = recipe_of(REPO_ROOT / config["dataset_path"]) if not Path(config["dataset_path"]).is_absolute() else None
        config["dataset_recipe"] = found or (recipe and dict(recipe, frame_shape=list(config["frame_shape"])))
    if config.get("dataset_recipe") is not None:
        training_data(dict(config, dataset_path=None, dataset="default"))  # rebuilds it here: the same data?
    changed = [run.config_path]
    write_json(run.config_path, config)
    for weights in sorted(run_dir.glob("*-epochs_model.safetensors")):
        with safe_open(str(weights), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            tensors = {key: f.get_tensor(key) for key in f.keys()}
        if "config" in metadata:
            metadata["config"] = json.dumps(portable_config(json.loads(metadata["config"]), run_dir,
                                                            config.get("dataset_recipe")))
            with atomic_path(weights) as tmp:
                save_file(tensors, str(tmp), metadata=metadata)
            changed.append(weights)
    for text_file in [*run_dir.glob("logs/*.log"), *run_dir.glob("report/*.md"), *run_dir.glob("report/*.html")]:
        text = text_file.read_text()
        portable = MACHINE_PATH.sub(lambda match: portable_text_path(match.group(0)), text)
        if portable != text:
            with atomic_path(text_file) as tmp:
                tmp.write_text(portable)
            changed.append(text_file)
    return changed


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="the run folder to rewrite in place")
    parser.add_argument("--frame-step", type=int, default=None,
                        help="the recipe's frame step, when the run's cache file is not on this machine")
    parser.add_argument("--more-photos", action="store_true", help="the recipe had --more-photos")
    parser.add_argument("--system-footage", action="store_true", help="the recipe had --system-footage")
    args = parser.parse_args(argv)
    if not (args.run / "config.json").is_file():
        raise UserInputError(f"{args.run} holds no config.json: give a run folder written by train.py")
    recipe = None if args.frame_step is None else dict(frame_step=args.frame_step, more_photos=args.more_photos,
                                                       system_footage=args.system_footage)
    for path in make_portable(args.run, recipe):  # a TrainingDataError is one line naming the recipe's command
        print(f"rewrote {path}")


if __name__ == "__main__":
    run_cli(main)
