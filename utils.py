"""Small helpers shared by every entry point: user-facing errors, atomic writes,
seeding and device choice."""
from __future__ import annotations

import contextlib
import json
import os
import random
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch


class UserInputError(Exception):
    """A problem with what the user gave us (a path, a flag, a file's contents).

    Entry points print its message as one line and exit with status 2, without
    a traceback; the message names the problem and the fix.
    """


def run_cli(main: Callable[[], object]) -> None:
    """Run ``main`` and turn a ``UserInputError`` into a one-line error and exit 2."""
    try:
        main()
    except UserInputError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the
    block finishes, so a crash or Ctrl-C never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: str | os.PathLike, obj) -> None:
    """Atomically write ``obj`` as indented JSON."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str | None) -> torch.device:
    """'auto' (or None) picks CUDA when available, else the CPU."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise UserInputError(f"unknown device {name!r}: use cpu, cuda, cuda:N or auto") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserInputError("--device cuda was asked for but no GPU is visible: use --device cpu")
    return device
