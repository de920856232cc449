"""The run folder: one place that knows its file names.

A run folder holds

- ``config.json``: the resolved run config, written once per training process;
- ``{epoch}-epochs_model.safetensors``: the weights, with the config and epoch
  in the file's metadata, so a lone weights file still loads;
- ``{epoch}-epochs_state.pt`` (and ``interrupted_state.pt`` after a stop
  request): what resuming needs (``models.training.TrainState``), loadable with
  ``weights_only=True``;
- beside each state file, ``{same stem}.json``: its position ``{"epoch",
  "step", "global_step"}``, so the latest state is found without unpickling
  every state file (a state without one, from an older run, is opened instead);
- ``loss_history.json``, ``loss_curve.png`` and ``logs/train.log``;
- in a shipped pretrained folder, ``SHA256SUMS``: the SHA-256 of each weights
  file in ``sha256sum``'s format (``write_checksums``; ``sha256sum -c SHA256SUMS``
  checks it too), verified whenever one of them is loaded (models.io.load_model).
- ``.training.lock`` while a process trains the run (``utils.FileLock``: its pid
  and host), removed when it ends.

Library code: errors are ``FileNotFoundError``, ``FileExistsError``,
``ValueError`` or ``TypeError`` in terms of the folder; the commands turn them into their own
one-line messages.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from utils import atomic_path, sha256_of, write_json

CONFIG_FILE = "config.json"
HISTORY_FILE = "loss_history.json"
CURVE_FILE = "loss_curve.png"
LOG_FILE = Path("logs") / "train.log"  # beside submitit's job logs
INTERRUPTED_STATE = "interrupted_state.pt"
CHECKSUMS_FILE = "SHA256SUMS"
LOCK_FILE = ".training.lock"
STATE_KEYS = ("model", "optimizer", "history", "epoch", "step", "global_step", "permutation", "sums", "rng")
WEIGHTS_PATTERN = re.compile(r"^(\d+)-epochs_model\.(safetensors|pt)$")  # .pt: the original code's layout
_STATE_PATTERN = re.compile(r"^(\d+)-epochs_state\.pt$")
MAX_SAME_SECOND_RUNS = 1000


def weights_name(epoch: int) -> str:
    return f"{epoch}-epochs_model.safetensors"


def state_name(epoch: int) -> str:
    return f"{epoch}-epochs_state.pt"


def position_path(state_path: Path) -> Path:
    """The sidecar beside a state file: ``3-epochs_state.pt`` -> ``3-epochs_state.json``."""
    return Path(state_path).with_suffix(".json")


def write_state_file(path: Path, state: dict) -> None:
    """``torch.save`` ``state`` atomically, then its position sidecar. The old
    sidecar goes first, so a crash between the two writes leaves a state without
    a sidecar (read the slow way), never a sidecar that names another state.
    A failed write is an OSError: torch's zip writer reports a full disk as a
    RuntimeError ("unexpected pos", "file write failed"), which is made one."""
    path = Path(path)
    position_path(path).unlink(missing_ok=True)
    with atomic_path(path) as tmp:
        try:
            torch.save(state, tmp)
        except RuntimeError as err:  # serialising a dict of tensors fails only in the writer
            detail = " ".join(str(err).split())[-120:]
            raise OSError(f"torch.save could not write the file, the disk may be full ({detail})") from err
    write_json(position_path(path), {k: int(state[k]) for k in ("epoch", "step", "global_step")})


class NotAResumeState(ValueError):
    """A file that is no resume state: unreadable, or not the dict a state file holds."""


def read_state_file(path: Path) -> dict:
    """A state file's dict (CPU tensors, ``weights_only``); NotAResumeState if it
    cannot be read or lacks an entry of ``STATE_KEYS``."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or truncated files
        raise NotAResumeState(f"{path} is unreadable: not a resume state, or a damaged one "
                              f"({type(err).__name__})") from err
    missing = [key for key in STATE_KEYS if key not in state] if isinstance(state, dict) else ["all"]
    if missing:
        raise NotAResumeState(f"{path} is not a resume state (it lacks {missing[0]!r})")
    return state


def state_position(path: Path) -> dict:
    """{"epoch", "step", "global_step"} of the state file ``path`` (the epoch it
    resumes in, the steps done in it, the steps done in all): from its sidecar, or,
    for a state older than sidecars (or with a damaged one), from the file itself."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        position = json.loads(position_path(path).read_text())
        return {k: int(position[k]) for k in ("epoch", "step", "global_step")}
    state = read_state_file(path)
    return {k: int(state[k]) for k in ("epoch", "step", "global_step")}


def state_global_step(path: Path) -> int:
    """Optimizer steps taken when the state file ``path`` was saved (``state_position``)."""
    return state_position(path)["global_step"]


def resume_command(run_dir) -> str:
    """The command that continues the training run in ``run_dir``."""
    return f"python submit_training_job.py --path {shlex.quote(str(run_dir))}"


class RunFoldersExhausted(FileExistsError):
    """Every ``-N`` variant of a new run folder's name is taken."""


class RunDir:
    """The files of one run folder ``path`` (which need not exist yet)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def name(self) -> str:
        return self.path.name

    # ----- paths ------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def history_path(self) -> Path:
        return self.path / HISTORY_FILE

    @property
    def curve_path(self) -> Path:
        return self.path / CURVE_FILE

    @property
    def log_path(self) -> Path:
        return self.path / LOG_FILE

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK_FILE

    @property
    def interrupted_state_path(self) -> Path:
        return self.path / INTERRUPTED_STATE

    def weights_path(self, epoch: int) -> Path:
        return self.path / weights_name(epoch)

    def state_path(self, epoch: int) -> Path:
        return self.path / state_name(epoch)

    # ----- what the folder holds --------------------------------------------------------
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
        return [p for p in self.path.iterdir() if _STATE_PATTERN.match(p.name) or p.name == INTERRUPTED_STATE]

    def states_by_step(self) -> dict[int, Path]:
        """{optimizer steps: state file} of every resumable state, in step order. Where
        two states have the same steps, the epoch checkpoint: a stop at the end of an
        epoch saves the interrupted state before the epoch's bookkeeping, the resumed run
        then saves the epoch after it. Steps come from the sidecars; ValueError if a
        state without one cannot be read."""
        found = {}
        for path in sorted(self.state_files(), key=lambda p: (p.name != INTERRUPTED_STATE, p.name)):
            found[state_global_step(path)] = path  # epoch checkpoints come last, so they win a tie
        return dict(sorted(found.items()))

    def latest_state(self) -> Path:
        """The state file with the most optimizer steps (``states_by_step``);
        FileNotFoundError if there is none."""
        states = self.states_by_step()
        if not states:
            raise FileNotFoundError(f"no resumable state (*_state.pt) in {self.path}")
        return states[max(states)]

    # ----- reading and writing ----------------------------------------------------------
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

    def append_log(self, message: str) -> None:
        """Append a time-stamped line to logs/train.log: every run keeps its own log,
        across resumes, whether it ran in this process or as a job."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")

    @classmethod
    def create(cls, save_dir: str | os.PathLike, stem: str) -> "RunDir":
        """A new, empty folder ``save_dir/stem_<date-time>``. mkdir is atomic, so runs
        started in the same second, even by parallel jobs, get distinct folders (-1,
        -2 ...); RunFoldersExhausted after ``MAX_SAME_SECOND_RUNS`` of them, OSError if
        ``save_dir`` cannot be written."""
        base = Path(save_dir) / f"{stem}_{time.strftime('%Y%m%d-%H%M%S')}"
        base.parent.mkdir(parents=True, exist_ok=True)
        for i in range(MAX_SAME_SECOND_RUNS):
            path = base if i == 0 else Path(f"{base}-{i}")
            try:
                path.mkdir()
                return cls(path)
            except FileExistsError:
                continue
        raise RunFoldersExhausted(f"{MAX_SAME_SECOND_RUNS} run folders named {base.name}-N exist")
