"""A checkpoint's files: the names in a run folder that every reader of weights needs.

A run folder holds

- ``config.json``: the resolved run config, written once per training process;
- ``{epoch}-epochs_model.safetensors``: the weights, with the config and epoch
  in the file's metadata, so a lone weights file still loads;
- ``loss_history.json``, ``loss_curve.png`` and ``logs/train.log``;
- in a shipped pretrained folder, ``SHA256SUMS``: the SHA-256 of each weights
  file in ``sha256sum``'s format (``write_checksums``; ``sha256sum -c SHA256SUMS``
  checks it too), verified whenever one of them is loaded (models.io.load_model);
- while it trains, and after a stop, what resuming needs: ``{epoch}-epochs_state.pt``,
  ``interrupted_state.pt`` and their position sidecars. Training writes and reads
  those (``training.run_dir.RunDir``, a ``RunFolder`` that also writes); here they
  are only names, so that a reader can say that a folder holds just a stopped run.

Library code: errors are ``FileNotFoundError``, ``ValueError`` or ``TypeError`` in
terms of the folder; the commands turn them into their own one-line messages.
"""
from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path

from safetensors.torch import save_file

from utils import atomic_path, sha256_of, write_json

CONFIG_FILE = "config.json"
HISTORY_FILE = "loss_history.json"
CHECKSUMS_FILE = "SHA256SUMS"
INTERRUPTED_STATE = "interrupted_state.pt"
WEIGHTS_PATTERN = re.compile(r"^(\d+)-epochs_model\.(safetensors|pt)$")  # .pt: the original code's layout
STATE_PATTERN = re.compile(r"^(\d+)-epochs_state\.pt$")


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
