"""Checkpoints: safe to load, written atomically, readable from a run folder or
a single file.

The run folder's layout (config.json, ``{epoch}-epochs_model.safetensors`` with
the config and epoch in the file's metadata, ``{epoch}-epochs_state.pt``, the
loss history and curve, logs/train.log) is ``models.checkpoint.RunFolder``'s.

A folder written by the original code (``hyperparameters.csv`` plus
``N-epochs_model.pt`` state dicts) also loads; its pickled loss history is never
opened.
"""
from __future__ import annotations

import csv
import json
import math
import pickle
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open

from models.checkpoint import (CHECKSUMS_FILE, CONFIG_FILE, HISTORY_FILE, WEIGHTS_PATTERN, RunFolder,  # noqa: F401
                               resume_command)
from utils import UserInputError, sha256_of


def save_model(run_dir, model, config: dict, epoch: int, history: dict | None = None) -> Path:
    """Write config.json and the weights (and optionally the loss history) for
    ``epoch`` into ``run_dir``; every file goes through a temporary file and a
    rename. Returns the weights file."""
    run = RunFolder(run_dir)
    run.write_config(config)
    path = run.save_weights(model, config, epoch)
    if history is not None:
        run.write_history(history)
    return path


def latest_weights(run_dir: Path) -> Path:
    """The weights file of the highest epoch in a run folder."""
    run = RunFolder(run_dir)
    try:
        return run.latest_weights()
    except FileNotFoundError as err:
        if run.state_files():  # stopped before its first checkpoint
            raise UserInputError(f"{err}, only the state of an interrupted training: finish or continue it with "
                                 f"{resume_command(run_dir)}") from err
        raise UserInputError(f"{err}: train one first") from err


def optimizer_steps(config: dict) -> int | None:
    """Optimizer steps behind a checkpoint: its epoch x ceil(training clips / batch
    size); for a stacked TP_FF checkpoint, the sum over its stacks (``stack_steps``,
    each stack trained in its own run). 0 for an untrained checkpoint; None where
    the config lacks what it takes (checkpoints written before these fields)."""
    if config.get("stack_steps"):
        return sum(config["stack_steps"]) if None not in config["stack_steps"] else None
    epoch, n_train, batch = (config.get(k) for k in ("checkpoint_epoch", "n_train", "batch_size"))
    if not all(isinstance(v, int) for v in (epoch, n_train, batch)) or epoch < 0 or n_train < 1 or batch < 1:
        return None
    return epoch * -(-n_train // batch)


def load_model(path, device="cpu", frame_shape=None):
    """Load a checkpoint -> (model, config, history).

    ``path`` is a run folder (its latest epoch), a ``.safetensors`` weights file,
    or a folder / ``.pt`` file written by the original code. ``frame_shape``
    is needed only for an original checkpoint whose frame size is not 400
    (20x20) or 800 (20x40).
    """
    path = Path(path)
    if not path.exists():
        raise UserInputError(f"checkpoint {path} does not exist: give a run folder or a weights file")
    folder = path if path.is_dir() else path.parent
    run = RunFolder(folder)
    if (folder / "hyperparameters.csv").exists() and not run.config_path.exists():
        return _load_original(path, device, frame_shape)
    weights = latest_weights(path) if path.is_dir() else path
    if weights.suffix != ".safetensors":
        raise UserInputError(f"{weights} is not a .safetensors weights file: pass the run folder instead")
    _check_recorded_sha256(weights)
    try:
        with safe_open(str(weights), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise UserInputError(f"checkpoint {weights} is corrupt or truncated ({err}): re-save or retrain it") from err
    if "config" in meta:
        config, source = meta["config"], f"the config in {weights}'s metadata"
    elif run.config_path.exists():
        config, source = run.config_path.read_bytes(), str(run.config_path)
    else:
        raise UserInputError(f"{weights} carries no config and {run.config_path} is missing")
    model, config = _model_from_config(config, source)
    require_finite(state, weights)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise UserInputError(f"weights in {weights} do not fit the model in its config: {str(err).splitlines()[0]}") from err
    history = json.loads(run.history_path.read_text()) if run.history_path.exists() else {}
    config["checkpoint_epoch"] = int(meta.get("epoch", -1))
    return model.to(device).eval(), config, history


def _check_recorded_sha256(weights: Path) -> None:
    """A weights file that its folder's SHA256SUMS lists (a shipped pretrained model)
    must have that hash: one flipped bit can leave every value finite and still
    wreck every response."""
    run = RunFolder(weights.parent)
    try:
        recorded = run.recorded_sha256(weights)
    except (OSError, ValueError) as err:
        raise UserInputError(f"{err}: restore it (git checkout) or remove it") from err
    if recorded is not None and sha256_of(weights) != recorded:
        raise UserInputError(f"{weights} does not match its SHA-256 in {run.path / CHECKSUMS_FILE}: the file is "
                             "corrupt or was changed; restore it (git checkout, or copy it again)")


def require_finite(tensors: dict, source) -> None:
    """One line naming ``source`` and the first tensor holding NaN or inf: such weights
    give NaN or infinite responses everywhere downstream."""
    for name, tensor in tensors.items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                raise UserInputError(f"{source}: tensor {name!r} holds {bad} non-finite value{'s' * (bad > 1)} "
                                     "(NaN or inf): the file is corrupt or its run diverged; load an earlier "
                                     "checkpoint or retrain")


def _model_from_config(text, source: str):
    """(fresh model, config dict) from a config's JSON text, or a one-line error: not
    JSON, not a train.py config (a Hugging Face config.json has no 'model' kind), an
    unknown kind or values the model refuses."""
    from models import build_model  # late import: models imports this package's siblings

    try:
        config = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserInputError(f"{source} is not valid JSON ({type(err).__name__}): re-save the checkpoint with "
                             "train.py") from err
    if not isinstance(config, dict) or "model" not in config:
        raise UserInputError(f"{source} names no model kind, so it was not written by train.py (a Hugging Face "
                             "checkpoint?): give a run folder or weights file written by train.py")
    try:
        return build_model(config), config
    except (KeyError, ValueError, TypeError) as err:
        reason = f"missing {err}" if isinstance(err, KeyError) else str(err).splitlines()[0]
        raise UserInputError(f"{source} does not describe a model this code can build ({reason}): "
                             "give a checkpoint written by train.py") from err


def _load_original(path: Path, device, frame_shape):
    """A checkpoint in the original code's layout: only the CSV and the tensors
    are read (``weights_only=True``); the pickled loss history is ignored."""
    folder = path if path.is_dir() else path.parent
    if path.is_dir():
        found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := WEIGHTS_PATTERN.match(p.name)) and p.suffix == ".pt"]
        if not found:
            raise UserInputError(f"no N-epochs_model.pt file in {folder}")
        path = max(found)[1]
    csv_path = folder / "hyperparameters.csv"
    try:
        with open(csv_path, newline="") as f:
            rows = list(csv.DictReader(f))
    except (UnicodeDecodeError, csv.Error) as err:
        raise UserInputError(f"{csv_path} is not a text CSV file ({type(err).__name__}): restore the original's "
                             "hyperparameters.csv") from err
    if not rows:
        raise UserInputError(f"{csv_path} is empty")
    try:
        return _original_model(path, folder, rows[0], frame_shape, device)
    except KeyError as err:
        raise UserInputError(f"{csv_path} lacks the column {err}: restore the original's hyperparameters.csv") from err
    except (ValueError, TypeError) as err:  # TypeError: a short row leaves a column None
        raise UserInputError(f"{csv_path} holds values the model cannot use ({str(err).splitlines()[0]}): "
                             "restore the original's hyperparameters.csv") from err


def _original_model(path: Path, folder: Path, hp: dict, frame_shape, device):
    """The model and config of an original-layout folder from its CSV row ``hp``;
    KeyError for a missing column, ValueError for a value that is no number or
    that the model refuses (e.g. one beta per group)."""
    from models.network_hierarchical_recurrent import NetworkHierarchicalRecurrent

    def floats(text):
        return [float(v) for v in str(text).split(",") if v.strip()]

    P = int(float(hp["frame_size"]))
    if frame_shape is None:
        frame_shape = {400: (20, 20), 800: (20, 40)}.get(P) or ((math.isqrt(P),) * 2 if math.isqrt(P) ** 2 == P else None)
    if frame_shape is None or frame_shape[0] * frame_shape[1] != P:
        raise UserInputError(f"original checkpoint has frame_size {P}: pass frame_shape=(H, W) with H*W = {P}")
    lam = float(hp["lam"])
    config = {
        "model": "network_hierarchical_recurrent",
        "loss": hp.get("loss") or "loss_hierarchical_temporal_prediction",
        "frame_shape": list(frame_shape),
        "hidden_units": [int(v) for v in floats(hp["hidden_units_groups"])],
        "beta": floats(hp["beta_weights"]),
        "warmup": int(float(hp["warmup"])),
        "local_inhibitory_prop": float(hp["local_inhibitory_prop"]),
        "L1": math.log10(lam) if lam > 0 else float("-inf"),
        "detach_targets": False,
        "noise_std": 0.5011,
        "name": hp.get("name", ""),
        "source": "original",
    }
    model = NetworkHierarchicalRecurrent.from_config(config)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        require_finite(state, path)
        model.from_original_state_dict(state)
    except (RuntimeError, KeyError, ValueError, EOFError, OSError, pickle.UnpicklingError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserInputError(f"cannot read original checkpoint {path}: {message[:200]}") from err
    match = WEIGHTS_PATTERN.match(path.name)
    config["checkpoint_epoch"] = int(match.group(1)) if match else -1
    return model.to(device).eval(), config, {}
