"""analysis.compare on a tiny synthetic zoo (the tiny run's artefact, and a copy
edited into a "model" without feedback and with V1's pattern indices):
the table, n/a cells, the best marks, the claims, the recipe, bad input, the
offline page in headless Chromium, and one cell recomputed from a shipped
pretrained model."""
import json
import os
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest

from analysis import compare, inputs, reference, scorecard
from benchmarks.check_gallery import chromium_binary, render
from tests.analysis_helpers import tiny_run
from virtual_physiology.artefact import write_metadata
from virtual_physiology.pipeline import Options, Pipeline

ROOT = Path(__file__).resolve().parents[1]
PRETRAINED = ROOT / "model_checkpoints" / "pretrained" / "htp_12x12_3x200_fs2"


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """Two artefacts: the tiny run's, and a copy whose checkpoint is called
    "feedforward", whose nofeedback stage was skipped (no feedback) and whose
    G1 pattern indices are the quantiles of V1's."""
    root = tmp_path_factory.mktemp("zoo")
    full = root / "tp_full.vphys.h5"
    shutil.copy(tiny_run()["artefact"], full)
    other = root / "feedforward.vphys.h5"
    shutil.copy(full, other)
    with h5py.File(other, "a") as f:
        meta = json.loads(f.attrs["metadata"])
        meta["checkpoint"]["path"] = str(root / "feedforward")
        meta["model"]["config"].update(checkpoint_epoch=10, n_train=250, batch_size=100)
        write_metadata(f, meta)  # with its checksum
        for name in list(f["nofeedback"].keys()):
            del f["nofeedback"][name]
        pi = f["plaid/plaid_pattern_index"]
        g1 = slice(0, meta["model"]["group_sizes"][0])
        finite = np.flatnonzero(np.isfinite(pi[g1]))
        quantiles = np.quantile(reference.pattern_index("V1").values, (np.arange(len(finite)) + 0.5) / len(finite))
        values = pi[g1]
        values[finite] = quantiles
        pi[g1] = values
    comparison = compare.compare([full, other])
    return dict(root=root, full=full, other=other, comparison=comparison, columns=comparison.columns,
                markdown=compare.write_comparison(comparison, root / "out"))


def test_every_property_is_a_row_with_a_cell_per_model(zoo):
    lines = zoo["markdown"].splitlines()
    header = next(line for line in lines if line.startswith("| property | data"))
    assert header.endswith("| run | feedforward |")
    for prop in scorecard.PROPERTIES.values():
        row = next(line for line in lines if line.startswith(f"| {prop.title} |"))
        assert row.count("|") == 5


def test_a_model_without_feedback_is_n_a_where_feedback_is_removed(zoo):
    full, feedforward = zoo["columns"]
    assert full.scores["si_mouse_no_feedback"] is not None and feedforward.scores["si_mouse_no_feedback"] is None
    assert feedforward.claims["SI lower without feedback (G1)"].verdict == "n/a"
    assert full.claims["SI lower without feedback (G1)"].verdict in ("yes", "no")
    row = next(line for line in zoo["markdown"].splitlines() if line.startswith("| SI %, G1 no feedback vs mouse"))
    assert row.endswith("| n/a |")


def test_the_best_model_is_marked_and_the_means_cover_the_shared_rows(zoo):
    """The feedforward copy's G1 pattern indices are V1's quantiles: it wins that row."""
    assert compare.best_models(zoo["comparison"], "pattern_index_v1") == {"feedforward"}
    row = next(line for line in zoo["markdown"].splitlines() if line.startswith("| pattern index, G1 vs V1 |"))
    assert row.split("|")[4].strip().startswith("**") and not row.split("|")[3].strip().startswith("**")
    common = compare.common_properties(zoo["comparison"])
    assert "si_mouse_no_feedback" not in common and "f1_f0_v2" not in common and "circular_variance" in common
    means = compare.model_means(zoo["comparison"])
    full = zoo["columns"][0]
    assert means["run"] == pytest.approx(np.mean([full.scores[n].score for n in common]))


def test_claims_carry_their_statistic(zoo):
    claims = zoo["columns"][0].claims
    assert set(claims) == set(compare.CLAIMS)
    assert "Welch" in claims["pattern index rises G1 < G2 < G3"].statistic
    assert "G1 units simple" in claims[next(c for c in claims if c.startswith("simple/complex"))].statistic


def test_recipe_and_steps_come_from_the_recorded_config(zoo):
    full, feedforward = zoo["columns"]
    assert feedforward.steps == 10 * 3 and feedforward.recipe["frame_shape"] == [8, 8]
    assert "| optimizer steps | n/a | 30 |" in zoo["markdown"]
    assert "The models differ in training data or steps" in zoo["markdown"]
    same = compare.ModelColumn("a", "a.h5", {"dataset": "clips.npy"}, 20_000, {}, {}, {})
    assert compare.budget_note([same, same]) == "Every trained model was trained on clips.npy for 20,000 optimizer steps."
    untrained = compare.ModelColumn("u", "u.h5", {"dataset": "clips.npy"}, 0, {}, {}, {})
    assert compare.budget_note([same, untrained, same]) == (
        "Every trained model was trained on clips.npy for 20,000 optimizer steps; untrained baseline: u.")


def test_optimizer_steps_count_every_stack_of_tp_ff_and_zero_for_an_untrained_model():
    from models.checkpoint import optimizer_steps

    assert optimizer_steps({"checkpoint_epoch": 3, "n_train": 250, "batch_size": 100}) == 9  # ceil(2.5) = 3 per epoch
    assert optimizer_steps({"checkpoint_epoch": 0, "n_train": 250, "batch_size": 100}) == 0
    assert optimizer_steps({"checkpoint_epoch": 3, "n_train": 250, "batch_size": 100, "stack_steps": [9, 6, 3]}) == 18
    assert optimizer_steps({"stack_steps": [9, None]}) is None  # a stack from before the record
    assert optimizer_steps({"n_train": 250}) is None


def test_the_page_is_offline_and_holds_the_tables(zoo):
    page = (zoo["root"] / "out" / "comparison.html").read_text()
    assert "<script" not in page and "http" not in page and "src=" not in page
    assert page.count('class="best"') >= len(scorecard.PROPERTIES)
    assert all(p.reference().citation.split(" (")[0] in page for p in scorecard.PROPERTIES.values())


@pytest.mark.parametrize("argv, message", [
    (["missing.vphys.h5"], "does not exist"),
    (["not_an_artefact.vphys.h5"], "is not a virtual-physiology artefact"),
    (["ARTEFACT", "--degrees-per-pixel", "0"], "--degrees-per-pixel must be a positive number"),
    (["ARTEFACT", "--seed", "-1"], "--seed must be between 0 and 4294967295, got -1"),
    (["ARTEFACT", "--seed", "18446744073709551616"], "--seed must be between 0 and 4294967295"),
])
def test_bad_input_is_one_line_and_exit_2(zoo, tmp_path, argv, message):
    (tmp_path / "not_an_artefact.vphys.h5").write_text("no")
    argv = [str(zoo["full"]) if a == "ARTEFACT" else a for a in argv]
    result = subprocess.run([sys.executable, "-m", "analysis.compare", *argv, "--out", str(tmp_path / "out")],
                            cwd=tmp_path, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


@pytest.mark.skipif(chromium_binary() is None, reason="headless Chromium is not installed")
def test_chromium_renders_the_comparison_page(zoo, tmp_path):
    result = render(zoo["root"] / "out" / "comparison.html", tmp_path / "shot.png")
    assert result["broken"] == []
    from PIL import Image
    shot = np.asarray(Image.open(tmp_path / "shot.png").convert("L"))
    assert shot.std() > 5  # text and tables drawn, not a blank page


def _circular_variance_cell(mean_responses, kept_g1, settings) -> scorecard.PropertyScore:
    """The circular-variance cell by plain loops: per responsive kept G1 unit,
    the direction curve at its first global argmax's sf and tf, then 1 -
    |sum r e^{2i theta}| / sum r."""
    values = []
    theta = np.deg2rad(np.arange(mean_responses.shape[2]) * 360.0 / mean_responses.shape[2])
    for unit in kept_g1:
        responses = mean_responses[unit].astype(np.float64)
        if responses.max() <= 0:
            continue
        sf, _, tf = np.unravel_index(np.argmax(responses), responses.shape)
        curve = responses[sf, :, tf]
        values.append(1 - abs(np.sum(curve * np.exp(2j * theta))) / curve.sum())
    name = "circular_variance"
    rng = np.random.default_rng([settings.seed, zlib.crc32(name.encode())])
    return scorecard.score_values(np.array(values), scorecard.PROPERTIES[name].reference(), settings.n_bootstrap, rng)


def test_one_cell_recomputed_from_the_shipped_12x12_model(tmp_path):
    """A short probe (100 white-noise clips, the full grating grid) of the
    smallest shipped model; its circular-variance cell through the artefact,
    the unit tables and the registry equals the one from plain loops over the
    stored responses of the units the RWA kept."""
    artefact = tmp_path / "htp_12x12.vphys.h5"
    Pipeline(PRETRAINED, artefact, options=Options(rwa_clips=100, rwa_chunk=100, progress=False)).run(
        stages=("rwa", "gratings"), log=lambda message: None)
    settings = scorecard.ScorecardSettings()
    column = compare.model_column(artefact, settings)
    assert column.label == PRETRAINED.name and column.steps == 16_676
    data = inputs.load_inputs(artefact, ("rwa", "gratings"))
    try:
        vp = data.artefact
        vp.checked_checkpoint(PRETRAINED)  # the artefact is of the shipped weights
        kept = np.flatnonzero(vp.arrays("rwa")["kept"][vp.group_slices[0]]) + vp.group_slices[0].start
        expected = _circular_variance_cell(vp.arrays("gratings")["mean_grating_responses"], kept, settings)
    finally:
        data.artefact.close()
    assert column.scores["circular_variance"] == expected
    assert 0 < expected.score <= 1.1 and expected.n_units > 150


def test_allen_metrics_add_mouse_rows_and_a_bad_table_is_one_line(zoo, tmp_path):
    good = tmp_path / "metrics.csv"
    good.write_text("ecephys_unit_id,ecephys_structure_acronym,g_osi_dg,g_dsi_dg,pref_sf_sg,f1_f0_dg\n"
                    "1,VISp,0.5,0.1,0.04,0.3\n2,VISp,0.2,0.3,0.08,1.2\n3,VISp,0.3,0.2,0.02,0.8\n")
    bad = tmp_path / "bad.csv"
    bad.write_text("unit_id,g_osi_dg\n1,0.4\n")
    run = lambda csv, out: subprocess.run(
        [sys.executable, "-m", "analysis.compare", str(zoo["full"]), "--allen-metrics", str(csv), "--out", str(out)],
        cwd=tmp_path, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    done = run(good, tmp_path / "good")
    assert done.returncode == 0, done.stderr
    assert "| global OSI, G1 vs mouse VISp | mouse VISp (Allen Brain Observatory) |" in done.stdout
    failed = run(bad, tmp_path / "bad")
    assert failed.returncode == 2 and "no area column" in failed.stderr and len(failed.stderr.splitlines()) == 1
    assert not (tmp_path / "bad").exists()
