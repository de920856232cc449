# Source of analysis/surround_suppression.ipynb (jupytext percent format): edit here, then run
# python -m analysis.build_notebooks surround_suppression

# %% [markdown]
# # Surround suppression with and without feedback (group G1)
#
# As the original's `surround_suppression` notebook. Size tuning from virtual physiology: aperture RADIUS 2..38 px, un-normalised
# gratings, mean of the last 4 of 100 frames (reproduced; docs/faithfulness.md, "Surround stimulus"). SI = 100 (max - R_largest) / max.
# Data, labelled for what they are: mouse V1 with lateral higher areas silenced (Vangeneugden et al. 2019,
# attribution uncertain), macaque V1 with V2/V3 cooled (Nassi et al. 2013) and marmoset V1 with V2 feedback
# inactivated (Nurminen et al. 2018; the original plotted the last as "mouse" and the mouse
# feedback-suppressed list as "V1").

# %% tags=["parameters"]
artefact = "model_checkpoints/RUN/N-epochs_model.vphys.h5"  # a model's virtual-physiology artefact (bash run.bash)
comparison = []  # other model types for the SI comparison: [["TP_FF", "path/to/artefact.h5"], ...]
output_dir = "figures/surround_suppression"
n_examples = 3  # example units (the most suppressed)

# %%

import numpy as np
import pandas as pd
from IPython.display import display

from analysis import inputs, plotting, reference, stats
from analysis import surround_suppression as ss
from models.ablation import without_feedback
from virtual_physiology.surround import APERTURE_RADII, size_tuning_curves, suppression_index

needs = ("rwa", "gabor", "gratings", "surround")  # the stages of the artefact this notebook reads
data = inputs.load_inputs(artefact, needs)
vp, units, grid, groups = data.artefact, data.units, data.artefact.grid, data.group_labels
out, summary = inputs.figure_folder(output_dir), data.summary()
print(data.describe())
table = units[0]
full = table["size_tuning_curve"]
if "nofeedback_size_tuning_curve" in table:
    ablated = table["nofeedback_size_tuning_curve"]
else:  # no no-feedback rerun in the artefact: probe the model here, if it has feedback to remove
    model = vp.probed_model()
    if model.supports_feedback_ablation:
        index = table["preferred_index"]
        ablated = size_tuning_curves(without_feedback(model), table["hidden_unit_index"], grid["sf"][index[:, 0]],
                                     grid["directions"][index[:, 1]], grid["tf"][index[:, 2]], table["gabor_x"],
                                     table["gabor_y"], progress=False)
    else:  # ablated is None from here on: every no-feedback comparison is left out
        ablated = None
        print(f"{type(model).__name__} has no feedback to remove: the no-feedback comparisons are skipped")
si_full = suppression_index(full)["surround_suppression_index"]
si_ablated = None if ablated is None else suppression_index(ablated)["surround_suppression_index"]
# (label, curves, SI, colour) of the model variants to show
variants = [("full", full, si_full, plotting.GROUP_COLOURS[0])]
if ablated is not None:
    variants.append(("no feedback", ablated, si_ablated, "0.5"))
radii = APERTURE_RADII.astype(float)
print(f"G1 units with a size-tuning curve: {int(np.isfinite(si_full).sum())} of {len(si_full)}")

# %% [markdown]
# ## Example size-tuning curves with ratio-of-Gaussians fits

# %%
order = np.argsort(np.where(np.isfinite(si_full), -si_full, np.inf))[:min(n_examples, int(np.isfinite(si_full).sum()))]
fine = np.linspace(0, radii.max(), 200)
fig, axes = plotting.new_figure(max(len(order), 1), squeeze=False)
if not len(order):
    plotting.empty_panel(axes[0, 0], "no G1 units with a size-tuning curve")
for ax, i in zip(axes[0], order):
    for (label, curves, _, colour), marker in zip(variants, ("o", "x")):  # x: the no-feedback curve shows on top
        ax.plot(radii, curves[i], marker, color=colour, label=label)
        params = ss.fit_curves(radii, curves[i])[0]
        if np.isfinite(params).all():
            ax.plot(fine, stats.ratio_of_gaussians(fine, *params), color=colour)
    ax.set(xlabel="aperture radius (px)", ylabel="response",
           title=f"unit {table['hidden_unit_index'][i]}: SI " + " -> ".join(f"{si[i]:.0f}" for *_, si, _ in variants))
if len(order):
    axes[0, 0].legend()
plotting.save_figure(fig, out, "example_size_tuning")

# %% [markdown]
# ## Population size tuning: model (normalised to each unit's full-model peak) and data

# %%
# with no ablated curves, the full ones stand in for them and their mean is dropped
mean_full, mean_ablated, n_used = ss.normalised_mean_curves(full, full if ablated is None else ablated)
mean_ablated = None if ablated is None else mean_ablated
fig, axes = plotting.new_figure(3)
panels = [(axes[0], radii, mean_full, mean_ablated, f"model G1 (n={n_used})", "radius (px)", "full", "no feedback")]
for ax, species in zip(axes[1:], ("mouse", "macaque")):
    ref = reference.size_tuning(species)
    panels.append((ax, ref["size_deg"], ref["control"], ref["feedback_suppressed"], ref["label"], "diameter (deg)",
                   "control", "feedback suppressed"))
fits = {}
for ax, x, control, suppressed, title, xlabel, label_a, label_b in panels:
    grid_x = np.linspace(0, x.max(), 200)
    for curve, label, colour in ((control, label_a, "k"), (suppressed, label_b, "0.6")):
        if curve is None:
            continue
        ax.plot(x, curve, "o", color=colour, label=label)
        params = ss.fit_curves(x, curve)[0]
        fits[f"{title}: {label}"] = params
        if np.isfinite(params).all():
            ax.plot(grid_x, stats.ratio_of_gaussians(grid_x, *params), color=colour)
    ax.set(xlabel=xlabel, ylabel="normalised response", title=title)
    ax.legend()
plotting.save_figure(fig, out, "population_size_tuning")
summary["ratio_of_gaussians_fits"] = {k: dict(zip(("G_e", "W_e", "G_i", "W_i"), v)) for k, v in fits.items()}

# %% [markdown]
# ## SI distributions: model with / without feedback, and the data

# %%
mouse = [reference.surround_index("mouse", c) for c in ("control", "feedback_suppressed")]
macaque = [reference.surround_index("macaque", c) for c in ("control", "feedback_suppressed")]
panels = {"model": [(si, f"G1 {label}") for label, _, si, _ in variants],
          "mouse": [(s.values, s.label) for s in mouse], "macaque": [(s.values, s.label) for s in macaque]}
plotting.save_figure(ss.si_distribution_figure(panels), out, "si_distributions")
rows = [dict(model="full", reference=r.label, ks=stats.ks_distance(si_full, r.values)) for r in (mouse[0], macaque[0])]
summary["si"] = dict(mean_full=stats.mean_sem(si_full)[0], ks=rows)
if ablated is None:
    print(f"SI full {summary['si']['mean_full']:.1f} (no feedback to remove)")
else:
    rows += [dict(model="no feedback", reference=r.label, ks=stats.ks_distance(si_ablated, r.values))
             for r in (mouse[1], macaque[1])]
    change = ss.si_change(si_full, si_ablated)  # over the units with an SI in both; t of without minus with
    summary["si"]["paired"] = change
    print(f"SI over the {change['n_pairs']} units with both: full {change['mean_full']:.1f} vs no feedback "
          f"{change['mean_no_feedback']:.1f} (paired t = {change['paired_t']:.2f}, p = {change['paired_p']:.3g})")
pd.DataFrame(rows)

# %% [markdown]
# ## Summation field and response changes against marmoset V1 (Nurminen et al. 2018)
# Model: preferred radius, peak response and the response where the near surround starts to suppress
# (first radius past the full curve's peak below 95% of it), each as feedback-removed / full or full /
# feedback-removed exactly as the data are normalised.

# %%
if ablated is None:
    print("no feedback to remove: the comparison with Nurminen et al. is skipped")
else:
    effects = ss.feedback_effects(full, ablated, radii)
    nurminen = reference.feedback_inactivation_summary()
    size_ratio = (stats.mean_sem(effects["preferred_size_no_feedback"])[0]
                  / stats.mean_sem(effects["preferred_size_full"])[0])
    data_size = nurminen["srf_diameter_deg"][0]
    model_bars = {"summation size (no fb / full)": [1.0, size_ratio],
                  "peak response (no fb / full)": [1.0, stats.mean_sem(effects["peak_ratio"])[0]],
                  "proximal surround (full / no fb)": [stats.mean_sem(effects["proximal_ratio"])[0], 1.0]}
    data_bars = {"summation size (no fb / full)": [1.0, data_size[1] / data_size[0]],
                 "peak response (no fb / full)": list(nurminen["srf_response"][0]),
                 "proximal surround (full / no fb)": list(nurminen["proximal_response"][0])}
    fig, axes = plotting.new_figure(3)
    for ax, name in zip(axes, model_bars):
        ax.bar([0, 1], model_bars[name], 0.4, color=[plotting.GROUP_COLOURS[0], "0.7"],
               label=f"model G1 (n={int(np.isfinite(effects['peak_ratio']).sum())})")
        ax.bar([0.45, 1.45], data_bars[name], 0.4, color="none", edgecolor="k", hatch="//", label=nurminen["label"])
        ax.set(xticks=[0.2, 1.2], xticklabels=["full / control", "feedback removed"], title=name,
               ylabel="ratio (mean)")
    axes[0].legend(**plotting.LEGEND_BELOW)
    plotting.save_figure(fig, out, "feedback_effects_vs_nurminen")
    summary["nurminen_comparison"] = dict(model=model_bars, data=data_bars)
    display(pd.DataFrame({"model": model_bars, nurminen["label"]: data_bars}))

# %% [markdown]
# ## SI by model type against mouse V1 (control and feedback-suppressed, both shown)

# %%
# Unit tables of every model type: this model first, then `comparison` (label, artefact path).
model_types = {"this model": units}
for label, path in comparison:
    model_types[label] = inputs.load_inputs(path, needs).units
samples = {label: tables[0]["surround_suppression_index"] for label, tables in model_types.items()}
samples.update({mouse[0].label: mouse[0].values, mouse[1].label: mouse[1].values})
fig, ax = plotting.new_figure(width=10)
plotting.violins(ax, samples)
ax.set(ylabel="SI (%)")
plotting.save_figure(fig, out, "si_by_model")
rows = [dict(model=label, **{r.label: stats.ks_distance(tables[0]["surround_suppression_index"], r.values)
                             if np.isfinite(tables[0]["surround_suppression_index"]).any() else np.nan
                             for r in mouse}) for label, tables in model_types.items()]
summary["si_ks_by_model"] = rows
pd.DataFrame(rows)

# %%
print(plotting.save_summary(out, summary))
