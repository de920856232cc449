# Source of analysis/connectivity_ori_dir.ipynb (jupytext percent format): edit here, then run
# python -m analysis.build_notebooks connectivity_ori_dir

# %% [markdown]
# # Like-to-like connectivity among G1 excitatory units
#
# As the original's `connectivity_ori_dir` notebook. Units: G1 excitatory, Gabor r > `gabor_r_min` and both envelope
# log-variances > `log_variance_min`; W = their block of W_hh [post, pre]. Reproduced quirks
# (docs/faithfulness.md): the short-range threshold is a percentile of |W|, the long-range one of signed W,
# both over the whole excitatory block with the self-weights; orientation
# differences come from the preferred directions. **Axis convention (flagged):** the original calls an input
# displaced along the postsynaptic unit's *motion* axis "co-axial"; Iacaruso et al. (2017) mean the
# preferred-*orientation* axis. Both are shown.

# %% tags=["parameters"]
artefact = "model_checkpoints/RUN/N-epochs_model.vphys.h5"  # a model's virtual-physiology artefact (bash run.bash)
output_dir = "figures/connectivity_ori_dir"
n_shuffles = 10_000  # shuffles of the presynaptic orientations for the null
seed = 0
gabor_r_min = 0.7
log_variance_min = 0.5
osi_threshold = 0.3  # presynaptic orientation selectivity (the original's connectivity threshold)
dsi_threshold = 0.4  # presynaptic direction selectivity
percentile = 95  # connection threshold
coaxial_axis = "motion"  # motion: the original convention; orientation: Iacaruso 2017

# %%

import numpy as np
import pandas as pd

from analysis import connectivity, inputs, plotting, reference, stats

needs = ("rwa", "gabor", "gratings", "connectivity")  # the stages of the artefact this notebook reads
data = inputs.load_inputs(artefact, needs)
vp, units, grid, groups = data.artefact, data.units, data.artefact.grid, data.group_labels
out, summary = inputs.figure_folder(output_dir), data.summary()
print(data.describe())

c = vp.connectivity()
direction = c.get("preferred_direction", c.get("preferred_orientation"))
keep = np.flatnonzero(connectivity.select_units(c["gabor_r"], c["gabor_params"], len(c["units"]),
                                                gabor_r_min, log_variance_min))
weights = c["weights"][np.ix_(keep, keep)]
pairs = connectivity.unit_pairs(weights, c["gabor_x"][keep], c["gabor_y"][keep], direction[keep])
ori_selective, dir_selective = c["OSI"][keep] > osi_threshold, c["DSI"][keep] > dsi_threshold
# thresholds over the whole excitatory block, self-weights included, as the original
abs_threshold = connectivity.connection_threshold(c["weights"], percentile) if len(keep) > 1 else np.nan
signed_threshold = connectivity.connection_threshold(c["weights"], percentile, signed=True) if len(keep) > 1 else np.nan
summary["units"] = dict(excitatory=len(c["units"]), selected=len(keep), orientation_selective=int(ori_selective.sum()),
                        direction_selective=int(dir_selective.sum()), abs_threshold=abs_threshold,
                        signed_threshold=signed_threshold)
summary["units"]

# %% [markdown]
# ## (a) Short range (< 2.5 px): connection probability vs difference in preference, against Ko et al. 2011
# Cochran-Armitage trend tests (statsmodels' sign: z > 0 when the connection probability falls). The figure's
# statistic is the original's, `z_original` / `p_original`, from the table [connected, all tested]; `z` / `p` are
# the same test on the correct table [connected, not connected]. Direction: the two halves 0-90 and 90-180 degrees.

# %%
fig, axes = plotting.new_figure(2)
rows = []
for ax, kind, selective in zip(axes, ("orientation", "direction"), (ori_selective, dir_selective)):
    ref = reference.connection_probability(kind)
    hits, totals = connectivity.short_range_counts(pairs, selective, abs_threshold, kind, ref["edges_deg"])
    with np.errstate(invalid="ignore", divide="ignore"):
        probability = hits / totals
    x = np.arange(totals.size)
    ax.bar(x - 0.2, probability, 0.4, color=plotting.GROUP_COLOURS[0], label=f"model G1 (n={int(totals.sum())} pairs)")
    ax.bar(x + 0.2, ref["probability"], 0.4, color=plotting.DATA_COLOUR, label=ref["label"])
    ax.set(xticks=x, xticklabels=[f"{c:.0f}" for c in ref["centres_deg"]], xlabel=f"difference in preferred {kind} (deg)",
           ylabel="connection probability")
    ax.legend(loc="upper right")
    if not totals.sum():
        plotting.missing_note(ax, f"no model pairs of selective G1 units closer than 2.5 px "
                                  f"({len(keep)} units selected)")
    halves = [slice(0, 3)] if kind == "orientation" else [slice(0, 3), slice(2, 5)]
    model_tests = []
    for half in halves:
        for source, (h, n) in (("model", (hits, totals)), (ref["label"], (ref["connected"], ref["tested"]))):
            tests = (stats.connectivity_trend_tests(h[half], n[half]) if n[half].sum()
                     else dict(z_original=np.nan, p_original=np.nan, z=np.nan, p=np.nan))
            rows.append(dict(kind=kind, bins=f"{ref['centres_deg'][half][0]:.0f}-{ref['centres_deg'][half][-1]:.0f}",
                             source=source, **tests))
            if source == "model":
                model_tests.append(f"{rows[-1]['bins']} deg: z {tests['z_original']:.2f}, p {tests['p_original']:.3f} "
                                   f"(correct table: z {tests['z']:.2f}, p {tests['p']:.3f})")
    ax.set_title("model trend, original's table [connected, all tested]:\n" + "\n".join(model_tests),
                 fontsize="small")
plotting.save_figure(fig, out, "short_range_connection_probability")
summary["trend_tests"] = rows
pd.DataFrame(rows)

# %% [markdown]
# ## (b) Long range (5-9.2 px): connected inputs by axis and orientation difference, against Iacaruso et al. 2017
# Fractions of all connected long-range inputs (both axes sum to 1). The null shuffles the presynaptic
# orientations within each axis, as the original. Error bars: 2.5-97.5% of that null. `p` is the original's
# 2 min(#null < observed, #null >= observed) / N; `p_tie_symmetric` counts ties on both sides.

# %%
ref = reference.long_range_axis_fractions()
edges = reference.KO_BIN_EDGES["orientation"]
long = connectivity.long_range_connected(pairs, ori_selective, signed_threshold)
post_dir, pre_dir = direction[keep][pairs["post"][long]], direction[keep][pairs["pre"][long]]
results = {}
for axis in (coaxial_axis, {"motion": "orientation", "orientation": "motion"}[coaxial_axis]):
    observed, null, p = connectivity.shuffle_axis_null(post_dir, pre_dir, pairs["along"][long], pairs["across"][long],
                                                       edges, n_shuffles, seed, axis)
    results[axis] = dict(observed=observed, p=p, p_tie_symmetric=connectivity.shuffle_p_value(observed, null, "tie_symmetric"),
                         low=np.percentile(null, 2.5, axis=0), high=np.percentile(null, 97.5, axis=0))
fig, axes = plotting.new_figure(2, 2, squeeze=False)
for row, (axis, r) in enumerate(results.items()):
    for col, (name, data_fraction) in enumerate((("co-axial", ref["coaxial"]), ("orthogonal", ref["orthogonal"]))):
        ax, x = axes[row, col], np.arange(3)
        ax.bar(x - 0.2, r["observed"][col], 0.4, color=plotting.GROUP_COLOURS[0],
               label=f"model G1 (n={int(long.sum())} inputs)")
        ax.errorbar(x - 0.2, (r["low"][col] + r["high"][col]) / 2, yerr=(r["high"][col] - r["low"][col]) / 2,
                    fmt="none", color="k", capsize=3, label="shuffle 95%")
        ax.bar(x + 0.2, data_fraction, 0.4, color=plotting.DATA_COLOUR, label=ref["label"])
        ax.set(xticks=x, xticklabels=["0", "45", "90"], xlabel="difference in preferred orientation (deg)",
               ylabel="fraction of inputs", title=f"{name} ({axis} axis{' - original' if axis == 'motion' else ''})")
        if not long.sum():
            plotting.missing_note(ax, "no connected long-range (5-9.2 px) model inputs")
axes[0, 0].legend()
plotting.save_figure(fig, out, "long_range_axis_fractions")
summary["long_range"] = {axis: dict(observed=r["observed"], p=r["p"], p_tie_symmetric=r["p_tie_symmetric"])
                         for axis, r in results.items()}
summary["long_range"]

# %% [markdown]
# ## (c) Connection probability by presynaptic RF position (post unit's frame; rows along its motion)

# %%
nearby = (pairs["distance"] < connectivity.LONG_RANGE[1]) & ori_selective[pairs["pre"]]
connected = pairs["weight"] > signed_threshold
fig, axes = plotting.new_figure(3, width=4, height=4)
for ax, low, high in zip(axes, edges[:-1], edges[1:]):
    in_bin = nearby & (pairs["ori_diff"] >= low) & ((pairs["ori_diff"] < high) | (high == edges[-1]))
    ratio = connectivity.relative_position_map(pairs["along"][in_bin], pairs["across"][in_bin], connected[in_bin])
    ax.set(xlabel="across motion (px)", ylabel="along motion (px)",
           title=f"orientation difference {low:g}-{high:g} deg")
    if not np.isfinite(ratio).any():
        plotting.empty_panel(ax, f"{len(keep)} G1 units selected:\nno pairs to map" if len(keep) < 2 else
                             f"no model pairs in this bin closer than\n{connectivity.LONG_RANGE[1]:.1f} px with an "
                             f"orientation-\nselective presynaptic unit")
        continue
    image = ax.imshow(ratio, origin="lower", extent=(-10, 10, -10, 10), cmap="viridis")
    fig.colorbar(image, ax=ax, fraction=0.046, label="connection probability")
plotting.save_figure(fig, out, "connection_heatmaps")

# %%
print(plotting.save_summary(out, summary))
