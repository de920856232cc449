# Source of analysis/response_parameters.ipynb (jupytext percent format): edit here, then run
# python -m analysis.build_notebooks response_parameters

# %% [markdown]
# # Response parameters: tuning, modulation ratio, preferred SF/TF
#
# As the original's `response_parameters` notebook. Model groups G1, G2, G3 are compared with macaque V1, V2, MT.
# F1/F0 is the figure notebook's `curve_fit` variant (computed by virtual physiology; units kept if
# 0 <= F1/F0 <= 2 and the fit correlates positively).

# %% tags=["parameters"]
artefact = "model_checkpoints/RUN/N-epochs_model.vphys.h5"  # a model's virtual-physiology artefact (bash run.bash)
comparison = []  # other model types for the KS panel: [["TP_FF", "path/to/artefact.h5"], ...]
output_dir = "figures/response_parameters"
ds_threshold = 0.3  # DSI above which a unit is direction selective

# %%

import numpy as np
import pandas as pd

from analysis import inputs, plotting, reference, stats
from analysis import response_parameters as rp

needs = ("rwa", "gratings", "modulation")  # the stages of the artefact this notebook reads
data = inputs.load_inputs(artefact, needs)
vp, units, grid, groups = data.artefact, data.units, data.artefact.grid, data.group_labels
out, summary = inputs.figure_folder(output_dir), data.summary()
print(data.describe())

# %% [markdown]
# ## (a) Example SF and TF tuning curves (the most responsive unit of each group)

# %%
fig, (ax_sf, ax_tf) = plotting.new_figure(2)
for g, table in enumerate(units):
    if len(table["hidden_unit_index"]) == 0:
        continue
    best = int(np.nanargmax(table["max_mean_grating_response"]))
    curves = rp.tuning_slices(table["mean_grating_responses"][best:best + 1], table["preferred_index"][best:best + 1])
    peak = max(float(curves["sf"].max()), 1e-12)
    colour = plotting.GROUP_COLOURS[g]
    ax_sf.plot(grid["sf"], curves["sf"][0] / peak, "o-", color=colour,
               label=f"{groups[g]} unit {table['hidden_unit_index'][best]}")
    ax_tf.plot(grid["tf"], curves["tf"][0] / peak, "o-", color=colour)
# from 0, so that a curve within a fraction of a percent of its peak reads as the flat curve it is
ax_sf.set(xlabel="spatial frequency (cycles/px)", ylabel="response / peak", title="SF tuning", ylim=(0, 1.05))
ax_tf.set(xlabel="temporal frequency (cycles/frame)", ylabel="response / peak", title="TF tuning", ylim=(0, 1.05))
if ax_sf.lines:
    ax_sf.legend(loc="lower right")
else:
    for ax in (ax_sf, ax_tf):
        plotting.empty_panel(ax, "no units kept by the RWA in any group")
plotting.save_figure(fig, out, "example_sf_tf_tuning")

# %% [markdown]
# ## (b) Modulation ratio against V1 (Mata & Ringach 2005) and V2 (Levitt et al. 1994)
# The V2 data exist only as a histogram, so the distance to them is the original's binned
# max |dCDF|; for V1 the exact KS statistic on the 64 cells is given too.

# %%
edges = reference.MODULATION_RATIO_EDGES
v1 = reference.modulation_ratio_v1()
targets = {0: "V1", 1: "V2"}
rows = []
ratios = [rp.curve_fit_modulation_ratio(table) for table in units]
for g, mr in enumerate(ratios):
    row = dict(group=groups[g], n=int(np.isfinite(mr).sum()), mean=stats.mean_sem(mr)[0],
               median=float(np.nanmedian(mr)) if np.isfinite(mr).any() else np.nan,
               fraction_above_1=stats.fraction_above(mr, 1.0))
    if g in targets:
        _, ref_p, ref_label = reference.modulation_ratio_histogram(targets[g])
        row.update(reference=ref_label, binned_ks=rp.binned_distance_to_histogram(mr, edges, ref_p),
                   reference_fraction_above_1=float(ref_p[5:].sum() / ref_p.sum()))
        if targets[g] == "V1" and row["n"]:
            row["ks"] = stats.ks_distance(mr, v1.values)
    rows.append(row)
plotting.save_figure(rp.modulation_ratio_figure(ratios), out, "modulation_ratio_histograms")
summary["modulation_ratio"] = rows
pd.DataFrame(rows)

# %% [markdown]
# ## (c) Preferred SF and TF of direction-selective units against macaque means
# Model units are cycles/px and cycles/frame, the data cycles/deg and Hz: only the trend
# across the hierarchy is comparable (the data are on the right-hand axis).

# %%
preferences = rp.ds_preferences(units, ds_threshold)
rows = []
for kind, per_group in preferences.items():
    for g, values in enumerate(per_group):
        mean, sem = stats.mean_sem(values)
        rows.append(dict(measure=kind, group=groups[g], n_ds_units=values.size, mean=mean, sem=sem))
plotting.save_figure(rp.ds_preference_figure(preferences, grid, ds_threshold), out, "preferred_sf_tf_ds_units")
summary["ds_preferences"] = rows
pd.DataFrame(rows)

# %% [markdown]
# ## (d) KS distance to the literature by model type

# %%
# Unit tables of every model type: this model first, then `comparison` (label, artefact path).
model_types = {"this model": units}
for label, path in comparison:
    model_types[label] = inputs.load_inputs(path, needs).units
_, v2_p, _ = reference.modulation_ratio_histogram("V2")
rows = []
for label, tables in model_types.items():
    mr = [rp.curve_fit_modulation_ratio(t) for t in tables]
    rows.append(dict(model=label,
                     ks_G1_V1=stats.ks_distance(mr[0], v1.values) if np.isfinite(mr[0]).any() else np.nan,
                     binned_ks_G1_V1=rp.binned_distance_to_histogram(mr[0], edges, reference.modulation_ratio_histogram("V1")[1]),
                     binned_ks_G2_V2=rp.binned_distance_to_histogram(mr[1], edges, v2_p) if len(mr) > 1 else np.nan))
frame = pd.DataFrame(rows).set_index("model")
fig, ax = plotting.new_figure()
frame.rename(columns={"ks_G1_V1": "G1 vs V1, KS", "binned_ks_G1_V1": "G1 vs V1, binned",
                      "binned_ks_G2_V2": "G2 vs V2, binned"}).plot.bar(ax=ax, rot=0, color=plotting.GROUP_COLOURS[:3])
ax.set(ylabel="distance to data (lower is closer)", title="Modulation ratio: model vs macaque")
plotting.save_figure(fig, out, "modulation_ratio_ks_by_model")
summary["ks_by_model"] = rows
frame

# %%
print(plotting.save_summary(out, summary))
