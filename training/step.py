"""One optimizer step and the state that resumes a run: what train.py's loop is
made of, shared by the tests and benchmarks so that none re-writes the step.

``cfg`` below is a ``training.config.TrainConfig`` or any object with the fields used:
``precision`` ("fp32" | "bf16"), ``grad_clip``, ``lr``, ``lr_half_life`` and,
for ``validate``, ``batch_size`` and ``seed``. Below the step: the loss history's
layout and plot, stop requests by signal, resuming, the run folder's writer
(RunWriter) and the divergence message, and the few collective operations of a
data-parallel run.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import signal
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from training.run_dir import NotAResumeState, RunDir, read_state_file, write_state_file
from training.config import TrainConfig, writing
from utils import FileLock, LockHeld, UserInputError, atomic_path, resolve_device

VALIDATION_SEED_OFFSET = 1_000_003  # validation's noise stream, apart from the training streams of nearby seeds


def learning_rate(cfg, global_step: int) -> float:
    """The learning rate of optimizer step ``global_step`` (counted from 0):
    ``max(lr_floor, lr * 0.5 ** (global_step / lr_half_life))``, or ``lr`` when
    lr_half_life is 0 (the paper). A function of the step alone, so a resumed run takes
    the same steps. Configs written before lr_floor existed read as no floor."""
    if not cfg.lr_half_life:
        return cfg.lr
    return max(getattr(cfg, "lr_floor", 0.0), cfg.lr * 0.5 ** (global_step / cfg.lr_half_life))


def uses_autocast(model: nn.Module, cfg) -> bool:
    """bf16 for a model without its own mixed-precision path (the feedforward
    controls) is torch.autocast around forward and loss."""
    return cfg.precision == "bf16" and not model.own_mixed_precision


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: torch.Tensor,
               generator: torch.Generator | None, cfg, global_step: int, *, net: nn.Module | None = None,
               rank: int = 0, world: int = 1) -> torch.Tensor:
    """One optimizer step on ``batch``, clips of shape (B, T, P) on the model's device.

    1. noise: ``model.preprocess_data((batch, batch), generator)`` puts one noise
       sample on input and target, drawn for the whole batch, so every process
       draws what one process would; ``generator=None`` trains on the clean batch
       (the model tests, which compare against a noiseless reference);
    2. this process keeps rows ``rank*B//world : (rank+1)*B//world`` (all when world is 1);
    3. the learning rate ``learning_rate(cfg, global_step)`` goes into every parameter group;
    4. forward through ``net`` (the DistributedDataParallel wrapper, default ``model``)
       and ``model.get_loss``, under bf16 autocast when ``uses_autocast``;
    5. backward of ``loss * share * world``, share = this process's rows / B: DDP
       averages gradients over processes, so this makes them the whole batch's mean
       even when the slices are uneven;
    6. ``clip_grad_value_`` to +-cfg.grad_clip, then ``model.mask_gradients()``
       (clip before masking, as the original), then ``optimizer.step()``.

    Returns the detached ``[loss, *components] * share`` (1-D, on the device): the
    sum over processes is the batch's mean loss, and nothing is synchronised with
    the host.
    """
    data = noisy_pair(model, batch, generator)
    n = batch.shape[0]
    mine = slice(rank * n // world, (rank + 1) * n // world)
    share = (mine.stop - mine.start) / n
    x, y = (t[mine] for t in data)
    set_learning_rate(optimizer, learning_rate(cfg, global_step))
    return update_weights(model, optimizer, x, y, cfg, net=net, loss_scale=share * world) * share


def noisy_pair(model: nn.Module, batch: torch.Tensor, generator: torch.Generator | None):
    """(input, target) for a step on ``batch``: one noise sample on both
    (``model.preprocess_data``), or the clean batch twice when ``generator`` is None."""
    return (batch, batch) if generator is None else model.preprocess_data((batch, batch), generator)


def update_weights(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, cfg, *,
                   net: nn.Module | None = None, loss_scale: float = 1.0, autocast_cache: bool = True) -> torch.Tensor:
    """Steps 4-6 of ``train_step`` on noisy inputs ``x`` and targets ``y``, at the
    learning rate already in the optimizer; returns the detached, unscaled
    [loss, *components]. Free of host synchronisation, so a CUDA graph can capture
    it (``training.cuda_graph``; there autocast's weight cache must be off)."""
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=uses_autocast(model, cfg),
                        cache_enabled=autocast_cache):
        loss, components = model.get_loss((model if net is None else net)(x), (x, y))
    (loss * loss_scale).backward()
    torch.nn.utils.clip_grad_value_(model.parameters(), cfg.grad_clip)
    model.mask_gradients()
    optimizer.step()
    return torch.stack([loss.detach(), *components.values()])


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Every parameter group's lr <- ``lr``: in place when it is a tensor (a graphed
    step's Adam reads it from the device at every replay)."""
    for group in optimizer.param_groups:
        if torch.is_tensor(group["lr"]):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


def make_optimizer(model: nn.Module, cfg, device: torch.device, graphed: bool = False) -> torch.optim.Optimizer:
    """Adam over the fp32 parameters (in every precision), as the original. ``graphed``
    (train.py --cuda-graph) makes it capturable, with its lr a device tensor, so a CUDA
    graph can replay its step."""
    if graphed:
        return torch.optim.Adam(model.parameters(), lr=torch.tensor(cfg.lr, device=device), capturable=True)
    return torch.optim.Adam(model.parameters(), lr=cfg.lr)


def validation_generator(cfg, device: torch.device) -> torch.Generator:
    """Validation's own noise generator, seeded afresh for every pass: each pass draws
    the same noise, so validation losses differ only by the weights, and validation
    never advances the training noise, so a resume that changes --validate-every (or
    any other allowed override) ends with exactly the weights of an uninterrupted run."""
    return torch.Generator(device=device).manual_seed(cfg.seed + VALIDATION_SEED_OFFSET)


@torch.no_grad()
def validate(model: nn.Module, source, cfg, device: torch.device, generator: torch.Generator) -> dict:
    """Mean loss and components over the clips of ``source`` (a data.dataset.ClipSource),
    in batches of cfg.batch_size, noisy as in training, with noise from ``generator``
    (train.py passes ``validation_generator``): {"loss": float, component: float ...}."""
    sums, n = None, 0
    for start in range(0, len(source), cfg.batch_size):
        x = source.batch(torch.arange(start, min(start + cfg.batch_size, len(source))), device)
        xn, yn = model.preprocess_data((x, x), generator)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=uses_autocast(model, cfg)):
            loss, comps = model.get_loss(model(xn), (xn, yn))
        values = torch.stack([loss.detach(), *comps.values()])
        sums = values if sums is None else sums + values
        n += 1
    return dict(zip(["loss", *comps.keys()], (sums / n).tolist()))


class StateDoesNotFitModel(ValueError):
    """A state file's weights have other names or shapes than the model its run's
    config.json describes (the config was edited or replaced)."""


class NoiseStateOnOtherDevice(ValueError):
    """A state file's noise-generator state is of another device kind (CPU or CUDA)
    than the generator it should go into: the noise stream cannot continue."""


@dataclasses.dataclass
class TrainState:
    """Where a run stands, with the live objects it trains: everything a resumed run
    needs to take exactly the steps an uninterrupted one takes.

    ``epoch`` is the epoch in progress (from 1), ``step`` the batches of it already
    taken, ``global_step`` all optimizer steps so far, ``permutation`` the epoch's
    clip order (None until drawn), ``sums`` the running [loss, *components] sums of
    the epoch (None before its first step). ``save`` writes, and ``load`` reads, the
    dict the state files have always held::

        {"model", "optimizer", "history", "epoch", "step", "global_step",
         "permutation", "sums", "rng": {"shuffle", "noise", "torch"}}

    with torch's global RNG state as ``rng["torch"]``.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    shuffle_generator: torch.Generator
    noise_generator: torch.Generator
    history: dict
    epoch: int = 1
    step: int = 0
    global_step: int = 0
    permutation: torch.Tensor | None = None
    sums: torch.Tensor | None = None

    def as_dict(self, sums: torch.Tensor | None = None) -> dict:
        """The state file's dict; ``sums`` replaces this process's own sums (train.py
        passes their total over processes), None keeps them."""
        sums = self.sums if sums is None else sums
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "history": self.history,
                "epoch": self.epoch, "step": self.step, "global_step": self.global_step,
                "permutation": self.permutation, "sums": None if sums is None else sums.cpu(),
                "rng": {"shuffle": self.shuffle_generator.get_state(), "noise": self.noise_generator.get_state().cpu(),
                        "torch": torch.get_rng_state()}}

    def save(self, path: Path, sums: torch.Tensor | None = None) -> None:
        """Write ``as_dict(sums)`` to ``path`` atomically, with its position sidecar
        (training.run_dir.write_state_file)."""
        write_state_file(path, self.as_dict(sums))

    def load(self, path: Path) -> "TrainState":
        """Restore everything from the state file ``path`` into this state's objects
        (and torch's global RNG); returns self. ValueError if the file is unreadable;
        NoiseStateOnOtherDevice (a ValueError) if its noise generator ran on another
        kind of device than this one's (CPU and CUDA generators keep states of
        different kinds); StateDoesNotFitModel (a ValueError) if its weights do not
        fit this state's model."""
        saved = read_state_file(path)
        _check_fits(saved["model"], self.model, path)
        self.model.load_state_dict(saved["model"])
        for group, live in zip(saved["optimizer"]["param_groups"], self.optimizer.param_groups):
            # this run's Adam kind, whichever saved the state (--cuda-graph may change on resume);
            # the lr is rewritten before every step
            group["capturable"], group["lr"] = live.get("capturable", False), live["lr"]
        self.optimizer.load_state_dict(saved["optimizer"])
        self.shuffle_generator.set_state(saved["rng"]["shuffle"])
        try:
            self.noise_generator.set_state(saved["rng"]["noise"])
        except RuntimeError as err:
            raise NoiseStateOnOtherDevice(f"{Path(path).name} was saved on another kind of device than "
                                          f"{self.noise_generator.device}") from err
        torch.set_rng_state(saved["rng"]["torch"])
        self.history, self.epoch, self.step = saved["history"], saved["epoch"], saved["step"]
        self.global_step, self.permutation = saved["global_step"], saved["permutation"]
        self.sums = None if saved["sums"] is None else saved["sums"].to(self.noise_generator.device)
        return self


def _check_fits(saved: dict, model: nn.Module, path: Path) -> None:
    """StateDoesNotFitModel naming the first tensor whose name or shape differs."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in saved.items()}
    for name in sorted(expected.keys() | found.keys()):
        if expected.get(name) != found.get(name):
            held = f"{name} of shape {found[name]}" if name in found else f"no {name}"
            wanted = f"has shape {expected[name]}" if name in expected else "has no such tensor"
            raise StateDoesNotFitModel(f"{Path(path).name} holds {held}, but the model its config.json describes "
                                       f"{wanted}")


# -------------------------------------------------------------------------------------------
# Stop requests: a signal ends the loop at the next step, with a resumable state
# -------------------------------------------------------------------------------------------
class StoppedBySignal(Exception):
    """Training saved a resumable state on SIGINT or SIGTERM and stopped; the
    command exits with 128 + ``signum``, as the shell reports a killed process,
    so ``train && next-step`` does not go on with unfinished weights."""

    def __init__(self, signum: int, run_dir: Path):
        super().__init__(f"stopped by signal {signum}; resume with --path {run_dir}")
        self.signum, self.run_dir = signum, run_dir


EXIT_CUT_SHORT = 3  # the exit status of a run that a limit (--max-minutes, --stop-after-steps) ended before its last epoch


class StopNow(KeyboardInterrupt):
    """A second Ctrl-C: training stops at once, without saving; the message (one line,
    ``utils.run_cli`` prints it) names the last state saved before."""


def stop_now_message(run_dirs, resume_hint: str) -> str:
    """'stopping now; the last saved state is RUN/3-epochs_state.pt: resume with
    --path RUN', or for several run folders (a batched sweep) where their states are,
    or that none was saved yet."""
    saved = []
    for run_dir in run_dirs:
        with contextlib.suppress(OSError, ValueError):  # no state yet, or one unreadable: not named
            saved.append(RunDir(run_dir).latest_state())
    if not run_dirs:
        return "stopping now"
    if not saved:
        what = f"{run_dirs[0]}" if len(run_dirs) == 1 else f"the sweep's {len(run_dirs)} runs"
        return f"stopping now; no state of {what} was saved yet"
    if len(run_dirs) == 1:
        return f"stopping now; the last saved state is {saved[0]}: resume with {resume_hint}"
    return (f"stopping now; the last saved states are in the sweep's run folders ({len(saved)} of {len(run_dirs)} "
            f"have one): resume with {resume_hint}")


class StopRequest:
    """SIGINT/SIGTERM/SIGUSR2 ask the loop to save a resumable checkpoint and stop
    after the current step; a second Ctrl-C stops at once: StopNow, whose one-line
    message names the last state saved in ``run_dirs`` and how to resume
    (``resume_hint``, e.g. '--path RUN'). SIGUSR2 is SLURM's warning before a time
    limit or pre-emption: once the state is saved it is passed on to the handler it
    displaced (submitit's, which requeues the job). Once the loop has saved and left
    (``saved`` set to the run folder), SIGINT and SIGTERM raise StoppedBySignal on
    leaving the block."""

    def __init__(self, run_dirs=(), resume_hint: str = ""):
        self.requested, self.usr2, self.signum, self.saved = False, False, None, None
        self.run_dirs, self.resume_hint = list(run_dirs), resume_hint

    def __enter__(self):
        signals = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)
        self._old = {s: signal.signal(s, self._handle) for s in signals}
        return self

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise StopNow(stop_now_message(self.run_dirs, self.resume_hint))
        self.requested = True
        self.usr2 |= signum == signal.SIGUSR2
        self.signum = self.signum or signum

    def __exit__(self, exc_type, *exc):
        for s, handler in self._old.items():
            signal.signal(s, handler)
        if self.usr2 and exc_type is None and callable(self._old[signal.SIGUSR2]):
            self._old[signal.SIGUSR2](signal.SIGUSR2, None)
        if exc_type is None and self.saved is not None and self.signum in (signal.SIGINT, signal.SIGTERM):
            raise StoppedBySignal(self.signum, self.saved)


# -------------------------------------------------------------------------------------------
# The loss history: {"train": {"epoch": [...], "loss": [...], "L1": [...], "mse0": [...] ...},
# "validation": {same keys}} and, with the receptive-field monitor, "rf_monitor"
# -------------------------------------------------------------------------------------------
def new_history(components) -> dict:
    return {split: {"epoch": [], "loss": [], **{c: [] for c in components}} for split in ("train", "validation")}


def append_row(history_split: dict, epoch: int, means: dict) -> None:
    history_split["epoch"].append(epoch)
    for k, v in means.items():
        history_split[k].append(v)


def format_means(means: dict) -> str:
    return " ".join(f"{k} {v:.6g}" for k, v in means.items())


def save_loss_curve(run_dir: Path, history: dict) -> None:
    """One log-scale panel per loss component (train and validation against epoch),
    then, if the history has monitor rows, their panels (``plot_monitor``); a PNG
    written atomically to the run folder's loss_curve.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in history["train"] if k != "epoch"]
    monitor = history.get("rf_monitor") or {"epoch": []}
    panels = monitor_panels(monitor) if monitor["epoch"] else []
    n_panels = len(keys) + len(panels)
    fig, axes = plt.subplots(1, n_panels, figsize=(3.2 * n_panels, 3), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for split in ("train", "validation"):
            if history[split]["epoch"]:
                ax.plot(history[split]["epoch"], history[split][key], label=split)
        ax.set_yscale("log")
        ax.set_title(key)
        ax.set_xlabel("epoch")
    if history["train"]["epoch"]:
        axes[0][0].legend(frameon=False)
    plot_monitor(axes[0][len(keys):], monitor, panels)
    fig.tight_layout()
    with atomic_path(RunDir(run_dir).curve_path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


# The monitor's panels: (title, y scale, y limits, lines); a line is (key, style, label), and a key
# ending in "*" stands for every key with that prefix (one per group or block). A panel shows only
# the keys a history holds, so older histories (fewer keys) plot too.
MONITOR_PANELS = (
    ("group-1 receptive fields", "linear", (0, 1),
     (("fraction_original_gabor", "o-", "Gabor-like (original's test)"),
      ("median_orientation_index", "s-", "median orientation index"),
      ("f1f0_above_1", "^-", "F1/F0 > 1 (simple)"),
      ("fraction_strict_gabor", ":", "strict Gabor (diagnostic)"))),
    ("clean next-frame MSE", "linear", None,
     (("clean_mse", "o-", "model"), ("copy_last_frame_mse", "--", "copy last frame"))),
    ("feedback removed / with", "linear", None,
     (("feedback_peak_ratio", "o-", "G1 peak grating response"),
      ("clean_mse_no_feedback_ratio", "s-", "clean MSE"))),
    ("units responsive to white noise", "linear", None, (("responsive_G*", "o-", None),)),
    ("mean |w| of W_hh blocks", "log", None, (("w_*", "-", None),)),
)


def monitor_panels(rows: dict) -> list[tuple]:
    """The ``MONITOR_PANELS`` that ``rows`` (a monitor history: {"epoch": [...], key:
    [...]}) has data for, each with its lines expanded to the keys present."""
    panels = []
    for title, scale, limits, lines in MONITOR_PANELS:
        present = []
        for key, style, label in lines:
            keys = sorted(k for k in rows if k.startswith(key[:-1])) if key.endswith("*") else [key]
            present += [(k, style, label or k) for k in keys
                        if any(v is not None and math.isfinite(v) for v in rows.get(k, []))]
        if present:
            panels.append((title, scale, limits, present))
    return panels


def plot_monitor(axes, rows: dict, panels: list[tuple]) -> None:
    """Draw ``panels`` (``monitor_panels(rows)``) against epoch, one per axis; missing
    values (None: a row that did not measure the key) are gaps."""
    for ax, (title, scale, limits, lines) in zip(axes, panels):
        for key, style, label in lines:
            values = [float("nan") if v is None else v for v in rows[key]]
            ax.plot(rows["epoch"], values, style, label=label)
        if title.startswith("feedback"):
            ax.axhline(1.0, color="grey", lw=0.5)
        ax.set_yscale(scale)
        if limits:
            ax.set_ylim(*limits)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch")
        ax.legend(frameon=False, fontsize=6)


def append_monitor_row(rows: dict, epoch: int, step: int, row: dict) -> None:
    """Append one monitor ``row`` (key -> float) at ``epoch``/``step`` to ``rows``
    ({"epoch": [...], "step": [...], key: [...]}), in place. A key new to ``rows``
    is filled with None for the earlier rows, a key the row lacks gets None: a
    history can hold rows of different monitor versions (or clip counts, which each
    row records as ``rwa_clips``)."""
    rows.setdefault("epoch", [])
    rows.setdefault("step", [None] * len(rows["epoch"]))
    for key in row:
        rows.setdefault(key, [None] * len(rows["epoch"]))
    rows["epoch"].append(epoch)
    rows["step"].append(step)
    for key, values in rows.items():
        if key not in ("epoch", "step"):
            values.append(row.get(key))


# -------------------------------------------------------------------------------------------
# Resuming, what the loop writes (the log, checkpoints) and the divergence message:
# shared by train.py and training/batched.py
# -------------------------------------------------------------------------------------------
class TrainingDiverged(UserInputError):
    """An epoch's loss was NaN or inf: nothing of that epoch is saved."""


def resumed_state(state: TrainState, path: Path, rank: int) -> TrainState:
    """``state`` restored from the state file ``path``, errors as one line; on a
    process other than 0 (``rank``) the epoch's loss sums restart at 0."""
    try:
        state.load(path)
    except NoiseStateOnOtherDevice as err:
        raise UserInputError(f"{err}: resume with the --device it trained on (its noise stream cannot move "
                             "between them)") from err
    except StateDoesNotFitModel as err:
        raise UserInputError(f"{err}: restore config.json from the metadata of a weights file in {Path(path).parent} "
                             "(or resume the run folder this state belongs to)") from err
    except NotAResumeState as err:
        raise UserInputError(f"{err}: give the run folder (its latest state) or an N-epochs_state.pt in "
                             "it") from err
    except ValueError as err:
        raise UserInputError(f"{err}: use an earlier checkpoint") from err
    if state.sums is not None and rank > 0:
        state.sums = torch.zeros_like(state.sums)  # the saved sums are the total over all processes: count it once
    return state


# A monitor (built above this layer: train.py's ``receptive_field_monitor``): model, the run's
# clips and its config -> (row of floats, log fragment). The loop only calls it and records its rows.
Monitor = Callable[[nn.Module, np.ndarray, TrainConfig], tuple[dict, str]]


def run_monitor(monitor: Monitor, model, clips, cfg: TrainConfig, history: dict, epoch: int,
                global_step: int) -> str:
    """Append the row ``monitor`` measures to ``history["rf_monitor"]`` and return its
    log fragment. A monitor draws from its own generators: the training trajectory is
    the same with it on or off."""
    row, line = monitor(model, clips, cfg)
    append_monitor_row(history.setdefault("rf_monitor", {"epoch": [], "step": []}), epoch, global_step, row)
    return line


def divergence(cfg: TrainConfig, run_dir: Path, epoch: int, means: dict, val_means: dict) -> str | None:
    """None if every mean loss (and component) of this epoch is finite, else the one-line
    message for TrainingDiverged. Nothing of the epoch has been saved at this point, so
    the run folder's latest checkpoint stays the last finite one; the message names it."""
    bad = [(f"{split} {k}", v) for split, values in (("train", means), ("validation", val_means))
           for k, v in values.items() if not math.isfinite(v)]
    if not bad:
        return None
    saved = list(RunDir(run_dir).weights_by_epoch().values())
    latest = f"the latest checkpoint, {saved[-1].name}, is finite" if saved else "no checkpoint was written"
    return (f"training diverged in epoch {epoch} ({bad[0][0]} is {bad[0][1]}); {latest}: try a lower --lr "
            f"(now {cfg.lr:g}), a smaller --L1 ({cfg.L1:g}) or --noise-std ({cfg.noise_std:g}), "
            "or clips scaled to unit variance")


class RunWriter:
    """What a run writes into its folder (``run``, a RunDir; ``config``, its config.json),
    from process 0 only; a failed write is one line (``writing``). train.py holds one,
    a batched sweep (training/batched.py) one per run."""

    def __init__(self, run: RunDir, config: dict, rank: int, control):
        self.run, self.config, self.rank, self.control = run, config, rank, control

    def writing(self, what="write to"):
        return writing(self.run.path, what, "free space or fix the folder (the files already there are intact), then "
                                            f"resume with --path {self.run.path}")

    @contextlib.contextmanager
    def locked(self):
        """Hold the run folder's lock (``RunDir.lock_path``) for the block, on process 0:
        one training process per run folder. A folder another process trains is a one-line
        error naming it; a lock left by a killed process is taken over, with a note."""
        lock, stale, refusal = FileLock(self.run.lock_path), None, None
        if self.rank == 0:
            try:
                with self.writing("lock"):
                    stale = lock.acquire()
            except LockHeld as err:
                refusal = UserInputError(f"{self.run.path} is being trained by {err.holder}: wait for it to finish "
                                         f"(or stop it), then resume with --path {self.run.path}")
            except UserInputError as err:
                refusal = err
        if any_rank(refusal is not None, self.control):  # every process stops, not only the first
            raise refusal or UserInputError(f"the first process could not lock {self.run.path}: see its message")
        try:
            if stale is not None:
                self.log(f"took over the lock left by {stale} (that process no longer holds it)", stderr=True)
            yield
        finally:
            lock.release()

    def start(self) -> None:
        """Create the folder and write config.json (once per training process)."""
        if self.rank == 0:
            with self.writing():
                self.run.write_config(self.config)

    def log(self, message: str, stderr: bool = False) -> None:
        """Append ``message`` to the run's own log (and, if asked, print it)."""
        if self.rank > 0:
            return
        if stderr:
            print(message, file=sys.stderr)
        with self.writing("append to the log in"):
            self.run.append_log(message)

    def checkpoint(self, state: TrainState, epoch: int | None) -> None:
        """Weights, state and history of ``epoch``, or with ``epoch=None`` the interrupted
        state. Every process takes part: the weights must agree, the loss sums add up."""
        with torch.no_grad():  # what every forward does first (idempotent): the saved weights are
            state.model.project_weights_()  # then the same whether validation ran or not
        total = state.sums
        if self.control is not None:
            check_ranks_agree(state.model, self.control)
            if state.sums is not None:
                total = state.sums.clone()
                dist.all_reduce(total)
        if self.rank > 0:
            return
        with self.writing("write a checkpoint to"):
            if epoch is not None:
                self.run.save_weights(state.model, self.config, epoch)
            state.save(self.run.interrupted_state_path if epoch is None else self.run.state_path(epoch), sums=total)
            self.run.write_history(state.history)
            save_loss_curve(self.run.path, state.history)


# -------------------------------------------------------------------------------------------
# Several processes (torchrun): one per GPU, each with a slice of every batch
# -------------------------------------------------------------------------------------------
def init_distributed(device_name: str):
    """(rank, world size, device, control group) of this process.

    Without torchrun (WORLD_SIZE unset or 1) nothing is set up: (0, 1, device, None).
    Otherwise the process joins the group: NCCL with the GPU of its LOCAL_RANK, or
    gloo on the CPU. The control group (gloo) carries the small CPU-side agreements
    (the run folder, stop requests) without waiting for the GPU.
    """
    device = resolve_device(device_name)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, device, None
    if device.type == "cuda":  # modulo: SLURM may show each task only its own GPU
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    control = dist.new_group(backend="gloo") if device.type == "cuda" else dist.group.WORLD
    return dist.get_rank(), world, device, control


def any_rank(flag: bool, control) -> bool:
    """True on every process if it is True on one (so all stop at the same step);
    ``flag`` itself without a control group (one process)."""
    if control is None:
        return flag
    votes = torch.tensor([float(flag)])
    dist.all_reduce(votes, op=dist.ReduceOp.MAX, group=control)
    return bool(votes.item())


def check_ranks_agree(model: nn.Module, control) -> None:
    """Every process must hold the same weights (DDP keeps them so, and the masks and
    Dale's-law projection are deterministic); compared by per-tensor sums."""
    sums = torch.stack([p.detach().double().sum() for p in model.parameters()]).cpu()
    low, high = sums.clone(), sums.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN, group=control)
    dist.all_reduce(high, op=dist.ReduceOp.MAX, group=control)
    if not torch.equal(low, high):
        raise RuntimeError("the training processes hold different weights; the run cannot continue")
