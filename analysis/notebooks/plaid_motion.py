# Source of analysis/plaid_motion.ipynb (jupytext percent format): edit here, then run
# python -m analysis.build_notebooks plaid_motion

# %% [markdown]
# # Plaid pattern motion
#
# As the original's `plaid_motion` notebook. Pattern index PI = Zp - Zc per unit (virtual physiology), compared with
# macaque V1 and MT (Movshon & Newsome 1996; MT-projecting V1 cells, df = 13) and V2 (Hu et al. 2018,
# given as Z scores with an unknown df). PI > 1.28 marks pattern cells; the original's criterion is PI > 0.

# %% tags=["parameters"]
artefact = "model_checkpoints/RUN/N-epochs_model.vphys.h5"  # a model's virtual-physiology artefact (bash run.bash)
comparison = []  # other model types for the KS panel: [["TP_FF", "path/to/artefact.h5"], ...]
output_dir = "figures/plaid_motion"
pattern_dsi_threshold = 0.3  # plaid DSI above which a pattern-like unit is direction selective
contour_step = 25  # degrees between grating directions in the two-grating maps
n_plaid_directions = 18  # directions of the example plaid tuning curves

# %%

import numpy as np
import pandas as pd
from IPython.display import display

from analysis import inputs, plaid_motion, plotting, reference, stats

needs = ("rwa", "gratings", "plaid", "nofeedback")  # the stages of the artefact this notebook reads
data = inputs.load_inputs(artefact, needs)
vp, units, grid, groups = data.artefact, data.units, data.artefact.grid, data.group_labels
model = vp.probed_model()  # the model the artefact probed: recorded checkpoint (hash checked) and ablation
out, summary = inputs.figure_folder(output_dir), data.summary()
print(data.describe())

# %% [markdown]
# ## Pattern index by group against the literature

# %%
areas = ["V1", "V2", "MT"]
refs = {a: reference.pattern_index(a) for a in areas}
samples, colours, rows = {}, [], []
for g, table in enumerate(units):
    samples[groups[g]] = table["plaid_pattern_index"]
    colours.append(plotting.GROUP_COLOURS[g])
    rows.append(dict(sample=groups[g], **plaid_motion.pattern_index_summary(table["plaid_pattern_index"])))
    if g < len(areas):
        ref = refs[areas[g]]
        samples[ref.label] = ref.values
        colours.append(plotting.DATA_COLOUR)
        rows.append(dict(sample=ref.label, **plaid_motion.pattern_index_summary(ref.values)))
fig, ax = plotting.new_figure(width=11)
plotting.violins(ax, samples, colours)
ax.axhline(1.28, color="k", linestyle=":", linewidth=1)
ax.axhline(0, color="k", linewidth=0.5)
ax.set(ylabel="pattern index (Zp - Zc)", title="dotted: pattern-cell criterion 1.28")
plotting.save_figure(fig, out, "pattern_index_violins")
model_pi = [t["plaid_pattern_index"] for t in units]
summary["pattern_index"] = rows
summary["anova_groups"] = dict(zip(("F", "p"), stats.one_way_anova(*model_pi))) if len(units) > 1 else {}
summary["anova_areas"] = dict(zip(("F", "p"), stats.one_way_anova(*[r.values for r in refs.values()])))
summary["pairwise_holm"] = stats.pairwise_ttests_holm(samples)
print("one-way ANOVA, model groups:", summary["anova_groups"], "| areas:", summary["anova_areas"])
display(pd.DataFrame(summary["pairwise_holm"]))
pd.DataFrame(rows)

# %% [markdown]
# ## Direction selectivity of pattern-like units (PI > 0) to 150-degree plaids

# %%
rows = []
for g, table in enumerate(units):
    dsi = plaid_motion.direction_selectivity(table["plaid_response"])
    pattern_like = table["plaid_pattern_index"] > 0
    rows.append(dict(group=groups[g], n_pattern_like=int(pattern_like.sum()),
                     fraction_plaid_dsi_above=stats.fraction_above(dsi[pattern_like], pattern_dsi_threshold),
                     mean_plaid_dsi=stats.mean_sem(dsi[pattern_like])[0]))
summary["plaid_dsi_pattern_like"] = rows
pd.DataFrame(rows)

# %% [markdown]
# ## Example units: plaid tuning for component separations 0-150 degrees, and two-grating maps
# For each group, the unit with the highest PI. Curves are rolled so the 0-degree (single grating) peak is
# at the centre; maps show the response to gratings moving in directions A and B (sum z-scored).

# %%
import matplotlib.pyplot as plt

separations = (0, 30, 60, 90, 120, 150)
fig, axes = plotting.new_figure(len(units), 2, squeeze=False)
examples = []
for g, table in enumerate(units):
    pi = table["plaid_pattern_index"]
    if not np.isfinite(pi).any():
        for ax in axes[:, g]:
            plotting.empty_panel(ax, f"no units with a pattern index in {groups[g]}")
        continue
    i = int(np.nanargmax(pi))
    unit, sf, tf = int(table["hidden_unit_index"][i]), table["preferred_sf"][i], table["preferred_tf"][i]
    curves = plaid_motion.plaid_tuning_curves(model, unit, sf, tf, separations, n_plaid_directions)
    relative = (np.arange(n_plaid_directions) - n_plaid_directions // 2) * 360 / n_plaid_directions
    for k, sep in enumerate(separations):
        axes[0, g].plot(relative, curves[k], label=f"{sep} deg", color=plt.cm.viridis(k / len(separations)))
    axes[0, g].set(xlabel="plaid direction - preferred (deg)", ylabel="response",
                   title=f"{groups[g]} unit {unit}, PI {pi[i]:.2f}")
    plotting.range_note(axes[0, g], curves)
    directions, response = plaid_motion.two_grating_map(model, unit, sf, tf, contour_step)
    filled = axes[1, g].contourf(directions, directions, response.T, levels=12)
    colorbar = fig.colorbar(filled, ax=axes[1, g], label="response")
    colorbar.formatter.set_useOffset(False)
    colorbar.update_ticks()
    axes[1, g].set(xlabel="grating A direction (deg)", ylabel="grating B direction (deg)")
    examples.append(dict(group=groups[g], unit=unit, pattern_index=pi[i]))
axes[0, 0].legend(title="separation")
plotting.save_figure(fig, out, "example_plaid_tuning_and_maps")
summary["examples"] = examples

# %% [markdown]
# ## Feedback removed
# PI of the same units with the feedback blocks of W_hh zeroed. As in the original (flagged;
# docs/faithfulness.md, "No-feedback plaids use the full model's tuning"), the pattern and component predictions are built from the FULL model's grating tuning.
# Paired t-test over units with both values.

# %%
rows = []
if "nofeedback_plaid_pattern_index" not in units[0]:
    print("the artefact has no no-feedback rerun (a model without feedback): skipped")
else:
    fig, ax = plotting.new_figure()
    for g, table in enumerate(units):
        full, ablated = table["plaid_pattern_index"], table["nofeedback_plaid_pattern_index"]
        t, p, n = stats.paired_ttest(full, ablated)
        (m_full, s_full), (m_ab, s_ab) = stats.mean_sem(full), stats.mean_sem(ablated)
        rows.append(dict(group=groups[g], n_pairs=n, mean_full=m_full, mean_no_feedback=m_ab, t=t, p=p))
        ax.bar([3 * g, 3 * g + 1], [m_full, m_ab], yerr=[s_full, s_ab], color=[plotting.GROUP_COLOURS[g], "0.7"])
    ax.set_xticks([3 * g + k for g in range(len(units)) for k in (0, 1)],
                  [f"{groups[g]}\n{c}\nn={row['n_pairs']}" for g, row in enumerate(rows) for c in ("full", "no fb")])
    ax.set(ylabel="mean PI (+- SEM)", title="pattern index without feedback (full model's tuning)")
    plotting.save_figure(fig, out, "pattern_index_no_feedback")
summary["no_feedback"] = rows
pd.DataFrame(rows)

# %% [markdown]
# ## KS distance to V1 / V2 / MT by model type (mean +- SEM over the three pairs)

# %%
# Unit tables of every model type: this model first, then `comparison` (label, artefact path).
model_types = {"this model": units}
for label, path in comparison:
    model_types[label] = inputs.load_inputs(path, needs).units
rows = []
for label, tables in model_types.items():
    ks = [stats.ks_distance(t["plaid_pattern_index"], refs[a].values)
          if np.isfinite(t["plaid_pattern_index"]).any() else np.nan for t, a in zip(tables, areas)]
    mean, sem = stats.mean_sem(ks)
    rows.append(dict(model=label, **{f"ks_G{i + 1}_{a}": d for i, (a, d) in enumerate(zip(areas, ks))},
                     mean=mean, sem=sem))
frame = pd.DataFrame(rows).set_index("model")
fig, ax = plotting.new_figure()
ax.bar(range(len(frame)), frame["mean"], yerr=frame["sem"], color=plotting.GROUP_COLOURS[:len(frame)])
ax.set(xticks=range(len(frame)), xticklabels=frame.index, ylabel="KS distance (mean +- SEM over areas)")
plotting.save_figure(fig, out, "pattern_index_ks_by_model")
summary["ks_by_model"] = rows
frame

# %%
print(plotting.save_summary(out, summary))
