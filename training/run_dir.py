"""A training run's folder: what training writes beside the checkpoint files.

``models.checkpoint.RunFolder`` names the files every reader needs (config.json,
the weights, the loss history, SHA256SUMS); ``RunDir`` adds what only training
writes and reads:

- ``{epoch}-epochs_state.pt`` (and ``interrupted_state.pt`` after a stop
  request): what resuming needs (``training.step.TrainState``), loadable with
  ``weights_only=True``;
- beside each state file, ``{same stem}.json``: its position ``{"epoch",
  "step", "global_step"}``, so the latest state is found without unpickling
  every state file (a state without one, from an older run, is opened instead);
- ``loss_curve.png`` and ``logs/train.log``;
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
import time
from pathlib import Path

import torch

from models.checkpoint import INTERRUPTED_STATE, RunFolder
from training import ResumeError
from utils import atomic_path, write_json

CURVE_FILE = "loss_curve.png"
LOG_FILE = Path("logs") / "train.log"  # beside submitit's job logs
LOCK_FILE = ".training.lock"
STATE_KEYS = ("model", "optimizer", "history", "epoch", "step", "global_step", "permutation", "sums", "rng")
MAX_SAME_SECOND_RUNS = 1000


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


class NotAResumeState(ResumeError):
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


class RunFoldersExhausted(FileExistsError):
    """Every ``-N`` variant of a new run folder's name is taken."""


class RunDir(RunFolder):
    """The files of one training run's folder ``path`` (which need not exist yet)."""

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

    def state_path(self, epoch: int) -> Path:
        return self.path / state_name(epoch)

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
