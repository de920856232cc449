"""analysis.targets_over_training: which checkpoints it measures, that each row
is what analysis.targets gives for that checkpoint's own artefact, that a second
call measures only new checkpoints, and one-line errors."""
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from analysis import AnalysisError, targets
from analysis.targets_over_training import checkpoints_to_measure, targets_over_training
from models import build_model
from models.io import save_model
from train import TrainConfig
from virtual_physiology.pipeline import Options, Pipeline

ROOT = Path(__file__).resolve().parents[1]
TINY = Options(rwa_clips=50, rwa_chunk=50, gabor_starts=1, gabor_steps=20, progress=False)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Three checkpoints of 5 optimizer steps each (40 training clips, batch 8)."""
    folder = tmp_path_factory.mktemp("targets_over_training") / "run"
    config = dataclasses.asdict(TrainConfig(frame_shape=(8, 8), hidden_units=(12, 12, 12), batch_size=8)) | {
        "n_train": 40}
    torch.manual_seed(0)
    model = build_model(config)
    for epoch in (1, 2, 3):
        with torch.no_grad():  # random recurrent weights (spectral radius < 1) so every group responds
            model.weight_hh.copy_(torch.randn_like(model.weight_hh) * 0.02)
            model.weight_ih.normal_(0, 0.5)
            model.project_weights_()
        save_model(folder, model, config, epoch=epoch)
    return folder


def test_every_keeps_the_multiples_and_the_latest(run):
    assert [(e, s) for e, s, _ in checkpoints_to_measure(run)] == [(1, 5), (2, 10), (3, 15)]
    chosen = checkpoints_to_measure(run, every=10)
    assert [(e, s) for e, s, _ in chosen] == [(2, 10), (3, 15)]
    assert chosen[0][2].name == "2-epochs_model.safetensors"


def test_rows_are_the_targets_of_each_checkpoints_own_artefact_and_a_second_call_adds_only_new_ones(run, tmp_path):
    out = tmp_path / "course.json"
    messages = []
    assert targets_over_training(run, every=10, out=out, options=TINY, log=messages.append) == out
    rows = json.loads(out.read_text())["rows"]
    assert [(r["epoch"], r["steps"]) for r in rows] == [(2, 10), (3, 15)]
    artefact = tmp_path / "epoch2.vphys.h5"
    Pipeline(run / "2-epochs_model.safetensors", artefact, options=TINY).run(log=lambda message: None)
    expected = targets.measure_all(targets.read_record(artefact))
    assert {name: row["text"] for name, row in rows[0]["targets"].items()} == {n: m.text for n, m in expected.items()}
    assert rows[0]["targets"]["G1 fraction with F1/F0 > 1"]["met"] == expected["G1 fraction with F1/F0 > 1"].met
    assert out.with_suffix(".png").stat().st_size > 0
    assert messages[0] == "2 checkpoint(s) to measure, 0 already in course.json"
    first_call = len(messages)
    targets_over_training(run, every=0, out=out, options=TINY, log=messages.append)
    assert messages[first_call] == "1 checkpoint(s) to measure, 2 already in course.json"
    assert [r["epoch"] for r in json.loads(out.read_text())["rows"]] == [1, 2, 3]
    assert json.loads(out.read_text())["rows"][1] == rows[0]  # measured once, kept as it was


def test_a_folder_without_weights_is_an_analysis_error(tmp_path):
    with pytest.raises(AnalysisError, match="holds no N-epochs_model weights"):
        checkpoints_to_measure(tmp_path)


def test_command_names_bad_input_in_one_line(tmp_path):
    for args in ([str(tmp_path)], [str(tmp_path), "--every", "-5"]):
        done = subprocess.run([sys.executable, "-m", "analysis.targets_over_training", *args],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 2 and "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
