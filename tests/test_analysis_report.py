"""The one-page report on a tiny model and artefact, and its one-line errors."""
import math

import pytest

from analysis import report
from tests.analysis_helpers import copied_run, tiny_run
from utils import portable_path, run_cli


def test_report_prints_and_saves(tmp_path, capsys):
    run = tiny_run()
    run_cli(lambda: report.main([run["artefact"], "--out", str(tmp_path)]))
    printed, page_line = capsys.readouterr().out.rstrip("\n").rsplit("\n", 1)
    assert (tmp_path / "report.md").read_text() == printed.rstrip("\n") + "\n"
    page = (tmp_path / "report.html").resolve().as_uri()
    assert page_line == f"report page: {page} (open it in any browser; it needs no network)"
    assert (tmp_path / "report.png").stat().st_size > 1000
    for needle in ("| G1 |", "| G3 |", "macaque V1 (Mata & Ringach 2005)", "macaque MT (Movshon & Newsome 1996)",
                   "mouse V1 feedback suppressed (laser on)", "G1 no feedback"):
        assert needle in printed


def test_report_numbers_are_finite():
    from analysis import inputs

    run = tiny_run()
    data = inputs.load_inputs(run["artefact"], report.NEEDS)
    rows = report.group_rows(data.units)
    assert [r["group"] for r in rows] == ["G1", "G2", "G3"]
    assert all(math.isfinite(r["pi_mean"]) and 0 <= r["os_fraction"] <= 1 for r in rows)
    assert math.isfinite(rows[0]["gabor_r_fraction"]) and math.isnan(rows[1]["gabor_r_fraction"])
    surround = report.surround_rows(data.units[0])
    assert surround["n_pairs"] > 0 and math.isfinite(surround["pairs_mean_no_feedback"])
    distances = report.distance_rows(data.units, surround)
    assert len(distances) == 2 + 3 + 4 and all(0 <= d["distance"] <= 1 for d in distances)
    data.artefact.close()


@pytest.mark.parametrize("case", ["missing", "not an artefact"])
def test_report_bad_artefact_is_a_one_line_error(tmp_path, capsys, case):
    artefact = tmp_path / "absent.h5"
    if case == "not an artefact":
        artefact.write_text("x")
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: report.main([str(artefact), "--out", str(tmp_path / "out")]))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert ("does not exist" if case == "missing" else "is not a virtual-physiology artefact") in err
    assert not (tmp_path / "out").exists()


def test_the_report_reads_only_the_artefact(tmp_path, capsys, monkeypatch):
    """No model is loaded: the report of an artefact whose weights beside it are
    another checkpoint's is the report of the right one."""
    import models.io

    run = tiny_run()
    run_cli(lambda: report.main([run["artefact"], "--out", str(tmp_path / "right")]))
    right = capsys.readouterr().out
    monkeypatch.setattr(models.io, "load_model", lambda *args, **kwargs: pytest.fail("the report loaded a model"))
    other = copied_run(tmp_path, weights_from="other_checkpoint")
    run_cli(lambda: report.main([other["artefact"], "--out", str(tmp_path / "other")]))
    other_out = capsys.readouterr().out
    markdown = [out.rstrip("\n").rsplit("\n", 1)[0] for out in (right, other_out)]  # the last line: the page's path
    assert markdown[1] == markdown[0].replace(portable_path(run["artefact"]), portable_path(other["artefact"]))
