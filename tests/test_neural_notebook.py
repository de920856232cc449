"""RSA.ipynb runs headless with papermill on tiny synthetic inputs and makes its figures."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from neural_fitting.model_responses import ResponseSet, save_responses

pytestmark = pytest.mark.timeout(900)

NOTEBOOK = Path(__file__).resolve().parents[1] / "neural_fitting" / "RSA.ipynb"
N_BINS = 24


def make_inputs(root: Path, rng) -> list[str]:
    """3 sessions x 2 areas whose responses share a 3-dimensional latent signal; a
    "TP_full" model carries that signal, an "AE" model does not, "VGG19" half does."""
    latent = rng.normal(size=(N_BINS, 3))
    processed = root / "processed"
    processed.mkdir()
    for session in ("101", "102", "103"):
        areas = np.array(["VISp"] * 12 + ["VISl"] * 10 + ["CA1"] * 2)
        binned = (latent @ rng.normal(size=(3, len(areas))) + 0.5 * rng.normal(size=(N_BINS, len(areas)))).T
        np.savez(processed / f"session_{session}.npz", unit_ids=np.arange(len(areas)), unit_areas=areas,
                 noise_ratio=np.zeros(len(areas)), binned=binned.astype(np.float32))
    models = {"TP_full": [latent @ rng.normal(size=(3, 8)) for _ in range(3)],
              "AE": [rng.normal(size=(N_BINS, 8)) for _ in range(3)],
              "VGG19": [latent @ rng.normal(size=(3, 16)), rng.normal(size=(N_BINS, 4))]}
    files = []
    for label, groups in models.items():
        names = [f"conv{i + 1}_1" for i in range(len(groups))] if label == "VGG19" else [f"group {i + 1}" for i in
                                                                                            range(len(groups))]
        files.append(str(save_responses(root / f"{label}.npz", ResponseSet(label, names, groups, {}))))
    return files


def test_rsa_notebook_runs_headless(tmp_path, monkeypatch):
    papermill = pytest.importorskip("papermill")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter_data"))
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "jupyter_config"))
    files = make_inputs(tmp_path, np.random.default_rng(0))
    figures = tmp_path / "figures"
    papermill.execute_notebook(
        str(NOTEBOOK), str(tmp_path / "RSA.out.ipynb"), kernel_name="python3", progress_bar=False,
        cwd=str(NOTEBOOK.parent),
        parameters={"processed_dir": str(tmp_path / "processed"), "response_files": files, "out_dir": str(figures),
                    "areas": ["VISp", "VISl"], "n_splits": 5, "min_units": 4, "reference_model": "TP_full"})
    for name in ("rsa_best_scores", "rsa_group_profiles"):
        assert (figures / f"{name}.png").stat().st_size > 0 and (figures / f"{name}.pdf").is_file()
    best = pd.read_csv(figures / "rsa_best_groups.csv")
    assert len(best) == 6 and set(best["model"]) == {"TP_full", "AE", "VGG19"}
    per_model = best.groupby("model")["mean"].mean()
    assert per_model["TP_full"] > per_model["AE"]
    tests = pd.read_csv(figures / "rsa_paired_tests.csv")
    assert set(tests["other"]) == {"AE", "VGG19"} and (tests["n_sessions"] == 3).all()
