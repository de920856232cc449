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
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from safetensors import SafetensorError
from tqdm.auto import tqdm

from data.dataset import ClipSource, dataset_identity, fits_on, load_clips, same_dataset, split_indices
from losses import LOSS_OFFSETS
from models import MODELS, build_model, describe_model_defaults, with_model_defaults
from models.network_hierarchical_recurrent import PRECISIONS
from models.recurrence import RECURRENCE_BACKENDS
from models.io import HISTORY_FILE, save_model
from utils import (UserInputError, atomic_path, os_error_reason, resolve_device, run_cli, seed_everything,
                   write_json)

ROOT = Path(__file__).resolve().parent
LOG_FILE = Path("logs") / "train.log"  # inside the run folder, beside submitit's job logs


def _f(default, help):
    return field(default=default, metadata={"help": help})


# -------------------------------------------------------------------------------------------
# Config: every field is a CLI flag; the resolved config is saved with every checkpoint.
# -------------------------------------------------------------------------------------------
@dataclass
class TrainConfig:
    name: str = _f("htp", "run name; the run folder is NAME_<L1>L1_seed<SEED>_<date-time>")
    L1: float = _f(-6.0, "log10 of the L1 weight-penalty strength lambda (paper README example: -6)")
    model: str = _f("network_hierarchical_recurrent", "model kind (paper: network_hierarchical_recurrent); "
                    "controls: network_recurrent (one group), network_hierarchical_feedforward (stacks trained "
                    "jointly), network_feedforward (TP_FF, one stack at a time; see --lower-stacks). Each kind "
                    f"picks its own defaults for the flags not given: {describe_model_defaults()}")
    loss: str = _f("loss_hierarchical_temporal_prediction", "loss (paper: next-step prediction, offset 1); "
                   "controls: loss_hierarchical_temporal_prediction_t5, loss_hierarchical_autoencoder; the "
                   "feedforward models' default and only loss is loss_hierarchical_temporal_prediction_feedforward")
    # Feedforward controls (models/temporal_convolution.py): the original's TP_FF hyperparameter ...
    kernel_size_t: int = _f(5, "frames per temporal-convolution kernel, feedforward models only (original: 5)")
    # ... and where stack g of TP_FF finds its frozen stacks 0..g-1, so train.py needs no special code.
    lower_stacks: str = _f("", "network_feedforward: run folder of the trained stack below the one to train "
                               "(it holds every stack under it)")
    dataset: str = _f("default", "(N, T, P) .npy clip file, or 'default' for the embedded natural-movie set")
    frame_shape: tuple = _f((20, 20), "frame height and width in pixels (paper: 20 20; figure models 20 40)")
    hidden_units: tuple = _f((800, 800, 800), "units per group, comma-separated (paper: 800,800,800)")
    beta: tuple = _f((0.9, 0.1, 0.1), "per-group loss weights, comma-separated (paper: 0.9,0.1,0.1)")
    warmup: int = _f(4, "initial frames excluded from the loss (paper: 4)")
    local_inhibitory_prop: float = _f(0.2, "fraction of each group that is local inhibitory (paper: 0.2)")
    noise_std: float = _f(0.5011, "std of the Gaussian noise added to input and target (paper: 0.5011)")
    detach_targets: bool = _f(False, "stop gradients through higher-group targets (paper: off)")
    grad_clip: float = _f(0.25, "clip each gradient element to +-this before masking (paper: 0.25)")
    lr: float = _f(1e-4, "Adam learning rate (paper: 1e-4)")
    lr_half_life: int = _f(0, "optimizer steps over which the learning rate halves, lr * 0.5**(step / this): a "
                              "function of the step count alone, so resuming stays exact; 0 = constant (paper)")
    batch_size: int = _f(100, "clips per step (paper: 100)")
    epochs: int = _f(2000, "epochs to train (paper: 2000); 0 saves the untrained model")
    validate_every: int = _f(10, "epochs between validation passes (paper: 10)")
    checkpoint_every: int = _f(1000, "epochs between checkpoints (paper: 1000); the last epoch is always saved")
    seed: int = _f(0, "seed for initialisation, shuffling and noise (the original seeded nothing)")
    device: str = _f("auto", "cpu, cuda, cuda:N, or auto (cuda when available); under torchrun each "
                             "process takes the GPU of its LOCAL_RANK")
    tf32: bool = _f(False, "allow TF32 matrix products on GPUs (faster, ~1e-3 relative error; paper: off)")
    precision: str = _f("fp32", "fp32 (the paper's arithmetic) or bf16: bfloat16 matrix products with float32 "
                                "accumulation, fp32 master weights, Adam state and loss (several times faster on "
                                "CPUs with AMX and on GPUs; paper: fp32)")
    recurrence: str = _f("auto", "recurrent products: block (skip W_hh's zero blocks; fastest on CPUs), dense (one "
                                 "product per time step; GPUs) or auto (dense on CUDA, block otherwise); the same "
                                 "maths, the choice is recorded as recurrence_backend")
    amp: bool = _f(False, "deprecated alias of --precision bf16")
    save_dir: str = _f("model_checkpoints", "folder that receives the run folder")
    max_minutes: float = _f(0.0, "stop at the end of the epoch that passes this many minutes, with a normal "
                                 "(resumable) checkpoint; 0 = no limit")
    stop_after_steps: int = _f(0, "stop cleanly after this many optimizer steps in this process, as on "
                                  "Ctrl-C (for tests and time-boxed jobs); 0 = no limit")
    rf_monitor_every: int = _f(0, "epochs between receptive-field checks (strict-Gabor fraction, orientation "
                                  "index, clean MSE against copy-last), logged and plotted; 0 = off (paper: off)")
    rf_monitor_clips: int = _f(1000, "white-noise clips per receptive-field check")
    preset: str = _f("", "named preset applied before explicit flags: 'demo' (a ~10-minute CPU run)")

    def __post_init__(self):
        if self.amp:  # the deprecated --amp is --precision bf16, and the saved config says so
            self.precision = "bf16"


PRESETS = {
    # A small model for a 2-core CPU: 2,760 steps in ~5 minutes (max_minutes caps slower
    # machines). Too short for oriented, Gabor-like receptive fields (a few thousand
    # steps give localized ON/OFF blobs); it shows the whole pipeline and the
    # prediction error falling below the copy-last-frame baseline.
    "demo": dict(name="demo", hidden_units=(100, 100, 100), L1=-4.0, lr=3e-3, epochs=60,
                 validate_every=10, checkpoint_every=20, max_minutes=12.0, rf_monitor_every=30,
                 rf_monitor_clips=500),
}

_TUPLE_FIELDS = {"frame_shape": int, "hidden_units": int, "beta": float}
# Flags that may differ from the saved config when resuming; a new --dataset must hold
# the same content (train() compares the saved dataset_identity). All keep the resume
# bit-exact except --device and --recurrence, which change the summation order.
_RESUME_OVERRIDES = {"epochs", "device", "recurrence", "checkpoint_every", "validate_every", "max_minutes",
                     "stop_after_steps", "dataset", "rf_monitor_every", "rf_monitor_clips"}


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field (defaults None, so explicit flags can be told apart)."""
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{f.metadata['help']} [default: {f.default}]"
        if f.type == "bool" or isinstance(f.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif f.name == "frame_shape":
            parser.add_argument(flag, type=int, nargs=2, metavar=("H", "W"), default=None, help=help_text)
        elif f.name in _TUPLE_FIELDS:
            parser.add_argument(flag, type=str, default=None, help=help_text)
        else:
            parser.add_argument(flag, type=type(f.default), default=None, help=help_text)
    parser.add_argument("--path", default=None, help="resume from this run folder (or a state file in it)")


def _parse_tuple(name, value):
    if isinstance(value, str):
        try:
            value = [_TUPLE_FIELDS[name](v) for v in value.split(",") if v.strip()]
        except ValueError as err:
            raise UserInputError(f"--{name.replace('_', '-')} {value!r} is not a comma-separated list of numbers") from err
    return tuple(value)


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    """Defaults, then the preset, then the explicit flags, then the chosen model
    kind's defaults for what is still unset (models.MODEL_DEFAULTS); validated."""
    explicit = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
                if getattr(args, f.name, None) is not None}
    values = {}
    preset = explicit.get("preset", "")
    if preset:
        if preset not in PRESETS:
            raise UserInputError(f"unknown preset {preset!r}: choose from {', '.join(PRESETS)}")
        values.update(PRESETS[preset])
    values.update(explicit)
    for name in _TUPLE_FIELDS:
        if name in values:
            values[name] = _parse_tuple(name, values[name])
    values = with_model_defaults({"model": TrainConfig.model, **values}, TrainConfig.hidden_units)
    values["dataset"] = _absolute_dataset(values.get("dataset", "default"))
    cfg = TrainConfig(**values)
    validate_config(cfg)
    return cfg


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
MAX_NAME_LENGTH = 100  # the run folder adds ~40 characters; file systems allow 255


def _absolute_dataset(dataset: str) -> str:
    """The dataset as an absolute path (kept as 'default'), so a run resumes from any folder."""
    return dataset if dataset == "default" else os.path.abspath(os.path.expanduser(dataset))


def validate_config(cfg: TrainConfig, new_run: bool = True) -> None:
    """Refuse, before any folder exists, a config that cannot train: unknown kinds,
    bad shapes, out-of-range or non-finite numbers, an unsafe run name (new runs
    only: a run folder named before the rule existed still resumes)."""
    if new_run and (not _NAME.match(cfg.name) or len(cfg.name) > MAX_NAME_LENGTH):
        raise UserInputError(f"--name {cfg.name!r} is not a plain name: use up to {MAX_NAME_LENGTH} letters, digits, "
                             "'_', '-' or '.', starting with a letter or digit (the folder goes in --save-dir)")
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        numbers = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) for v in numbers):
            raise UserInputError(f"--{f.name.replace('_', '-')} {value} is not finite: give finite numbers (see --help)")
    if cfg.model not in MODELS:
        raise UserInputError(f"unknown --model {cfg.model!r}: choose from {', '.join(sorted(MODELS))}")
    if cfg.loss not in LOSS_OFFSETS:
        raise UserInputError(f"unknown --loss {cfg.loss!r}: choose from {', '.join(sorted(LOSS_OFFSETS))}")
    if cfg.precision not in PRECISIONS:
        raise UserInputError(f"unknown --precision {cfg.precision!r}: choose from {', '.join(PRECISIONS)}")
    if cfg.recurrence not in ("auto", *RECURRENCE_BACKENDS):
        raise UserInputError(f"unknown --recurrence {cfg.recurrence!r}: choose from auto, {', '.join(RECURRENCE_BACKENDS)}")
    if len(cfg.frame_shape) != 2 or min(cfg.frame_shape) < 1:
        raise UserInputError(f"--frame-shape needs two positive integers, got {cfg.frame_shape}")
    if not cfg.hidden_units or min(cfg.hidden_units) < 1:
        raise UserInputError(f"--hidden-units needs positive group sizes, got {cfg.hidden_units}")
    if len(cfg.beta) != len(cfg.hidden_units):
        raise UserInputError(f"--beta has {len(cfg.beta)} weights for {len(cfg.hidden_units)} groups: give one per group")
    if min(cfg.beta) < 0 or sum(cfg.beta) <= 0:
        raise UserInputError(f"--beta {cfg.beta} needs weights >= 0, at least one of them positive")
    checks = [("batch_size", cfg.batch_size >= 1), ("epochs", cfg.epochs >= 0), ("lr", cfg.lr > 0),
              ("lr_half_life", cfg.lr_half_life >= 0), ("validate_every", cfg.validate_every >= 1), ("checkpoint_every", cfg.checkpoint_every >= 1),
              ("warmup", cfg.warmup >= 0), ("noise_std", cfg.noise_std >= 0), ("grad_clip", cfg.grad_clip > 0),
              ("local_inhibitory_prop", 0 <= cfg.local_inhibitory_prop < 1), ("max_minutes", cfg.max_minutes >= 0),
              ("L1", cfg.L1 <= 300),  # lambda = 10 ** L1 must be a float
              ("rf_monitor_every", cfg.rf_monitor_every >= 0), ("rf_monitor_clips", cfg.rf_monitor_clips >= 1)]
    for name, ok in checks:
        if not ok:
            raise UserInputError(f"--{name.replace('_', '-')} {getattr(cfg, name)} is out of range: see --help")


# -------------------------------------------------------------------------------------------
# Training
# -------------------------------------------------------------------------------------------
class TrainingDiverged(UserInputError):
    """An epoch's loss was NaN or inf: nothing of that epoch is saved."""


class StoppedBySignal(Exception):
    """Training saved a resumable state on SIGINT or SIGTERM and stopped; the
    command exits with 128 + ``signum``, as the shell reports a killed process,
    so ``train && next-step`` does not go on with unfinished weights."""

    def __init__(self, signum: int, run_dir: Path):
        super().__init__(f"stopped by signal {signum}; resume with --path {run_dir}")
        self.signum, self.run_dir = signum, run_dir


class _StopRequest:
    """SIGINT/SIGTERM/SIGUSR2 ask the loop to save a resumable checkpoint and stop
    after the current step; a second Ctrl-C aborts at once. SIGUSR2 is SLURM's
    warning before a time limit or pre-emption: once the state is saved it is passed
    on to the handler it displaced (submitit's, which requeues the job). Once the
    loop has saved and left (``saved`` set to the run folder), SIGINT and SIGTERM
    raise StoppedBySignal on leaving the block."""

    def __init__(self):
        self.requested, self.usr2, self.signum, self.saved = False, False, None, None

    def __enter__(self):
        signals = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)
        self._old = {s: signal.signal(s, self._handle) for s in signals}
        return self

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
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


def read_run_config(run_dir: Path) -> dict:
    """A run folder's config.json, or a one-line error if it is missing or corrupt."""
    path = Path(run_dir) / "config.json"
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise UserInputError(f"{path} is missing: {run_dir} was not written by train.py, or is incomplete") from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserInputError(f"{path} is unreadable or not JSON ({type(err).__name__}): restore it from "
                             "the metadata of a weights file in that folder or start a new run") from err
    if not isinstance(config, dict):
        raise UserInputError(f"{path} does not hold a config object: restore it or start a new run")
    return config


def check_same_dataset(run_dir: Path, data_path: Path, identity: dict) -> None:
    """Refuse to resume a run on a dataset other than the one it trained on: another
    size, shape, dtype or content fingerprint (runs older than the fingerprint are
    compared by clip count)."""
    saved = read_run_config(run_dir)
    if "dataset_identity" in saved:
        difference = same_dataset(saved["dataset_identity"], identity)
    else:
        n_saved, n_now = saved.get("n_clips"), identity["shape"][0]
        difference = None if n_saved in (None, n_now) else f"clips {n_saved} -> {n_now}"
    if difference is not None:
        raise UserInputError(f"{data_path} is not the dataset {run_dir.name} trained on ({difference}): resume with "
                             f"that file (--dataset {saved.get('dataset_path', 'PATH')}) or start a new run")


def load_dataset(cfg: TrainConfig):
    if cfg.dataset == "default":
        from data.default_dataset import default_dataset_path

        path = default_dataset_path(tuple(cfg.frame_shape))
    else:
        path = Path(cfg.dataset)
    min_frames = cfg.warmup + LOSS_OFFSETS[cfg.loss] + 1
    return load_clips(path, tuple(cfg.frame_shape), min_frames), path


def _new_history(components):
    return {split: {"epoch": [], "loss": [], **{c: [] for c in components}} for split in ("train", "validation")}


def _append(history_split, epoch, means: dict):
    history_split["epoch"].append(epoch)
    for k, v in means.items():
        history_split[k].append(v)


VALIDATION_SEED_OFFSET = 1_000_003  # validation's noise stream, apart from the training streams of nearby seeds


def validation_generator(cfg: TrainConfig, device: torch.device) -> torch.Generator:
    """Validation's own noise generator, seeded afresh for every pass: each pass draws
    the same noise, so validation losses differ only by the weights, and validation
    never advances the training noise, so a resume that changes --validate-every (or
    any other allowed override) ends with exactly the weights of an uninterrupted run."""
    return torch.Generator(device=device).manual_seed(cfg.seed + VALIDATION_SEED_OFFSET)


@torch.no_grad()
def validate(model, source, cfg, device, noise_gen) -> dict:
    """Mean loss and components over the validation clips (noisy, as in training),
    with noise from ``noise_gen`` (train.py passes ``validation_generator``)."""
    sums, n = None, 0
    for start in range(0, len(source), cfg.batch_size):
        x = source.batch(torch.arange(start, min(start + cfg.batch_size, len(source))), device)
        xn, yn = model.preprocess_data((x, x), noise_gen)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=uses_autocast(model, cfg)):
            loss, comps = model.get_loss(model(xn), (xn, yn))
        values = torch.stack([loss.detach(), *comps.values()])
        sums = values if sums is None else sums + values
        n += 1
    keys = ["loss", *comps.keys()]
    return dict(zip(keys, (sums / n).tolist()))


def _format_means(means: dict) -> str:
    return " ".join(f"{k} {v:.6g}" for k, v in means.items())


def _append_log(run_dir: Path, message: str) -> None:
    """Append a time-stamped line to RUN/logs/train.log: every run keeps its own log,
    across resumes, whether it ran in this process or as a job."""
    path = run_dir / LOG_FILE
    path.parent.mkdir(exist_ok=True)
    with open(path, "a") as f:
        f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")


def monitor_receptive_fields(model, clips, cfg: TrainConfig, history: dict, epoch: int, global_step: int) -> str:
    """Append one RF-quality row (``rf_summary.rf_quality``) to ``history["rf_monitor"]``
    and return it as a log fragment. Its generators are its own: the training
    trajectory is the same with the monitor on or off."""
    from virtual_physiology.rf_summary import MONITOR_KEYS, rf_quality

    row = rf_quality(model, clips, cfg.warmup, n_clips=cfg.rf_monitor_clips)
    rows = history.setdefault("rf_monitor", {"epoch": [], "step": [], **{k: [] for k in MONITOR_KEYS}})
    _append(rows, epoch, {"step": global_step, **row})
    return ("group-1 RFs: strict Gabor {fraction_strict_gabor:.3f} orientation index {median_orientation_index:.3f} "
            "| clean MSE {clean_mse:.4f} (copy-last {copy_last_frame_mse:.4f})".format(**row))


def save_loss_curve(run_dir: Path, history: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in history["train"] if k != "epoch"]
    monitor = history.get("rf_monitor") or {"epoch": []}
    n_panels = len(keys) + (2 if monitor["epoch"] else 0)
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
    if monitor["epoch"]:  # the RF monitor beside the losses
        quality, error = axes[0][len(keys)], axes[0][len(keys) + 1]
        quality.plot(monitor["epoch"], monitor["fraction_strict_gabor"], "o-", label="strict-Gabor fraction")
        quality.plot(monitor["epoch"], monitor["median_orientation_index"], "s-", label="median orientation index")
        quality.set_ylim(0, 1)
        quality.set_title("group-1 receptive fields")
        quality.legend(frameon=False, fontsize=7)
        error.plot(monitor["epoch"], monitor["clean_mse"], "o-", label="model")
        error.plot(monitor["epoch"], monitor["copy_last_frame_mse"], "--", label="copy last frame")
        error.set_title("clean next-frame MSE")
        error.legend(frameon=False, fontsize=7)
        for ax in (quality, error):
            ax.set_xlabel("epoch")
    fig.tight_layout()
    with atomic_path(run_dir / "loss_curve.png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def learning_rate(cfg: TrainConfig, global_step: int) -> float:
    """The learning rate of optimizer step ``global_step`` (counted from 0)."""
    return cfg.lr * 0.5 ** (global_step / cfg.lr_half_life) if cfg.lr_half_life else cfg.lr


def divergence(cfg: TrainConfig, run_dir: Path, epoch: int, means: dict, val_means: dict) -> str | None:
    """None if every mean loss (and component) of this epoch is finite, else the one-line
    message for TrainingDiverged. Nothing of the epoch has been saved at this point, so
    the run folder's latest checkpoint stays the last finite one; the message names it."""
    bad = [(f"{split} {k}", v) for split, values in (("train", means), ("validation", val_means))
           for k, v in values.items() if not math.isfinite(v)]
    if not bad:
        return None
    saved = sorted(run_dir.glob("*-epochs_model.safetensors"), key=lambda p: int(p.name.split("-")[0]))
    latest = f"the latest checkpoint, {saved[-1].name}, is finite" if saved else "no checkpoint was written"
    return (f"training diverged in epoch {epoch} ({bad[0][0]} is {bad[0][1]}); {latest}: try a lower --lr "
            f"(now {cfg.lr:g}), a smaller --L1 ({cfg.L1:g}) or --noise-std ({cfg.noise_std:g}), "
            "or clips scaled to unit variance")


def run_name(cfg: TrainConfig) -> str:
    return f"{cfg.name}_{cfg.L1:g}L1_seed{cfg.seed}"


@contextlib.contextmanager
def _writing(where, what: str, fix: str):
    """Turn a failed write (read-only or full disk, a file in the way; safetensors
    reports a full disk as SafetensorError) into a one-line UserInputError.
    atomic_path has already removed its temporary, so nothing is half-written."""
    try:
        yield
    except (OSError, SafetensorError) as err:
        raise UserInputError(f"cannot {what} {where} ({os_error_reason(err)}): {fix}") from err


def create_run_dir(cfg: TrainConfig) -> Path:
    """Create a new run folder NAME_<L1>L1_seed<S>_<date-time>. mkdir is atomic, so runs
    started in the same second, even by parallel jobs, get distinct folders (-1, -2 ...)."""
    base = Path(cfg.save_dir) / f"{run_name(cfg)}_{time.strftime('%Y%m%d-%H%M%S')}"
    with _writing(cfg.save_dir, "create the run folder in --save-dir", "give a writable folder"):
        base.parent.mkdir(parents=True, exist_ok=True)
        for i in range(1000):
            run_dir = base if i == 0 else Path(f"{base}-{i}")
            try:
                run_dir.mkdir()
                return run_dir
            except FileExistsError:
                continue
    raise UserInputError(f"1000 run folders named {base.name}-N exist: choose another --name or --save-dir")


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


def _any_rank(flag: bool, control) -> bool:
    """True on every process if it is True on one (so all stop at the same step)."""
    votes = torch.tensor([float(flag)])
    dist.all_reduce(votes, op=dist.ReduceOp.MAX, group=control)
    return bool(votes.item())


def _check_ranks_agree(model, control) -> None:
    """Every process must hold the same weights (DDP keeps them so, and the masks and
    Dale's-law projection are deterministic); compared by per-tensor sums."""
    sums = torch.stack([p.detach().double().sum() for p in model.parameters()]).cpu()
    low, high = sums.clone(), sums.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN, group=control)
    dist.all_reduce(high, op=dist.ReduceOp.MAX, group=control)
    if not torch.equal(low, high):
        raise RuntimeError("the training processes hold different weights; the run cannot continue")


def find_resume_state(path: Path) -> Path:
    """The state file with the most optimizer steps in a run folder (or ``path`` itself)."""
    if path.is_file():
        return path
    if not path.is_dir():
        raise UserInputError(f"--path {path} does not exist: give a run folder to resume")
    states = list(path.glob("*-epochs_state.pt")) + list(path.glob("interrupted_state.pt"))
    if not states:
        raise UserInputError(f"no resumable state (*_state.pt) in {path}: it was not written by train.py")
    return max(states, key=lambda p: _read_state(p)["global_step"])


def _read_state(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt files
        raise UserInputError(f"resume state {path} is unreadable ({type(err).__name__}): use an earlier checkpoint") from err


def _new_run_dir(cfg: TrainConfig, rank: int, control) -> Path:
    """Process 0 creates the run folder; the others learn its name."""
    name = [str(create_run_dir(cfg)) if rank == 0 else None]
    if control is not None:
        dist.broadcast_object_list(name, src=0, group=control)
    return Path(name[0])


def checked_data(cfg: TrainConfig, resume: Path | None):
    """(clips, path, dataset_identity, train rows, validation rows), after every check
    of the data: the file itself (load_clips), a training split that is not empty,
    and, when resuming, the same dataset the run trained on."""
    clips, data_path = load_dataset(cfg)
    identity = dataset_identity(data_path, clips)
    if resume is not None:
        check_same_dataset(resume.parent, data_path, identity)
    train_rows, val_rows = split_indices(len(clips))
    if len(train_rows) == 0:  # only N = 1: the split keeps at least one clip for validation
        raise UserInputError(f"{data_path} holds {len(clips)} clip, which the split keeps for validation: "
                             "give at least 2 clips")
    return clips, data_path, identity, train_rows, val_rows


def checked_model(cfg: TrainConfig, n_frames: int, data_path: Path):
    """The model of ``cfg`` (initialised from torch's global RNG), or a one-line error
    for an incompatible combination of flags or clips too short for it."""
    try:
        model = build_model(dataclasses.asdict(cfg))
    except ValueError as err:  # e.g. a loss the model cannot use
        raise UserInputError(f"{err}: see --help") from err
    if n_frames < getattr(model, "min_frames", 0):
        raise UserInputError(f"{cfg.model} needs clips of at least {model.min_frames} frames, "
                             f"{data_path} has {n_frames}: use longer clips or fewer groups")
    return model


def set_arithmetic(model, cfg: TrainConfig, device: torch.device) -> str | None:
    """Apply --precision and --recurrence to a model that has its own mixed-precision
    path (the recurrent models); returns the recurrence backend used, or None.

    The rule for --recurrence auto: dense on CUDA (a GPU is bound by kernel launches,
    and dense needs 2 per time step against ~10 for block), block elsewhere (a CPU
    is bound by FLOPs, and block skips ~31% of them at the paper's sizes)."""
    if not hasattr(model, "set_precision"):
        return None
    backend = cfg.recurrence if cfg.recurrence != "auto" else "dense" if device.type == "cuda" else "block"
    model.set_precision(cfg.precision).set_recurrence(backend)
    return backend


def uses_autocast(model, cfg: TrainConfig) -> bool:
    """bf16 for a model without its own mixed-precision path (the feedforward
    controls) is torch.autocast around forward and loss."""
    return cfg.precision == "bf16" and not hasattr(model, "set_precision")


def preflight(cfg: TrainConfig, resume: Path | None = None) -> None:
    """Every check train() makes before it writes anything, for a job about to be
    submitted: the data, the resume's dataset, the model (built on the CPU, with
    torch's RNG state restored afterwards)."""
    clips, data_path, *_ = checked_data(cfg, resume)
    with torch.random.fork_rng(devices=[]):
        checked_model(cfg, clips.shape[1], data_path)


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
    bf16_autocast = uses_autocast(model, cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)  # on the fp32 parameters in every precision
    shuffle_gen = torch.Generator().manual_seed(cfg.seed)
    noise_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    components = ["L1"] + [f"mse{g}" for g in range(len(cfg.hidden_units))]
    history = _new_history(components)
    epoch, step, perm, sums, global_step = 1, 0, None, None, 0

    if resume is not None:
        state = _read_state(resume)
        run_dir = resume.parent
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        shuffle_gen.set_state(state["rng"]["shuffle"])
        try:
            noise_gen.set_state(state["rng"]["noise"])
        except RuntimeError as err:  # CPU and CUDA generators keep states of different kinds
            raise UserInputError(f"{resume.name} was saved on another kind of device than {device}: resume with "
                                 "the --device it trained on (its noise stream cannot move between them)") from err
        torch.set_rng_state(state["rng"]["torch"])
        history, epoch, step, global_step = state["history"], state["epoch"], state["step"], state["global_step"]
        perm = state["permutation"]
        sums = None if state["sums"] is None else state["sums"].to(device)
        if sums is not None and rank > 0:
            sums = torch.zeros_like(sums)  # the saved sums are the total over all processes: count it once
    else:
        run_dir = Path(run_dir) if run_dir is not None else _new_run_dir(cfg, rank, control)
    config = dataclasses.asdict(cfg) | {"dataset_path": str(data_path.absolute()), "dataset_identity": identity,
                                         "n_clips": len(clips),
                                         "n_train": len(train_rows), "n_validation": len(val_rows),
                                         "processes": world, "torch_version": torch.__version__,
                                         "recurrence_backend": backend}
    def writing(what="write to"):
        return _writing(run_dir, what, f"free space or fix the folder, then resume with --path {run_dir}")

    if rank == 0:
        with writing():
            run_dir.mkdir(parents=True, exist_ok=True)
            write_json(run_dir / "config.json", config)

    def log(message, stderr=False):
        """Process 0 appends ``message`` to the run's own log (and, if asked, prints it)."""
        if rank > 0:
            return
        if stderr:
            print(message, file=sys.stderr)
        with writing("append to the log in"):
            _append_log(run_dir, message)

    if resume is None:
        log(f"started: {len(train_rows)} training and {len(val_rows)} validation clips from {data_path}, "
            f"{world} process(es) on {device.type}")
    else:
        log(f"resumed from {resume.name} at epoch {epoch}, step {step}")

    def stop_if_diverged(means, val_means):
        message = divergence(cfg, run_dir, epoch, means, val_means)
        if message is not None:
            bar.close()
            log(message)
            raise TrainingDiverged(message)

    def checkpoint(tag_epoch, interrupted=False):
        if hasattr(model, "project_weights_"):  # what every forward does first (idempotent): the saved
            with torch.no_grad():               # weights are then the same whether validation ran or not
                model.project_weights_()
        total = sums
        if control is not None:  # every process takes part: the weights must agree, the loss sums add up
            _check_ranks_agree(model, control)
            if sums is not None:
                total = sums.clone()
                dist.all_reduce(total)
        if rank > 0:
            return
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "history": history,
                 "epoch": epoch, "step": step, "global_step": global_step, "permutation": perm,
                 "sums": None if total is None else total.cpu(),
                 "rng": {"shuffle": shuffle_gen.get_state(), "noise": noise_gen.get_state().cpu(),
                         "torch": torch.get_rng_state()}}
        with writing("write a checkpoint to"):
            if interrupted:
                with atomic_path(run_dir / "interrupted_state.pt") as tmp:
                    torch.save(state, tmp)
                write_json(run_dir / HISTORY_FILE, history)
            else:
                save_model(run_dir, model, config, tag_epoch, history, train_state=state)
            save_loss_curve(run_dir, history)

    if cfg.epochs == 0 and resume is None:  # the untrained control, saved as a normal checkpoint
        if hasattr(model, "project_weights_"):  # as every forward pass sees it
            with torch.no_grad():
                model.project_weights_()
        if rank == 0:
            with writing("write a checkpoint to"):
                save_model(run_dir, model, config, 0, history)
        log("saved the untrained model (--epochs 0)")
        return run_dir

    n_batches = math.ceil(len(train_src) / cfg.batch_size)
    smallest = len(train_src) - (n_batches - 1) * cfg.batch_size
    if smallest < world:
        raise UserInputError(f"the last batch has {smallest} clips, fewer than the {world} processes: "
                             "use fewer processes or another --batch-size")
    net = model if world == 1 else DistributedDataParallel(  # the buffers are constant masks: no re-sync per step
        model, device_ids=[device.index] if device.type == "cuda" else None, forward_sync_buffers=False)
    started, steps_here = time.monotonic(), 0
    bar = tqdm(total=max(cfg.epochs - epoch + 1, 0) * n_batches, disable=None if progress and rank == 0 else True,
               desc=run_dir.name, unit="step", dynamic_ncols=True)
    with _StopRequest() as stop:
        while epoch <= cfg.epochs:
            if perm is None:
                perm = torch.randperm(len(train_src), generator=shuffle_gen)
            net.train()
            while step < n_batches:
                batch = perm[step * cfg.batch_size:(step + 1) * cfg.batch_size]
                mine = slice(rank * len(batch) // world, (rank + 1) * len(batch) // world)  # this process's clips
                share = (mine.stop - mine.start) / len(batch)
                x = train_src.batch(batch, device)
                # the same noise on input and target, drawn for the whole batch as one process draws it
                xn, yn = (t[mine] for t in model.preprocess_data((x, x), noise_gen))
                optimizer.zero_grad(set_to_none=True)
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(cfg, global_step)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16_autocast):
                    loss, comps = model.get_loss(net(xn), (xn, yn))
                (loss * (share * world)).backward()  # DDP averages over processes: weight each by its share
                torch.nn.utils.clip_grad_value_(model.parameters(), cfg.grad_clip)  # before masking, as the original
                model.mask_gradients()
                optimizer.step()
                values = torch.stack([loss.detach(), *comps.values()]) * share  # stays on the device: no sync per step
                sums = values if sums is None else sums + values
                step, global_step, steps_here = step + 1, global_step + 1, steps_here + 1
                bar.update()
                stop_now = stop.requested
                if control is not None:
                    stop_now = _any_rank(stop_now, control)  # every process stops at the same step
                if stop_now or (cfg.stop_after_steps and steps_here >= cfg.stop_after_steps):
                    diverged = not bool(torch.isfinite(sums).all())
                    if control is not None:  # sums are this process's share until the epoch's all-reduce
                        diverged = _any_rank(diverged, control)
                    if diverged:  # never save a diverged state as resumable
                        if control is not None:
                            dist.all_reduce(sums)  # every process then sees the non-finite total and stops
                        stop_if_diverged(dict(zip(["loss", *components], (sums / step).tolist())), {})
                    checkpoint(epoch - 1, interrupted=True)
                    bar.close()
                    log(f"stop request: saved a resumable state in {run_dir}; continue with --path {run_dir}",
                        stderr=True)
                    stop.saved = run_dir
                    return run_dir

            if control is not None:
                dist.all_reduce(sums)  # each process summed its share of every batch
            means = dict(zip(["loss", *components], (sums / n_batches).tolist()))  # one host sync per epoch
            _append(history["train"], epoch, means)
            line = f"epoch {epoch}/{cfg.epochs} train " + _format_means(means)
            val_means = {}
            if epoch % cfg.validate_every == 0:  # every process validates: all hold the same weights
                model.eval()
                val_means = validate(model, val_src, cfg, device, validation_generator(cfg, device))
                _append(history["validation"], epoch, val_means)
                line += " | validation " + _format_means(val_means)
            if cfg.rf_monitor_every and epoch % cfg.rf_monitor_every == 0 and rank == 0:
                line += " | " + monitor_receptive_fields(model, clips, cfg, history, epoch, global_step)
            log(f"{line} | {time.monotonic() - started:.1f} s since this process started")
            stop_if_diverged(means, val_means)
            bar.set_postfix(epoch=epoch, loss=f"{means['loss']:.4f}", mse0=f"{means['mse0']:.4f}")
            completed, epoch, step, perm, sums = epoch, epoch + 1, 0, None, None  # the state resumes at `epoch`
            # the time limit ends a run only between epochs, so it leaves a normal checkpoint
            out_of_time = cfg.max_minutes > 0 and time.monotonic() - started > 60 * cfg.max_minutes
            if control is not None:
                out_of_time = _any_rank(out_of_time, control)
            if completed % cfg.checkpoint_every == 0 or completed == cfg.epochs or out_of_time:
                checkpoint(completed)
            if out_of_time and epoch <= cfg.epochs:
                bar.close()
                log(f"time limit: stopped after epoch {completed}; continue with --path {run_dir}", stderr=True)
                return run_dir
    bar.close()
    if steps_here == 0 and resume is not None:
        log(f"nothing to train: the run already has {epoch - 1} complete epochs and --epochs is {cfg.epochs}; "
            "give a larger --epochs to continue", stderr=True)
    else:
        log(f"finished epoch {epoch - 1}")
    return run_dir


def build_parser(description: str = __doc__) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    return parser


def config_for(args: argparse.Namespace) -> tuple[TrainConfig, Path | None]:
    """The config to run with, and the state file to resume from (if --path)."""
    if args.path is None:
        return resolve_config(args), None
    state_file = find_resume_state(Path(args.path))
    saved = read_run_config(state_file.parent)
    # a field newer than the run takes what the run used: its default, or for the
    # recurrence the block backend, the only one before the flag existed
    used_then = {"recurrence": "block"}
    values = {f.name: saved.get(f.name, used_then.get(f.name, f.default)) for f in dataclasses.fields(TrainConfig)}
    values.update(max_minutes=0.0, stop_after_steps=0)  # limits of the interrupted process, not of the run
    for f in dataclasses.fields(TrainConfig):
        given = getattr(args, f.name, None)
        if given is None or f.name == "preset":
            continue
        if f.name in _TUPLE_FIELDS:
            given = list(_parse_tuple(f.name, given))
        if f.name == "dataset":
            given = _absolute_dataset(given)
        if f.name not in _RESUME_OVERRIDES and given != values[f.name]:
            raise UserInputError(f"--{f.name.replace('_', '-')} cannot change when resuming; "
                                 f"only {', '.join(sorted(_RESUME_OVERRIDES))} can")
        values[f.name] = given
    for name in _TUPLE_FIELDS:
        values[name] = tuple(values[name])
    cfg = TrainConfig(**values)
    validate_config(cfg, new_run=False)
    return cfg, state_file


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
