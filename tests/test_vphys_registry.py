"""The stage registry (virtual_physiology/stages.py): a worked example of a new
probe registered in a few lines and run through the pipeline, the checks
``register`` and the pipeline make on a stage, and the agreement of the
registry with run.bash and the run_<stage>.py entry points."""
import dataclasses
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from models.io import load_model
from test_vphys_pipeline import TINY, _checkpoint
from utils import run_cli
from virtual_physiology import VirtualPhysiology
from virtual_physiology.fields import write_per_unit
from virtual_physiology.pipeline import Options, Pipeline, main
from virtual_physiology.stages import SEED, STAGES, Setting, Stage, kept_units, register

ROOT = Path(__file__).resolve().parents[1]
NOISE_FRAMES = 6
NOISE_CLIPS = Setting("noise_clips", 3, "white-noise clips for the mean response", minimum=1)


def noise_clips(n_clips: int, seed: int, n_pixels: int) -> torch.Tensor:
    return torch.randn(n_clips, NOISE_FRAMES, n_pixels, generator=torch.Generator().manual_seed(seed))


# ----- the worked example: a probe in a handful of lines -------------------------------------
def mean_noise_response(pipeline, out, notes):
    """Mean response of each of group 1's kept units to a few white-noise clips."""
    units = kept_units(pipeline, groups=[0])
    clips = noise_clips(pipeline.options.noise_clips, pipeline.options.seed, pipeline.model.n_pixels)
    with torch.no_grad():
        mean = pipeline.model.hidden_activity(clips).mean(dim=(0, 1))
    write_per_unit(out, {"mean_noise_response": mean[units].numpy()}, pipeline.n_units, units)


@pytest.fixture
def noise_mean():
    """The example probe, registered for one test (the registry is global)."""
    stage = register(Stage(name="noise_mean", summary="mean response of group 1 to white noise",
                           run=mean_noise_response, needs=("rwa",), settings=(NOISE_CLIPS, SEED),
                           writes={"mean_noise_response": "(n_hidden,)"}))
    yield stage
    del STAGES["noise_mean"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return _checkpoint(tmp_path_factory.mktemp("vphys_registry") / "run", seed=0)


def test_a_registered_probe_runs_through_the_pipeline_and_its_field_reads_back(noise_mean, weights, tmp_path):
    artefact = tmp_path / "toy.h5"
    options = Options(rwa_clips=40, noise_clips=4, progress=False)
    log = []
    Pipeline(weights, artefact, options=options).run(("noise_mean",), log=log.append)
    done = [line.split(" done")[0] for line in log if " done in " in line]  # beside the estimate and "running" lines
    assert done == ["[rwa]", "[noise_mean]"]  # what it needs runs first

    model, _, _ = load_model(weights)
    with torch.no_grad():
        expected = model.hidden_activity(noise_clips(4, 0, model.n_pixels)).mean(dim=(0, 1)).numpy()
    with VirtualPhysiology.load(artefact) as vp:
        probed = vp.array("kept")
        probed[vp.group_slices[0].stop:] = False
        measured = vp.array("mean_noise_response")
        assert probed.any()
        np.testing.assert_allclose(measured[probed], expected[probed], rtol=1e-6)
        assert np.isnan(measured[~probed]).all()  # units it did not probe
        assert vp.data[0][0]["mean_noise_response"] == measured[vp.data[0][0]["hidden_unit_index"]]
        # no recorded= given: the record holds each of its settings by name
        assert vp.metadata["stages"]["noise_mean"]["settings"] == {"noise_clips": 4, "seed": 0}
        assert not vp.metadata["stages"]["gratings"]["complete"]


def test_a_registered_probes_setting_is_a_command_line_option_and_a_change_reruns_it(noise_mean, weights, tmp_path,
                                                                                   capsys):
    artefact = tmp_path / "toy.h5"
    main([str(weights), str(artefact), "--stage", "noise_mean", "--noise-clips", "2", *TINY])
    main([str(weights), str(artefact), "--stage", "noise_mean", "--noise-clips", "2", *TINY])
    assert capsys.readouterr().out.count("[noise_mean] up to date") == 1
    main([str(weights), str(artefact), "--stage", "noise_mean", "--noise-clips", "3", *TINY])
    out = capsys.readouterr().out
    assert "[rwa] up to date" in out and "[noise_mean] done" in out
    with VirtualPhysiology.load(artefact) as vp:
        assert vp.metadata["stages"]["noise_mean"]["settings"]["noise_clips"] == 3
    with pytest.raises(SystemExit):
        run_cli(lambda: main([str(weights), str(artefact), "--stage", "noise_mean", "--noise-clips", "0"]))
    assert capsys.readouterr().err == "error: --noise-clips must be at least 1, got 0\n"


def test_options_have_the_settings_of_the_registered_stages(noise_mean):
    assert Options().noise_clips == 3 and Options(noise_clips=5).noise_clips == 5


def test_options_refuse_a_setting_no_registered_stage_has():
    with pytest.raises(TypeError, match=r"unknown settings \['noise_clips'\]"):
        Options(noise_clips=5)


def test_register_refuses_a_taken_name_an_unregistered_need_a_clashing_setting_and_no_fields():
    def stage(**changes):
        return Stage(**dict(dict(name="probe", summary="-", run=mean_noise_response, writes={"x": "(n_hidden,)"}),
                            **changes))

    with pytest.raises(ValueError, match="already registered"):
        register(stage(name="rwa"))
    with pytest.raises(ValueError, match="lower case"):
        register(stage(name="Bad-name"))
    with pytest.raises(ValueError, match="not registered"):
        register(stage(needs=("later",)))
    with pytest.raises(ValueError, match="differs from the registered one"):
        register(stage(settings=(Setting("seed", 1, "another seed"),)))
    with pytest.raises(ValueError, match="declares no fields"):
        register(stage(writes={}))
    assert "probe" not in STAGES


def test_a_stage_that_writes_other_fields_than_it_declares_stores_nothing(noise_mean, weights, tmp_path, monkeypatch):
    artefact = tmp_path / "toy.h5"
    pipeline = Pipeline(weights, artefact, options=Options(rwa_clips=40, progress=False))
    pipeline.run(("rwa",), log=lambda message: None)
    monkeypatch.setitem(STAGES, "noise_mean", dataclasses.replace(noise_mean, writes={"mean": "(n_hidden,)"}))
    with pytest.raises(ValueError, match=r"wrote undeclared fields \['mean_noise_response'\]; left out the "
                                         r"declared fields \['mean'\]: make"):
        pipeline.run_stage("noise_mean")
    monkeypatch.setitem(STAGES, "noise_mean", dataclasses.replace(noise_mean, writes={"mean_noise_response": "()"}))
    with pytest.raises(ValueError, match=r"noise_mean gave another number of axes than declared to "
                                         r"\['mean_noise_response'\]: make"):
        pipeline.run_stage("noise_mean")
    assert pipeline.store.record("noise_mean") is None


# ----- the registry, run.bash and the run_<stage>.py files agree ------------------------------
ENTRY_POINT = '''"""``python -m virtual_physiology.run_{0}``: the {0} stage and the missing ones it needs (--help)."""
import sys

if __package__ in (None, ""):  # run as a file, the repository's packages are not importable
    print("error: run it as a module from the repository root: "
          "python -m virtual_physiology.run_{0} MODEL_CHECKPOINT [ARTEFACT_PATH]", file=sys.stderr)
    sys.exit(2)

from utils import run_cli
from virtual_physiology.pipeline import main

if __name__ == "__main__":
    run_cli(lambda: main(stage="{0}"))
'''


def test_run_bash_and_the_entry_points_list_the_registered_stages_in_order():
    names = list(STAGES)
    assert names == ["rwa", "gabor", "gratings", "modulation", "plaid", "surround", "nofeedback", "connectivity"]
    script = (ROOT / "run.bash").read_text()
    listed = re.search(r"# Stages, in the order they run.*\n#\s+(.*)\n", script).group(1).split()
    assert listed == names
    entry_points = sorted(p.stem.removeprefix("run_") for p in (ROOT / "virtual_physiology").glob("run_*.py"))
    assert entry_points == sorted(names)
    for name in names:
        assert (ROOT / "virtual_physiology" / f"run_{name}.py").read_text() == ENTRY_POINT.format(name)
        assert "sys.path" not in (ROOT / "virtual_physiology" / f"run_{name}.py").read_text()


def test_run_bash_help_and_an_entry_point_read_the_registry(tmp_path):
    done = subprocess.run(["bash", str(ROOT / "run.bash"), "--help"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr
    listed = re.findall(r"^  ([a-z_]+) +\S", done.stdout.split("stages, in order")[1], flags=re.M)
    assert listed == list(STAGES)
    assert "--noise-clips" not in done.stdout  # the example probe is registered in this process only
    assert "--rwa-clips N" in done.stdout and "--stage STAGE" in done.stdout
    done = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-m", "virtual_physiology.run_surround", "--help"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m virtual_physiology.run_surround") and "--stage" not in done.stdout
