"""The training loop, written once: a single run (train.py) and a batched sweep of K
runs (training/batched.py) both train through ``run_epochs``.

``run_epochs`` holds the control flow: the run folders' locks and first log lines,
the untrained control (--epochs 0), epochs of steps in each run's own clip order, a
stop request (a signal, or --stop-after-steps) that saves a resumable state after
the current step, the time limit (--max-minutes) that ends the runs between epochs,
divergence, validation, the receptive-field monitor, the log and the checkpoint
cadence. What differs is a ``Trainer``: how one step is taken (one model, maybe
data-parallel or as a CUDA graph: ``OneRun``; or a stack of K models:
``training.batched.StackedRuns``) and the words it says when runs are cut short or
diverge.

Below the loop: the run folder's writer (RunWriter), resuming a state, the
divergence message, stop requests by signal, and the few collective operations of
a data-parallel run.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from data.dataset import ClipSource
from training import ResumeError, TrainingSetupError
from training.config import TrainConfig, cut_short_note, resume_command, slow_bf16_warning, writing
from training.run_dir import NotAResumeState, RunDir
from training.step import (NoiseStateOnOtherDevice, StateDoesNotFitModel, TrainState, append_monitor_row, append_row,
                           format_means, loss_components, save_loss_curve, validate, validation_generator)
from utils import FileLock, LockHeld, resolve_device


@dataclasses.dataclass
class Run:
    """One run of the loop: its config, its resumable state (whose model the loop
    validates, measures and saves), the writer of its folder, and the line its log
    starts this session with."""

    cfg: TrainConfig
    state: TrainState
    out: RunWriter
    opening: str


class Trainer(Protocol):
    """What differs between a single run and a batched sweep; ``run_epochs`` does the
    rest. The ``runs`` share every setting that steers the loop (--epochs,
    --batch-size, the cadences and the limits), and stand at one position."""

    runs: list[Run]
    module: nn.Module  # what trains: put in training mode at each epoch's start
    resume_hint: str  # the flags that resume every run, e.g. "--path RUN"

    def step(self, batches: list[torch.Tensor], global_step: int) -> torch.Tensor:
        """One optimizer step of every run, run k on its clips ``batches[k]`` (B, T, P);
        the detached (K, 1 + components) [loss, *components] of each, on the device
        (no host synchronisation)."""

    def sync(self) -> None:
        """Each run's model holds its trained weights, projected as a forward pass sees them."""

    def checkpoint(self, epoch: int | None) -> None:
        """Every run's checkpoint of ``epoch`` (None: the interrupted state) from its state."""

    def stopped(self) -> None:
        """Say that a stop request saved a resumable state, and how to continue."""

    def out_of_time(self, completed: int) -> None:
        """Say that the time limit ended the runs after epoch ``completed``, and how to continue."""

    def diverged(self, k: int, message: str) -> str:
        """TrainingDiverged's message when run k diverged (``message``: ``divergence``'s)."""


class OneRun:
    """The Trainer of one run (train.py). ``take_step(batch, generator, global_step)``
    trains its model and returns the detached [loss, *components] (``train_step``,
    maybe through DistributedDataParallel, or a ``GraphedTrainStep``); ``module`` is
    the model or its DistributedDataParallel wrapper."""

    def __init__(self, run: Run, take_step: Callable, module: nn.Module):
        self.runs, self.take_step, self.module = [run], take_step, module
        self.resume_hint = f"--path {run.out.run.path}"

    def step(self, batches: list[torch.Tensor], global_step: int) -> torch.Tensor:
        (batch,) = batches
        return self.take_step(batch, self.runs[0].state.noise_generator, global_step)[None]

    def sync(self) -> None:
        with torch.no_grad():
            self.runs[0].state.model.project_weights_()

    def checkpoint(self, epoch: int | None) -> None:
        self.runs[0].out.checkpoint(self.runs[0].state, epoch)

    def stopped(self) -> None:
        self._cut_short(f"stop request: saved a resumable state in {self.runs[0].out.run.path}")

    def out_of_time(self, completed: int) -> None:
        self._cut_short(f"time limit ({self.runs[0].cfg.max_minutes:g} min) reached")

    def _cut_short(self, reason: str) -> None:
        out = self.runs[0].out
        if out.rank == 0:  # the note reads the state that process 0 wrote
            out.log(f"{reason}; {cut_short_note(out.run.path) or 'continue with: ' + resume_command(out.run.path)}",
                    stderr=True)

    def diverged(self, k: int, message: str) -> str:
        return message


# -------------------------------------------------------------------------------------------
# The loop
# -------------------------------------------------------------------------------------------
def run_epochs(trainer: Trainer, train_src: ClipSource, val_src: ClipSource, clips: np.ndarray,
               device: torch.device, *, resumed: bool, monitor: Monitor | None = None, progress: bool = True) -> None:
    """Train ``trainer.runs`` from the position their states hold to --epochs, writing
    each run's folder. ``resumed``: their states were read from state files. ``clips``
    (N, T, P) are the dataset's clips, for ``monitor`` (train.py's
    ``receptive_field_monitor``; None: no monitor); ``progress`` shows a progress bar
    on a terminal, or else one stderr line per epoch of a single run.

    Returns when the runs are finished, or cut short by a limit with a resumable
    state saved (the exit status then comes from ``cut_short_note``). Raises
    TrainingDiverged at the first non-finite mean loss (nothing of that epoch is
    saved) and, on leaving after SIGINT or SIGTERM, StoppedBySignal. Under torchrun
    (the writers' ``control`` group) every process runs the loop, and every
    decision to stop is taken by all of them at the same step (``any_rank``)."""
    runs, cfg = trainer.runs, trainer.runs[0].cfg
    rank, control = runs[0].out.rank, runs[0].out.control  # a sweep is one process: 0 and None
    position = runs[0].state
    epoch, step, global_step = position.epoch, position.step, position.global_step
    sums = None if position.sums is None else torch.stack([run.state.sums for run in runs])  # (K, columns)
    with contextlib.ExitStack() as locks:
        for run in runs:
            locks.enter_context(run.out.locked())  # every run folder, before any is written
        if resumed and epoch > cfg.epochs:  # config.json keeps the settings the runs trained with
            say(runs, f"nothing to train: the run already has {epoch - 1} complete epochs and --epochs is "
                      f"{cfg.epochs}; give a larger --epochs to continue", stderr=True)
            return
        for run in runs:
            run.out.start()
        warning = slow_bf16_warning(cfg, device)
        if warning:
            say(runs, warning, stderr=True)
        for run in runs:
            run.out.log(run.opening)
        if cfg.epochs == 0 and not resumed:  # the untrained control, saved as a normal checkpoint
            trainer.sync()
            for run in runs:
                run.out.save_untrained(run.state)
            say(runs, "saved the untrained model (--epochs 0)")
            return

        columns = ["loss", *loss_components(cfg)]
        n_batches = math.ceil(len(train_src) / cfg.batch_size)
        started, steps_here = time.monotonic(), 0
        bar = tqdm(total=max(cfg.epochs - epoch + 1, 0) * n_batches, unit="step", dynamic_ncols=True,
                   desc=runs[0].out.run.name if len(runs) == 1 else f"{len(runs)} runs batched",
                   disable=None if progress and rank == 0 else True)
        # no bar (stderr is not a terminal): one line per epoch, for a single run (a sweep's K
        # lines would not say whose they are: they go to the runs' logs only)
        epoch_lines = progress and rank == 0 and bar.disable and len(runs) == 1

        def save(tag_epoch):
            for k, run in enumerate(runs):
                run.state.epoch, run.state.step, run.state.global_step = epoch, step, global_step
                run.state.sums = None if sums is None else sums[k]
            trainer.checkpoint(tag_epoch)

        def stop_if_diverged(k, means, val_means):
            message = divergence(runs[k].cfg, runs[k].out.run.path, epoch, means, val_means)
            if message is not None:
                bar.close()
                runs[k].out.log(message)
                raise TrainingDiverged(trainer.diverged(k, message))

        with StopRequest([run.out.run.path for run in runs], trainer.resume_hint) as stop:
            while epoch <= cfg.epochs:
                for run in runs:
                    if run.state.permutation is None:
                        run.state.permutation = torch.randperm(len(train_src), generator=run.state.shuffle_generator)
                trainer.module.train()
                while step < n_batches:
                    rows = slice(step * cfg.batch_size, (step + 1) * cfg.batch_size)
                    values = trainer.step([train_src.batch(run.state.permutation[rows], device) for run in runs],
                                          global_step)
                    sums = values if sums is None else sums + values  # on the device: no sync
                    step, global_step, steps_here = step + 1, global_step + 1, steps_here + 1
                    bar.update()
                    if any_rank(stop.requested or (cfg.stop_after_steps and steps_here >= cfg.stop_after_steps),
                                control):  # every process stops at the same step
                        if any_rank(not bool(torch.isfinite(sums).all()), control):  # never save a diverged state
                            if control is not None:  # sums are this process's share until the epoch's all-reduce
                                dist.all_reduce(sums)  # every process then sees the non-finite total and stops
                            for k, means in enumerate(mean_rows(sums, step, columns)):
                                stop_if_diverged(k, means, {})
                        save(None)
                        bar.close()
                        trainer.stopped()
                        stop.saved = runs[0].out.run.path
                        return

                if control is not None:
                    dist.all_reduce(sums)  # each process summed its share of every batch
                all_means = mean_rows(sums, n_batches, columns)  # the one host sync per epoch
                validating = epoch % cfg.validate_every == 0  # on every process: all hold the same weights
                monitoring = (monitor is not None and cfg.rf_monitor_every and epoch % cfg.rf_monitor_every == 0
                              and rank == 0)
                if validating or monitoring:
                    trainer.sync()
                for k, (run, means) in enumerate(zip(runs, all_means)):
                    append_row(run.state.history["train"], epoch, means)
                    line, val_means = f"epoch {epoch}/{cfg.epochs} train " + format_means(means), {}
                    if validating:
                        run.state.model.eval()
                        val_means = validate(run.state.model, val_src, run.cfg, device,
                                             validation_generator(run.cfg, device))
                        append_row(run.state.history["validation"], epoch, val_means)
                        line += " | validation " + format_means(val_means)
                    if monitoring:
                        line += " | " + run_monitor(monitor, run.state.model, clips, run.cfg, run.state.history,
                                                    epoch, global_step)
                    run.out.log(f"{line} | {time.monotonic() - started:.1f} s since this process started",
                                stderr=epoch_lines)
                    stop_if_diverged(k, means, val_means)
                best = min(all_means, key=lambda means: means["loss"])
                bar.set_postfix(epoch=epoch, loss=f"{best['loss']:.4f}" + (" (best)" if len(runs) > 1 else ""),
                                mse0=f"{best['mse0']:.4f}")
                completed, epoch, step, sums = epoch, epoch + 1, 0, None  # the runs resume at the next epoch's start
                for run in runs:
                    run.state.permutation = None
                # the time limit ends the runs only between epochs, so it leaves a normal checkpoint
                out_of_time = any_rank(cfg.max_minutes > 0 and time.monotonic() - started > 60 * cfg.max_minutes,
                                       control)
                if completed % cfg.checkpoint_every == 0 or completed == cfg.epochs or out_of_time:
                    save(completed)
                if out_of_time and epoch <= cfg.epochs:
                    bar.close()
                    trainer.out_of_time(completed)
                    return
        bar.close()
        say(runs, f"finished epoch {epoch - 1}")


def say(runs: list[Run], message: str, stderr: bool = False) -> None:
    """``message`` into every run's log and, if ``stderr``, once to stderr."""
    for k, run in enumerate(runs):
        run.out.log(message, stderr=stderr and k == 0)


def mean_rows(sums: torch.Tensor, n_steps: int, columns: list[str]) -> list[dict]:
    """Each run's mean losses, {column: float}, from its row of the (K, columns) ``sums``
    over ``n_steps`` steps (one host sync)."""
    return [dict(zip(columns, row)) for row in (sums / n_steps).tolist()]


# -------------------------------------------------------------------------------------------
# Resuming, what the loop writes (the log, checkpoints), the monitor and the divergence message
# -------------------------------------------------------------------------------------------
class TrainingDiverged(TrainingSetupError):
    """An epoch's loss was NaN or inf: nothing of that epoch is saved. A setup error: the
    settings (learning rate, L1, noise) let the loss blow up on these clips."""


def resumed_state(state: TrainState, path: Path, rank: int) -> TrainState:
    """``state`` restored from the state file ``path``, errors as one line; on a
    process other than 0 (``rank``) the epoch's loss sums restart at 0."""
    try:
        state.load(path)
    except NoiseStateOnOtherDevice as err:
        raise ResumeError(f"{err}: resume with the --device it trained on (its noise stream cannot move "
                          "between them)") from err
    except StateDoesNotFitModel as err:
        raise ResumeError(f"{err}: restore config.json from the metadata of a weights file in {Path(path).parent} "
                          "(or resume the run folder this state belongs to)") from err
    except NotAResumeState as err:
        raise ResumeError(f"{err}: give the run folder (its latest state) or an N-epochs_state.pt in "
                          "it") from err
    except ValueError as err:
        raise ResumeError(f"{err}: use an earlier checkpoint") from err
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
                refusal = TrainingSetupError(f"{self.run.path} is being trained by {err.holder}: wait for it to finish "
                                             f"(or stop it), then resume with --path {self.run.path}")
            except TrainingSetupError as err:
                refusal = err
        if any_rank(refusal is not None, self.control):  # every process stops, not only the first
            raise refusal or TrainingSetupError(f"the first process could not lock {self.run.path}: see its message")
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

    def save_untrained(self, state: TrainState) -> None:
        """The untrained model as epoch 0's weights, with its empty history (--epochs 0)."""
        if self.rank == 0:
            with self.writing("write a checkpoint to"):
                self.run.save_weights(state.model, self.config, 0)
                self.run.write_history(state.history)


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
