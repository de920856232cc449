"""A checkpoint's files: the names in a run folder that every reader of weights needs.

A run folder holds

- ``config.json``: the resolved run config, written once per training process;
- ``{epoch}-epochs_model.safetensors``: the weights, with the config and epoch
  in the file's metadata, so a lone weights file still loads;
- ``loss_history.json``, ``loss_curve.png`` and ``logs/train.log``;
- in a shipped pretrained folder, ``MODEL_CARD.md`` and ``SHA256SUMS``: the SHA-256 of each weights
  file in ``sha256sum``'s format (``write_checksums``; ``sha256sum -c SHA256SUMS``
  checks it too), verified whenever one of them is loaded (models.io.load_model);
- while it trains, and after a stop, what resuming needs: ``{epoch}-epochs_state.pt``,
  ``interrupted_state.pt`` and their position sidecars. Training writes and reads
  those (``training.run_dir.RunDir``, a ``RunFolder`` that also writes); here they
  are only names, so that a reader can say that a folder holds just a stopped run.

``Checkpoint`` is one checkpoint as a user names it (a run folder, a weights
file, or a folder / ``.pt`` file of the original code), resolved once where the
path enters and passed on: its weights file, run folder, config, epoch, frame
shape, group sizes and slices, SHA-256, and ``load`` for the model.

Library code: errors are ``FileNotFoundError``, ``ValueError`` or ``TypeError`` in
terms of the folder (``RunFolder``), ``CheckpointError`` (a ``utils.InputError``: one line as it is) for a
checkpoint that cannot be used; the commands turn them into their own one-line
messages.
"""
from __future__ import annotations

import csv
import json
import math
import os
import pickle
import re
import shlex
from functools import cached_property
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from models.base import contiguous_slices
from utils import InputError, atomic_path, sha256_of, write_json

CONFIG_FILE = "config.json"
HISTORY_FILE = "loss_history.json"
CHECKSUMS_FILE = "SHA256SUMS"
MODEL_CARD_FILE = "MODEL_CARD.md"  # in a shipped pretrained folder: what the model is and how it was trained
INTERRUPTED_STATE = "interrupted_state.pt"
WEIGHTS_PATTERN = re.compile(r"^(\d+)-epochs_model\.(safetensors|pt)$")  # .pt: the original code's layout
STATE_PATTERN = re.compile(r"^(\d+)-epochs_state\.pt$")
ORIGINAL_HYPERPARAMETERS = "hyperparameters.csv"  # beside the original code's N-epochs_model.pt files
# the frame shapes of the original's two frame sizes (its CSV records only the pixel count)
ORIGINAL_FRAME_SHAPES = {400: (20, 20), 800: (20, 40)}


def weights_name(epoch: int) -> str:
    return f"{epoch}-epochs_model.safetensors"


def resume_command(run_dir) -> str:
    """The command that continues the training run in ``run_dir``."""
    return f"python submit_training_job.py --path {shlex.quote(str(run_dir))}"


class RunFolder:
    """The checkpoint files of one run folder ``path`` (which need not exist yet)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def history_path(self) -> Path:
        return self.path / HISTORY_FILE

    def weights_path(self, epoch: int) -> Path:
        return self.path / weights_name(epoch)

    def weights_by_epoch(self) -> dict[int, Path]:
        """{epoch: weights file}, in epoch order: the ``.safetensors`` checkpoints, or the
        ``N-epochs_model.pt`` files of a folder in the original code's layout (where an
        epoch has both, the ``.safetensors`` one)."""
        found = {}
        if self.path.is_dir():
            for p in sorted(self.path.iterdir(), key=lambda p: p.suffix == ".safetensors"):
                match = WEIGHTS_PATTERN.match(p.name)
                if match:
                    found[int(match.group(1))] = p
        return dict(sorted(found.items()))

    def latest_weights(self) -> Path:
        """The weights file of the highest epoch (see ``weights_by_epoch``);
        FileNotFoundError if there is none."""
        found = self.weights_by_epoch()
        if not found:
            raise FileNotFoundError(f"no checkpoint (N-epochs_model.safetensors) in {self.path}")
        return found[max(found)]

    def state_files(self) -> list[Path]:
        """Every resumable state file: the epoch checkpoints' and the interrupted one."""
        if not self.path.is_dir():
            return []
        return [p for p in self.path.iterdir() if STATE_PATTERN.match(p.name) or p.name == INTERRUPTED_STATE]

    def read_config(self) -> dict:
        """config.json as a dict: FileNotFoundError if missing, ValueError if unreadable
        or not JSON, TypeError if its JSON is not an object."""
        try:
            config = json.loads(self.config_path.read_text())
        except FileNotFoundError:
            raise
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{self.config_path} is unreadable or not JSON ({type(err).__name__})") from err
        if not isinstance(config, dict):
            raise TypeError(f"{self.config_path} holds a JSON {type(config).__name__}, not a config object")
        return config

    def write_config(self, config: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.config_path, config)

    def write_history(self, history: dict) -> None:
        write_json(self.history_path, history)

    def save_weights(self, model, config: dict, epoch: int) -> Path:
        """The model's tensors as ``{epoch}-epochs_model.safetensors``, the config and
        epoch in its metadata (config.json is written separately, once)."""
        tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        path = self.weights_path(epoch)
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"config": json.dumps(config), "epoch": str(epoch)})
        return path

    def write_checksums(self) -> Path:
        """Write ``SHA256SUMS``: one ``<sha256>  <file name>`` line per weights file, in
        epoch order (for a folder about to be shipped; training never writes it)."""
        lines = "".join(f"{sha256_of(p)}  {p.name}\n" for p in self.weights_by_epoch().values())
        path = self.path / CHECKSUMS_FILE
        with atomic_path(path) as tmp:
            tmp.write_text(lines)
        return path

    def recorded_sha256(self, weights: Path) -> str | None:
        """The SHA-256 that ``SHA256SUMS`` lists for the weights file ``weights`` of this
        folder, or None when there is no manifest or it does not list the file;
        ValueError for a manifest that is not in sha256sum's format."""
        path = self.path / CHECKSUMS_FILE
        if not path.is_file():
            return None
        listed = {}
        for line in path.read_text(errors="replace").splitlines():
            digest, _, name = line.partition("  ")
            if not re.fullmatch(r"[0-9a-f]{64}", digest) or not name:
                raise ValueError(f"{path} is not a SHA256SUMS manifest (a line reads {line[:80]!r})")
            listed[name] = digest
        return listed.get(Path(weights).name)


# --- one checkpoint, resolved once ----------------------------------------------------------

class CheckpointError(InputError):
    """A checkpoint that cannot be used (missing, of no known layout, corrupt, not its
    recorded SHA-256, or describing no model this code builds); the message names the
    file and the fix."""


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


def require_finite(tensors: dict, source) -> None:
    """CheckpointError naming ``source`` and the first tensor holding NaN or inf: such
    weights give NaN or infinite responses everywhere downstream."""
    for name, tensor in tensors.items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                raise CheckpointError(f"{source}: tensor {name!r} holds {bad} non-finite value{'s' * (bad > 1)} "
                                      "(NaN or inf): the file is corrupt or its run diverged; load an earlier "
                                      "checkpoint or retrain")


def original_frame_shape(n_pixels: int, frame_shape=None) -> tuple[int, int]:
    """The (H, W) frame of an original checkpoint whose CSV records ``n_pixels``:
    ``frame_shape`` when given, else the original's 20x20 (400) or 20x40 (800), else a
    square. CheckpointError when none fits: 600 pixels -> pass frame_shape=(20, 30)."""
    if frame_shape is None:
        root = math.isqrt(n_pixels)
        frame_shape = ORIGINAL_FRAME_SHAPES.get(n_pixels) or ((root, root) if root * root == n_pixels else None)
    if frame_shape is None or frame_shape[0] * frame_shape[1] != n_pixels:
        raise CheckpointError(f"original checkpoint has frame_size {n_pixels}: pass frame_shape=(H, W) with "
                              f"H*W = {n_pixels}")
    return (int(frame_shape[0]), int(frame_shape[1]))


class Checkpoint:
    """One checkpoint, from the path a user gave, resolved once and passed on.

    ``Checkpoint(path, frame_shape=None)``: ``path`` is a run folder (its latest
    epoch), a ``.safetensors`` weights file, or a folder / ``N-epochs_model.pt`` file
    written by the original code (``hyperparameters.csv`` beside it, no config.json).
    ``frame_shape`` is needed only for an original checkpoint whose frame size is not
    400 (20x20), 800 (20x40) or a square. Resolving the weights file checks that the
    path exists and holds one; everything else is read on first use and kept:

    - ``path``: the path as given; ``weights``: the weights file; ``run``: the
      ``RunFolder`` holding it; ``original``: whether it is in the original's layout;
    - ``config``: the run config (the weights file's metadata, else config.json; for
      an original checkpoint, built from its CSV), with ``checkpoint_epoch`` set;
      treat it as read-only (``models.io.load_model`` hands out copies);
    - ``epoch`` (-1 when unknown), ``frame_shape`` (H, W), ``group_sizes`` (units per
      group, the config's ``hidden_units``), ``group_slices`` (their columns in the
      hidden activity, ``models.base.contiguous_slices`` as every model's), ``history``
      (the loss history, {} when there is none), ``optimizer_steps``;
    - ``sha256``: of the weights file's bytes;
    - ``load(device)``: the model in eval mode, its weights checked (SHA256SUMS when the
      folder ships one, no NaN or inf, fitting the config).

    Every problem is a one-line ``CheckpointError`` naming the file and the fix.
    """

    def __init__(self, path: str | os.PathLike, frame_shape=None):
        self.path = Path(path)
        self._frame_shape = frame_shape
        if not self.path.exists():
            raise CheckpointError(f"checkpoint {self.path} does not exist: give a run folder or a weights file")
        folder = self.path if self.path.is_dir() else self.path.parent
        self.original = (folder / ORIGINAL_HYPERPARAMETERS).exists() and not (folder / CONFIG_FILE).exists()
        self.weights = self._original_weights(folder) if self.original else self._weights(folder)
        self.run = RunFolder(self.weights.parent)
        self._sha256_checked = False
        self._config_source = None  # where the config was read, for messages (set with ``config``)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def _weights(self, folder: Path) -> Path:
        if self.path.is_dir():
            run = RunFolder(folder)
            try:
                weights = run.latest_weights()
            except FileNotFoundError as err:
                if run.state_files():  # stopped before its first checkpoint
                    raise CheckpointError(f"{err}, only the state of an interrupted training: finish or continue "
                                          f"it with {resume_command(folder)}") from err
                raise CheckpointError(f"{err}: train one first") from err
        else:
            weights = self.path
        if weights.suffix != ".safetensors":
            raise CheckpointError(f"{weights} is not a .safetensors weights file: pass the run folder instead")
        return weights

    def _original_weights(self, folder: Path) -> Path:
        if not self.path.is_dir():
            return self.path
        found = {epoch: p for epoch, p in RunFolder(folder).weights_by_epoch().items() if p.suffix == ".pt"}
        if not found:
            raise CheckpointError(f"no N-epochs_model.pt file in {folder}")
        return found[max(found)]

    # ----- identity -------------------------------------------------------------------
    @cached_property
    def sha256(self) -> str:
        return sha256_of(self.weights)

    def _check_recorded_sha256(self) -> None:
        """Before the weights file is first read: it must match the SHA-256 its folder's
        SHA256SUMS lists (a shipped pretrained model), since one flipped bit can leave
        every value finite and still wreck every response."""
        if self._sha256_checked:
            return
        try:
            recorded = self.run.recorded_sha256(self.weights)
        except (OSError, ValueError) as err:
            raise CheckpointError(f"{err}: restore it (git checkout) or remove it") from err
        if recorded is not None and self.sha256 != recorded:
            raise CheckpointError(f"{self.weights} does not match its SHA-256 in {self.run.path / CHECKSUMS_FILE}: "
                                  "the file is corrupt or was changed; restore it (git checkout, or copy it again)")
        self._sha256_checked = True

    # ----- what the config says -----------------------------------------------------------
    @cached_property
    def config(self) -> dict:
        config = self._original_config() if self.original else self._saved_config()
        config["checkpoint_epoch"] = self._epoch()
        return config

    @property
    def epoch(self) -> int:
        return self.config["checkpoint_epoch"]

    @property
    def frame_shape(self) -> tuple[int, int]:
        return tuple(int(n) for n in self.config["frame_shape"])

    @property
    def group_sizes(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.config["hidden_units"])

    @property
    def group_slices(self) -> list[slice]:
        return contiguous_slices(self.group_sizes)

    @property
    def optimizer_steps(self) -> int | None:
        return optimizer_steps(self.config)

    @cached_property
    def history(self) -> dict:
        """The run's loss history (loss_history.json); {} for none, and for an original
        checkpoint, whose pickled history is never opened."""
        if self.original or not self.run.history_path.exists():
            return {}
        return json.loads(self.run.history_path.read_text())

    def _epoch(self) -> int:
        if self.original:
            match = WEIGHTS_PATTERN.match(self.weights.name)
            return int(match.group(1)) if match else -1
        return int(self._metadata.get("epoch", -1))

    @cached_property
    def _metadata(self) -> dict:
        """The weights file's safetensors metadata (config and epoch)."""
        self._check_recorded_sha256()
        try:
            with safe_open(str(self.weights), framework="pt") as f:
                return f.metadata() or {}
        except (SafetensorError, OSError, ValueError) as err:
            raise self._corrupt(err) from err

    def _corrupt(self, err: Exception) -> CheckpointError:
        return CheckpointError(f"checkpoint {self.weights} is corrupt or truncated ({err}): re-save or retrain it")

    def _saved_config(self) -> dict:
        """The config in the weights file's metadata, else config.json: a one-line error
        when it is not JSON or not a train.py config (a Hugging Face config.json has no
        'model' kind)."""
        if "config" in self._metadata:
            text, source = self._metadata["config"], f"the config in {self.weights}'s metadata"
        elif self.run.config_path.exists():
            text, source = self.run.config_path.read_bytes(), str(self.run.config_path)
        else:
            raise CheckpointError(f"{self.weights} carries no config and {self.run.config_path} is missing")
        try:
            config = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise CheckpointError(f"{source} is not valid JSON ({type(err).__name__}): re-save the checkpoint with "
                                  "train.py") from err
        if not isinstance(config, dict) or "model" not in config:
            raise CheckpointError(f"{source} names no model kind, so it was not written by train.py (a Hugging Face "
                                  "checkpoint?): give a run folder or weights file written by train.py")
        self._config_source = source
        return config

    def _original_config(self) -> dict:
        """The config of an original-layout folder from the first row of its CSV (only
        the CSV is read; the pickled loss history is ignored)."""
        csv_path = self.run.path / ORIGINAL_HYPERPARAMETERS
        try:
            with open(csv_path, newline="") as f:
                rows = list(csv.DictReader(f))
        except (UnicodeDecodeError, csv.Error) as err:
            raise CheckpointError(f"{csv_path} is not a text CSV file ({type(err).__name__}): restore the "
                                  "original's hyperparameters.csv") from err
        if not rows:
            raise CheckpointError(f"{csv_path} is empty")
        try:
            return _config_from_original(rows[0], self._frame_shape)
        except CheckpointError:
            raise
        except KeyError as err:
            raise CheckpointError(f"{csv_path} lacks the column {err}: restore the original's "
                                  "hyperparameters.csv") from err
        except (ValueError, TypeError) as err:  # TypeError: a short row leaves a column None
            raise CheckpointError(f"{csv_path} holds values the model cannot use ({str(err).splitlines()[0]}): "
                                  "restore the original's hyperparameters.csv") from err

    # ----- the model ------------------------------------------------------------------------
    def load(self, device="cpu"):
        """A fresh model with the checkpoint's weights, in eval mode on ``device``."""
        from models import build_model  # late import: the model kinds import models.io, which imports this module

        model = self._original_model() if self.original else self._saved_model(build_model)
        return model.to(device).eval()

    def _saved_model(self, build_model):
        self._check_recorded_sha256()
        try:
            state = load_file(str(self.weights), device="cpu")
        except (SafetensorError, OSError, ValueError) as err:
            raise self._corrupt(err) from err
        config = self.config
        try:
            model = build_model(config)
        except CheckpointError:  # a lower stack's checkpoint (TP_FF): names that file and the fix
            raise
        except (KeyError, ValueError, TypeError) as err:
            reason = f"missing {err}" if isinstance(err, KeyError) else str(err).splitlines()[0]
            raise CheckpointError(f"{self._config_source} does not describe a model this code can build ({reason}): "
                                  "give a checkpoint written by train.py") from err
        require_finite(state, self.weights)
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            raise CheckpointError(f"weights in {self.weights} do not fit the model in its config: "
                                  f"{str(err).splitlines()[0]}") from err
        return model

    def _original_model(self):
        from models.network_hierarchical_recurrent import NetworkHierarchicalRecurrent

        config = self.config
        try:
            model = NetworkHierarchicalRecurrent.from_config(config)
        except (KeyError, ValueError, TypeError) as err:  # e.g. one beta per group
            raise CheckpointError(f"{self.run.path / ORIGINAL_HYPERPARAMETERS} holds values the model cannot use "
                                  f"({str(err).splitlines()[0]}): restore the original's hyperparameters.csv") from err
        try:
            state = torch.load(self.weights, map_location="cpu", weights_only=True)
            require_finite(state, self.weights)
            model.from_original_state_dict(state)
        except (RuntimeError, KeyError, ValueError, EOFError, OSError, pickle.UnpicklingError) as err:
            message = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise CheckpointError(f"cannot read original checkpoint {self.weights}: {message[:200]}") from err
        return model


def _config_from_original(hp: dict, frame_shape) -> dict:
    """A run config from the original's CSV row ``hp``; KeyError for a missing column,
    ValueError for a value that is no number."""
    def floats(text):
        return [float(v) for v in str(text).split(",") if v.strip()]

    lam = float(hp["lam"])
    return {
        "model": "network_hierarchical_recurrent",
        "loss": hp.get("loss") or "loss_hierarchical_temporal_prediction",
        "frame_shape": list(original_frame_shape(int(float(hp["frame_size"])), frame_shape)),
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
