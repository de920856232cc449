# Source of analysis/mse.ipynb (jupytext percent format): edit here, then run
# python -m analysis.build_notebooks mse

# %% [markdown]
# # Prediction error: next frame, multi-frame rollouts, beta sweep
#
# As the original's `mse` notebook, with its fixes (docs/faithfulness.md, "Prediction-error baselines"): the copy-last-frame baseline copies the last frame the model
# has seen (and is scored on the same targets), the rollout runs the model's own forward (so its weight
# constraints apply), the centre-of-mass error is a centre-of-mass error, and every model is rolled out
# on the same bar angles.

# %% tags=["parameters"]
checkpoints = [["TP_full", "model_checkpoints/RUN"]]  # [label, run folder or weights file]
dataset = "data/cache/clips.npy"  # (N, T, P) clips; its validation split is in-distribution
ood_dataset = None  # another dataset whose train split is out-of-distribution (None: skip)
max_clips = 4000  # the original: 20 batches of 200
batch_size = 200
warmup = 4
n_angles = 16  # moving-bar directions
n_context = 10  # frames given before the rollout
n_predict = 9  # frames predicted in closed loop
beta_sweep = []  # [[beta, checkpoint], ...] models differing only in beta
output_dir = "figures/mse"

# %%
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import mse, plotting, stats
from models.checkpoint import Checkpoint

models = {label: Checkpoint(path).load() for label, path in checkpoints}
sweep = [(float(beta), Checkpoint(path).load()) for beta, path in beta_sweep]
frame_shape = next(iter(models.values())).frame_shape
clips = {"in distribution": mse.split_clips(dataset, frame_shape, "validation", max_clips)}
if ood_dataset is not None:
    clips["out of distribution"] = mse.split_clips(ood_dataset, frame_shape, "train", max_clips)
out = Path(output_dir)
out.mkdir(parents=True, exist_ok=True)
summary = {"checkpoints": checkpoints}
print({k: v.shape for k, v in clips.items()})

# %% [markdown]
# ## (a) Next-frame MSE on noise-free held-out clips (mean +- SEM over clips)

# %%
rows = []
for split, x in clips.items():
    for label, model in models.items():
        errors = mse.next_frame_errors(model, x, warmup, batch_size)
        for name, values in (("model", errors["model"]), ("copy last frame", errors["copy_last"])):
            mean, sem = stats.mean_sem(values)
            rows.append(dict(split=split, model=label, predictor=name, mse=mean, sem=sem))
frame = pd.DataFrame(rows).drop_duplicates(["split", "predictor", "mse"])
fig, axes = plotting.new_figure(len(clips), squeeze=False)
for ax, (split, part) in zip(axes[0], frame.groupby("split", sort=False)):
    names = [m if p == "model" else p for m, p in zip(part["model"], part["predictor"])]
    ax.bar(range(len(part)), part["mse"], yerr=part["sem"], color=plotting.GROUP_COLOURS[:len(part)])
    ax.set(xticks=range(len(part)), xticklabels=names, ylabel="next-frame MSE (mean +- SEM)",
           title=f"{split} (n={len(clips[split])} clips)")
plotting.save_figure(fig, out, "next_frame_mse")
summary["next_frame"] = rows
frame

# %% [markdown]
# ## (b) Closed-loop rollouts on moving bars

# %%
rows = []
fig, axes = plotting.new_figure(2)
horizon = np.arange(1, n_predict + 1)
for k, (label, model) in enumerate(models.items()):
    if model.temporal_offset != 1:
        print(f"{label}: not a next-frame model, no rollout")
        continue
    result = mse.bar_rollout_benchmark(model, n_angles, n_context, n_predict)
    for ax, score in zip(axes, ("mse", "com_error")):
        ax.plot(horizon, result["model"][score].mean(0), "o-", color=plotting.GROUP_COLOURS[k],
                label=f"{label} (mean of n={n_angles} bar directions)")
        if k == 0:
            ax.plot(horizon, result["copy_last"][score].mean(0), "s--", color=plotting.DATA_COLOUR,
                    markerfacecolor="none", label=f"copy last frame (n={n_angles})")
    rows.append(dict(model=label, mse_last=result["model"]["mse"][:, -1].mean(),
                     com_error_last=result["model"]["com_error"][:, -1].mean(),
                     copy_mse_last=result["copy_last"]["mse"][:, -1].mean(),
                     copy_com_error_last=result["copy_last"]["com_error"][:, -1].mean()))
axes[0].set(xlabel="frames ahead", ylabel="MSE")
axes[1].set(xlabel="frames ahead", ylabel="|centre-of-mass error| along motion (px)")
axes[0].legend()
plotting.save_figure(fig, out, "bar_rollout")
summary["rollout"] = rows
pd.DataFrame(rows)

# %% [markdown]
# ## (c) beta sweep

# %%
rows = []
for beta, model in sweep:
    errors = mse.next_frame_errors(model, clips["in distribution"], warmup, batch_size)
    result = mse.bar_rollout_benchmark(model, n_angles, n_context, n_predict)
    rows.append(dict(beta=beta, next_frame_mse=errors["model"].mean(), rollout_mse=result["model"]["mse"].mean(),
                     rollout_com_error=result["model"]["com_error"].mean()))
if rows:
    frame = pd.DataFrame(rows).sort_values("beta")
    fig, axes = plotting.new_figure(3)
    for ax, column in zip(axes, ("next_frame_mse", "rollout_mse", "rollout_com_error")):
        ax.plot(frame["beta"], frame[column], "o-", color="k")
        ax.set(xlabel="beta (higher-group loss weight)", ylabel=column.replace("_", " "))
    plotting.save_figure(fig, out, "beta_sweep")
summary["beta_sweep"] = rows
pd.DataFrame(rows)

# %%
print(plotting.save_summary(out, summary))
