"""An artefact as analyses read it (virtual_physiology.results): each stage's
arrays read lazily and equal to the file's, the recorded settings, and the
probed model found from the artefact alone, its hash checked once and its
ablation applied; every refusal is one line naming the fix."""
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import models.checkpoint
import virtual_physiology
from models.ablation import without_feedback
from models.io import load_model
from tests.analysis_helpers import copied_run, tiny_run
from virtual_physiology import ArtefactError
from virtual_physiology.artefact import write_metadata
from virtual_physiology.pipeline import Options, Pipeline
from virtual_physiology.results import VirtualPhysiology


def test_the_package_exports_the_analysis_view():
    assert virtual_physiology.VirtualPhysiology is VirtualPhysiology


def test_stage_arrays_are_the_files_and_are_read_on_first_access(monkeypatch):
    run = tiny_run()
    with VirtualPhysiology.load(run["artefact"]) as vp, h5py.File(run["artefact"], "r") as f:
        gratings = vp.arrays("gratings")
        assert set(gratings) == set(f["gratings"].keys()) and len(gratings) == len(f["gratings"])
        assert gratings._read == {}  # nothing read yet
        np.testing.assert_array_equal(gratings["OSI"], f["gratings/OSI"][()])
        assert list(gratings._read) == ["OSI"] and gratings["OSI"] is gratings["OSI"]
        assert vp.arrays("gratings") is gratings
        assert gratings.per_unit("OSI") and not vp.arrays("connectivity").per_unit("weights")
        with pytest.raises(KeyError, match="no completed absent stage"):
            vp.arrays("absent")


def test_settings_and_checkpoint_are_the_recorded_ones():
    run = tiny_run()
    with VirtualPhysiology.load(run["artefact"]) as vp:
        assert vp.settings("rwa")["n_clips"] == 50 and vp.settings("gabor")["steps"] == 20
        assert vp.checkpoint["path"] == str(Path(run["checkpoint"]).resolve())
        assert vp.weights_file() == Path(run["checkpoint"]).resolve() / "1-epochs_model.safetensors"


def test_load_names_the_missing_stages_and_the_command(tmp_path):
    run = tiny_run()
    partial = tmp_path / "partial.h5"
    Pipeline(run["checkpoint"], partial, options=Options(rwa_clips=50, rwa_chunk=50, progress=False)).run(
        ("rwa",), log=lambda message: None)
    with pytest.raises(ArtefactError) as err:
        VirtualPhysiology.load(partial, needs=("rwa", "gratings", "plaid"))
    assert str(err.value) == (f"artefact {partial} lacks the stage(s) gratings, plaid: add them with "
                              f"bash run.bash {Path(run['checkpoint']).resolve()} {partial}")
    with VirtualPhysiology.load(partial, needs=("rwa",)) as vp:
        assert vp.stages == ["rwa"]
    with pytest.raises(ArtefactError, match="does not exist: make it with bash run.bash MODEL_CHECKPOINT"):
        VirtualPhysiology.load(tmp_path / "absent.h5")


def test_probed_model_is_the_recorded_checkpoint_with_the_recorded_ablation(tmp_path, monkeypatch):
    run = tiny_run()
    hashed = []
    monkeypatch.setattr(models.checkpoint, "sha256_of",
                        lambda path, real=models.checkpoint.sha256_of: hashed.append(path) or real(path))
    expected = load_model(run["checkpoint"])[0]
    with VirtualPhysiology.load(run["artefact"]) as vp:
        model = vp.probed_model()
        vp.probed_model()
        assert len(hashed) == 1  # the hash is checked once
    assert type(model) is type(expected)
    for name, value in expected.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name
    artefact = tmp_path / "no_feedback.vphys.h5"
    options = Options(ablation="no-feedback", rwa_clips=50, rwa_chunk=50, progress=False)
    Pipeline(run["checkpoint"], artefact, options=options).run(("rwa",), log=lambda message: None)
    with VirtualPhysiology.load(artefact) as vp:
        ablated = vp.probed_model()
    assert torch.equal(ablated.weight_hh, without_feedback(expected).weight_hh)
    assert not torch.equal(ablated.weight_hh, expected.weight_hh)


def test_a_run_folder_moved_with_its_artefact_is_found_beside_it(tmp_path):
    moved = copied_run(tmp_path)
    with VirtualPhysiology.load(moved["artefact"]) as vp:
        assert vp.weights_file() == Path(moved["checkpoint"]).resolve() / "1-epochs_model.safetensors"
        vp.probed_model()


def test_other_weights_beside_the_artefact_are_refused(tmp_path):
    other = copied_run(tmp_path, weights_from="other_checkpoint")
    with VirtualPhysiology.load(other["artefact"]) as vp:
        with pytest.raises(ArtefactError, match=r"was made from .*, not from .*1-epochs_model.safetensors \(its SHA-256"):
            vp.probed_model()
        vp.probed_model(checkpoint=tiny_run()["checkpoint"])  # pointing at the right checkpoint works


def test_weights_that_are_nowhere_are_one_line(tmp_path):
    moved = copied_run(tmp_path)
    artefact = tmp_path / "elsewhere.vphys.h5"
    Path(moved["artefact"]).rename(artefact)
    with h5py.File(artefact, "a") as f:  # as if the recorded run folder had gone too
        write_metadata(f, json.loads(f.attrs["metadata"].replace(str(Path(tiny_run()["checkpoint"]).resolve()),
                                                                 str(tmp_path / "gone"))))
    with VirtualPhysiology.load(artefact) as vp:
        with pytest.raises(ArtefactError, match="the weights file .*gone/1-epochs_model.safetensors that artefact "
                                                 ".* was made from is not there: put 1-epochs_model.safetensors beside"):
            vp.weights_file()
        assert vp.probed_model(checkpoint=moved["checkpoint"]).n_hidden == 36
