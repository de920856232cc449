"""analysis.targets: each measure on hand-made unit tables with known answers,
the rf_summary pairing, the table, and the command on the tiny run's artefact."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from analysis import targets
from tests.analysis_helpers import tiny_run
from virtual_physiology.artefact import write_metadata

ROOT = Path(__file__).resolve().parents[1]


def record(g1: dict, g2: dict | None = None, g3: dict | None = None, **kwargs) -> targets.ModelRecord:
    """A ModelRecord of three groups; each table gets a hidden_unit_index of its length."""
    tables = []
    for table in (g1, g2 or {}, g3 or {}):
        length = len(next(iter(table.values()))) if table else 0
        tables.append({"hidden_unit_index": np.arange(length), **table})
    return targets.ModelRecord(tables, (8, 8), **kwargs)


def test_responsive_units_counts_each_group():
    measured = targets.responsive_units(record({"x": np.zeros(5)}, {"x": np.zeros(2)}, {"x": np.zeros(1)}))
    assert measured.text == "5 / 2 / 1" and measured.numbers["counts"] == [5, 2, 1] and measured.met is None


def test_simple_fraction_counts_kept_fits_above_one():
    table = {"modulation_ratio_curve_fit": np.array([0.5, 1.5, 0.2, 1.9]),
             "modulation_ratio_curve_fit_keep": np.array([True, True, True, False])}
    measured = targets.simple_fraction(record(table))
    assert measured.numbers["fraction"] == pytest.approx(1 / 3) and measured.numbers["n"] == 3
    assert measured.met is True  # 0.33 <= 0.45
    table["modulation_ratio_curve_fit_keep"][:] = True  # 2 of 4 above 1
    assert targets.simple_fraction(record(table)).met is False


def test_feedback_peak_ratio_known_answer():
    rng = np.random.default_rng(0)
    full = rng.uniform(1, 2, size=(20, 10))
    ratio = np.linspace(0.4, 0.6, 20)
    ratio[0] = 0.0  # silenced without feedback: counts as 0, as in the original
    ablated = full * ratio[:, None]
    silent = np.zeros((1, 10))  # no response with feedback: dropped, not a division by zero
    table = {"size_tuning_curve": np.vstack([full, silent]), "nofeedback_size_tuning_curve": np.vstack([ablated, silent])}
    measured = targets.feedback_peak_ratio(record(table))
    n = measured.numbers
    assert n["n"] == 20 and n["silenced"] == 1
    assert n["mean"] == pytest.approx(ratio.mean()) and n["median"] == pytest.approx(np.median(ratio))
    sd = np.std(ratio, ddof=1)
    assert n["t_against_1"] == pytest.approx((ratio.mean() - 1) / (sd / np.sqrt(20)))
    d = ablated.max(axis=1) - full.max(axis=1)
    assert n["paired_t"] == pytest.approx(d.mean() / (d.std(ddof=1) / np.sqrt(20)))
    assert measured.met is True and "n = 20, 1 silenced without feedback" in measured.text


def test_feedback_peak_ratio_not_met_without_a_drop():
    full = np.tile(np.linspace(1, 2, 10), (6, 1))
    measured = targets.feedback_peak_ratio(record({"size_tuning_curve": full, "nofeedback_size_tuning_curve": full}))
    assert measured.numbers["mean"] == 1.0 and measured.met is False


def test_missing_stage_reads_not_measured():
    empty = record({"x": np.zeros(3)})
    for measure in (targets.simple_fraction, targets.feedback_peak_ratio, targets.surround_suppression_without_feedback,
                    targets.pattern_index_hierarchy, targets.pattern_index_feedback, targets.gabor_like):
        measured = measure(empty)
        assert measured.text.startswith("not measured") and measured.met is None


def test_surround_suppression_paired_over_units():
    full = np.array([20.0, 30.0, 25.0, 10.0, np.nan])
    ablated = np.array([10.0, 12.0, 14.0, 1.0, 5.0])
    table = {"surround_suppression_index": full, "nofeedback_surround_suppression_index": ablated}
    measured = targets.surround_suppression_without_feedback(record(table))
    d = ablated[:4] - full[:4]
    assert measured.numbers["n"] == 4 and measured.numbers["with"] == pytest.approx(21.25)
    assert measured.numbers["t"] == pytest.approx(d.mean() / (d.std(ddof=1) / 2))
    assert measured.met is True  # t = -7.5, p = 0.005


def test_pattern_index_hierarchy_needs_rising_means_and_ten_percent_of_g3_above_zero():
    g1 = {"plaid_pattern_index": np.array([-4.0, -3.0, np.nan])}
    g2 = {"plaid_pattern_index": np.array([-2.0, -1.0])}
    g3 = {"plaid_pattern_index": np.array([-1.0, 0.5, -0.5, -0.2])}
    measured = targets.pattern_index_hierarchy(record(g1, g2, g3))
    assert measured.numbers["means"] == pytest.approx([-3.5, -1.5, -0.3])
    assert measured.numbers["above_0"] == [0, 0, 1] and measured.numbers["n"] == [2, 2, 4]
    assert measured.met is True
    g3["plaid_pattern_index"] = np.array([-1.0, -0.5, -0.2, -0.1])  # rising, but none above 0
    assert targets.pattern_index_hierarchy(record(g1, g2, g3)).met is False
    g2["plaid_pattern_index"] = np.array([-5.0, -6.0])  # falls at G2
    assert targets.pattern_index_hierarchy(record(g1, g2, {"plaid_pattern_index": np.array([1.0, 2.0])})).met is False


def test_pattern_index_feedback_is_welch():
    table = {"plaid_pattern_index": np.array([-3.0, -2.0, -1.0]),
             "nofeedback_plaid_pattern_index": np.array([-5.0, -4.0, -4.5, np.nan])}
    measured = targets.pattern_index_feedback(record(table))
    from scipy import stats
    expected = stats.ttest_ind([-3.0, -2.0, -1.0], [-5.0, -4.0, -4.5], equal_var=False)
    assert measured.numbers["t"] == pytest.approx(expected.statistic) and measured.met is None


def test_gabor_like_uses_the_original_criterion():
    params = np.zeros((4, 8))
    params[:, 1:3] = 3.0  # centre inside the 8x8 frame
    params[:, 4:6] = 1.0  # log-variances above 0.5
    params[3, 1] = 20.0   # centre outside the frame
    r = np.array([0.9, 0.8, 0.6, 0.9])  # unit 2 fits badly
    measured = targets.gabor_like(record({"gabor_params": params, "gabor_r": r}))
    assert measured.numbers["fraction"] == 0.5 and measured.met is False


def test_clean_prediction_reads_the_run_summary():
    measured = targets.clean_prediction(record({"x": np.zeros(1)}, prediction={"model": 0.7, "copy_last_frame": 1.2}))
    assert measured.text == "0.700 (copy-last 1.200)" and measured.met is True
    missing = targets.clean_prediction(record({"x": np.zeros(1)}))
    assert missing.text.startswith("not measured (no rf_summary.json in the run folder") and missing.met is None


def test_feedback_memory_row_quotes_both_accuracies_and_needs_nback():
    memory = {"full": {"accuracy": 0.3125, "n_correct": 5, "n_test": 16},
              "no_feedback": {"accuracy": 0.25, "n_correct": 4, "n_test": 16}, "z": 0.39, "p": 0.70, "digits": "d"}
    measured = targets.feedback_memory(record({"x": np.zeros(1)}, memory=memory))
    assert measured.text == "0.31 vs 0.25 (z = 0.39, p = 0.7; 16 test digits, d)" and measured.met is None
    assert targets.feedback_memory(record({"x": np.zeros(1)})).text == "not measured (pass --nback)"


def test_run_summary_pairs_only_the_same_epoch(tmp_path):
    (tmp_path / "rf_summary.json").write_text(json.dumps({"epoch": 5}))
    assert targets.run_summary({"path": str(tmp_path), "epoch": 5})[0] == {"epoch": 5}
    weights = tmp_path / "5-epochs_model.safetensors"
    assert targets.run_summary({"path": str(weights), "epoch": 5})[0] == {"epoch": 5}  # a weights file's folder
    summary, why = targets.run_summary({"path": str(tmp_path), "epoch": 7})
    assert summary is None and "measured epoch 5, the artefact epoch 7" in why
    summary, why = targets.run_summary({"path": str(tmp_path / "elsewhere"), "epoch": 5})
    assert summary is None and why == "no rf_summary.json in the run folder"  # names no folder of this machine


def test_table_has_a_row_per_target_with_the_originals_values():
    model = targets.measure_all(record({"x": np.zeros(3)}))
    table = targets.targets_table(model, model)
    lines = table.splitlines()
    assert lines[0].startswith("| measure | target | model | met | untrained | original's TP_full")
    assert len(lines) == 2 + len(targets.TARGETS)
    assert "0.18 (n=795)" in table and "mean 0.55 (95% CI 0.53-0.57, t = -48 against 1, n = 791)" in table
    assert "-3.60 / -1.56 / -1.14; above 0: 25 of 799, 21 of 96, 10 of 39" in table
    assert "| 0.31 vs 0.22 (14000 test digits, MNIST; digitised) |" in table


def test_untrained_column_takes_the_models_untrained_errors_when_its_folder_has_none(tmp_path):
    artefact = tmp_path / "model.vphys.h5"
    shutil.copy(tiny_run()["artefact"], artefact)
    with h5py.File(artefact, "a") as f:  # the artefact now names tmp_path/run as its checkpoint
        meta = json.loads(f.attrs["metadata"])
        meta["checkpoint"]["path"] = str(tmp_path / "run")
        write_metadata(f, meta)
    errors = {"trained": {"model": 0.7, "copy_last_frame": 1.2}, "untrained": {"model": 1.0, "copy_last_frame": 1.2}}
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "rf_summary.json").write_text(
        json.dumps({"epoch": meta["checkpoint"]["epoch"], "clean_validation_next_frame_mse": errors}))
    done = subprocess.run([sys.executable, "-m", "analysis.targets", str(artefact), "--untrained", tiny_run()["artefact"]],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if line.startswith("| clean next-frame MSE"))
    assert "| 0.700 (copy-last 1.200) | yes | 1.000 (copy-last 1.200; rf_summary's untrained network of this size) |" in row


def test_command_on_an_artefact_writes_the_table(tmp_path):
    out = tmp_path / "targets.md"
    done = subprocess.run([sys.executable, "-m", "analysis.targets", tiny_run()["artefact"], "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    assert out.read_text().strip() == done.stdout.strip()
    assert "| units responsive per group (G1 / G2 / G3) |" in done.stdout


def test_command_with_nback_measures_the_memory_row_on_the_artefacts_checkpoint():
    done = subprocess.run([sys.executable, "-m", "analysis.targets", tiny_run()["artefact"], "--nback"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if line.startswith("| 5-back digit readout"))
    assert re.search(r"\| \d\.\d\d vs \d\.\d\d \(z = -?[\d.]+, p = [\d.e-]+; 360 test digits, scikit-learn", row), row


def test_command_names_a_missing_artefact_in_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "analysis.targets", str(tmp_path / "none.h5")],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 2 and "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
