"""One optimizer step and the state that resumes a run: what the training loop
(training/loop.py) is made of, shared by the tests and benchmarks so that none
re-writes the step.

``cfg`` below is a ``training.config.TrainConfig`` or any object with the fields used:
``precision`` ("fp32" | "bf16"), ``grad_clip``, ``lr``, ``lr_half_life`` and,
for ``validate``, ``batch_size`` and ``seed``. Below the step: the resumable
state (TrainState) and the loss history's layout and plot.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch
from torch import nn

from training import ResumeError
from training.run_dir import RunDir, read_state_file, write_state_file
from utils import atomic_path


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


class StateDoesNotFitModel(ResumeError):
    """A state file's weights have other names or shapes than the model its run's
    config.json describes (the config was edited or replaced)."""


class NoiseStateOnOtherDevice(ResumeError):
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
# The loss history: {"train": {"epoch": [...], "loss": [...], "L1": [...], "mse0": [...] ...},
# "validation": {same keys}} and, with the receptive-field monitor, "rf_monitor"
# -------------------------------------------------------------------------------------------
def loss_components(cfg) -> list[str]:
    """The columns after "loss" of ``cfg``'s loss history, in the order a step returns
    them: the L1 term, then one next-frame MSE per group ("mse0", "mse1" ...)."""
    return ["L1"] + [f"mse{g}" for g in range(len(cfg.hidden_units))]


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
