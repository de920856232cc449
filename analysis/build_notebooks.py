"""Write the analysis notebooks (``analysis/*.ipynb``) from the cell sources below.

    python analysis/build_notebooks.py

Each notebook opens with a cell tagged ``parameters`` (papermill fills it:
``papermill analysis/plaid_motion.ipynb out.ipynb -p checkpoint RUN -p artefact A``),
then a cell that checks the inputs and fails with one line if an artefact is
missing or was made from another checkpoint. An artefact of an ablated model
(``run.bash --ablation SPEC``) is analysed as that model: the notebooks read
the ablation from the artefact's metadata and probe the checkpoint with the
same ablation (no parameter to set, so the two cannot disagree); the
summaries record it. The logic lives in the
``analysis`` modules; the notebooks only load, call, plot and save (PNG + PDF
and a ``summary.json`` of the key numbers in ``output_dir``).
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

# Finds the repository root from the notebook's working directory (the repo or analysis/).
BOOTSTRAP = '''\
import sys
from pathlib import Path

ROOT = next(p for p in (Path.cwd(), *Path.cwd().parents) if (p / "analysis" / "stats.py").is_file())
sys.path.insert(0, str(ROOT))
import numpy as np
import pandas as pd

from analysis import inputs, plotting, reference, stats
'''

LOAD_MODEL_AND_ARTEFACT = BOOTSTRAP + '''from models.ablation import apply_ablation

data = inputs.load_inputs(checkpoint, artefact)
units, grid = data.units, data.artefact.grid
model = apply_ablation(data.model, data.artefact.ablation)  # the model the artefact probed
groups = [plotting.group_label(g) for g in range(len(units))]
out = Path(output_dir)
out.mkdir(parents=True, exist_ok=True)
summary = {"checkpoint": checkpoint, "artefact": artefact, "ablation": data.artefact.ablation}
print(f"{checkpoint} (ablation: {data.artefact.ablation}): frame {model.frame_shape}, "
      f"groups {model.group_sizes}, units kept by the RWA {[len(t['hidden_unit_index']) for t in units]}")
'''

SAVE_SUMMARY = '''\
print(plotting.save_summary(out, summary))
'''


def comparison_tables(field_doc: str) -> str:
    return f'''\
# Unit tables of every model type: this model first, then `comparison` ({field_doc}).
model_types = {{"this model": units}}
for label, path in comparison:
    other = inputs.load_artefact(path)
    model_types[label] = [inputs.unit_table(other, g) for g in range(len(other.group_sizes))]
'''


RESPONSE_PARAMETERS = [
    ("markdown", """\
# Response parameters: tuning, modulation ratio, preferred SF/TF

As the original's `response_parameters` notebook. Model groups G1, G2, G3 are compared with macaque V1, V2, MT.
F1/F0 is the figure notebook's `curve_fit` variant (computed by virtual physiology; units kept if
0 <= F1/F0 <= 2 and the fit correlates positively)."""),
    ("parameters", """\
checkpoint = "model_checkpoints/RUN"  # run folder or weights file
artefact = "model_checkpoints/RUN/N-epochs_model.vphys.h5"  # its virtual-physiology artefact
comparison = []  # other model types for the KS panel: [["TP_FF", "path/to/artefact.h5"], ...]
output_dir = "figures/response_parameters"
ds_threshold = 0.3  # DSI above which a unit is direction selective"""),
    ("code", LOAD_MODEL_AND_ARTEFACT + "from analysis import response_parameters as rp\n"),
    ("markdown", "## (a) Example SF and TF tuning curves (the most responsive unit of each group)"),
    ("code", """\
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
plotting.save_figure(fig, out, "example_sf_tf_tuning")"""),
    ("markdown", """\
## (b) Modulation ratio against V1 (Mata & Ringach 2005) and V2 (Levitt et al. 1994)
The V2 data exist only as a histogram, so the distance to them is the original's binned
max |dCDF|; for V1 the exact KS statistic on the 64 cells is given too."""),
    ("code", """\
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
pd.DataFrame(rows)"""),
    ("markdown", """\
## (c) Preferred SF and TF of direction-selective units against macaque means
Model units are cycles/px and cycles/frame, the data cycles/deg and Hz: only the trend
across the hierarchy is comparable (the data are on the right-hand axis)."""),
    ("code", """\
preferences = rp.ds_preferences(units, ds_threshold)
rows = []
for kind, per_group in preferences.items():
    for g, values in enumerate(per_group):
        mean, sem = stats.mean_sem(values)
        rows.append(dict(measure=kind, group=groups[g], n_ds_units=values.size, mean=mean, sem=sem))
plotting.save_figure(rp.ds_preference_figure(preferences, grid, ds_threshold), out, "preferred_sf_tf_ds_units")
summary["ds_preferences"] = rows
pd.DataFrame(rows)"""),
    ("markdown", "## (d) KS distance to the literature by model type"),
    ("code", comparison_tables("label, artefact path") + """\
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
frame"""),
    ("code", SAVE_SUMMARY),
]


PLAID_MOTION = [
    ("markdown", """\
# Plaid pattern motion

As the original's `plaid_motion` notebook. Pattern index PI = Zp - Zc per unit (virtual physiology), compared with
macaque V1 and MT (Movshon & Newsome 1996; MT-projecting V1 cells, df = 13) and V2 (Hu et al. 2018,
given as Z scores with an unknown df). PI > 1.28 marks pattern cells; the original's criterion is PI > 0."""),
    ("parameters", """\
checkpoint = "model_checkpoints/RUN"
artefact = "model_checkpoints/RUN/N-epochs_model.vphys.h5"
comparison = []  # other model types for the KS panel: [["TP_FF", "path/to/artefact.h5"], ...]
output_dir = "figures/plaid_motion"
pattern_dsi_threshold = 0.3  # plaid DSI above which a pattern-like unit is direction selective
contour_step = 25  # degrees between grating directions in the two-grating maps
n_plaid_directions = 18  # directions of the example plaid tuning curves"""),
    ("code", LOAD_MODEL_AND_ARTEFACT + "from analysis import plaid_motion\n"),
    ("markdown", "## Pattern index by group against the literature"),
    ("code", """\
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
pd.DataFrame(rows)"""),
    ("markdown", "## Direction selectivity of pattern-like units (PI > 0) to 150-degree plaids"),
    ("code", """\
rows = []
for g, table in enumerate(units):
    dsi = plaid_motion.direction_selectivity(table["plaid_response"])
    pattern_like = table["plaid_pattern_index"] > 0
    rows.append(dict(group=groups[g], n_pattern_like=int(pattern_like.sum()),
                     fraction_plaid_dsi_above=stats.fraction_above(dsi[pattern_like], pattern_dsi_threshold),
                     mean_plaid_dsi=stats.mean_sem(dsi[pattern_like])[0]))
summary["plaid_dsi_pattern_like"] = rows
pd.DataFrame(rows)"""),
    ("markdown", """\
## Example units: plaid tuning for component separations 0-150 degrees, and two-grating maps
For each group, the unit with the highest PI. Curves are rolled so the 0-degree (single grating) peak is
at the centre; maps show the response to gratings moving in directions A and B (sum z-scored)."""),
    ("code", """\
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
summary["examples"] = examples"""),
    ("markdown", """\
## Feedback removed
PI of the same units with the feedback blocks of W_hh zeroed. As in the original (flagged;
docs/faithfulness.md, "No-feedback plaids use the full model's tuning"), the pattern and component predictions are built from the FULL model's grating tuning.
Paired t-test over units with both values."""),
    ("code", """\
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
                  [f"{groups[g]}\\n{c}\\nn={row['n_pairs']}" for g, row in enumerate(rows) for c in ("full", "no fb")])
    ax.set(ylabel="mean PI (+- SEM)", title="pattern index without feedback (full model's tuning)")
    plotting.save_figure(fig, out, "pattern_index_no_feedback")
summary["no_feedback"] = rows
pd.DataFrame(rows)"""),
    ("markdown", "## KS distance to V1 / V2 / MT by model type (mean +- SEM over the three pairs)"),
    ("code", comparison_tables("label, artefact path") + """\
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
frame"""),
    ("code", SAVE_SUMMARY),
]


SURROUND_SUPPRESSION = [
    ("markdown", """\
# Surround suppression with and without feedback (group G1)

As the original's `surround_suppression` notebook. Size tuning from virtual physiology: aperture RADIUS 2..38 px, un-normalised
gratings, mean of the last 4 of 100 frames (reproduced; docs/faithfulness.md, "Surround stimulus"). SI = 100 (max - R_largest) / max.
Data, labelled for what they are: mouse V1 with lateral higher areas silenced (Vangeneugden et al. 2019,
attribution uncertain), macaque V1 with V2/V3 cooled (Nassi et al. 2013) and marmoset V1 with V2 feedback
inactivated (Nurminen et al. 2018; the original plotted the last as "mouse" and the mouse
feedback-suppressed list as "V1")."""),
    ("parameters", """\
checkpoint = "model_checkpoints/RUN"
artefact = "model_checkpoints/RUN/N-epochs_model.vphys.h5"
comparison = []  # other model types for the SI comparison: [["TP_FF", "path/to/artefact.h5"], ...]
output_dir = "figures/surround_suppression"
n_examples = 3  # example units (the most suppressed)"""),
    ("code", LOAD_MODEL_AND_ARTEFACT + """\
from analysis import surround_suppression as ss
from virtual_physiology.surround import APERTURE_RADII, size_tuning_curves, suppression_index

table = units[0]
full = table["size_tuning_curve"]
if "nofeedback_size_tuning_curve" in table:
    ablated = table["nofeedback_size_tuning_curve"]
elif model.supports_feedback_ablation:  # artefact without the no-feedback stage: probe the ablated model here
    from models.ablation import without_feedback

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
"""),
    ("markdown", "## Example size-tuning curves with ratio-of-Gaussians fits"),
    ("code", """\
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
plotting.save_figure(fig, out, "example_size_tuning")"""),
    ("markdown", "## Population size tuning: model (normalised to each unit's full-model peak) and data"),
    ("code", """\
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
summary["ratio_of_gaussians_fits"] = {k: dict(zip(("G_e", "W_e", "G_i", "W_i"), v)) for k, v in fits.items()}"""),
    ("markdown", "## SI distributions: model with / without feedback, and the data"),
    ("code", """\
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
    t, p, n = stats.paired_ttest(si_full, si_ablated)
    rows += [dict(model="no feedback", reference=r.label, ks=stats.ks_distance(si_ablated, r.values))
             for r in (mouse[1], macaque[1])]
    summary["si"].update(mean_no_feedback=stats.mean_sem(si_ablated)[0], paired_t=t, paired_p=p, n_pairs=n)
    print(f"SI full {summary['si']['mean_full']:.1f} vs no feedback {summary['si']['mean_no_feedback']:.1f} "
          f"(paired t = {t:.2f}, p = {p:.3g}, n = {n})")
pd.DataFrame(rows)"""),
    ("markdown", """\
## Summation field and response changes against marmoset V1 (Nurminen et al. 2018)
Model: preferred radius, peak response and the response where the near surround starts to suppress
(first radius past the full curve's peak below 95% of it), each as feedback-removed / full or full /
feedback-removed exactly as the data are normalised."""),
    ("code", """\
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
    display(pd.DataFrame({"model": model_bars, nurminen["label"]: data_bars}))"""),
    ("markdown", "## SI by model type against mouse V1 (control and feedback-suppressed, both shown)"),
    ("code", comparison_tables("label, artefact path") + """\
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
pd.DataFrame(rows)"""),
    ("code", SAVE_SUMMARY),
]


CONNECTIVITY = [
    ("markdown", """\
# Like-to-like connectivity among G1 excitatory units

As the original's `connectivity_ori_dir` notebook. Units: G1 excitatory, Gabor r > `gabor_r_min` and both envelope
log-variances > `log_variance_min`; W = their block of W_hh [post, pre]. Reproduced quirks
(docs/faithfulness.md): the short-range threshold is a percentile of |W|, the long-range one of signed W,
both over the whole excitatory block with the self-weights; orientation
differences come from the preferred directions. **Axis convention (flagged):** the original calls an input
displaced along the postsynaptic unit's *motion* axis "co-axial"; Iacaruso et al. (2017) mean the
preferred-*orientation* axis. Both are shown."""),
    ("parameters", """\
checkpoint = "model_checkpoints/RUN"
artefact = "model_checkpoints/RUN/N-epochs_model.vphys.h5"
output_dir = "figures/connectivity_ori_dir"
n_shuffles = 10_000  # shuffles of the presynaptic orientations for the null
seed = 0
gabor_r_min = 0.7
log_variance_min = 0.5
osi_threshold = 0.3  # presynaptic orientation selectivity (the original's connectivity threshold)
dsi_threshold = 0.4  # presynaptic direction selectivity
percentile = 95  # connection threshold
coaxial_axis = "motion"  # motion: the original convention; orientation: Iacaruso 2017"""),
    ("code", LOAD_MODEL_AND_ARTEFACT + """\
from analysis import connectivity

c = data.artefact.connectivity()
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
summary["units"]"""),
    ("markdown", """\
## (a) Short range (< 2.5 px): connection probability vs difference in preference, against Ko et al. 2011
Cochran-Armitage trend tests (statsmodels' sign: z > 0 when the connection probability falls). The figure's
statistic is the original's, `z_original` / `p_original`, from the table [connected, all tested]; `z` / `p` are
the same test on the correct table [connected, not connected]. Direction: the two halves 0-90 and 90-180 degrees."""),
    ("code", """\
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
    ax.set_title("model trend, original's table [connected, all tested]:\\n" + "\\n".join(model_tests),
                 fontsize="small")
plotting.save_figure(fig, out, "short_range_connection_probability")
summary["trend_tests"] = rows
pd.DataFrame(rows)"""),
    ("markdown", """\
## (b) Long range (5-9.2 px): connected inputs by axis and orientation difference, against Iacaruso et al. 2017
Fractions of all connected long-range inputs (both axes sum to 1). The null shuffles the presynaptic
orientations within each axis, as the original. Error bars: 2.5-97.5% of that null. `p` is the original's
2 min(#null < observed, #null >= observed) / N; `p_tie_symmetric` counts ties on both sides."""),
    ("code", """\
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
summary["long_range"]"""),
    ("markdown", "## (c) Connection probability by presynaptic RF position (post unit's frame; rows along its motion)"),
    ("code", """\
nearby = (pairs["distance"] < connectivity.LONG_RANGE[1]) & ori_selective[pairs["pre"]]
connected = pairs["weight"] > signed_threshold
fig, axes = plotting.new_figure(3, width=4, height=4)
for ax, low, high in zip(axes, edges[:-1], edges[1:]):
    in_bin = nearby & (pairs["ori_diff"] >= low) & ((pairs["ori_diff"] < high) | (high == edges[-1]))
    ratio = connectivity.relative_position_map(pairs["along"][in_bin], pairs["across"][in_bin], connected[in_bin])
    ax.set(xlabel="across motion (px)", ylabel="along motion (px)",
           title=f"orientation difference {low:g}-{high:g} deg")
    if not np.isfinite(ratio).any():
        plotting.empty_panel(ax, f"{len(keep)} G1 units selected:\\nno pairs to map" if len(keep) < 2 else
                             f"no model pairs in this bin closer than\\n{connectivity.LONG_RANGE[1]:.1f} px with an "
                             f"orientation-\\nselective presynaptic unit")
        continue
    image = ax.imshow(ratio, origin="lower", extent=(-10, 10, -10, 10), cmap="viridis")
    fig.colorbar(image, ax=ax, fraction=0.046, label="connection probability")
plotting.save_figure(fig, out, "connection_heatmaps")"""),
    ("code", SAVE_SUMMARY),
]


MSE = [
    ("markdown", """\
# Prediction error: next frame, multi-frame rollouts, beta sweep

As the original's `mse` notebook, with its fixes (docs/faithfulness.md, "Prediction-error baselines"): the copy-last-frame baseline copies the last frame the model
has seen (and is scored on the same targets), the rollout runs the model's own forward (so its weight
constraints apply), the centre-of-mass error is a centre-of-mass error, and every model is rolled out
on the same bar angles."""),
    ("parameters", """\
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
output_dir = "figures/mse\""""),
    ("code", BOOTSTRAP + """\
from analysis import mse
from models.io import load_model

models = {label: load_model(path)[0] for label, path in checkpoints}
sweep = [(float(beta), load_model(path)[0]) for beta, path in beta_sweep]
frame_shape = next(iter(models.values())).frame_shape
clips = {"in distribution": mse.split_clips(dataset, frame_shape, "validation", max_clips)}
if ood_dataset is not None:
    clips["out of distribution"] = mse.split_clips(ood_dataset, frame_shape, "train", max_clips)
out = Path(output_dir)
out.mkdir(parents=True, exist_ok=True)
summary = {"checkpoints": checkpoints}
print({k: v.shape for k, v in clips.items()})"""),
    ("markdown", "## (a) Next-frame MSE on noise-free held-out clips (mean +- SEM over clips)"),
    ("code", """\
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
frame"""),
    ("markdown", "## (b) Closed-loop rollouts on moving bars"),
    ("code", """\
rows = []
fig, axes = plotting.new_figure(2)
horizon = np.arange(1, n_predict + 1)
for k, (label, model) in enumerate(models.items()):
    if getattr(model, "temporal_offset", 1) != 1:
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
pd.DataFrame(rows)"""),
    ("markdown", "## (c) beta sweep"),
    ("code", """\
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
pd.DataFrame(rows)"""),
    ("code", SAVE_SUMMARY),
]


NBACK = [
    ("markdown", """\
# n-back memory for a digit, with and without feedback

As the original's `nback` notebook: 4 noise frames, a digit, then n noise frames; a linear readout of all hidden units at
the last step names the digit. Full model vs feedback removed vs feedback shuffled. Two-proportion
z-test with the pooled p(1 - p) (the original wrote p**(1 - p))."""),
    ("parameters", """\
checkpoint = "model_checkpoints/RUN"
mnist_path = "auto"  # .npz with images/labels (or Keras x_train/y_train); "auto": a local MNIST if found
# ($MNIST_NPZ, ~/.keras/datasets/mnist.npz, data/mnist.npz), else as None; None: scikit-learn's 8x8 digits
max_digits = None  # use at most this many digits (None: all)
n_back_values = list(range(11))
shuffle_fractions = [0.0, 0.25, 0.5, 0.75, 1.0]
shuffle_n_back = 5
shuffle_mass_preserving = False  # False: the original's shuffle over whole blocks; True: allowed entries only
epochs = 100
lr = 1e-4
seed = 0
output_dir = "figures/nback\""""),
    ("code", BOOTSTRAP + """\
from analysis import nback
from models.ablation import shuffle_feedback, without_feedback
from models.io import load_model

model = load_model(checkpoint)[0]
images, labels, digit_source = nback.load_digit_images(mnist_path)
images, labels = images[:max_digits], labels[:max_digits]
frames = nback.digit_frames(images, model.frame_shape)
out = Path(output_dir)
out.mkdir(parents=True, exist_ok=True)
summary = dict(checkpoint=checkpoint, digit_source=digit_source, n_digits=len(labels))
print(f"{len(labels)} digits: {digit_source}")"""),
    ("code", """\
variants = {"full": model, "no feedback": without_feedback(model)}
rows = []
for n_back in n_back_values:
    scores = {name: nback.nback_accuracy(m, frames, labels, n_back, seed=seed, epochs=epochs, lr=lr)
              for name, m in variants.items()}
    z, p = stats.two_proportion_ztest(scores["full"]["n_correct"], scores["full"]["n_test"],
                                      scores["no feedback"]["n_correct"], scores["no feedback"]["n_test"])
    rows.append(dict(n_back=n_back, full=scores["full"]["accuracy"], no_feedback=scores["no feedback"]["accuracy"],
                     n_test=scores["full"]["n_test"], z=z, p=p))
frame = pd.DataFrame(rows)
fig, ax = plotting.new_figure()
n_test = f"n={int(frame['n_test'].iloc[0])} test digits"
ax.plot(frame["n_back"], frame["full"], "o-", color=plotting.GROUP_COLOURS[0], label=f"full ({n_test})")
ax.plot(frame["n_back"], frame["no_feedback"], "s--", color="0.5", markerfacecolor="none",
        label=f"feedback removed ({n_test})")  # dashed, hollow: visible where it lies on the full curve
ax.axhline(1 / len(np.unique(labels)), color="k", linestyle=":", label="chance")
ax.set(xlabel="noise frames after the digit (n)", ylabel="readout accuracy (test)", title=digit_source, ylim=(0, 1.02))
ax.legend()
plotting.save_figure(fig, out, "nback_accuracy")
summary["nback"] = rows
frame"""),
    ("code", """\
rows = []
for fraction in shuffle_fractions:
    shuffled = shuffle_feedback(model, fraction, seed, mass_preserving=shuffle_mass_preserving)
    score = nback.nback_accuracy(shuffled, frames, labels, shuffle_n_back, seed=seed, epochs=epochs, lr=lr)
    rows.append(dict(fraction_shuffled=fraction, accuracy=score["accuracy"], n_test=score["n_test"]))
frame = pd.DataFrame(rows)
fig, ax = plotting.new_figure()
ax.plot(100 * frame["fraction_shuffled"], frame["accuracy"], "o-", color="k",
        label=f"{shuffle_n_back}-back (n={int(frame['n_test'].iloc[0])} test digits)")
ax.axhline(1 / len(np.unique(labels)), color="k", linestyle=":", label="chance")
ax.set(xlabel="feedback weights shuffled (%)", ylabel=f"{shuffle_n_back}-back accuracy", title=digit_source,
       ylim=(0, 1.02))  # accuracy on its whole scale, so a drop near chance is not magnified
ax.legend()
plotting.save_figure(fig, out, "nback_shuffled_feedback")
summary["shuffled_feedback"] = rows
frame"""),
    ("code", SAVE_SUMMARY),
]

NOTEBOOKS = {
    "response_parameters": RESPONSE_PARAMETERS,
    "plaid_motion": PLAID_MOTION,
    "surround_suppression": SURROUND_SUPPRESSION,
    "connectivity_ori_dir": CONNECTIVITY,
    "mse": MSE,
    "nback": NBACK,
}


def build(name: str, cells) -> nbformat.NotebookNode:
    out = []
    for i, (kind, source) in enumerate(cells):
        if kind == "markdown":
            out.append(new_markdown_cell(source))
        else:
            cell = new_code_cell(source)
            if kind == "parameters":
                cell.metadata["tags"] = ["parameters"]
            out.append(cell)
        out[-1].id = f"{name}-{i}"  # stable ids: regenerating gives the same file
    notebook = new_notebook(cells=out)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata["language_info"] = {"name": "python"}
    return notebook


def main(names=None) -> None:
    for name in names or NOTEBOOKS:
        path = HERE / f"{name}.ipynb"
        nbformat.write(build(name, NOTEBOOKS[name]), str(path))
        print(path)


if __name__ == "__main__":
    main(sys.argv[1:])
