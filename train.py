"""Train a hierarchical temporal-prediction model. Reads top to bottom:
config -> data -> model and its resumable state -> the step (noise, forward, loss,
backward, clip, mask, Adam; with --cuda-graph replayed as a CUDA graph) -> the
loop (training/loop.py: epochs, validation, checkpoints, stop requests and
limits; a batched sweep runs the same loop). The maths is the original's
(docs/faithfulness.md); what is new is seeding, exact resume, atomic safe
checkpoints and one host sync per epoch.
Every epoch's losses go to the run's own log, RUN/logs/train.log.

    python train.py --name NAME --L1 -6               # same flags as submit_training_job.py
    python train.py --path model_checkpoints/RUN      # resume
    torchrun --nproc-per-node 4 train.py --name NAME  # one run on 4 GPUs (add --nnodes for several machines)

Under torchrun every process takes its slice of each batch and DistributedDataParallel
averages the gradients, so N processes take the same steps as one (to float32 rounding).

The pieces live in training/: the config, its flags and the checks of data and
model in config.py; the step (train_step), the resumable state (TrainState) and
validation in step.py; the loop and what it writes (RunWriter) in loop.py; the
run folder's layout in run_dir.py (RunDir).
"""
from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning: with other jobs on the CPU, spinning
# threads made a step 3-13x slower (benchmarks/bench_load.py). Read when torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from data.dataset import ClipSource, fits_on, split_indices
from training.config import (TrainConfig, checked_data, checked_model, config_for, create_run_dir,
                             cut_short_note, load_dataset, recorded_dataset, set_arithmetic, tell_deprecations)
from training.config import build_parser as _config_parser
from training.cuda_graph import GraphedTrainStep
from training.loop import (EXIT_CUT_SHORT, Monitor, OneRun, Run, RunWriter, StoppedBySignal, init_distributed,
                           resumed_state, run_epochs)
from training.run_dir import RunDir
from training.step import TrainState, loss_components, make_optimizer, new_history, train_step
from utils import UserInputError, keep_freed_memory, resolve_device, run_cli, seed_everything, set_threads
from virtual_physiology.rf_summary import monitor_line, monitor_row


# -------------------------------------------------------------------------------------------
# The receptive-field monitor: built here, where the commands meet the probes, and handed to
# the training loop (models/ measures nothing itself: docs/architecture.md, "Layers")
# -------------------------------------------------------------------------------------------
def receptive_field_monitor(cfg: TrainConfig) -> Monitor | None:
    """The ``--rf-monitor-every`` check (``rf_summary.monitor_row`` from
    ``--rf-monitor-clips`` white-noise clips, and its log line), or None when off."""
    if not cfg.rf_monitor_every:
        return None

    def monitor(model, clips, run_cfg: TrainConfig) -> tuple[dict, str]:
        row = monitor_row(model, clips, run_cfg.warmup, n_clips=run_cfg.rf_monitor_clips)
        return row, monitor_line(row)

    return monitor


# -------------------------------------------------------------------------------------------
# Training
# -------------------------------------------------------------------------------------------
def train(cfg: TrainConfig, resume: Path | None = None, progress: bool = True, run_dir: Path | None = None) -> Path:
    """Train (or resume) and return the run folder: a new one, or ``run_dir`` when given
    (submit_training_job.py decides it before submission, so a requeued job finds it).
    Under torchrun each process trains on its slice of every batch (init_distributed)."""
    keep_freed_memory()  # every step reuses the last one's memory instead of faulting it in anew
    threads = set_threads(cfg.threads)
    rank, world, device, control = init_distributed(cfg.device)
    clips, data_path, identity, train_rows, val_rows = checked_data(cfg, resume)
    hold = device if device.type == "cuda" and fits_on(device, clips.nbytes) else None
    train_src, val_src = ClipSource(clips, train_rows, hold_on=hold), ClipSource(clips, val_rows, hold_on=hold)
    smallest = len(train_src) - (math.ceil(len(train_src) / cfg.batch_size) - 1) * cfg.batch_size
    if smallest < world:
        raise UserInputError(f"the last batch has {smallest} clips, fewer than the {world} processes: "
                             "use fewer processes or another --batch-size")

    seed_everything(cfg.seed)
    model = checked_model(cfg, clips.shape[1], data_path).to(device)
    backend = set_arithmetic(model, cfg, device)
    if cfg.cuda_graph and (device.type != "cuda" or world > 1):
        raise UserInputError(f"--cuda-graph captures one process's steps on a GPU, and this run has {world} "
                             f"process(es) on {device.type}: drop --cuda-graph")
    state = TrainState(model, make_optimizer(model, cfg, device, graphed=cfg.cuda_graph),
                       shuffle_generator=torch.Generator().manual_seed(cfg.seed),
                       noise_generator=torch.Generator(device=device).manual_seed(cfg.seed + 1),
                       history=new_history(loss_components(cfg)))
    if resume is not None:
        resumed_state(state, resume, rank)
        run_dir = resume.parent
    else:
        run_dir = Path(run_dir) if run_dir is not None else _new_run_dir(cfg, rank, control)
    config = dataclasses.asdict(cfg) | recorded_dataset(cfg, data_path) | {"dataset_identity": identity,
                                         "n_clips": len(clips), "n_train": len(train_rows),
                                         "n_validation": len(val_rows), "processes": world,
                                         "torch_version": torch.__version__, "recurrence_backend": backend,
                                         "torch_threads": threads}
    opening = (f"started: {len(train_rows)} training and {len(val_rows)} validation clips from {data_path}, "
               f"{world} process(es) on {device.type}" if resume is None else
               f"resumed from {resume.name} at epoch {state.epoch}, step {state.step}")
    run = Run(cfg, state, RunWriter(RunDir(run_dir), config, rank, control), opening)

    net = model if world == 1 else DistributedDataParallel(  # the buffers are constant masks: no re-sync per step
        model, device_ids=[device.index] if device.type == "cuda" else None, forward_sync_buffers=False)
    if cfg.cuda_graph:
        take_step = GraphedTrainStep(model, state.optimizer, cfg)
    else:
        def take_step(batch, generator, global_step):
            return train_step(model, state.optimizer, batch, generator, cfg, global_step, net=net, rank=rank,
                              world=world)
    run_epochs(OneRun(run, take_step, net), train_src, val_src, clips, device, resumed=resume is not None,
               monitor=receptive_field_monitor(cfg), progress=progress)
    return run_dir


def confirm_long_cpu_run(args, cfg: TrainConfig) -> None:
    """The first command a user guesses, with no --name, --preset, --hidden-units or
    --epochs, is the paper's run (3 x 800 units, 2000 epochs): weeks on a machine
    without a GPU. There it stops, saying what it would train and for how long by a
    3-step timing, and asks for --name to confirm."""
    guessed = all(getattr(args, flag, None) is None for flag in ("name", "preset", "hidden_units", "epochs"))
    if not guessed or resolve_device(cfg.device).type != "cpu":
        return
    clips, _ = load_dataset(cfg)
    n_steps = cfg.epochs * math.ceil(len(split_indices(len(clips))[0]) / cfg.batch_size)
    seconds = n_steps * step_seconds(cfg, clips.shape[1])
    groups = "+".join(map(str, cfg.hidden_units))
    raise UserInputError(f"no --name: this would train {cfg.model} with {groups} units on {cfg.frame_shape[0]}x"
                         f"{cfg.frame_shape[1]} frames for {cfg.epochs} epochs ({n_steps:,} steps) on the CPU, about "
                         f"{_duration(seconds)} by a 3-step timing; give --name NAME to start it, or try --preset demo")


def step_seconds(cfg: TrainConfig, n_frames: int, steps: int = 3) -> float:
    """Median seconds of ``steps`` training steps of ``cfg``'s model on the CPU, on
    random clips (a step's cost does not depend on their content); torch's RNG is
    left as it was."""
    with torch.random.fork_rng(devices=[]):
        model = checked_model(cfg, n_frames, Path(cfg.dataset))
        set_arithmetic(model, cfg, torch.device("cpu"))
        optimizer = make_optimizer(model, cfg, torch.device("cpu"))
        batch = torch.randn(cfg.batch_size, n_frames, cfg.frame_shape[0] * cfg.frame_shape[1])
        generator, times = torch.Generator().manual_seed(0), []
        for step in range(steps):
            start = time.perf_counter()
            train_step(model, optimizer, batch, generator, cfg, step)
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def _duration(seconds: float) -> str:
    return f"{seconds / 86400:.1f} days" if seconds > 2 * 86400 else f"{seconds / 3600:.1f} hours"


def _new_run_dir(cfg: TrainConfig, rank: int, control) -> Path:
    """Process 0 creates the run folder; the others learn its name."""
    name = [str(create_run_dir(cfg)) if rank == 0 else None]
    if control is not None:
        dist.broadcast_object_list(name, src=0, group=control)
    return Path(name[0])


def build_parser(description: str = __doc__):
    return _config_parser(description)


def main(argv=None):
    args = build_parser().parse_args(argv)
    tell_deprecations(args)
    cfg, resume = config_for(args)
    if resume is None and "WORLD_SIZE" not in os.environ:
        confirm_long_cpu_run(args, cfg)
    run_dir, code, distributed = None, 0, False
    try:
        run_dir = train(cfg, resume)
        if dist.is_initialized():  # no process tears down gloo while a peer still has work in flight
            dist.barrier()  # (and process 0's checkpoint is written before any process judges the folder)
        code = EXIT_CUT_SHORT if cut_short_note(run_dir) else 0  # stopped by a limit before its last epoch
    except StoppedBySignal as stop:
        code = 128 + stop.signum
    finally:
        if dist.is_initialized():
            distributed = True
            dist.destroy_process_group()
    if run_dir is not None and int(os.environ.get("RANK", "0")) == 0:
        print(f"run folder: {run_dir}")
        note = cut_short_note(run_dir)
        if note:  # the last line says that the run is not finished, and how to continue it
            print(note, file=sys.stderr)
    if distributed:
        # Every file is written and closed. A torchrun worker leaves without the C++
        # exit-time destructors: in them, now and then, a gloo thread still joinable
        # aborts the process (SIGABRT, "terminate called without an active
        # exception", after Python has finalised), and torchrun then fails the job.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    if code:
        sys.exit(code)


if __name__ == "__main__":
    run_cli(main)
