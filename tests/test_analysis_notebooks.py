"""Every analysis notebook runs top to bottom (papermill) on a tiny model and
artefact, saves its figures and finite key numbers, and stops in its first
cell with a one-line error on a missing or mismatched artefact. The surround
notebook also runs on a model without feedback (its no-feedback parts are
skipped) and on the artefact of an ablated model (it probes that model)."""
import dataclasses
import json
import math
import os
from pathlib import Path

import nbformat
import papermill as pm
import pytest
import torch

from analysis import build_notebooks, gallery
from models import build_model
from models.io import save_model
from tests.analysis_helpers import copied_run, tiny_run
from train import TrainConfig
from virtual_physiology.pipeline import Options, Pipeline

ANALYSIS = Path(__file__).resolve().parents[1] / "analysis"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    jupyter = tmp_path_factory.mktemp("jupyter")
    saved = {k: os.environ.get(k) for k in ("JUPYTER_DATA_DIR", "JUPYTER_CONFIG_DIR", "MPLBACKEND")}
    os.environ.update(JUPYTER_DATA_DIR=str(jupyter / "data"), JUPYTER_CONFIG_DIR=str(jupyter / "config"),
                      MPLBACKEND="Agg")
    yield tiny_run()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


TINY_OPTIONS = dict(rwa_clips=50, rwa_chunk=50, gabor_starts=1, gabor_steps=20, progress=False)


@pytest.fixture(scope="module")
def vanilla_run(run, tmp_path_factory):
    """A tiny one-group recurrent model (no feedback to remove) and its artefact."""
    root = tmp_path_factory.mktemp("vanilla")
    torch.manual_seed(0)
    config = dataclasses.asdict(TrainConfig(model="network_recurrent", frame_shape=(8, 8), hidden_units=(12,),
                                            beta=(1.0,)))
    model = build_model(config)
    with torch.no_grad():  # stronger input, as in tiny_run, so that the units respond
        model.weight_ih.mul_(4)
    save_model(root / "run", model, config, epoch=1)
    artefact = root / "run" / "tiny.vphys.h5"
    Pipeline(root / "run", artefact, options=Options(**TINY_OPTIONS)).run(log=lambda message: None)
    return dict(checkpoint=str(root / "run"), artefact=str(artefact))


def execute(name, tmp_path, **parameters):
    out = tmp_path / name
    pm.execute_notebook(str(ANALYSIS / f"{name}.ipynb"), str(tmp_path / f"{name}.out.ipynb"),
                        parameters=dict(output_dir=str(out), **parameters), kernel_name="python3",
                        progress_bar=False, cwd=str(ANALYSIS.parent))
    return out, json.loads((out / "summary.json").read_text())


def assert_figures(out, *names):
    for name in names:
        for suffix in (".png", ".pdf"):
            assert (out / f"{name}{suffix}").stat().st_size > 1000, f"{name}{suffix} missing or empty"


def finite(*values):
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def test_each_notebook_is_up_to_date_with_its_source():
    for name in build_notebooks.NOTEBOOKS:
        on_disk = (ANALYSIS / f"{name}.ipynb").read_text()
        nbformat.validate(nbformat.reads(on_disk, as_version=4))
        rebuilt = nbformat.writes(build_notebooks.notebook_from_source(name)) + "\n"
        assert on_disk == rebuilt, f"analysis/{name}.ipynb is older than its source: python -m analysis.build_notebooks {name}"
        assert nbformat.reads(on_disk, as_version=4).cells[1].metadata["tags"] == ["parameters"]


def test_percent_format_cells_markers_and_markdown():
    text = ("# header, not a cell\n\n# %% [markdown]\n# # Title\n#\n# text\n\n"
            '# %% tags=["parameters"]\nx = 1\n\n# %%\nif x:\n\n    y = 2\n\n\n')
    assert build_notebooks.parse_cells(text) == [("markdown", "# Title\n\ntext"), ("parameters", "x = 1"),
                                                 ("code", "if x:\n\n    y = 2")]
    notebook = build_notebooks.build("t", build_notebooks.parse_cells(text))
    assert [c.cell_type for c in notebook.cells] == ["markdown", "code", "code"]
    assert [c.id for c in notebook.cells] == ["t-0", "t-1", "t-2"]
    assert notebook.cells[1].metadata["tags"] == ["parameters"] and "tags" not in notebook.cells[2].metadata


@pytest.mark.parametrize("text, message", [("# %% [raw]\nx\n", "s.py:1: unknown cell marker"),
                                           ("# %% [markdown]\n# fine\nnot a comment\n", "s.py:3: Markdown line")])
def test_percent_format_errors_name_the_line(text, message):
    with pytest.raises(ValueError, match=message):
        build_notebooks.parse_cells(text, "s.py")


def test_response_parameters_notebook(run, tmp_path):
    out, summary = execute("response_parameters", tmp_path, artefact=run["artefact"],
                           comparison=[["copy", run["artefact"]]], ds_threshold=-1.0)
    assert_figures(out, "example_sf_tf_tuning", "modulation_ratio_histograms", "preferred_sf_tf_ds_units",
                   "modulation_ratio_ks_by_model")
    g1 = summary["modulation_ratio"][0]
    assert g1["n"] > 0 and finite(g1["mean"], g1["ks"], g1["binned_ks"])
    assert all(finite(row["mean"]) for row in summary["ds_preferences"])
    assert [row["model"] for row in summary["ks_by_model"]] == ["this model", "copy"]
    assert summary["ks_by_model"][0]["ks_G1_V1"] == summary["ks_by_model"][1]["ks_G1_V1"]
    # the summary names the artefact, so the report's gallery takes these figures
    assert gallery.notebook_section(tmp_path, "response_parameters", run["checkpoint"], run["artefact"]).count("<img ") == 4


def test_plaid_motion_notebook(run, tmp_path):
    out, summary = execute("plaid_motion", tmp_path, artefact=run["artefact"],
                           comparison=[["copy", run["artefact"]]], contour_step=90, n_plaid_directions=8)
    assert_figures(out, "pattern_index_violins", "example_plaid_tuning_and_maps", "pattern_index_no_feedback",
                   "pattern_index_ks_by_model")
    assert finite(summary["pattern_index"][0]["mean"], summary["anova_groups"]["F"])
    assert finite(summary["pattern_index"][1]["mean"]) and summary["pattern_index"][1]["n"] == 38  # V1 data
    assert all(finite(row["p_holm"]) for row in summary["pairwise_holm"])
    assert all(finite(row["mean_full"], row["mean_no_feedback"]) for row in summary["no_feedback"])
    assert finite(summary["ks_by_model"][0]["mean"])


def test_surround_suppression_notebook(run, tmp_path):
    out, summary = execute("surround_suppression", tmp_path, artefact=run["artefact"],
                           comparison=[["copy", run["artefact"]]], n_examples=2)
    assert_figures(out, "example_size_tuning", "population_size_tuning", "si_distributions",
                   "feedback_effects_vs_nurminen", "si_by_model")
    si = summary["si"]
    assert finite(si["mean_full"], si["paired"]["mean_full"], si["paired"]["mean_no_feedback"])
    assert si["paired"]["n_pairs"] > 0
    assert all(finite(row["ks"]) for row in si["ks"])
    assert any("feedback suppressed" in row["reference"] for row in si["ks"])
    fits = summary["ratio_of_gaussians_fits"]
    assert any(k.startswith("macaque V1 (Nassi") for k in fits)
    assert summary["ablation"] == "none"


def test_surround_notebook_on_a_model_without_feedback_skips_the_no_feedback_parts(vanilla_run, tmp_path):
    out, summary = execute("surround_suppression", tmp_path, artefact=vanilla_run["artefact"], n_examples=2)
    assert_figures(out, "example_size_tuning", "population_size_tuning", "si_distributions", "si_by_model")
    assert not (out / "feedback_effects_vs_nurminen.png").exists() and "nurminen_comparison" not in summary
    assert finite(summary["si"]["mean_full"]) and "paired" not in summary["si"]
    assert [row["model"] for row in summary["si"]["ks"]] == ["full", "full"]
    assert not any(k.startswith("model G1") and k.endswith("no feedback") for k in summary["ratio_of_gaussians_fits"])
    printed = "".join(output.get("text", "") for cell in nbformat.read(tmp_path / "surround_suppression.out.ipynb",
                                                                      as_version=4).cells
                      for output in cell.get("outputs", []))
    assert printed.count("NetworkRecurrent has no feedback to remove: the no-feedback comparisons are skipped\n") == 1


def test_connectivity_notebook(run, tmp_path):
    out, summary = execute("connectivity_ori_dir", tmp_path, artefact=run["artefact"],
                           n_shuffles=20, gabor_r_min=-1.0, log_variance_min=-100.0, osi_threshold=-1.0,
                           dsi_threshold=-1.0)
    assert_figures(out, "short_range_connection_probability", "long_range_axis_fractions", "connection_heatmaps")
    units = summary["units"]
    assert units["selected"] == units["excitatory"] > 1 and finite(units["abs_threshold"], units["signed_threshold"])
    ko_rows = [row for row in summary["trend_tests"] if row["source"] != "model"]
    assert ko_rows and all(finite(row["z_original"], row["p_original"], row["z"], row["p"]) for row in ko_rows)
    assert set(summary["long_range"]) == {"motion", "orientation"}


def test_a_notebook_that_does_not_probe_the_model_reads_only_the_artefact(tmp_path):
    """Weights beside the artefact that are not its checkpoint's do not matter
    to a notebook that never loads the model."""
    other = copied_run(tmp_path, weights_from="other_checkpoint")
    out, summary = execute("response_parameters", tmp_path, artefact=other["artefact"])
    assert summary["artefact"] == other["artefact"] and summary["modulation_ratio"][0]["n"] > 0


def test_mse_notebook(run, tmp_path):
    out, summary = execute("mse", tmp_path, checkpoints=[["tiny", run["checkpoint"]]], dataset=run["clips"],
                           ood_dataset=run["clips"], max_clips=8, batch_size=4, n_angles=2, n_predict=3,
                           beta_sweep=[[0.1, run["checkpoint"]]])
    assert_figures(out, "next_frame_mse", "bar_rollout", "beta_sweep")
    assert {row["split"] for row in summary["next_frame"]} == {"in distribution", "out of distribution"}
    assert all(finite(row["mse"]) for row in summary["next_frame"])
    assert finite(summary["rollout"][0]["mse_last"], summary["rollout"][0]["com_error_last"])
    assert finite(summary["beta_sweep"][0]["next_frame_mse"])
    assert gallery.notebook_section(tmp_path, "mse", run["checkpoint"], "no artefact").count("<img ") == 3


def test_nback_notebook(run, tmp_path):
    out, summary = execute("nback", tmp_path, checkpoint=run["checkpoint"], mnist_path=None, max_digits=100,
                           n_back_values=[0, 1], shuffle_fractions=[0.0, 1.0], shuffle_n_back=1, epochs=2, lr=1e-2)
    assert_figures(out, "nback_accuracy", "nback_shuffled_feedback")
    assert "scikit-learn" in summary["digit_source"] and summary["n_digits"] == 100
    for row in summary["nback"]:
        assert 0 <= row["full"] <= 1 and 0 <= row["no_feedback"] <= 1 and finite(row["p"])
    assert len(summary["shuffled_feedback"]) == 2


@pytest.mark.parametrize("case", ["missing", "mismatched"])
def test_notebook_first_cell_rejects_bad_artefact(run, tmp_path, case):
    """A missing artefact, or one whose weights file was replaced by another's."""
    artefact = (str(tmp_path / "absent.vphys.h5") if case == "missing"
                else copied_run(tmp_path, weights_from="other_checkpoint")["artefact"])
    with pytest.raises(pm.PapermillExecutionError) as error:
        execute("plaid_motion", tmp_path, artefact=artefact)
    assert error.value.ename == "ArtefactError"
    assert ("does not exist" if case == "missing" else "was made from") in error.value.evalue
    # it is the check cell that stops the notebook
    assert "inputs.load_inputs" in error.value.source and "vp.probed_model()" in error.value.source


def test_surround_notebook_on_the_artefact_of_an_ablated_model(run, tmp_path):
    artefact = tmp_path / "no_feedback.vphys.h5"
    Pipeline(run["checkpoint"], artefact, options=Options(ablation="no-feedback", **TINY_OPTIONS)).run(
        log=lambda message: None)
    out, summary = execute("surround_suppression", tmp_path, artefact=str(artefact),
                           n_examples=2)
    assert summary["ablation"] == "no-feedback"
    # the probed model already lacks feedback, so removing it again changes nothing
    si = summary["si"]["paired"]
    assert si["n_pairs"] > 0 and si["mean_full"] == pytest.approx(si["mean_no_feedback"], rel=1e-6)


def test_surround_notebook_on_an_artefact_without_the_no_feedback_rerun_probes_the_model(run, tmp_path):
    """The notebook needs only the stages up to surround: without the no-feedback
    rerun it probes the recorded model with feedback removed itself."""
    artefact = tmp_path / "up_to_surround.vphys.h5"
    Pipeline(run["checkpoint"], artefact, options=Options(**TINY_OPTIONS)).run(("surround",), log=lambda message: None)
    out, summary = execute("surround_suppression", tmp_path, artefact=str(artefact), n_examples=2)
    assert_figures(out, "feedback_effects_vs_nurminen")
    (tmp_path / "full").mkdir()
    with_rerun = execute("surround_suppression", tmp_path / "full", artefact=run["artefact"], n_examples=2)[1]
    # the same probe as the pipeline's no-feedback stage: the same numbers
    paired, paired_rerun = summary["si"]["paired"], with_rerun["si"]["paired"]
    assert paired["mean_no_feedback"] == pytest.approx(paired_rerun["mean_no_feedback"], rel=1e-5)
    assert paired["n_pairs"] == paired_rerun["n_pairs"] > 0
