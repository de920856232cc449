"""Train a hierarchical temporal-prediction model. Reads top to bottom:
config -> data -> model -> loop (noise, forward, loss, backward, clip, mask,
Adam) -> checkpoints. The maths is the original's (docs/faithfulness.md); what is new is
seeding, exact resume, atomic safe checkpoints and one host sync per epoch.
Every epoch's losses go to the run's own log, RUN/logs/train.log.

    python train.py --name NAME --L1 -6               # same flags as submit_training_job.py
    python train.py --path model_checkpoints/RUN      # resume
    torchrun --nproc-per-node 4 train.py --name NAME  # one run on 4 GPUs (add --nnodes for several machines)

Under torchrun every process takes its slice of each batch and DistributedDataParallel
averages the gradients, so N processes take the same steps as one (to float32 rounding).

The pieces live in models/: the config, its flags and the checks of data and model
in training_config.py; the step (train_step), the resumable state (TrainState) and
validation in training.py; the run folder's layout in run_dir.py (RunDir).
"""
from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from data.dataset import ClipSource, fits_on
from models import build_model  # noqa: F401  (tests build a run's model from its config with it)
from models.run_dir import RunDir
from models.run_dir import read_state_file as _read_state  # noqa: F401  (tests read a state's step with it)
from models.training import (NoiseStateOnOtherDevice, StoppedBySignal, StopRequest, TrainState, any_rank,  # noqa: F401
                             append_row, check_ranks_agree, format_means, init_distributed, learning_rate,
                             new_history, save_loss_curve, train_step, validate, validation_generator)
# re-exported: `import train` reaches the whole training interface (tests, submit_training_job.py, models/batched.py)
from models.training_config import (MAX_NAME_LENGTH, TrainConfig, add_config_arguments, check_same_dataset,  # noqa: F401
                                    checked_data, checked_model, config_for, create_run_dir, find_resume_state,
                                    load_dataset, preflight, read_run_config, resolve_config, run_name,
                                    set_arithmetic, writing)
from models.training_config import build_parser as _config_parser
from utils import UserInputError, run_cli, seed_everything

_StopRequest = StopRequest  # the name models/batched.py and tests/test_scaling_submit.py use


class TrainingDiverged(UserInputError):
    """An epoch's loss was NaN or inf: nothing of that epoch is saved."""


def resumed_state(state: TrainState, path: Path, rank: int) -> TrainState:
    """``state`` restored from the state file ``path``, errors as one line."""
    try:
        state.load(path)
    except NoiseStateOnOtherDevice as err:
        raise UserInputError(f"{err}: resume with the --device it trained on (its noise stream cannot move "
                             "between them)") from err
    except ValueError as err:
        raise UserInputError(f"{err}: use an earlier checkpoint") from err
    if state.sums is not None and rank > 0:
        state.sums = torch.zeros_like(state.sums)  # the saved sums are the total over all processes: count it once
    return state


# -------------------------------------------------------------------------------------------
# What the loop writes: the log, checkpoints, the divergence message
# -------------------------------------------------------------------------------------------
def monitor_receptive_fields(model, clips, cfg: TrainConfig, history: dict, epoch: int, global_step: int) -> str:
    """Append one RF-quality row (``rf_summary.rf_quality``) to ``history["rf_monitor"]``
    and return it as a log fragment. Its generators are its own: the training
    trajectory is the same with the monitor on or off."""
    from virtual_physiology.rf_summary import MONITOR_KEYS, rf_quality

    row = rf_quality(model, clips, cfg.warmup, n_clips=cfg.rf_monitor_clips)
    rows = history.setdefault("rf_monitor", {"epoch": [], "step": [], **{k: [] for k in MONITOR_KEYS}})
    append_row(rows, epoch, {"step": global_step, **row})
    return ("group-1 RFs: strict Gabor {fraction_strict_gabor:.3f} orientation index {median_orientation_index:.3f} "
            "| clean MSE {clean_mse:.4f} (copy-last {copy_last_frame_mse:.4f})".format(**row))


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


class _Writer:
    """What a run writes into its folder, from process 0 only; a failed write is one line."""

    def __init__(self, run: RunDir, config: dict, rank: int, control):
        self.run, self.config, self.rank, self.control = run, config, rank, control

    def writing(self, what="write to"):
        return writing(self.run.path, what, f"free space or fix the folder, then resume with --path {self.run.path}")

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
        if hasattr(state.model, "project_weights_"):  # what every forward does first (idempotent): the saved
            with torch.no_grad():                     # weights are then the same whether validation ran or not
                state.model.project_weights_()
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
# Training
# -------------------------------------------------------------------------------------------
def train(cfg: TrainConfig, resume: Path | None = None, progress: bool = True, run_dir: Path | None = None) -> Path:
    """Train (or resume) and return the run folder: a new one, or ``run_dir`` when given
    (submit_training_job.py decides it before submission, so a requeued job finds it).
    Under torchrun each process trains on its slice of every batch (init_distributed)."""
    rank, world, device, control = init_distributed(cfg.device)
    torch.set_float32_matmul_precision("high" if cfg.tf32 else "highest")  # TF32 only when asked
    clips, data_path, identity, train_rows, val_rows = checked_data(cfg, resume)
    hold = device if device.type == "cuda" and fits_on(device, clips.nbytes) else None
    train_src, val_src = ClipSource(clips, train_rows, hold_on=hold), ClipSource(clips, val_rows, hold_on=hold)

    seed_everything(cfg.seed)
    model = checked_model(cfg, clips.shape[1], data_path).to(device)
    backend = set_arithmetic(model, cfg, device)
    components = ["L1"] + [f"mse{g}" for g in range(len(cfg.hidden_units))]
    state = TrainState(model, torch.optim.Adam(model.parameters(), lr=cfg.lr),  # fp32 parameters in every precision
                       shuffle_generator=torch.Generator().manual_seed(cfg.seed),
                       noise_generator=torch.Generator(device=device).manual_seed(cfg.seed + 1),
                       history=new_history(components))
    if resume is not None:
        resumed_state(state, resume, rank)
        run_dir = resume.parent
    else:
        run_dir = Path(run_dir) if run_dir is not None else _new_run_dir(cfg, rank, control)
    config = dataclasses.asdict(cfg) | {"dataset_path": str(data_path.absolute()), "dataset_identity": identity,
                                         "n_clips": len(clips), "n_train": len(train_rows),
                                         "n_validation": len(val_rows), "processes": world,
                                         "torch_version": torch.__version__, "recurrence_backend": backend}
    out = _Writer(RunDir(run_dir), config, rank, control)
    out.start()
    if resume is None:
        out.log(f"started: {len(train_rows)} training and {len(val_rows)} validation clips from {data_path}, "
                f"{world} process(es) on {device.type}")
    else:
        out.log(f"resumed from {resume.name} at epoch {state.epoch}, step {state.step}")

    if cfg.epochs == 0 and resume is None:  # the untrained control, saved as a normal checkpoint
        if hasattr(model, "project_weights_"):  # as every forward pass sees it
            with torch.no_grad():
                model.project_weights_()
        if rank == 0:
            with out.writing("write a checkpoint to"):
                out.run.save_weights(model, config, 0)
                out.run.write_history(state.history)
        out.log("saved the untrained model (--epochs 0)")
        return out.run.path

    n_batches = math.ceil(len(train_src) / cfg.batch_size)
    smallest = len(train_src) - (n_batches - 1) * cfg.batch_size
    if smallest < world:
        raise UserInputError(f"the last batch has {smallest} clips, fewer than the {world} processes: "
                             "use fewer processes or another --batch-size")
    net = model if world == 1 else DistributedDataParallel(  # the buffers are constant masks: no re-sync per step
        model, device_ids=[device.index] if device.type == "cuda" else None, forward_sync_buffers=False)
    started, steps_here = time.monotonic(), 0
    bar = tqdm(total=max(cfg.epochs - state.epoch + 1, 0) * n_batches, desc=out.run.name, unit="step",
               disable=None if progress and rank == 0 else True, dynamic_ncols=True)

    def mean_losses(n_steps):  # one host sync
        return dict(zip(["loss", *components], (state.sums / n_steps).tolist()))

    def stop_if_diverged(means, val_means):
        message = divergence(cfg, out.run.path, state.epoch, means, val_means)
        if message is not None:
            bar.close()
            out.log(message)
            raise TrainingDiverged(message)

    with StopRequest() as stop:
        while state.epoch <= cfg.epochs:
            if state.permutation is None:
                state.permutation = torch.randperm(len(train_src), generator=state.shuffle_generator)
            net.train()
            while state.step < n_batches:
                rows = state.permutation[state.step * cfg.batch_size:(state.step + 1) * cfg.batch_size]
                values = train_step(model, state.optimizer, train_src.batch(rows, device), state.noise_generator,
                                    cfg, state.global_step, net=net, rank=rank, world=world)
                state.sums = values if state.sums is None else state.sums + values  # on the device: no sync
                state.step, state.global_step, steps_here = state.step + 1, state.global_step + 1, steps_here + 1
                bar.update()
                if any_rank(stop.requested or (cfg.stop_after_steps and steps_here >= cfg.stop_after_steps),
                            control):  # every process stops at the same step
                    if any_rank(not bool(torch.isfinite(state.sums).all()), control):  # never save a diverged state
                        if control is not None:  # sums are this process's share until the epoch's all-reduce
                            dist.all_reduce(state.sums)  # every process then sees the non-finite total and stops
                        stop_if_diverged(mean_losses(state.step), {})
                    out.checkpoint(state, None)
                    bar.close()
                    out.log(f"stop request: saved a resumable state in {run_dir}; continue with --path {run_dir}",
                            stderr=True)
                    stop.saved = run_dir
                    return run_dir

            if control is not None:
                dist.all_reduce(state.sums)  # each process summed its share of every batch
            means = mean_losses(n_batches)  # the one host sync per epoch
            append_row(state.history["train"], state.epoch, means)
            line, val_means = f"epoch {state.epoch}/{cfg.epochs} train " + format_means(means), {}
            if state.epoch % cfg.validate_every == 0:  # every process validates: all hold the same weights
                model.eval()
                val_means = validate(model, val_src, cfg, device, validation_generator(cfg, device))
                append_row(state.history["validation"], state.epoch, val_means)
                line += " | validation " + format_means(val_means)
            if cfg.rf_monitor_every and state.epoch % cfg.rf_monitor_every == 0 and rank == 0:
                line += " | " + monitor_receptive_fields(model, clips, cfg, state.history, state.epoch,
                                                         state.global_step)
            out.log(f"{line} | {time.monotonic() - started:.1f} s since this process started")
            stop_if_diverged(means, val_means)
            bar.set_postfix(epoch=state.epoch, loss=f"{means['loss']:.4f}", mse0=f"{means['mse0']:.4f}")
            completed = state.epoch  # the state resumes at the next epoch, from its first batch
            state.epoch, state.step, state.permutation, state.sums = completed + 1, 0, None, None
            # the time limit ends a run only between epochs, so it leaves a normal checkpoint
            out_of_time = any_rank(cfg.max_minutes > 0 and time.monotonic() - started > 60 * cfg.max_minutes, control)
            if completed % cfg.checkpoint_every == 0 or completed == cfg.epochs or out_of_time:
                out.checkpoint(state, completed)
            if out_of_time and state.epoch <= cfg.epochs:
                bar.close()
                out.log(f"time limit: stopped after epoch {completed}; continue with --path {run_dir}", stderr=True)
                return run_dir
    bar.close()
    if steps_here == 0 and resume is not None:
        out.log(f"nothing to train: the run already has {state.epoch - 1} complete epochs and --epochs is "
                f"{cfg.epochs}; give a larger --epochs to continue", stderr=True)
    else:
        out.log(f"finished epoch {state.epoch - 1}")
    return run_dir


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
    cfg, resume = config_for(args)
    try:
        run_dir = train(cfg, resume)
    except StoppedBySignal as stop:
        sys.exit(128 + stop.signum)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"run folder: {run_dir}")


if __name__ == "__main__":
    run_cli(main)
