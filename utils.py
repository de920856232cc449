"""Small helpers shared by every entry point: user-facing errors, atomic writes,
seeding and device choice."""
from __future__ import annotations

import contextlib
import json
import os
import random
import re
import socket
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


def os_error_reason(err: Exception) -> str:
    """A failed write's reason on one line, e.g. 'No space left on device': the OS's
    text, or the one HDF5 buries in a multi-line message, or the first line."""
    text = str(err)
    buried = re.search(r"error message = '([^']+)'", text)  # HDF5's driver errors
    if buried:
        return buried.group(1)
    if isinstance(err, OSError) and err.strerror:
        text = err.strerror
    return " ".join(text.split()) or type(err).__name__


_TMP_MARK = ".partial-"  # temporaries are .NAME.partial-HOST-PID-RANDOM.tmp


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the
    block finishes, so a crash or Ctrl-C never leaves a half-written file.

    The temporary is named ``.NAME.partial-HOST-PID-RANDOM.tmp`` and gets the mode
    a plain ``open`` would (0666 less the process umask), not mkstemp's 0600, so a
    group-shared folder stays readable. Before writing, temporaries in the same
    folder left by dead processes of this host (``kill -9``) are removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)
    prefix = f".{path.name}{_TMP_MARK}{_host()}-{os.getpid()}-"
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    """The process umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _host() -> str:
    """This machine's name, as safe file-name characters (temporaries on a shared
    file system are judged only by the host that wrote them)."""
    return "".join(c if c.isalnum() else "_" for c in socket.gethostname())[:40] or "host"


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete ``atomic_path`` temporaries in ``folder`` whose writer, a process of
    this host, no longer runs; returns what was removed. A temporary of another
    host, or of a live process, is left alone."""
    removed = []
    pattern = re.compile(rf"^\..+{re.escape(_TMP_MARK)}{re.escape(_host())}-(\d+)-[^/]*\.tmp$")
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = pattern.match(entry.name)
        if match and not _process_alive(int(match.group(1))):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


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
