"""The analyses' one-line errors: an incomplete artefact (which stages, and the
command that adds them), an artefact without model metadata, and a report
folder that cannot be written."""
import json
from pathlib import Path

import h5py
import pytest

from analysis import inputs, report
from tests.analysis_helpers import tiny_run
from utils import run_cli
from virtual_physiology import ArtefactError
from virtual_physiology.artefact import FORMAT, STAGES, VirtualPhysiology
from virtual_physiology.pipeline import Options, Pipeline


@pytest.fixture(scope="module")
def partial(tmp_path_factory):
    """The tiny run's checkpoint with an artefact of the RWA and grating stages only."""
    run = tiny_run()
    artefact = tmp_path_factory.mktemp("partial") / "partial.h5"
    options = Options(rwa_clips=50, rwa_chunk=50, gabor_starts=1, gabor_steps=20, progress=False)
    Pipeline(run["checkpoint"], artefact, options=options).run(("rwa", "gratings"), log=lambda message: None)
    return run["checkpoint"], str(artefact)


def test_load_inputs_names_the_missing_stages_and_the_command(partial):
    checkpoint, artefact = partial
    with pytest.raises(ArtefactError) as err:
        inputs.load_inputs(artefact, STAGES)
    message = str(err.value)
    assert "gabor, modulation, plaid, surround, nofeedback, connectivity" in message
    assert f"bash run.bash {Path(checkpoint).resolve()} {artefact}" in message  # the checkpoint it records
    data = inputs.load_inputs(artefact, needs=("rwa", "gratings"))  # what is there is usable
    assert "preferred_index" in data.units[0]
    data.artefact.close()


def test_report_on_an_incomplete_artefact_exits_2_saying_what_is_missing(partial, tmp_path, capsys):
    checkpoint, artefact = partial
    with pytest.raises(SystemExit) as code:
        run_cli(lambda: report.main([artefact, "--out", str(tmp_path / "out")]))
    err = capsys.readouterr().err.strip().splitlines()
    assert code.value.code == 2 and len(err) == 1 and "lacks the stage(s) gabor" in err[0]
    assert not (tmp_path / "out").exists()


def test_an_artefact_with_format_but_no_model_is_one_line(tmp_path):
    path = tmp_path / "odd.h5"
    with h5py.File(path, "w") as f:
        f.attrs["metadata"] = json.dumps({"format": FORMAT, "stages": {}})
    with pytest.raises(ArtefactError, match="metadata lacks model, grid, checkpoint"):
        VirtualPhysiology.load(path)
    with pytest.raises(ArtefactError, match="metadata lacks model"):
        inputs.load_inputs(path, needs=())


def test_report_out_that_is_a_file_is_one_line(tmp_path, capsys):
    run = tiny_run()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out in (blocker, blocker / "sub"):
        with pytest.raises(SystemExit) as code:
            run_cli(lambda: report.main([run["artefact"], "--out", str(out)]))
        err = capsys.readouterr().err.strip().splitlines()
        assert code.value.code == 2 and len(err) == 1 and "cannot write the report into" in err[0], err
    assert blocker.read_text() == "x"


def test_report_out_on_a_read_only_file_system_is_one_line(tmpfs, capsys):
    mount = tmpfs("size=1m,ro")
    run = tiny_run()
    with pytest.raises(SystemExit) as code:
        run_cli(lambda: report.main([run["artefact"], "--out", str(mount / "out")]))
    err = capsys.readouterr().err.strip().splitlines()
    assert code.value.code == 2 and len(err) == 1 and "Read-only file system" in err[0], err


def test_report_on_a_missing_artefact_says_once_how_to_make_it(tmp_path, capsys):
    missing = str(tmp_path / "none.h5")
    with pytest.raises(SystemExit) as code:
        run_cli(lambda: report.main([missing, "--out", str(tmp_path / "out")]))
    err = capsys.readouterr().err.strip().splitlines()
    assert code.value.code == 2 and len(err) == 1 and err[0].count("run.bash") == 1
    assert f"make it with bash run.bash MODEL_CHECKPOINT {missing}" in err[0] and not (tmp_path / "out").exists()


def test_a_notebook_on_an_incomplete_artefact_stops_at_its_check_cell(partial, tmp_path):
    """Every artefact notebook opens with a load_inputs cell naming the stages it
    reads (analysis/notebooks/<name>.py), so one executed notebook stands for the four."""
    import papermill as pm

    from test_analysis_notebooks import execute

    _, artefact = partial
    with pytest.raises(pm.PapermillExecutionError) as error:
        execute("plaid_motion", tmp_path, artefact=artefact)
    assert error.value.ename == "ArtefactError" and "inputs.load_inputs" in error.value.source
    assert "lacks the stage(s) plaid, nofeedback:" in error.value.evalue and "bash run.bash" in error.value.evalue


def test_a_report_that_fails_part_way_writes_none_of_its_files(tmp_path, monkeypatch, capsys):
    """report.md, report.png and report.html are one set: a failure in the last keeps the
    earlier set as it was (the same files, not rewritten) and writes no new one."""
    import errno

    from analysis import gallery

    run = tiny_run()
    out = tmp_path / "out"
    run_cli(lambda: report.main([run["artefact"], "--out", str(out)]))
    before = {p.name: p.stat().st_ino for p in out.iterdir()}
    assert set(before) == {"report.md", "report.png", "report.html"}

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(gallery, "render_gallery", disk_full)
    with pytest.raises(SystemExit):
        run_cli(lambda: report.main([run["artefact"], "--out", str(out)]))
    assert "No space left on device" in capsys.readouterr().err
    assert {p.name: p.stat().st_ino for p in out.iterdir()} == before
    with pytest.raises(SystemExit):
        run_cli(lambda: report.main([run["artefact"], "--out", str(tmp_path / "new")]))
    assert list((tmp_path / "new").iterdir()) == []
