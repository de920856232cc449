"""One stack of the stacked feedforward temporal-prediction model TP_FF
(the paper's TP_FF control), trained on top of frozen stacks.

TP_FF is trained stack by stack. Stack 0 learns to predict the next frame
from the last k = 5 frames; stack g learns to predict the next hidden state
of stack g-1 from its last 5 hidden states, with stacks 0 .. g-1 frozen.
This model holds the frozen stacks below as groups 0 .. g-1 (their
parameters do not require gradients) and the stack being trained as group g,
so it computes its own input from the raw frames and trains with the usual
loop; its loss is stack g's error plus lam * sum|W| of stack g (the frozen
stacks' errors are reported, unweighted, for monitoring only).

    python submit_training_job.py --model network_feedforward           # stack 0 (800 units) -> RUN0
    ... --hidden-units 800,800 --lower-stacks RUN0                      # stack 1 -> RUN1
    ... --hidden-units 800,800,800 --lower-stacks RUN1                  # stack 2 -> RUN2
    python -m models.network_feedforward_stacked RUN0 RUN1 RUN2 --out TP_FF_RUN   # for the analyses

The last command builds ``NetworkFeedforwardStacked`` (below): every stack,
group g = stack g, saved as a self-contained checkpoint.

Every run holds all the stacks below it, so ``--lower-stacks`` needs only the
newest run (a comma-separated list of runs, bottom-up, is checked to be one
chain). Loading a run rebuilds it from its config, so the run named in
``--lower-stacks`` must still exist; the stacked checkpoint needs nothing else.

The readout is the original's transposed convolution (one bias shared by
the P pixels of the predicted frame, initial scale U(+-1/sqrt(P));
models/temporal_convolution.py, ``TransposedConvReadout``). The one
difference from the original's stack: P comes from the frame shape (it was
fixed at 800).
"""
from __future__ import annotations

import torch

from models.base import SettingError
from models.io import load_model
from models.temporal_convolution import TemporalConvHierarchy


class NetworkFeedforward(TemporalConvHierarchy):
    transposed_readout = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for stack in self.stacks[:-1]:
            stack.requires_grad_(False)

    @property
    def trained_groups(self) -> tuple[int, ...]:
        return (len(self.group_sizes) - 1,)

    @classmethod
    def from_config(cls, config: dict) -> "NetworkFeedforward":
        """Build from a resolved run config; stacks 0 .. g-1 are copied from the
        run(s) in ``config["lower_stacks"]``."""
        cls.check_config(config)
        model = cls(**cls.init_arguments(config))
        lower = [run.strip() for run in config.get("lower_stacks", "").split(",") if run.strip()]
        n_lower = len(model.group_sizes) - 1
        if n_lower and not lower:
            raise SettingError(f"stack {n_lower} of TP_FF trains on the {n_lower} trained stack(s) below it: "
                               "pass {lower_stacks} RUN (the run of the stack below)", "lower_stacks")
        if lower and not n_lower:
            raise SettingError("{lower_stacks} needs a stack to train on top: list every stack's size in "
                               "{hidden_units}, the new one last", "lower_stacks", "hidden_units")
        if lower:
            model.load_lower_stacks_(lower)
        return model

    @torch.no_grad()
    def load_lower_stacks_(self, runs: list[str]) -> None:
        """Copy the trained stacks of ``runs`` into groups 0 .. g-1."""
        below, _ = stack_runs(runs)
        wanted = (self.frame_shape, self.kernel_size_t, self.group_sizes[:-1])
        found = (below.frame_shape, below.kernel_size_t, below.group_sizes)
        if found != wanted:
            sizes = ",".join(str(n) for n in below.group_sizes)
            raise SettingError(
                f"{{lower_stacks}} {','.join(runs)} has frame shape {below.frame_shape}, kernel {below.kernel_size_t} "
                f"and stacks ({sizes}): pass {{frame_shape}} {below.frame_shape[0]} {below.frame_shape[1]} "
                f"{{kernel_size_t}} {below.kernel_size_t} {{hidden_units}} {sizes},N",
                "lower_stacks", "frame_shape", "kernel_size_t", "hidden_units")
        for mine, trained in zip(self.stacks, below.stacks):
            mine.load_state_dict(trained.state_dict())


class NetworkFeedforwardStacked(TemporalConvHierarchy):
    """Every stack, for probing; ``get_loss`` is the FF loss over all stacks."""

    transposed_readout = True

    @classmethod
    def from_config(cls, config: dict) -> "NetworkFeedforwardStacked":
        if "stacked_from" not in config:
            raise SettingError("network_feedforward_stacked is assembled, not trained: train each stack with "
                               "{model} network_feedforward, then run python -m models.network_feedforward_stacked",
                               "model")
        return cls(**cls.init_arguments(config))


def _same_stack(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def stack_runs(runs) -> tuple[NetworkFeedforwardStacked, dict]:
    """Chain the stacks of feedforward runs (bottom-up) into one model: the
    first run's stacks, then each later run's stacks above those it was trained
    on. Returns the model and the top run's config. Runs that do not form one
    chain are a ValueError (a ``SettingError`` where a setting is the fix); an
    unreadable run is ``models.io.load_model``'s error."""
    if not runs:
        raise ValueError("no runs given: list the TP_FF stack runs bottom-up")
    chain, first, last_config = [], None, None
    for run in runs:
        model, last_config, _ = load_model(run)
        if not isinstance(model, TemporalConvHierarchy):
            raise SettingError(f"{run} holds a {type(model).__name__}, not feedforward stacks: "
                               "give runs of {model} network_feedforward", "model")
        if first is None:
            first = model
        if (model.frame_shape, model.kernel_size_t) != (first.frame_shape, first.kernel_size_t):
            raise ValueError(f"{run} has frame shape {model.frame_shape} and kernel {model.kernel_size_t}, "
                             f"unlike {runs[0]}: stack runs of one model only")
        n = len(chain)
        if len(model.stacks) <= n or not all(_same_stack(a, b) for a, b in zip(model.stacks, chain)):
            raise SettingError(f"{run} was not trained on top of the runs listed before it: list the runs "
                               "bottom-up, each trained with {lower_stacks} set to the one before", "lower_stacks")
        chain.extend(model.stacks[n:])
    stacked = NetworkFeedforwardStacked(first.frame_shape, [s.conv.out_channels for s in chain],
                                        first.kernel_size_t, lam=model.lam, noise_std=model.noise_std)
    with torch.no_grad():
        for mine, trained in zip(stacked.stacks, chain):
            mine.load_state_dict(trained.state_dict())
    return stacked, last_config
