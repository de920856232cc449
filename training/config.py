"""The run config as the commands see it: ``TrainConfig`` (one field per flag of
train.py and submit_training_job.py), the presets, the argparse flags built from
it, and how flags, a preset, the model kind's defaults and, on resume, the saved
config combine into one validated config; the checks of the data and the model
against a config, made before anything is written; and the command-line view of
the run folder (create it, find the state to resume, read its config).

This is the commands' side of training: its errors are ``TrainingSetupError`` (and
``ResumeError``) naming the flag and the fix (training.run_dir and training.step
raise ValueError and friends in terms of the run folder).

List flags take either form: ``--hidden-units 800,800,800`` or ``--hidden-units
800 800 800``, likewise ``--beta`` and ``--frame-shape`` (``20 20`` or ``20,20``).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from data.dataset import dataset_identity, load_clips, same_dataset, split_indices
from losses import LOSS_OFFSETS, min_clip_frames
from models import MODELS, build_model, describe_model_defaults, with_model_defaults
from models.base import flag_wording
from models.checkpoint import CheckpointError
from models.network_hierarchical_recurrent import PRECISIONS
from models.recurrence import RECURRENCE_BACKENDS
from models.checkpoint import CONFIG_FILE, WEIGHTS_PATTERN, resume_command
from training.run_dir import RunDir, RunFoldersExhausted, state_position
from training import ResumeError, TrainingSetupError
from utils import MAX_SEED, os_error_reason, portable_path, recorded_path


# The demo's duration, quoted verbatim by the README, submit_training_job.py's docstring
# and --help (tests/test_core_train.py checks all three): measured with --preset demo.
DEMO_TIME = "6 min 49 s on a quiet 2-core CPU, 17 min 11 s under heavy load"


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
    frame_shape: tuple = _f((20, 20), "frame height and width in pixels, space- or comma-separated (paper: 20 20; figure models 20 40)")
    hidden_units: tuple = _f((800, 800, 800), "units per group, comma- or space-separated (paper: 800,800,800)")
    beta: tuple = _f((0.9, 0.1, 0.1), "per-group loss weights, comma- or space-separated (paper: 0.9,0.1,0.1)")
    warmup: int = _f(4, "initial frames excluded from the loss (paper: 4)")
    local_inhibitory_prop: float = _f(0.2, "fraction of each group that is local inhibitory (paper: 0.2)")
    noise_std: float = _f(0.5011, "std of the Gaussian noise added to input and target (paper: 0.5011)")
    detach_targets: bool = _f(False, "stop gradients through higher-group targets (paper: off)")
    grad_clip: float = _f(0.25, "clip each gradient element to +-this before masking (paper: 0.25)")
    lr: float = _f(1e-4, "Adam learning rate (paper: 1e-4)")
    lr_half_life: int = _f(0, "optimizer steps over which the learning rate halves, lr * 0.5**(step / this): a "
                              "function of the step count alone, so resuming stays exact; 0 = constant (paper)")
    lr_floor: float = _f(0.0, "the decaying learning rate stops falling at this value (e.g. the paper's 1e-4, so a "
                              "long run goes on at the paper's rate); 0 = no floor")
    batch_size: int = _f(100, "clips per step (paper: 100)")
    epochs: int = _f(2000, "epochs to train (paper: 2000); 0 saves the untrained model")
    validate_every: int = _f(10, "epochs between validation passes (paper: 10)")
    checkpoint_every: int = _f(1000, "epochs between checkpoints (paper: 1000); the last epoch is always saved")
    seed: int = _f(0, "seed for initialisation, shuffling and noise, 0 to 4294967295 (the original seeded nothing)")
    device: str = _f("auto", "cpu, cuda, cuda:N, or auto (cuda when available); under torchrun each "
                             "process takes the GPU of its LOCAL_RANK")
    tf32: bool = _f(False, "TF32 products on Ampere+ GPUs as the original had them: the recurrent layer's (cuDNN's "
                           "RNN default) but not the readout's (faster, ~1e-3 relative error; no effect on CPUs)")
    precision: str = _f("fp32", "fp32 (the paper's arithmetic) or bf16: bfloat16 matrix products with float32 "
                                "accumulation, fp32 master weights, Adam state and loss (several times faster on "
                                "CPUs with AMX and on GPUs; paper: fp32)")
    recurrence: str = _f("auto", "recurrent products: block (skip W_hh's zero blocks; fastest for fp32 on CPUs), "
                                 "dense (one product per time step; GPUs, small bf16 models on AMX CPUs) or auto (dense "
                                 "on CUDA and for bf16 on AMX CPUs up to 1,200 units, block otherwise); the same "
                                 "maths, the choice is recorded as recurrence_backend")
    cuda_graph: bool = _f(False, "replay each training step as one captured CUDA graph (one process on one GPU): "
                                 "the step's hundreds of small kernels launch at once; the same maths, to float32 "
                                 "rounding (the original: off, it had no such option)")
    threads: str = _f("auto", "CPU threads of the training process: auto (torch's default, one per core; idle "
                              "threads sleep, OMP_WAIT_POLICY=PASSIVE, unless the environment sets it, so other "
                              "jobs on the CPU slow a step by their share only) or a number; the count used is "
                              "recorded as torch_threads")
    amp: bool = _f(False, "deprecated alias of --precision bf16")
    save_dir: str = _f("model_checkpoints", "folder that receives the run folder")
    max_minutes: float = _f(0.0, "stop at the end of the epoch that passes this many minutes, with a normal "
                                 "(resumable) checkpoint, and exit with status 3 if epochs remain; 0 = no limit")
    stop_after_steps: int = _f(0, "stop cleanly after this many optimizer steps in this process, as on "
                                  "Ctrl-C, and exit with status 3 (for tests and time-boxed jobs); 0 = no limit")
    rf_monitor_every: int = _f(0, "epochs between monitor checks (group 1's Gabor-like fraction by the original's "
                                  "test and orientation index, units responsive per group, F1/F0 > 1 on a reduced "
                                  "grating set, feedback reliance, W_hh block weights, clean MSE against copy-last), "
                                  "logged and plotted; 0 = off (paper: off)")
    rf_monitor_clips: int = _f(1000, "white-noise clips per receptive-field check")
    preset: str = _f("", f"named preset applied before explicit flags: 'demo' (3 x 100 units, 60 epochs, "
                         f"then an RF summary; {DEMO_TIME})")

    def __post_init__(self):
        if self.amp:  # the deprecated --amp is --precision bf16, and the saved config says so
            self.precision = "bf16"


PRESETS = {
    # A small model for a 2-core CPU: 2,760 steps (DEMO_TIME), always all 60 epochs, so
    # its summary never silently describes a shorter run. Too short for oriented,
    # Gabor-like receptive fields (a few thousand steps give localized ON/OFF blobs); it
    # shows the whole pipeline and the prediction error falling below the copy-last baseline.
    "demo": dict(name="demo", hidden_units=(100, 100, 100), L1=-4.0, lr=3e-3, epochs=60,
                 validate_every=10, checkpoint_every=20, rf_monitor_every=30, rf_monitor_clips=500),
}

_TUPLE_FIELDS = {"frame_shape": int, "hidden_units": int, "beta": float}
_LIST_METAVARS = {"frame_shape": "PIXELS", "hidden_units": "UNITS", "beta": "WEIGHT"}
# Flags that may differ from the saved config when resuming; a new --dataset must hold
# the same content (train() compares the saved dataset_identity). All keep the resume
# bit-exact except --device, --recurrence and --threads, which change the summation order, and
# --cuda-graph, whose capturable Adam rounds its bias correction differently.
_RESUME_OVERRIDES = {"epochs", "device", "recurrence", "cuda_graph", "threads", "checkpoint_every", "validate_every",
                     "max_minutes", "stop_after_steps", "dataset", "rf_monitor_every", "rf_monitor_clips"}


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field (defaults None, so explicit flags can be told apart)."""
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{f.metadata['help']} [default: {f.default}]"
        if f.type == "bool" or isinstance(f.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif f.name in _TUPLE_FIELDS:  # "800,800,800" or "800 800 800": old commands used one or the other
            parser.add_argument(flag, type=str, nargs="+", metavar=_LIST_METAVARS[f.name], default=None,
                                help=help_text)
        else:
            parser.add_argument(flag, type=type(f.default), default=None, help=help_text)
    parser.add_argument("--path", default=None, help="resume from this run folder (or a state file in it)")


def parse_number_list(name: str, value) -> tuple:
    """A list flag's value as a tuple of numbers of its field's type: ``value`` is one
    string ("6,5,4"), the strings argparse collected (["6", "5", "4"], or mixed, ["6,5",
    "4"]), or already numbers (a saved config's list). Empty items (a trailing comma) are
    skipped."""
    if isinstance(value, str):
        value = [value]
    if all(isinstance(v, str) for v in value):
        items = [item for text in value for item in text.split(",") if item.strip()]
        try:
            return tuple(_TUPLE_FIELDS[name](item) for item in items)
        except ValueError as err:
            raise TrainingSetupError(f"--{name.replace('_', '-')} {','.join(value)!r} is not a comma-separated list of "
                                     "numbers (spaces between them work too)") from err
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
            raise TrainingSetupError(f"unknown preset {preset!r}: choose from {', '.join(PRESETS)}")
        values.update(PRESETS[preset])
    values.update(explicit)
    if explicit.get("amp") and explicit.get("precision", "bf16") != "bf16":
        raise TrainingSetupError(f"--amp (the deprecated alias of --precision bf16) contradicts --precision "
                                 f"{explicit['precision']}: drop one")
    for name in _TUPLE_FIELDS:
        if name in values:
            values[name] = parse_number_list(name, values[name])
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
        raise TrainingSetupError(f"--name {cfg.name!r} is not a plain name: use up to {MAX_NAME_LENGTH} letters, digits, "
                                 "'_', '-' or '.', starting with a letter or digit (the folder goes in --save-dir)")
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        numbers = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) for v in numbers):
            raise TrainingSetupError(f"--{f.name.replace('_', '-')} {value} is not finite: give finite numbers (see --help)")
    if cfg.model not in MODELS:
        raise TrainingSetupError(f"unknown --model {cfg.model!r}: choose from {', '.join(sorted(MODELS))}")
    if cfg.loss not in LOSS_OFFSETS:
        raise TrainingSetupError(f"unknown --loss {cfg.loss!r}: choose from {', '.join(sorted(LOSS_OFFSETS))}")
    if cfg.precision not in PRECISIONS:
        raise TrainingSetupError(f"unknown --precision {cfg.precision!r}: choose from {', '.join(PRECISIONS)}")
    if cfg.threads != "auto" and not (cfg.threads.isdigit() and int(cfg.threads) >= 1):
        raise TrainingSetupError(f"--threads {cfg.threads!r} is neither auto nor a positive whole number: e.g. --threads 1")
    if cfg.tf32 and cfg.precision != "fp32":
        raise TrainingSetupError(f"--tf32 changes only float32 products, and --precision {cfg.precision} has none: "
                                 "drop --tf32 or use --precision fp32")
    if cfg.recurrence not in ("auto", *RECURRENCE_BACKENDS):
        raise TrainingSetupError(f"unknown --recurrence {cfg.recurrence!r}: choose from auto, {', '.join(RECURRENCE_BACKENDS)}")
    if len(cfg.frame_shape) != 2 or min(cfg.frame_shape) < 1:
        raise TrainingSetupError(f"--frame-shape needs two positive integers, got {cfg.frame_shape}")
    if not cfg.hidden_units or min(cfg.hidden_units) < 1:
        raise TrainingSetupError(f"--hidden-units needs positive group sizes, got {cfg.hidden_units}")
    if len(cfg.beta) != len(cfg.hidden_units):
        raise TrainingSetupError(f"--beta has {len(cfg.beta)} weights for {len(cfg.hidden_units)} groups: give one per group")
    if min(cfg.beta) < 0 or sum(cfg.beta) <= 0:
        raise TrainingSetupError(f"--beta {cfg.beta} needs weights >= 0, at least one of them positive")
    checks = [("batch_size", cfg.batch_size >= 1), ("epochs", cfg.epochs >= 0), ("lr", cfg.lr > 0),
              ("lr_half_life", cfg.lr_half_life >= 0),
              ("lr_floor", 0 <= cfg.lr_floor <= cfg.lr), ("validate_every", cfg.validate_every >= 1), ("checkpoint_every", cfg.checkpoint_every >= 1),
              ("warmup", cfg.warmup >= 0), ("noise_std", cfg.noise_std >= 0), ("grad_clip", cfg.grad_clip > 0),
              ("local_inhibitory_prop", 0 <= cfg.local_inhibitory_prop < 1), ("max_minutes", cfg.max_minutes >= 0),
              ("stop_after_steps", cfg.stop_after_steps >= 0),
              ("L1", cfg.L1 <= 300),  # lambda = 10 ** L1 must be a float
              ("seed", 0 <= cfg.seed <= MAX_SEED),
              ("rf_monitor_every", cfg.rf_monitor_every >= 0), ("rf_monitor_clips", cfg.rf_monitor_clips >= 1)]
    for name, ok in checks:
        if not ok:
            fix = f"seeds are 0 to {MAX_SEED}" if name == "seed" else "see --help"
            raise TrainingSetupError(f"--{name.replace('_', '-')} {getattr(cfg, name)} is out of range: {fix}")


def run_name(cfg: TrainConfig) -> str:
    return f"{cfg.name}_{cfg.L1:g}L1_seed{cfg.seed}"


def build_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    return parser


def tell_deprecations(args: argparse.Namespace) -> None:
    """Say once per command (not once per job of a sweep) which given flags are deprecated."""
    if getattr(args, "amp", None):
        print("warning: --amp is deprecated: use --precision bf16 (the same arithmetic)", file=sys.stderr)


def config_for(args: argparse.Namespace) -> tuple[TrainConfig, Path | None]:
    """The config to run with, and the state file to resume from (if --path)."""
    if args.path is None:
        return resolve_config(args), None
    state_file = find_resume_state(Path(args.path))
    saved = read_run_config(state_file.parent)
    check_config_matches_weights(state_file.parent, saved)
    # a field newer than the run takes what the run used: its default, or for the
    # recurrence the block backend, the only one before the flag existed
    used_then = {"recurrence": "block"}
    values = {f.name: saved.get(f.name, used_then.get(f.name, f.default)) for f in dataclasses.fields(TrainConfig)}
    values.update(max_minutes=0.0, stop_after_steps=0)  # limits of the interrupted process, not of the run
    if values["dataset"] != "default":  # recorded relative to the repository (recorded_dataset)
        values["dataset"] = str(recorded_path(values["dataset"]))
        if not Path(values["dataset"]).exists() and saved.get("dataset_recipe"):
            # an embedded-dataset build from another machine: rebuild it here from its
            # recipe, checked against the run's fingerprint (TrainingDataError if it differs)
            from data.default_dataset import training_data

            values["dataset"] = str(training_data(saved))
    for f in dataclasses.fields(TrainConfig):
        given = getattr(args, f.name, None)
        if given is None or f.name == "preset":
            continue
        if f.name in _TUPLE_FIELDS:
            given = list(parse_number_list(f.name, given))
        if f.name == "dataset":
            given = _absolute_dataset(given)
        if f.name not in _RESUME_OVERRIDES and given != values[f.name]:
            raise ResumeError(f"--{f.name.replace('_', '-')} cannot change when resuming; "
                              f"only {', '.join(sorted(_RESUME_OVERRIDES))} can")
        values[f.name] = given
    for name in _TUPLE_FIELDS:
        values[name] = tuple(values[name])
    cfg = TrainConfig(**values)
    validate_config(cfg, new_run=False)
    return cfg, state_file


# -------------------------------------------------------------------------------------------
# Data and model, checked against the config before anything is written
# -------------------------------------------------------------------------------------------
def load_dataset(cfg: TrainConfig):
    if cfg.dataset == "default":
        from data.default_dataset import default_dataset_path

        path = default_dataset_path(tuple(cfg.frame_shape))
    else:
        path = Path(cfg.dataset)
    min_frames = min_clip_frames(cfg.warmup, cfg.loss)
    return load_clips(path, tuple(cfg.frame_shape), min_frames), path


def recorded_dataset(cfg: TrainConfig, data_path: Path) -> dict:
    """How config.json names the run's data and folders: ``dataset``, ``dataset_path``
    and ``save_dir`` relative to the repository when inside it (utils.portable_path),
    and ``dataset_recipe``, the flags that rebuild an embedded-dataset build anywhere
    (data.default_dataset.recipe_of; None for other data)."""
    from data.default_dataset import recipe_of

    return {"dataset": cfg.dataset if cfg.dataset == "default" else portable_path(cfg.dataset),
            "dataset_path": portable_path(data_path), "dataset_recipe": recipe_of(data_path),
            "save_dir": portable_path(cfg.save_dir)}


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
        raise ResumeError(f"{data_path} is not the dataset {run_dir.name} trained on ({difference}): resume with "
                          f"that file (--dataset {saved.get('dataset_path', 'PATH')}) or start a new run")


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
        raise TrainingSetupError(f"{data_path} holds {len(clips)} clip, which the split keeps for validation: "
                                 "give at least 2 clips")
    return clips, data_path, identity, train_rows, val_rows


def checked_model(cfg: TrainConfig, n_frames: int, data_path: Path):
    """The model of ``cfg`` (initialised from torch's global RNG), or a one-line error
    for an incompatible combination of flags or clips too short for it."""
    try:
        model = build_model(dataclasses.asdict(cfg))
    except CheckpointError:  # a lower stack's checkpoint: the message names the file and the fix
        raise
    except ValueError as err:  # e.g. a loss the model cannot use (a SettingError: named by its flags)
        raise TrainingSetupError(f"{flag_wording(err)}: see --help") from err
    if n_frames < model.min_frames:
        raise TrainingSetupError(f"{cfg.model} needs clips of at least {model.min_frames} frames, "
                                 f"{data_path} has {n_frames}: use longer clips or fewer groups")
    return model


# --recurrence auto: the largest model (hidden units) that takes the dense backend
# for bf16 on a CPU with AMX tiles (auto_recurrence)
DENSE_BF16_CPU_MAX_HIDDEN = 1200


def auto_recurrence(device: torch.device, precision: str, n_hidden: int) -> str:
    """--recurrence auto: "dense" on CUDA, where a step is bound by kernel launches
    (dense takes 2 per time step, block ~10). On a CPU "block", which skips ~31% of
    the FLOPs at the paper's sizes, except for bf16 on a CPU with AMX tiles up to
    ``DENSE_BF16_CPU_MAX_HIDDEN`` units: there the bf16 products cost so little that
    the calls saved outweigh the extra FLOPs (bench_train, 2-core AMX CPU, 1 thread,
    dense against block: 3x100 0.051 s against 0.065, 3x400 0.195 against 0.198,
    3x800 0.523 against 0.508)."""
    if device.type == "cuda":
        return "dense"
    if precision == "bf16" and n_hidden <= DENSE_BF16_CPU_MAX_HIDDEN and torch.cpu._is_amx_tile_supported():
        return "dense"
    return "block"


def native_bf16_cpu() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AMX tiles or AVX512-BF16)."""
    return torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()


def slow_bf16_warning(cfg: TrainConfig, device: torch.device) -> str | None:
    """One line when --precision bf16 would run on a CPU without native bf16 products,
    where it is several times slower than fp32 (bench_train on an AVX2 CPU, 3 x 100:
    fp32 0.20 s, bf16 2.3 s per step); None otherwise."""
    if cfg.precision != "bf16" or device.type != "cpu" or native_bf16_cpu():
        return None
    return ("warning: this CPU has no native bf16 matrix products (no AMX, no AVX512-BF16), so --precision bf16 "
            "runs several times slower than fp32 here: use --precision fp32")


def set_arithmetic(model, cfg: TrainConfig, device: torch.device) -> str | None:
    """Apply --precision, --recurrence and --tf32; returns the recurrence backend
    used, or None for a model without its own mixed-precision path.

    --tf32 on the recurrent models is the original's split (their ``set_tf32``): the
    recurrent layer in TF32, the readout and loss in IEEE float32, so torch's global
    float32 products stay IEEE. The other models have no recurrent layer to single
    out, and --tf32 lets all their float32 CUDA products use TF32.

    The rule for --recurrence auto (``auto_recurrence``)."""
    if not model.own_mixed_precision:
        torch.set_float32_matmul_precision("high" if cfg.tf32 else "highest")
        return None
    torch.set_float32_matmul_precision("highest")
    backend = cfg.recurrence if cfg.recurrence != "auto" else auto_recurrence(device, cfg.precision, model.n_hidden)
    model.set_precision(cfg.precision).set_recurrence(backend).set_tf32(cfg.tf32)
    return backend


def preflight(cfg: TrainConfig, resume: Path | None = None) -> None:
    """Every check train() makes before it writes anything, for a job about to be
    submitted: the data, the resume's dataset, the model (built on the CPU, with
    torch's RNG state restored afterwards)."""
    clips, data_path, *_ = checked_data(cfg, resume)
    with torch.random.fork_rng(devices=[]):
        checked_model(cfg, clips.shape[1], data_path)


# -------------------------------------------------------------------------------------------
# The run folder, as the commands see it
# -------------------------------------------------------------------------------------------
def read_run_config(run_dir: Path) -> dict:
    """A run folder's config.json, or a one-line error if it is missing or corrupt."""
    run = RunDir(run_dir)
    path = run.config_path
    try:
        return run.read_config()
    except FileNotFoundError as err:
        raise ResumeError(f"{path} is missing: {run_dir} was not written by train.py, or is incomplete") from err
    except TypeError as err:
        raise ResumeError(f"{path} does not hold a config object: restore it or start a new run") from err
    except ValueError as err:
        raise ResumeError(f"{err}: restore it from the metadata of a weights file in that folder or start "
                          "a new run") from err


# What makes a run's model and objective: an edit of one of these in config.json that
# keeps every tensor's shape (a 4x4 frame read as 2x8) would resume as another model.
MODEL_DEFINING = ("model", "loss", "frame_shape", "hidden_units", "beta", "warmup", "local_inhibitory_prop",
                  "noise_std", "detach_targets", "kernel_size_t", "grad_clip", "lr", "lr_half_life", "lr_floor",
                  "L1", "batch_size", "seed")


def check_config_matches_weights(run_dir: Path, saved: dict) -> None:
    """Refuse to resume when config.json's model-defining settings differ from the
    config that the run's latest weights file carries in its metadata (written with
    the weights, so the two agree unless config.json was edited). A run without a
    safetensors checkpoint yet has nothing to compare."""
    try:
        weights = RunDir(run_dir).latest_weights()
    except FileNotFoundError:
        return
    if weights.suffix != ".safetensors":
        return
    with safe_open(str(weights), framework="pt") as f:
        recorded = json.loads((f.metadata() or {}).get("config", "{}"))
    changed = [name for name in MODEL_DEFINING if name in recorded and name in saved
               and json.dumps(recorded[name]) != json.dumps(saved[name])]
    if changed:
        raise ResumeError(f"{RunDir(run_dir).config_path} disagrees with the config stored in {weights.name} on "
                          f"{', '.join(changed)}: restore config.json from that file's metadata, or start a new run")


def find_resume_state(path: Path) -> Path:
    """The state file to resume from: a run folder's latest (the most optimizer steps),
    or ``path`` itself when it is a state file. The folder's config.json, or its latest
    weights file, stands for the folder; an earlier weights file is refused, naming
    the folder and that epoch's state file as the two choices."""
    if path.is_file() and path.name != CONFIG_FILE and not WEIGHTS_PATTERN.match(path.name):
        if not RunDir(path.parent).config_path.is_file():
            raise ResumeError(f"--path {path} is no state file of a run folder (there is no config.json beside "
                              "it): give the run folder, or an N-epochs_state.pt in it")
        return path
    folder = path.parent if path.is_file() else path
    if not folder.is_dir():
        raise ResumeError(f"--path {path} does not exist: give a run folder to resume")
    try:
        latest = RunDir(folder).latest_state()
    except FileNotFoundError as err:
        if RunDir(folder).config_path.is_file():
            raise ResumeError(f"no resumable state (*_state.pt) in {folder}: the run stopped before it saved one; "
                              "start it again") from err
        raise ResumeError(f"no resumable state (*_state.pt) in {folder}: it was not written by train.py") from err
    except ValueError as err:
        raise ResumeError(f"{err}: use an earlier checkpoint") from err
    match = WEIGHTS_PATTERN.match(path.name) if path.is_file() else None
    if match and latest != RunDir(folder).state_path(int(match.group(1))):
        epoch_state = RunDir(folder).state_path(int(match.group(1)))
        other = f", or --path {epoch_state} to resume from epoch {match.group(1)}" if epoch_state.is_file() else ""
        raise ResumeError(f"{path} is a weights file, and {folder}'s latest state is {latest.name}: give --path "
                          f"{folder} to continue from it{other}")
    return latest


def cut_short_note(run_dir) -> str | None:
    """One line for a run that stopped before its last epoch (--max-minutes,
    --stop-after-steps, a signal): how far it got and the command that continues
    it; None for a finished run or a folder without a readable state and config."""
    run = RunDir(run_dir)
    try:
        config, position = run.read_config(), state_position(run.latest_state())
    except (OSError, ValueError, TypeError):
        return None
    epochs, done = int(config["epochs"]), position["epoch"] - 1  # the state resumes in epoch done + 1
    if done >= epochs:
        return None
    where = f"after epoch {done}" if position["step"] == 0 else f"during epoch {done + 1}"
    total = ""
    if config.get("n_train") and config.get("batch_size"):
        total = f" of {epochs * math.ceil(config['n_train'] / config['batch_size']):,}"
    return (f"cut short {where} of {epochs} (optimizer step {position['global_step']:,}{total}); "
            f"continue with: {resume_command(run_dir)}")


@contextlib.contextmanager
def writing(where, what: str, fix: str):
    """Turn a failed write (read-only or full disk, a file in the way; safetensors
    reports a full disk as SafetensorError) into a one-line TrainingSetupError.
    atomic_path has already removed its temporary, so nothing is half-written."""
    try:
        yield
    except (OSError, SafetensorError) as err:
        raise TrainingSetupError(f"cannot {what} {where} ({os_error_reason(err)}): {fix}") from err


def create_run_dir(cfg: TrainConfig) -> Path:
    """Create a new run folder NAME_<L1>L1_seed<S>_<date-time> (training.run_dir.RunDir.create:
    distinct even for runs started in the same second)."""
    with writing(cfg.save_dir, "create the run folder in --save-dir", "give a writable folder"):
        try:
            return RunDir.create(cfg.save_dir, run_name(cfg)).path
        except RunFoldersExhausted as err:
            raise TrainingSetupError(f"{err}: choose another --name or --save-dir") from err
