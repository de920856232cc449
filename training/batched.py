"""K independent hierarchical recurrent models of one shape, trained as one
batched computation (``submit_training_job.py --batched``, for --L1 / --seed sweeps).

Every parameter of the K models is stacked along a new leading axis: W_hh is
(K, H, H), W_ih (K, n_1, P), readout block g (K, O_g, n_g), biases (K, H) and
(K, O). Each product of the single model becomes one batched product over k
(``torch.baddbmm``), so a time step costs 2 kernels per block for all K models
instead of 2 per model, and the small products of a small model fill the CPU's
(or GPU's) vector units K times better.

Model k gets what its own run would get: it is initialised by its own seed, its
clips come in its own shuffle order with its own noise generator (train.py's
streams), its loss has its own lambda, and the step is train.py's (noise, loss,
backward, clip each gradient element to +-grad_clip, mask, Adam). The models
share nothing: the batched loss is the sum of the K losses, whose gradient with
respect to model k's slice is model k's own gradient, and clipping, masking and
Adam are elementwise, so one Adam over the stacked tensors is K Adams. Only the
summation order of the products differs from the single model's block
recurrence, so the weights agree with the single runs to float32 rounding
(tests/test_core_batched.py).

--precision bf16 is the single model's mixed precision (bfloat16 products with
float32 accumulation, fp32 master weights, Adam state and loss); its rounded
outputs then differ from a single run's by one bf16 step in a few entries, which
later steps inherit, so a bf16 sweep follows its single runs only approximately.

Each model keeps its own run folder, config.json, log, weights and resume state
in train.py's format: a state written here resumes as a single run
(``train.py --path RUN``, to float32 rounding), and resuming the sweep
(``--batched --path`` any of its folders) continues all K bit-exactly.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import sys
from pathlib import Path

import torch
from torch import nn

from data.dataset import ClipSource, fits_on
from losses import LOSSES, offset_mse_loss
from models.network_hierarchical_recurrent import NetworkHierarchicalRecurrent
from models.recurrence import LinearInTF32, recurrence_blocks, tf32_products
from training import ResumeError, TrainingSetupError
from training.config import (check_same_dataset, checked_data, checked_model, config_for, create_run_dir,
                             read_run_config, recorded_dataset, set_arithmetic)
from training.loop import Monitor, Run, RunWriter, resumed_state, run_epochs
from training.run_dir import RunDir
from training.step import TrainState, learning_rate, loss_components, new_history
from utils import keep_freed_memory, resolve_device, seed_everything, set_threads

# config.json key naming the run folders trained together (siblings in one --save-dir)
SWEEP_KEY = "batched_sweep"
# the only settings in which the K runs of a batched sweep may differ
PER_MODEL_FIELDS = ("L1", "seed")


class BatchedReluRecurrence(torch.autograd.Function):
    """K independent ReLU recurrences h_t[k] = ReLU(drive_t[k] + h_{t-1}[k] W[k]^T),
    h_{-1} = 0, with the product layout ``blocks`` of ``models.recurrence`` (the
    same for every k: the models share one mask). drive: (K, T, B, H) contiguous,
    weight: (K, H, H) rows postsynaptic. Returns h: (K, T, B, H). Model-major, so
    step t of every model, h[:, t], is K row-major matrices (a strided batch for
    ``bmm``) and the products over all steps below need no copies.

    The backward pass mirrors ``ReluRecurrence``'s: dh_t = g_t + dpre_{t+1} W per
    block, and per block one batched product over all steps and clips for dW."""

    @staticmethod
    def forward(ctx, drive, weight, blocks, tf32=False):
        if drive.dtype != weight.dtype:
            raise TypeError(f"drive is {drive.dtype} but weight is {weight.dtype}: cast both to one dtype")
        ctx.tf32 = tf32
        with tf32_products(tf32):
            return BatchedReluRecurrence._forward(ctx, drive, weight, blocks)

    @staticmethod
    def _forward(ctx, drive, weight, blocks):
        T = drive.shape[1]
        h = torch.empty_like(drive)
        torch.clamp_min(drive[:, 0], 0.0, out=h[:, 0])
        weight_t = weight.transpose(1, 2)
        for t in range(1, T):
            for r0, r1, runs in blocks:
                pre = drive[:, t, :, r0:r1]
                for i, (c0, c1) in enumerate(runs):
                    w_t = weight_t[:, c0:c1, r0:r1]
                    if i == 0:
                        pre = torch.baddbmm(pre, h[:, t - 1, :, c0:c1], w_t)
                    else:
                        pre.baddbmm_(h[:, t - 1, :, c0:c1], w_t)
                torch.clamp_min(pre, 0.0, out=h[:, t, :, r0:r1])
        ctx.save_for_backward(h, weight)
        ctx.blocks = blocks
        return h

    @staticmethod
    def backward(ctx, grad_h):
        with tf32_products(ctx.tf32):
            return BatchedReluRecurrence._backward(ctx, grad_h) + (None,)

    @staticmethod
    def _backward(ctx, grad_h):
        h, weight = ctx.saved_tensors
        K, T, B, H = h.shape
        active = h > 0  # ReLU'(pre) as PyTorch evaluates it: where the output is positive
        dpre = torch.empty_like(h)
        torch.mul(grad_h[:, T - 1], active[:, T - 1], out=dpre[:, T - 1])
        for t in range(T - 2, -1, -1):
            dh = dpre[:, t].copy_(grad_h[:, t])  # built in place: no allocation per time step
            for r0, r1, runs in ctx.blocks:
                for c0, c1 in runs:
                    dh[:, :, c0:c1].baddbmm_(dpre[:, t + 1, :, r0:r1], weight[:, r0:r1, c0:c1])
            dh.mul_(active[:, t])
        grad_weight = torch.zeros_like(weight)
        if T > 1:
            # views, not copies: each block's dW is one batched product over steps and clips
            d_next = dpre[:, 1:].reshape(K, -1, H)
            h_prev = h[:, :-1].reshape(K, -1, H)
            for r0, r1, runs in ctx.blocks:
                for c0, c1 in runs:
                    grad_weight[:, r0:r1, c0:c1] = torch.bmm(d_next[:, :, r0:r1].transpose(1, 2), h_prev[:, :, c0:c1])
        return dpre, grad_weight, None


class StackedRecurrent(nn.Module):
    """K ``NetworkHierarchicalRecurrent`` models of one shape as stacked parameters.

    The parameters have the single model's names and order, each with a leading
    axis of K, so ``optimizer.state_dict()`` splits into the K single models' Adam
    states (``split_optimizer_state``) and back (``stack_optimizer_states``). The
    models must agree in everything but lambda (``lam``, one per model)."""

    def __init__(self, models: list[NetworkHierarchicalRecurrent]):
        super().__init__()
        if not models:
            raise ValueError("a stack needs at least one model")
        first = models[0]
        for m in models:
            if type(m) is not type(first) or not isinstance(m, NetworkHierarchicalRecurrent):
                raise TypeError(f"only hierarchical recurrent models of one kind stack, got {type(m).__name__}")
            if _shape_of(m) != _shape_of(first):
                raise ValueError(f"models of different settings do not stack: {_shape_of(m)} vs {_shape_of(first)}")
        # sizes, slices and loss settings, the same for every model; not a submodule, whose
        # parameters would join the stack's
        object.__setattr__(self, "template", first)
        self.n_models = len(models)
        with torch.no_grad():
            self.weight_ih = nn.Parameter(torch.stack([m.weight_ih.detach() for m in models]))
            self.weight_hh = nn.Parameter(torch.stack([m.weight_hh.detach() for m in models]))
            self.bias_ih = nn.Parameter(torch.stack([m.bias_ih.detach() for m in models]))
            self.bias_hh = nn.Parameter(torch.stack([m.bias_hh.detach() for m in models]))
            self.readout_weights = nn.ParameterList(
                nn.Parameter(torch.stack([m.readout_weights[g].detach() for m in models]))
                for g in range(len(first.readout_weights)))
            self.readout_bias = nn.Parameter(torch.stack([m.readout_bias.detach() for m in models]))
        if [n for n, _ in self.named_parameters()] != [n for n, _ in first.named_parameters()]:
            raise TypeError("the stacked parameters must follow the single model's order")
        self.register_buffer("lam", torch.tensor([m.lam for m in models], dtype=first.weight_hh.dtype),
                             persistent=False)
        self.register_buffer("hh_mask", first.hh_mask.clone(), persistent=False)
        self.register_buffer("hh_signed_mask", first.hh_signed_mask.clone(), persistent=False)
        self.precision, self.tf32 = first.precision, first.tf32
        self.set_recurrence(first.recurrence)

    def set_recurrence(self, backend: str):
        """"block" (skip W_hh's zero blocks) or "dense" (one product per step), as the single model's."""
        self.recurrence = backend
        self._blocks = recurrence_blocks(backend, self.hh_mask.cpu(), self.template.group_slices)
        return self

    # ----- the single models ----------------------------------------------------------------
    @torch.no_grad()
    def copy_into(self, k: int, model: NetworkHierarchicalRecurrent) -> NetworkHierarchicalRecurrent:
        """Model k's weights into ``model`` (one of the models this stack was built from)."""
        for mine, theirs in zip(self.parameters(), model.parameters()):
            theirs.copy_(mine[k])
        return model

    # ----- constraints, as NetworkHierarchicalRecurrent's ----------------------------------
    @torch.no_grad()
    def project_weights_(self):
        """Every model's W_hh masked and reflected to Dale's signs, in place (the masks broadcast over K)."""
        if self.template.local_inhibitory_prop > 0:
            self.weight_hh.abs_().mul_(self.hh_signed_mask)
        else:
            self.weight_hh.mul_(self.hh_mask)

    def mask_gradients(self):
        """Zero the gradient of every model's masked W_hh entries (after clipping, before Adam)."""
        if self.weight_hh.grad is not None:
            self.weight_hh.grad.mul_(self.hh_mask)

    # ----- forward and loss -------------------------------------------------------------------
    def forward(self, x: torch.Tensor):
        """x: (K, B, T, P), model k's clips in x[k] -> (predictions, hidden), each a tuple
        with one (K, T, B, n) tensor per block: readout block g (n = O_g, the single
        model's output columns ``output_slices[g]``) and group g (n = n_g). Kept apart,
        time-major per model, as the loss reads them: no concatenation to undo."""
        tpl = self.template
        K, B, T, P = x.shape
        if K != self.n_models or P != tpl.n_pixels:
            raise ValueError(f"expected input of shape ({self.n_models}, batch, time, {tpl.n_pixels}), got {tuple(x.shape)}")
        self.project_weights_()
        n0, H = tpl.group_sizes[0], tpl.n_hidden
        dtype = self._compute_dtype(x.device)  # bf16 when asked for, as the single model
        bias = (self.bias_ih + self.bias_hh).to(dtype)
        with torch.autocast(x.device.type, enabled=False):
            frames = x.transpose(1, 2).reshape(K, T * B, P).to(dtype)
            tf32 = self._tf32_for(dtype)
            if tf32:  # the single model's --tf32 split: the recurrent layer in TF32, the readout not
                drive0 = LinearInTF32.apply(frames, self.weight_ih, bias[:, :n0])
            else:
                drive0 = torch.baddbmm(bias[:, None, :n0], frames, self.weight_ih.to(dtype).transpose(1, 2))
            drive = torch.cat([drive0, bias[:, None, n0:].expand(K, T * B, H - n0)], dim=-1).view(K, T, B, H)
            h = BatchedReluRecurrence.apply(drive, self.weight_hh.to(dtype), self._blocks, tf32)
            bias_out = self.readout_bias.to(dtype)
            # one split, not a slice per group: each slice's backward fills a zero gradient the size of h
            groups = torch.split(h, tpl.group_sizes, dim=-1)
            # the bias added inside the product, as the single model's readout (in bf16 the sum rounds once)
            preds = tuple(torch.baddbmm(bias_out[:, None, out], hg.reshape(K, T * B, -1), w.to(dtype).transpose(1, 2))
                          .view(K, T, B, -1) for w, out, hg in zip(self.readout_weights, tpl.output_slices, groups))
        return preds, groups

    _compute_dtype = NetworkHierarchicalRecurrent._compute_dtype  # reads self.precision and self.weight_hh
    _tf32_for = NetworkHierarchicalRecurrent._tf32_for  # reads self.tf32

    def weight_l1(self) -> torch.Tensor:
        """(K,): each model's sum of |W| over its weight matrices (not biases)."""
        total = self.weight_ih.abs().sum((1, 2)) + self.weight_hh.abs().sum((1, 2))
        for w in self.readout_weights:
            total = total + w.abs().sum((1, 2))
        return total

    def get_loss(self, out, targets: torch.Tensor):
        """(sum of the K losses, per-model losses (K,) detached, components {"L1", "mse0", ...}
        each (K,) detached). ``targets``: (K, B, T, P). Model k's loss is the single
        model's, lam_k sum|W_k| + sum_g beta_g MSE_g,k (losses.hierarchical_offset_mse),
        each MSE a mean over its B x T' x n elements, computed in float32."""
        tpl = self.template
        preds, groups = out
        T = preds[0].shape[1]
        warmup, offset = tpl.warmup, tpl.temporal_offset
        if T <= warmup + offset:
            raise ValueError(f"clips of {T} frames are too short for warm-up {warmup} plus offset {offset}")
        source, future = slice(warmup, T - offset), slice(warmup + offset, T)
        y = targets.transpose(1, 2)  # (K, T, B, P), as the predictions
        terms = [_mean_square(preds[0][:, source], y[:, future])]
        for g in range(1, len(preds)):
            tgt = groups[g - 1][:, future].to(y.dtype)
            terms.append(_mean_square(preds[g][:, source], tgt.detach() if tpl.detach_targets else tgt))
        l1 = self.lam * self.weight_l1()
        losses = l1
        for b, term in zip(tpl.beta, terms):
            losses = losses + b * term
        components = {"L1": l1.detach()} | {f"mse{g}": term.detach() for g, term in enumerate(terms)}
        return losses.sum(), losses.detach(), components


def _mean_square(pred, target):
    """(K,): per model, the mean of (pred - target)^2 over all other axes, in float32."""
    return (pred.to(target.dtype) - target).square().mean(dim=tuple(range(1, pred.dim())))


def _shape_of(model: NetworkHierarchicalRecurrent) -> tuple:
    return (model.frame_shape, model.group_sizes, model.beta, model.warmup, model.local_inhibitory_prop,
            model.loss_name, model.detach_targets, model.noise_std, model.recurrence, model.precision,
            tuple(p.dtype for p in model.parameters()), str(model.weight_hh.device))


# -------------------------------------------------------------------------------------------
# Adam over the stack = K Adams: its state splits into the single runs' and back
# -------------------------------------------------------------------------------------------
def split_optimizer_state(stacked_state: dict, k: int) -> dict:
    """Model k's Adam state dict, as its single run's Adam would hold it (the per-element
    moments sliced, the step count and hyperparameters copied)."""
    state = {i: {name: value.clone() if name == "step" else value[k].clone() for name, value in s.items()}
             for i, s in stacked_state["state"].items()}
    return {"state": state, "param_groups": copy.deepcopy(stacked_state["param_groups"])}


def stack_optimizer_states(states: list[dict]) -> dict:
    """The stack's Adam state dict from K single runs' (which must be at the same step)."""
    first = states[0]
    if any(s["state"].keys() != first["state"].keys() for s in states):
        raise ValueError("the runs' optimizer states hold different parameters: they cannot train as one stack")
    stacked = {}
    for i, s in first["state"].items():
        steps = {float(st["state"][i]["step"]) for st in states}
        if len(steps) > 1:
            raise ValueError(f"the runs' optimizers are at different steps {sorted(steps)}: they cannot train as one stack")
        stacked[i] = {name: value.clone() if name == "step" else torch.stack([st["state"][i][name] for st in states])
                      for name, value in s.items()}
    return {"state": stacked, "param_groups": copy.deepcopy(first["param_groups"])}


def stacked_train_step(stack: StackedRecurrent, optimizer: torch.optim.Optimizer, batches: list[torch.Tensor],
                       models: list[NetworkHierarchicalRecurrent], generators: list[torch.Generator], lr: float,
                       grad_clip: float) -> torch.Tensor:
    """train.py's step for K models at once: model k's clips ``batches[k]`` (B, T, P)
    get its noise (``models[k].preprocess_data`` with ``generators[k]``, as its own
    run draws it); then loss, backward of the sum of the K losses, clip each gradient
    element to +-grad_clip, mask, Adam at ``lr``. Returns the detached (K, 1 + components)
    [loss, L1, mse0, ...] per model, on the device (no host synchronisation)."""
    noisy = [model.preprocess_data((x, x), gen) for model, x, gen in zip(models, batches, generators)]
    xn, yn = torch.stack([x for x, _ in noisy]), torch.stack([y for _, y in noisy])
    optimizer.zero_grad(set_to_none=True)
    for group in optimizer.param_groups:
        group["lr"] = lr
    total, losses, comps = stack.get_loss(stack(xn), yn)
    total.backward()  # the sum of independent losses: each model gets its own gradient
    torch.nn.utils.clip_grad_value_(stack.parameters(), grad_clip)  # before masking, as the original
    stack.mask_gradients()
    optimizer.step()
    return torch.stack([losses, *comps.values()], dim=1)


# -------------------------------------------------------------------------------------------
# The sweep: K runs through train.py's loop (training.loop.run_epochs)
# -------------------------------------------------------------------------------------------
def check_sweep(cfgs: list) -> None:
    """Refuse, before anything is written, a set of runs that cannot train as one stack:
    a model kind other than the recurrent ones, settings that differ in more than
    --L1 and --seed, several processes (torchrun), --cuda-graph."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise TrainingSetupError("--batched trains every model in one process: run it without torchrun")
    first = cfgs[0]
    if first.cuda_graph:
        raise TrainingSetupError("--cuda-graph captures a single run's steps, not a --batched stack: drop one of them")
    if first.model not in ("network_hierarchical_recurrent", "network_recurrent"):
        raise TrainingSetupError(f"--batched stacks the recurrent models only, not --model {first.model}: drop --batched")
    if first.loss in LOSSES and LOSSES[first.loss].function is not offset_mse_loss:
        # StackedRecurrent.get_loss is the stacked offset MSE: another registered loss would be replaced by it
        raise TrainingSetupError(f"--batched computes the offset-MSE losses only, not --loss {first.loss}: drop --batched")
    for cfg in cfgs[1:]:
        for f in dataclasses.fields(cfg):
            if f.name not in PER_MODEL_FIELDS and getattr(cfg, f.name) != getattr(first, f.name):
                raise TrainingSetupError(f"--batched runs differ only in --L1 and --seed, but --{f.name.replace('_', '-')} "
                                         f"is {getattr(first, f.name)} and {getattr(cfg, f.name)}: resume them one by one")


def sweep_jobs(jobs: list, args: argparse.Namespace) -> list:
    """The (config, state file or None) of every run of the sweep: ``jobs`` itself for
    new runs; for ``--path RUN`` (one job), every run folder that RUN's config.json
    names under ``batched_sweep`` (RUN's siblings in its --save-dir), each resuming
    with the same flags from its state at the newest step that every run has saved
    (``common_resume_states``)."""
    if len(jobs) != 1 or jobs[0][1] is None:
        return jobs
    run_dir = jobs[0][1].parent
    names = read_run_config(run_dir).get(SWEEP_KEY)
    if not names:
        raise TrainingSetupError(f"{run_dir} was not trained with --batched: resume it without --batched")
    overrides = {**vars(args), "L1": None, "seed": None}
    states = common_resume_states([run_dir.parent / name for name in names])
    return [config_for(argparse.Namespace(**{**overrides, "path": str(state)})) for state in states]


def common_resume_states(run_dirs: list[Path]) -> list[Path]:
    """Each run's state file at the newest optimizer step for which every run of the
    sweep has one. The sweep writes its runs' checkpoints one after another, so a kill
    in between leaves some runs a checkpoint ahead; those are rolled back (said on
    stderr): the sweep is deterministic, so it retakes the same steps bit for bit and
    rewrites the newer files with the same contents."""
    by_step = []
    for run_dir in run_dirs:
        if not run_dir.is_dir():
            raise ResumeError(f"{run_dir}, a run of this sweep, is missing: restore it, or resume the others "
                              "one by one without --batched")
        try:
            by_step.append(RunDir(run_dir).states_by_step())
        except ValueError as err:
            raise ResumeError(f"{err}: move that state file away, then resume again") from err
    common = set.intersection(*(set(states) for states in by_step))
    unsaved = [d.name for d, states in zip(run_dirs, by_step) if not states]
    if not common and unsaved:
        raise ResumeError(f"the sweep stopped while it wrote its first checkpoints: {', '.join(unsaved)} saved "
                          "none, so its runs have no step in common: start the sweep again (the same flags "
                          "train the same runs)")
    if not common:
        latest = ", ".join(f"{d.name}: {max(s)}" for d, s in zip(run_dirs, by_step))
        raise ResumeError(f"the sweep's runs have no saved step in common (latest steps {latest}): resume each one "
                          "without --batched")
    step = max(common)
    for run_dir, states in zip(run_dirs, by_step):
        if max(states) > step:
            print(f"{run_dir.name}: rolled back from step {max(states)} to step {step}, the newest step every run of "
                  "the sweep has saved (it was stopped while writing its checkpoints)", file=sys.stderr)
    return [states[step] for states in by_step]


def what_the_others_can_do(others: list[Path]) -> str:
    """After one run of a sweep diverged: the others that saved a state resume from it
    alone (their states are finite: nothing of a diverged epoch is saved); those that
    saved none (it diverged before the first checkpoint) start again."""
    saved = [d for d in others if RunDir(d).state_files()]
    unsaved = [d for d in others if d not in saved]
    advice = []
    if saved:
        advice.append("the other run's latest state is finite: resume it with --path " if len(others) == 1 else
                      "the latest states of " + ", ".join(d.name for d in saved) + " are finite: resume each with "
                      "--path ")
        advice[-1] += " ".join(str(d) for d in saved) + ", without --batched"
    if unsaved:
        advice.append("the other run has saved no state: start it again without --batched" if len(others) == 1 else
                      ", ".join(d.name for d in unsaved) + " saved no state: start them again without this run")
    return "; ".join(advice)


class StackedRuns:
    """The Trainer of a batched sweep (training.loop): one step of the stack trains
    all K runs; each run's model and Adam receive their slice of the stack only to be
    validated, measured and saved. ``torch_rngs[k]`` is torch's global RNG state as
    run k's own process would hold it (after its initialisation): its state files
    record that one."""

    def __init__(self, runs: list[Run], stack: StackedRecurrent, optimizer: torch.optim.Optimizer,
                 torch_rngs: list[torch.Tensor]):
        self.runs, self.module, self.optimizer, self.torch_rngs = runs, stack, optimizer, torch_rngs
        self.run_dirs = [run.out.run.path for run in runs]
        self.resume_hint = f"--batched --path {self.run_dirs[0]}"

    def step(self, batches: list[torch.Tensor], global_step: int) -> torch.Tensor:
        cfg = self.runs[0].cfg
        return stacked_train_step(self.module, self.optimizer, batches, [run.state.model for run in self.runs],
                                  [run.state.noise_generator for run in self.runs], learning_rate(cfg, global_step),
                                  cfg.grad_clip)

    def sync(self) -> None:
        with torch.no_grad():
            self.module.project_weights_()
        for k, run in enumerate(self.runs):
            self.module.copy_into(k, run.state.model)

    def checkpoint(self, epoch: int | None) -> None:
        """Every run's weights and state, each exactly what its own train.py process would write."""
        self.sync()
        stacked_state = self.optimizer.state_dict()
        for k, run in enumerate(self.runs):
            run.state.optimizer.load_state_dict(split_optimizer_state(stacked_state, k))
            torch.set_rng_state(self.torch_rngs[k])
            run.out.checkpoint(run.state, epoch)

    def stopped(self) -> None:
        for run in self.runs:
            run.out.log(f"stop request: saved a resumable state; continue with {self.resume_hint}")
        print(f"stop request: saved resumable states in {len(self.runs)} run folders; continue with "
              f"{self.resume_hint}", file=sys.stderr)

    def out_of_time(self, completed: int) -> None:
        for run in self.runs:
            run.out.log(f"time limit: stopped after epoch {completed}; continue with {self.resume_hint}", stderr=True)

    def diverged(self, k: int, message: str) -> str:
        others = self.run_dirs[:k] + self.run_dirs[k + 1:]
        return f"{self.run_dirs[k].name}: {message}; the sweep stops with it ({what_the_others_can_do(others)})"


def train_batched(jobs: list, progress: bool = True, monitor: Monitor | None = None) -> list[Path]:
    """Train (or resume) the runs ``jobs`` = [(TrainConfig, state file or None)]
    as one stack, through train.py's loop (``training.loop.run_epochs``); returns
    their run folders, in order. ``monitor`` measures each run every
    ``rf_monitor_every`` epochs (train.py's ``receptive_field_monitor``). Every run
    gets its own folder, log, config.json (with ``batched_sweep``: the folder names
    of all K runs), weights and train.py-format resume states, all written at the
    same steps."""
    cfgs = [cfg for cfg, _ in jobs]
    resumes = [resume for _, resume in jobs]
    check_sweep(cfgs)
    if len({r is None for r in resumes}) > 1:
        raise TrainingSetupError("a batched sweep either starts every run or resumes every run: give --path alone")
    first = cfgs[0]
    keep_freed_memory()  # as train.py: every step reuses the last one's memory
    threads = set_threads(first.threads)  # as train.py; one setting for the whole sweep
    device = resolve_device(first.device)
    clips, data_path, identity, train_rows, val_rows = checked_data(first, resumes[0])
    for resume in resumes[1:]:
        if resume is not None:
            check_same_dataset(resume.parent, data_path, identity)
    hold = device if device.type == "cuda" and fits_on(device, clips.nbytes) else None
    train_src, val_src = ClipSource(clips, train_rows, hold_on=hold), ClipSource(clips, val_rows, hold_on=hold)

    states, torch_rngs = [], []
    for cfg, resume in jobs:
        seed_everything(cfg.seed)
        model = checked_model(cfg, clips.shape[1], data_path).to(device)
        backend = set_arithmetic(model, cfg, device)
        # its own Adam only carries its slice of the stack's state to and from its state files
        state = TrainState(model, torch.optim.Adam(model.parameters(), lr=cfg.lr),
                           shuffle_generator=torch.Generator().manual_seed(cfg.seed),
                           noise_generator=torch.Generator(device=device).manual_seed(cfg.seed + 1),
                           history=new_history(loss_components(cfg)))
        if resume is not None:
            resumed_state(state, resume, 0)  # also sets torch's RNG to the run's saved state
        states.append(state)
        torch_rngs.append(torch.get_rng_state())
    positions = {(state.epoch, state.step, state.global_step) for state in states}
    if len(positions) > 1:
        raise TrainingSetupError(f"the sweep's runs stand at different steps {sorted(positions)}: resume each one "
                                 "without --batched")

    stack = StackedRecurrent([state.model for state in states])
    optimizer = torch.optim.Adam(stack.parameters(), lr=first.lr)  # per element: K Adams
    if resumes[0] is not None:
        optimizer.load_state_dict(stack_optimizer_states([state.optimizer.state_dict() for state in states]))
    run_dirs = [r.parent for r in resumes] if resumes[0] is not None else [create_run_dir(cfg) for cfg in cfgs]
    names, others = [d.name for d in run_dirs], len(run_dirs) - 1
    runs = []
    for cfg, state, resume, run_dir in zip(cfgs, states, resumes, run_dirs):
        config = dataclasses.asdict(cfg) | recorded_dataset(cfg, data_path) | {
            "dataset_identity": identity, "n_clips": len(clips),
            "n_train": len(train_rows), "n_validation": len(val_rows), "processes": 1,
            "torch_version": torch.__version__, "recurrence_backend": backend, "torch_threads": threads,
            SWEEP_KEY: names}
        opening = (f"started: {len(train_rows)} training and {len(val_rows)} validation clips from {data_path}, "
                   f"batched with {others} other run(s) on {device.type}" if resume is None else
                   f"resumed from {resume.name} at epoch {state.epoch}, step {state.step}, batched with {others} "
                   "other run(s)")
        runs.append(Run(cfg, state, RunWriter(RunDir(run_dir), config, 0, None), opening))
    run_epochs(StackedRuns(runs, stack, optimizer, torch_rngs), train_src, val_src, clips, device,
               resumed=resumes[0] is not None, monitor=monitor, progress=progress)
    return run_dirs
