"""The virtual-physiology pipeline end to end on a tiny hierarchical model:
run.bash from another directory, resume, --force, a crash mid-run, both
views of the artefact, the no-feedback rerun, --ablation, and bad input
(one-line error, exit 2, nothing written)."""
import dataclasses
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from models import build_model
from models.ablation import shuffle_feedback, without_feedback
from models.io import load_model, save_model
from utils import run_cli
from virtual_physiology import VirtualPhysiology
from virtual_physiology.artefact import STAGES
from virtual_physiology.pipeline import Options, Pipeline, canonical_ablation, default_artefact, main
from virtual_physiology.plaid import plaid_pattern_index
from virtual_physiology.rwa import response_weighted_average

ROOT = Path(__file__).resolve().parents[1]
CONFIG = dict(model="network_hierarchical_recurrent", frame_shape=[4, 6], hidden_units=[10, 10, 10],
              beta=[0.9, 0.1, 0.1], warmup=4, local_inhibitory_prop=0.2, L1=-6.0,
              loss="loss_hierarchical_temporal_prediction", detach_targets=False, noise_std=0.5011)
TINY = ["--rwa-clips", "40", "--gabor-starts", "1", "--gabor-steps", "10", "--no-progress"]
TINY_OPTIONS = Options(rwa_clips=40, gabor_starts=1, gabor_steps=10, progress=False)


def _checkpoint(folder: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    model = build_model(CONFIG)
    with torch.no_grad():  # some recurrent structure, so that the groups differ
        model.weight_hh.add_(torch.rand(model.weight_hh.shape) * 0.2)
    return save_model(folder, model, CONFIG, epoch=1)


def _part_ids(artefact: Path) -> dict:
    with h5py.File(artefact, "r") as f:
        return {k: v.get("part_id") for k, v in json.loads(f.attrs["metadata"])["stages"].items()}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One full run through run.bash, from another working directory, with a relative artefact path."""
    base = tmp_path_factory.mktemp("vphys")
    weights = _checkpoint(base / "run_a", seed=0)
    workdir = base / "elsewhere"
    workdir.mkdir()
    done = subprocess.run(["bash", str(ROOT / "run.bash"), str(weights.parent), "out/a.h5", *TINY],
                          cwd=workdir, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    return dict(base=base, weights=weights, artefact=workdir / "out" / "a.h5", stdout=done.stdout)


def test_full_run_writes_one_complete_artefact_and_removes_its_parts(run):
    artefact = run["artefact"]
    assert artefact.exists() and not artefact.with_name("a.h5.parts").exists()
    with VirtualPhysiology.load(artefact) as vp:
        assert vp.stages == list(STAGES)
        assert vp.metadata["checkpoint"]["sha256"] == hashlib.sha256(run["weights"].read_bytes()).hexdigest()
        assert vp.metadata["model"]["group_sizes"] == [10, 10, 10]
        assert len(vp.metadata["grid"]["directions"]) == 72
        assert any("FULL model's tuning" in n for n in vp.metadata["stages"]["nofeedback"]["notes"])


def test_rerun_skips_every_stage_and_force_reruns_only_the_named_stage(run, capsys):
    artefact, before = run["artefact"], _part_ids(run["artefact"])
    main([str(run["weights"]), str(artefact), *TINY])
    assert capsys.readouterr().out.count("up to date") == len(STAGES)
    assert _part_ids(artefact) == before
    main([str(run["weights"]), str(artefact), "--force", *TINY], stage="plaid")
    after = _part_ids(artefact)
    assert after["plaid"] != before["plaid"]
    assert {k: v for k, v in after.items() if k != "plaid"} == {k: v for k, v in before.items() if k != "plaid"}


def test_a_crash_keeps_finished_stages_and_the_next_run_resumes(run, tmp_path, monkeypatch, capsys):
    artefact = tmp_path / "resume.h5"

    def crash(pipeline, out, notes):
        raise RuntimeError("killed")

    monkeypatch.setitem(STAGES, "plaid", dataclasses.replace(STAGES["plaid"], run=crash))
    with pytest.raises(RuntimeError):
        main([str(run["weights"]), str(artefact), *TINY])
    assert not artefact.exists()
    assert sorted(p.stem for p in (tmp_path / "resume.h5.parts").glob("*.h5")) == sorted(
        ["rwa", "gabor", "gratings", "modulation"])
    monkeypatch.undo()
    capsys.readouterr()
    main([str(run["weights"]), str(artefact), *TINY])
    out = capsys.readouterr().out
    assert out.count("up to date") == 4 and "[plaid] done" in out
    assert VirtualPhysiology.load(artefact).stages == list(STAGES)


def test_array_view_and_original_view_agree(run):
    model, _, _ = load_model(run["weights"])
    with VirtualPhysiology.load(run["artefact"]) as vp:
        kept = vp.array("kept")
        assert [len(g) for g in vp.data] == [int(kept[s].sum()) for s in vp.group_slices]
        unit = vp.data[1][0]
        index = unit["hidden_unit_index"]
        assert vp.group_slices[1].start <= index < vp.group_slices[1].stop
        assert unit["group_unit_index"] == index - 10
        assert unit["OSI"] == vp.array("OSI", group=1)[index - 10]
        time_courses = unit["grating_responses"]
        np.testing.assert_allclose(time_courses.mean(-1), unit["mean_grating_responses"], rtol=1e-5, atol=1e-6)
        s, d, t = unit["preferred_index"]
        assert unit["mean_grating_responses"][s, d, t] == unit["mean_grating_responses"].max()
        np.testing.assert_array_equal(unit["optimum_grating_response"], time_courses[s, d, t])
        assert unit["preferred_orientation"] == vp.grid["directions"][d]
        assert np.isnan(vp.array("surround_suppression_index", group=1)).all()  # group 1 only, as the notebook
        assert vp.array("plaid_pattern_index", kept_only=True).shape == (int(kept.sum()),)
        for u in vp.data[0]:
            assert u["modulation_ratio"] is False or np.isfinite(u["modulation_ratio"])
        connectivity = vp.connectivity()
        model.project_weights_()
        np.testing.assert_array_equal(connectivity["weights"], model.weight_hh.detach()[:8, :8].numpy())
        np.testing.assert_array_equal(connectivity["gabor_x"], vp.array("gabor_x")[:8])


def test_no_feedback_pattern_index_is_the_ablated_model_with_the_full_models_tuning(run):
    model, _, _ = load_model(run["weights"])
    with VirtualPhysiology.load(run["artefact"]) as vp:
        units = np.flatnonzero(vp.array("kept"))
        expected = plaid_pattern_index(without_feedback(model), units,
                                       vp.array("mean_grating_responses")[units],
                                       vp.array("preferred_index")[units], vp.grid, progress=False)
        np.testing.assert_allclose(vp.array("nofeedback/plaid_pattern_index")[units],
                                   expected["plaid_pattern_index"], rtol=1e-5)
        assert not np.allclose(vp.array("nofeedback/response_by_angle")[units],
                               vp.array("plaid/response_by_angle")[units])


def test_a_model_without_feedback_gets_the_stage_skipped_and_recorded(run, tmp_path):
    artefact = tmp_path / "copy.h5"
    shutil.copy(run["artefact"], artefact)
    pipeline = Pipeline(run["weights"], artefact, options=TINY_OPTIONS)
    pipeline.model.supports_feedback_ablation = False
    pipeline.run(("nofeedback",), force_stages=("nofeedback",), log=lambda *a: None)
    with VirtualPhysiology.load(artefact) as vp:
        assert vp.metadata["stages"]["nofeedback"]["complete"]
        assert vp.metadata["stages"]["nofeedback"]["notes"][0].startswith("skipped")
        assert not any(f.startswith("nofeedback/") for f in vp.fields())


def _fails_cleanly(argv, capsys, stage=None):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: main(argv, stage=stage))
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_missing_checkpoint_is_a_one_line_error_from_run_bash(tmp_path):
    done = subprocess.run(["bash", str(ROOT / "run.bash"), str(tmp_path / "nope"), str(tmp_path / "x.h5")],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 2 and done.stderr.startswith("error: ") and done.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_corrupt_checkpoint_and_bad_sizes_are_one_line_errors(run, tmp_path, capsys):
    corrupt = tmp_path / "1-epochs_model.safetensors"
    corrupt.write_bytes(b"not a safetensors file" * 10)
    _fails_cleanly([str(corrupt), str(tmp_path / "x.h5")], capsys)
    _fails_cleanly([str(run["weights"]), str(tmp_path / "x.h5"), "--rwa-clips", "0"], capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == [corrupt.name]


def test_an_artefact_of_another_model_or_a_foreign_file_is_never_touched(run, tmp_path, capsys):
    other = _checkpoint(tmp_path / "run_b", seed=1)
    artefact = tmp_path / "a.h5"
    shutil.copy(run["artefact"], artefact)
    before = artefact.read_bytes()
    assert "another checkpoint" in _fails_cleanly([str(other), str(artefact), *TINY], capsys)
    assert "another checkpoint" in _fails_cleanly([str(other), str(artefact), *TINY], capsys, stage="surround")
    foreign = tmp_path / "notes.txt"
    foreign.write_text("keep me")
    assert "not a virtual-physiology artefact" in _fails_cleanly([str(other), str(foreign), "--force"], capsys)
    assert artefact.read_bytes() == before and foreign.read_text() == "keep me"
    assert not any(p.name.endswith(".parts") for p in tmp_path.iterdir())


def test_ablation_spellings_and_default_artefact_names():
    weights = Path("run/3-epochs_model.safetensors")
    assert canonical_ablation(" none ") == "none" and canonical_ablation("no-feedback") == "no-feedback"
    assert canonical_ablation("shuffle-feedback:.50") == canonical_ablation("shuffle-feedback:0.5:0") == \
        "shuffle-feedback:0.5:0"
    assert default_artefact(weights).name == "3-epochs_model.vphys.h5"
    assert default_artefact(weights, "no-feedback").name == "3-epochs_model.vphys.no-feedback.h5"
    assert default_artefact(weights, "shuffle-feedback:0.25:3").name == \
        "3-epochs_model.vphys.shuffle-feedback_0.25_3.h5"


@pytest.mark.parametrize("spec, ablate", [("no-feedback", without_feedback),
                                          ("shuffle-feedback:1:2", lambda m: shuffle_feedback(m, 1.0, 2))])
def test_an_ablated_run_probes_the_ablated_model_and_says_so(tmp_path, capsys, spec, ablate):
    weights = _checkpoint(tmp_path / "run", seed=0)
    main([str(weights), "--ablation", spec, *TINY], stage="rwa")
    label = canonical_ablation(spec)
    artefact = default_artefact(weights, label)
    assert f"with ablation {label}" in capsys.readouterr().out
    model, _, _ = load_model(weights)
    expected = response_weighted_average(ablate(model), n_clips=40, n_frames=54, progress=False)["rwa"]
    full = response_weighted_average(model, n_clips=40, n_frames=54, progress=False)["rwa"]
    with VirtualPhysiology.load(artefact) as vp:
        assert vp.ablation == label and vp.metadata["stages"]["rwa"]["ablation"] == label
        rwa = vp.array("response_weighted_average")
    np.testing.assert_allclose(rwa, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(rwa[10:], full[10:], equal_nan=True)  # feedback reaches groups 1 and 2's RWAs
    # the full model's run on the same path would mix two models: refused
    assert "made with ablation" in _fails_cleanly([str(weights), str(artefact), *TINY], capsys, stage="rwa")


def test_bad_or_unsupported_ablations_are_one_line_errors(run, tmp_path, capsys):
    for spec in ("bogus", "shuffle-feedback:half", "shuffle-feedback:1.5", "no-feedback:3"):
        _fails_cleanly([str(run["weights"]), str(tmp_path / "x.h5"), "--ablation", spec, *TINY], capsys)
    config = dict(CONFIG, model="network_recurrent", hidden_units=[10], beta=[1.0])
    vanilla = save_model(tmp_path / "vanilla", build_model(config), config, epoch=1)
    err = _fails_cleanly([str(vanilla), str(tmp_path / "y.h5"), "--ablation", "no-feedback", *TINY], capsys)
    assert "NetworkRecurrent has no feedback" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vanilla"]
    assert not any(p.name.endswith(".h5") for p in (tmp_path / "vanilla").iterdir())


def test_an_artefact_from_before_the_rwa_lags_and_gabor_range_reruns_those_stages(run, tmp_path, monkeypatch, capsys):
    """Stages stored without the RWA lags or the Gabor fitter's shortest
    wavelength in their settings (from before every kind's group g lagged by g
    frames and carriers reached the 2 px wavelength) are stale: they and the
    stages built on them rerun, the others are reused."""
    artefact = tmp_path / "old.h5"
    current = Pipeline.settings

    def settings_of_earlier_versions(self, stage):
        return {k: v for k, v in current(self, stage).items() if k not in ("lags", "min_wavelength")}

    monkeypatch.setattr(Pipeline, "settings", settings_of_earlier_versions)
    main([str(run["weights"]), str(artefact), *TINY])
    monkeypatch.undo()
    capsys.readouterr()
    main([str(run["weights"]), str(artefact), *TINY])
    out = capsys.readouterr().out
    assert all(f"[{stage}] done" in out for stage in ("rwa", "gabor", "modulation", "plaid", "surround", "nofeedback"))
    assert all(f"[{stage}] up to date" in out for stage in ("gratings", "connectivity"))


def test_a_shuffled_feedback_artefact_from_the_allowed_entries_shuffle_reruns(run, tmp_path, monkeypatch, capsys):
    """The feedback shuffle now draws from whole blocks, as the original: an
    artefact probed with the earlier shuffle (settings without the mark) is
    recomputed, every stage of it."""
    artefact = tmp_path / "shuffled.h5"
    current = Pipeline.settings

    def settings_of_earlier_versions(self, stage):
        return {k: v for k, v in current(self, stage).items() if k != "feedback_shuffle"}

    monkeypatch.setattr(Pipeline, "settings", settings_of_earlier_versions)
    args = [str(run["weights"]), str(artefact), "--ablation", "shuffle-feedback:0.5:1", *TINY]
    main(args)
    monkeypatch.undo()
    capsys.readouterr()
    main(args)
    out = capsys.readouterr().out
    assert all(f"[{stage}] done" in out for stage in STAGES)


def test_the_pipeline_resolves_and_hashes_its_checkpoint_once(tmp_path, monkeypatch):
    """A shipped run folder (with SHA256SUMS): the weights file is hashed once, for the
    manifest check and the artefact's record alike, and the record names what the
    Checkpoint resolved."""
    import models.checkpoint
    from models.checkpoint import Checkpoint, RunFolder

    weights = _checkpoint(tmp_path / "run", seed=0)
    RunFolder(weights.parent).write_checksums()
    hashed = []
    monkeypatch.setattr(models.checkpoint, "sha256_of",
                        lambda path, real=models.checkpoint.sha256_of: hashed.append(path) or real(path))
    pipeline = Pipeline(weights.parent, tmp_path / "a.h5", options=TINY_OPTIONS)
    assert hashed == [weights]
    assert isinstance(pipeline.checkpoint, Checkpoint) and pipeline.checkpoint.weights == weights
    record = pipeline.metadata()["checkpoint"]
    assert record == dict(path=str(weights.parent.resolve()), weights_file=str(weights.resolve()),
                          sha256=hashlib.sha256(weights.read_bytes()).hexdigest(), epoch=1)
