"""Small helpers shared by every entry point: user-facing errors, command-line flags
from a dataclass, atomic writes, seeding, device choice, the allocator setting, and
the numerics every package shares (Pearson correlations, the paired t-test)."""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import datetime
import fcntl
import hashlib
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


class InputError(ValueError):
    """What a library function was given cannot be used; its message names the problem
    and the fix. Each package raises its own subclass, in its own terms (e.g.
    data.DatasetError, models.SettingError); ``run_cli`` prints any of them as one line
    and exits 2, so a command needs no wrapping for these."""


class UserInputError(InputError):
    """A command's own argument cannot be used (a flag, a path given on its command line).

    Raised only by the commands (their ``main`` and argument checks), never by library
    code (tests/test_error_layers.py); ``run_cli`` prints it as one line and exits 2.
    """


def run_cli(main: Callable[[], object]) -> None:
    """Run ``main`` and turn an ``InputError`` (a ``UserInputError`` or a package's domain
    error) into a one-line error and exit 2, and Ctrl-C into one line (the interruption's
    own message, e.g. training's "stopping now; the last saved state is ...") and exit
    130 (128 + SIGINT, as a shell reports it)."""
    try:
        main()
    except InputError as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as err:
        print(str(err) or "interrupted", file=sys.stderr)
        sys.exit(130)


def one_line(err: Exception) -> str:
    """An error's message on one line (runs of whitespace, newlines included, become one
    space), or its type's name when it has none."""
    return " ".join(str(err).split()) or type(err).__name__


@contextlib.contextmanager
def user_errors_from(*errors: type[Exception]) -> Iterator[None]:
    """Inside a command: re-raise ``errors`` (errors of other libraries that describe
    unusable input, e.g. a plain ValueError) as ``UserInputError`` with the same message,
    so ``run_cli`` prints them as one line. The project's own domain errors need no
    wrapping (they are ``InputError``s). Only wrap code whose errors of these types
    describe the input (a bug raising one would lose its traceback)."""
    try:
        yield
    except errors as err:
        raise UserInputError(one_line(err)) from err


# -------------------------------------------------------------------------------------------
# Command-line flags from a dataclass: one field per flag, its help beside its default.
# -------------------------------------------------------------------------------------------
def flag(default, help: str, *, exclusive: str | None = None, **argparse_options):
    """A dataclass field that is also the flag ``--field-name`` of :func:`add_flags`.

    ``help`` is its --help text (the default is appended); ``argparse_options`` go to
    ``ArgumentParser.add_argument`` unchanged (type, nargs, metavar, choices, required).
    Without ``type`` the flag takes the default's type (str when the default is None).
    A bool field is a --name / --no-name switch. Fields sharing ``exclusive`` form a
    mutually exclusive group of which exactly one must be given.
    """
    return dataclasses.field(default=default, metadata={"help": help, "exclusive": exclusive,
                                                         "argparse": argparse_options})


def add_flags(parser: argparse.ArgumentParser, options_class: type) -> None:
    """Add one flag per field of the dataclass ``options_class`` (fields made by
    :func:`flag`), in field order, named like the field with dashes."""
    groups = {}  # exclusive-group name -> its argparse group
    for f in dataclasses.fields(options_class):
        name, exclusive = "--" + f.name.replace("_", "-"), f.metadata["exclusive"]
        target = parser
        if exclusive is not None:
            if exclusive not in groups:
                groups[exclusive] = parser.add_mutually_exclusive_group(required=True)
            target = groups[exclusive]
        options = dict(f.metadata["argparse"])
        shown = "" if f.default is None or options.get("required") or exclusive else f" [default: {_shown(f.default)}]"
        if isinstance(f.default, bool):
            options.setdefault("action", argparse.BooleanOptionalAction)
        elif "type" not in options and f.default is not None:
            options["type"] = type(f.default[0] if isinstance(f.default, tuple) else f.default)
        target.add_argument(name, default=f.default, help=f.metadata["help"] + shown, **options)


def _shown(default) -> str:
    return " ".join(map(str, default)) if isinstance(default, (tuple, list)) else str(default)


def options_from(options_class: type, args: argparse.Namespace):
    """The ``options_class`` instance that parsed flags (from :func:`add_flags`) describe."""
    return options_class(**{f.name: getattr(args, f.name) for f in dataclasses.fields(options_class)})


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


def cannot_create(path: str | os.PathLike) -> str | None:
    """Why nothing can be created at ``path`` (a file or folder still to be made), or
    None: its nearest existing ancestor is a file, or is not writable (a read-only
    file system, or no permission). Judged before long work, so that it fails at once;
    a disk that fills later is still the writer's to report."""
    path = Path(path).absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        return f"{existing} is a file"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable" + (" (a read-only file system)" if _read_only(existing) else "")
    return None


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


_TMP_MARK = ".partial-"  # temporaries are .NAME.partial-HOST-PID-RANDOM.tmp


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the
    block finishes, so a crash or Ctrl-C never leaves a half-written file.

    The temporary is named ``.NAME.partial-HOST-PID-RANDOM.tmp``; the file renamed
    onto ``path`` gets the mode a plain ``open`` would (0666 less the process umask),
    not mkstemp's 0600, so a group-shared folder stays readable. The mode is set
    again after the block, because a writer may have replaced the temporary
    (safetensors' ``save_file`` does, with mode 0600). Before writing, temporaries
    in the same folder left by dead processes of this host (``kill -9``) are removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)
    prefix = f".{path.name}{_TMP_MARK}{_host()}-{os.getpid()}-"
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    mode = 0o666 & ~_umask()
    try:
        os.chmod(tmp, mode)
        yield tmp
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


_PID_DIGITS = 7  # Linux pids stay below 2**22 = 4,194,304
_RANDOM_CHARACTERS = 8  # tempfile's random part


def longest_atomic_name(folder: str | os.PathLike) -> int:
    """The longest file name that ``atomic_path`` can write into ``folder``: the folder's
    limit on a name (NAME_MAX, 255 where the file system does not say) less what the
    temporary adds to it (``.NAME.partial-HOST-PID-RANDOM.tmp``)."""
    try:
        name_max = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    return name_max - len(f".{_TMP_MARK}{_host()}--.tmp") - _PID_DIGITS - _RANDOM_CHARACTERS


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


def sha256_of(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, as hex (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2 ** 20), b""):
            digest.update(block)
    return digest.hexdigest()


class LockHeld(ValueError):
    """Another process holds the lock; ``holder`` is what it wrote ('pid N on HOST, started T')."""

    def __init__(self, path: Path, holder: str):
        super().__init__(f"{path} is held by {holder}")
        self.path, self.holder = path, holder


class FileLock:
    """An exclusive advisory lock (``flock``) on the file ``path``: one holder at a
    time among processes, also across hosts where the file system supports flock.

    ``acquire`` creates the file and writes 'pid N on HOST, started T' into it;
    while it is held, another ``acquire`` raises ``LockHeld`` naming that holder, or
    with ``wait`` blocks until it is released. ``release`` removes the file. The
    kernel drops the lock of a process that dies, even by kill -9, but its file and
    line stay: the next ``acquire`` takes the lock over and returns that line (the
    stale holder, to note), else None. OSError if the file cannot be created or
    locked. As a context manager: ``acquire()`` without waiting, then ``release()``."""

    def __init__(self, path: str | os.PathLike):
        self.path, self._handle = Path(path), None

    def acquire(self, wait: bool = False) -> str | None:
        while True:
            handle = open(self.path, "a+", errors="replace")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                holder = self._holder(handle) or "another process"
                handle.close()
                raise LockHeld(self.path, holder) from None
            except BaseException:
                handle.close()
                raise
            if self._names(handle):
                break
            handle.close()  # the holder we waited for removed this file on release: lock the new one
        stale = self._holder(handle)
        started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}, started {started}")
        handle.flush()
        self._handle = handle
        return stale

    @staticmethod
    def _holder(handle) -> str | None:
        """The holder line in the lock file, on one line (whatever a foreign file holds)."""
        handle.seek(0)
        return " ".join(handle.read(500).split()) or None

    def _names(self, handle) -> bool:
        """Whether ``self.path`` is still the file ``handle`` has open."""
        try:
            here, there = os.fstat(handle.fileno()), os.stat(self.path)
        except FileNotFoundError:
            return False
        return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)

    def release(self) -> None:
        if self._handle is None:
            return
        self.path.unlink(missing_ok=True)  # while still held, so no other process locks a file that is going
        self._handle.close()  # releases the lock
        self._handle = None

    def __enter__(self) -> "FileLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def write_json(path: str | os.PathLike, obj) -> None:
    """Atomically write ``obj`` as indented JSON."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


MAX_SEED = 2**32 - 1  # NumPy's global seed (np.random.seed) takes 0 .. 2**32 - 1; every command's --seed does too


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every GPU); ``seed`` in 0 .. MAX_SEED."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def keep_freed_memory() -> bool:
    """Ask the C library's allocator to keep the memory the process frees for reuse,
    instead of handing it back to the operating system; returns whether it agreed.

    Why: a training step allocates and frees the same large tensors every step. By
    default glibc's malloc serves blocks above a threshold with fresh ``mmap``s and
    trims freed memory at the top of the heap, so each step takes its memory from the
    kernel again, page by page: at B = 100, T = 50 that is 10,000-60,000 page faults
    and 10-15% of a 1-thread CPU step (benchmarks/bench_train.py --allocator).
    With ``mmap`` off and trimming at 2 GiB the step reuses its own freed blocks; the
    peak memory stays the same (measured at 3x800). Changes no arithmetic. Process-wide
    and idempotent; off glibc (no ``mallopt``) it does nothing and returns False."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's <malloc.h>
    return bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1)) & bool(mallopt(M_MMAP_MAX, 0))


REPO_ROOT = Path(__file__).resolve().parent


def portable_path(path: str | os.PathLike) -> str:
    """A path as a run's config records it: relative to the repository when it lies
    inside it (so a copied checkout or a shipped model names no folder of the machine
    that wrote it), else absolute."""
    absolute = Path(os.path.abspath(os.path.expanduser(path)))
    try:
        return str(absolute.relative_to(REPO_ROOT))
    except ValueError:
        return str(absolute)


def recorded_path(text: str) -> Path:
    """A path from a run's config (``portable_path``): a relative one is the repository's."""
    path = Path(text).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path


def set_threads(setting: str) -> int:
    """Apply a --threads setting and return torch's CPU thread count: "auto" keeps
    torch's default, one thread per core (the entry points make idle OpenMP threads
    sleep, OMP_WAIT_POLICY=PASSIVE, so sharing the CPU costs its share and no more:
    docs/benchmarks.md, "Training under load"); a positive whole number sets it.
    ValueError for anything else."""
    if setting != "auto":
        try:
            count = int(setting)
        except ValueError:
            count = 0
        if count < 1:
            raise ValueError(f"threads {setting!r} is neither 'auto' nor a positive whole number")
        torch.set_num_threads(count)
    return torch.get_num_threads()


def resolve_device(name: str | None) -> torch.device:
    """'auto' (or None) picks CUDA when available, else the CPU."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise InputError(f"unknown device {name!r}: use cpu, cuda, cuda:N or auto") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but no GPU is visible: use --device cpu")
    return device


# -------------------------------------------------------------------------------------------
# Numerics: the correlations and paired tests every package shares (analysis, virtual
# physiology, neural fitting), so one rule decides what a constant vector correlates to.
# -------------------------------------------------------------------------------------------
_CONSTANT_RULES = ("nan", "zero")


def _constant_fill(constant: str) -> float:
    if constant not in _CONSTANT_RULES:
        raise ValueError(f"constant must be 'nan' or 'zero', got {constant!r}")
    return float("nan") if constant == "nan" else 0.0


def pearson(x, y, *, constant: str = "nan") -> np.ndarray:
    """Pearson r along the last axis, batched: (..., n) x (..., n) -> (...) float64
    (leading axes broadcast; a NumPy scalar for two 1-D vectors).

    r = sum(xc yc) / sqrt(sum(xc^2) sum(yc^2)) with xc = x - mean(x), yc likewise,
    clipped to [-1, 1] (rounding can overshoot by an ulp).

    Constant-vector rule: a vector whose entries are all exactly equal (ptp == 0,
    the test ``scipy.stats.pearsonr`` makes) has no defined correlation, and a pair
    with such a vector gets ``constant``: "nan" (the default: undefined stays
    undefined) or "zero" (the original RSA code's rule). Constancy is tested on the
    values, not on the centred norm, because centring a constant such as 0.1 can
    leave rounding noise that would otherwise yield an arbitrary r.
    """
    fill = _constant_fill(constant)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    is_constant = (np.ptp(x, axis=-1) == 0) | (np.ptp(y, axis=-1) == 0)
    xc = x - x.mean(axis=-1, keepdims=True)
    yc = y - y.mean(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (xc * yc).sum(-1) / np.sqrt((xc * xc).sum(-1) * (yc * yc).sum(-1))
    return np.where(is_constant, fill, np.clip(r, -1.0, 1.0))[()]


def pearson_matrix(rows, *, constant: str = "nan") -> np.ndarray:
    """Pearson r between every pair of rows: (m, n) -> (m, m) float64.

    Computed as Z Z^T with each row centred and scaled to unit norm (one matrix
    product instead of m^2 calls of :func:`pearson`; equal to it within float64
    rounding), clipped to [-1, 1]. Same constant-vector rule as :func:`pearson`: a
    row with all entries equal gets ``constant`` ("nan" or "zero") against every
    row, itself included, so its diagonal entry is NaN or 0; every other diagonal
    entry is exactly 1.
    """
    fill = _constant_fill(constant)
    x = np.asarray(rows, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"pearson_matrix needs a 2-D (rows, values) array, got shape {x.shape}")
    centred = x - x.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(centred, axis=1, keepdims=True)
    is_constant = np.ptp(x, axis=1) == 0
    z = np.divide(centred, norm, out=np.zeros_like(centred), where=~is_constant[:, None])
    out = np.clip(z @ z.T, -1.0, 1.0)
    np.fill_diagonal(out, 1.0)
    out[is_constant, :] = fill
    out[:, is_constant] = fill
    return out


_MISSING_RULES = ("drop", "propagate")


def paired_ttest(a, b, *, missing: str = "drop") -> tuple[float, float, int]:
    """Two-sided paired t-test (``scipy.stats.ttest_rel``) of a against b.

    a, b: values of the same items under two conditions, any shape, flattened;
    unequal sizes raise ValueError (the original paired lists that could differ
    in length; docs/faithfulness.md, "Paired tests on paired data").
    t = mean(d) / (std(d, ddof=1) / sqrt(n)) with d = a - b, p from Student's t
    with n - 1 degrees of freedom. ``missing`` says what a non-finite value does:
    "drop" removes its pair from both samples; "propagate" keeps every pair, so
    any NaN makes t and p NaN. Returns (t, p, n) with n the pairs tested; fewer
    than 2 pairs give (nan, nan, n).
    """
    if missing not in _MISSING_RULES:
        raise ValueError(f"missing must be 'drop' or 'propagate', got {missing!r}")
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length ({a.size} vs {b.size}): a paired test needs equal "
                         "lengths; pair the values first")
    if missing == "drop":
        keep = np.isfinite(a) & np.isfinite(b)
        a, b = a[keep], b[keep]
    if a.size < 2:
        return float("nan"), float("nan"), int(a.size)
    from scipy import stats  # imported here: most entry points never test anything

    result = stats.ttest_rel(a, b)
    return float(result.statistic), float(result.pvalue), int(a.size)
