"""The report's offline HTML gallery: every image is an embedded PNG that
decodes, notebook figures of another checkpoint are left out with a note, the
tables and the model card are on the page; rendered in headless Chromium when
it is installed."""
import base64
import io
import json
import re
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from analysis import gallery, report  # noqa: E402
from benchmarks.check_gallery import chromium_binary, render  # noqa: E402
from tests.analysis_helpers import copied_run, tiny_run  # noqa: E402
from virtual_physiology.results import VirtualPhysiology  # noqa: E402


def fake_notebook_figures(folder, name, checkpoint, artefact, n_figures=2):
    """Write n small PNGs and the summary.json a notebook would leave in folder/name
    (``artefact`` None: one that reads a checkpoint only, as mse and nback)."""
    out = folder / name
    out.mkdir(parents=True)
    for i in range(n_figures):
        fig, ax = plt.subplots(figsize=(2, 1.5))
        ax.plot([0, 1], [i, 1 - i])
        fig.savefig(out / f"{name}_figure_{i}.png")
        plt.close(fig)
    summary = {"checkpoint": str(checkpoint)} if artefact is None else {"checkpoint": str(checkpoint), "artefact": str(artefact)}
    (out / "summary.json").write_text(json.dumps(summary))


def img_sources(page: str) -> list[str]:
    return re.findall(r'<img src="([^"]*)"', page)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """A report of a copy of the tiny run with a model card, four notebooks'
    figures of this run, one of another checkpoint and one notebook not run."""
    root = tmp_path_factory.mktemp("gallery")
    run = tiny_run()
    checkpoint = root / "run"
    shutil.copytree(run["checkpoint"], checkpoint)
    artefact = checkpoint / "tiny.vphys.h5"
    (checkpoint / "MODEL_CARD.md").write_text("# Tiny model\nTrained for <1 epoch & only for tests.\n")
    figures = root / "figures"
    for name in gallery.NOTEBOOKS[:4]:
        fake_notebook_figures(figures, name, checkpoint, artefact)
    fake_notebook_figures(figures, "mse", run["other_checkpoint"], None)
    report.report(str(artefact), root / "out", figures)
    return dict(html=(root / "out" / "report.html").read_text(), path=root / "out" / "report.html",
                other=run["other_checkpoint"])


def test_every_image_is_an_embedded_png_that_decodes(page):
    sources = img_sources(page["html"])
    assert len(sources) == 1 + 4 * 2  # the report figure and two figures of each matching notebook
    for source in sources:
        assert source.startswith("data:image/png;base64,")
        image = Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1], validate=True)))
        image.load()
        assert image.width > 50 and image.height > 50


def test_page_loads_nothing_from_outside(page):
    assert not re.search(r'(src|href)="(?!data:)', page["html"])
    assert "<script" not in page["html"] and "http" not in page["html"].split("<body>")[0]


def test_other_checkpoints_figures_are_left_out_with_a_note(page):
    assert "mse_figure_0" not in page["html"]
    assert f"not shown: made from {page['other']}, not from" in page["html"]
    assert "no figures in" in page["html"] and "--only nback" in page["html"]


def test_tables_and_model_card_are_on_the_page(page):
    html = page["html"]
    for heading in ("Per group", "Surround suppression, G1 (SI %)", "Distance to the literature"):
        assert f"<h2>{heading}</h2><table>" in html
    assert "<td>G3</td>" in html and "macaque V1 (Mata &amp; Ringach 2005)" in html
    assert "<pre># Tiny model\nTrained for &lt;1 epoch &amp; only for tests.\n</pre>" in html


def test_provenance_of_a_notebook_that_did_not_finish(tmp_path):
    assert "did not finish" in gallery.provenance_problem(tmp_path / "summary.json", "a", "b")
    (tmp_path / "summary.json").write_text(json.dumps({"checkpoints": [["x", str(tmp_path)]]}))
    assert gallery.provenance_problem(tmp_path / "summary.json", tmp_path, "any artefact") is None


def test_provenance_matches_artefact_notebooks_on_the_artefact_and_the_others_on_the_checkpoint(tmp_path):
    summary, weights = tmp_path / "summary.json", tmp_path / "run" / "1-epochs_model.safetensors"
    weights.parent.mkdir()
    weights.write_text("w")
    summary.write_text(json.dumps({"artefact": "a.h5", "checkpoint": "moved/elsewhere"}))
    assert gallery.provenance_problem(summary, weights, "a.h5") is None
    assert gallery.provenance_problem(summary, weights, "b.h5") == "made from the artefact a.h5, not b.h5"
    for given in (weights, weights.parent):  # the weights file, or the run folder holding it
        summary.write_text(json.dumps({"checkpoints": [["this model", str(given)]]}))
        assert gallery.provenance_problem(summary, weights, "a.h5") is None
    summary.write_text(json.dumps({"checkpoint": str(tmp_path)}))
    assert gallery.provenance_problem(summary, weights, "a.h5") == f"made from {tmp_path}, not from {weights}"


@pytest.mark.skipif(chromium_binary() is None, reason="headless Chromium is not installed")
def test_chromium_renders_the_page_with_no_broken_image(page, tmp_path):
    result = render(page["path"], tmp_path / "screenshot.png")
    assert result["images"] == 9 and result["broken"] == []
    assert Image.open(tmp_path / "screenshot.png").width >= 1000


@pytest.mark.skipif(chromium_binary() is None, reason="headless Chromium is not installed")
def test_chromium_check_finds_a_broken_image(page, tmp_path):
    broken = tmp_path / "broken.html"
    first = img_sources(page["html"])[0]
    broken.write_text(page["html"].replace(first, "data:image/png;base64,AAAA", 1))
    result = render(broken, tmp_path / "screenshot.png")
    assert result["broken"] == ["report"]


def test_run_notebooks_parameters_point_every_notebook_at_the_run(tmp_path, monkeypatch):
    from analysis import run_notebooks
    from data import default_dataset

    # the tiny run trained on the embedded dataset: mse gets its cache file for the run's frame shape
    monkeypatch.setattr(default_dataset, "build_from_recipe",
                        lambda recipe, cache_dir=None: tmp_path / f"embedded_{tuple(recipe['frame_shape'])}.npy")
    run = tiny_run()
    weights = str(Path(run["checkpoint"]).resolve() / "1-epochs_model.safetensors")
    with VirtualPhysiology.load(run["artefact"]) as vp:
        mse = run_notebooks.parameters("mse", vp, tmp_path / "mse", quick=True)
        nback = run_notebooks.parameters("nback", vp, tmp_path / "nback", quick=False)
        plaid = run_notebooks.parameters("plaid_motion", vp, tmp_path / "p", quick=False)
    assert mse["checkpoints"] == [["this model", weights]] and mse["max_clips"] == 200
    assert mse["dataset"] == str(tmp_path / "embedded_(8, 8).npy")
    assert nback == dict(checkpoint=weights, output_dir=str(tmp_path / "nback"))
    assert plaid == dict(artefact=run["artefact"], output_dir=str(tmp_path / "p"))
    assert run_notebooks.default_figures_dir("/x/a.vphys.h5") == report_dir("/x/a.vphys.h5") / "figures"
    assert gallery.report_dir("/x/a.vphys.h5") == report_dir("/x/a.vphys.h5")  # where the report goes without --out


def report_dir(artefact):
    return Path(artefact).with_name(Path(artefact).name + ".report")


@pytest.mark.parametrize("case", ["missing", "mismatched"])
def test_run_notebooks_bad_input_is_one_line(tmp_path, capsys, case):
    from analysis import run_notebooks
    from utils import run_cli

    args = ([str(tmp_path / "absent.h5")] if case == "missing"  # mismatched: another checkpoint's weights
            else [copied_run(tmp_path, weights_from="other_checkpoint")["artefact"], "--only", "plaid_motion"])
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: run_notebooks.main(args + ["--figures", str(tmp_path / "figures")]))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert ("does not exist" if case == "missing" else "notebook plaid_motion stopped: ArtefactError") in err


def test_run_notebooks_refuses_another_checkpoint_before_any_notebook(tmp_path, capsys):
    from analysis import run_notebooks
    from utils import run_cli

    artefact = copied_run(tmp_path, weights_from="other_checkpoint")["artefact"]
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: run_notebooks.main([artefact, "--only", "mse", "plaid_motion", "--figures", str(tmp_path / "f")]))
    assert exit_info.value.code == 2 and "(its SHA-256 differs)" in capsys.readouterr().err
    assert not (tmp_path / "f").exists()


def test_only_before_the_artefact_does_not_swallow_it(tmp_path, capsys):
    """`--only nback ARTEFACT` (the order a user types) reaches the artefact: here the
    refusal of its mismatched checkpoint, not argparse's "the following arguments are required"."""
    from analysis import run_notebooks
    from utils import run_cli

    artefact = copied_run(tmp_path, weights_from="other_checkpoint")["artefact"]
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: run_notebooks.main(["--quick", "--only", "nback", artefact]))
    assert exit_info.value.code == 2 and "(its SHA-256 differs)" in capsys.readouterr().err


@pytest.mark.parametrize("artefact,only,expected", [
    (None, ["nback", "a.h5"], ("a.h5", ["nback"])),
    (None, ["nback,mse", "a.h5"], ("a.h5", ["nback", "mse"])),
    ("a.h5", ["mse", "plaid_motion"], ("a.h5", ["mse", "plaid_motion"])),
    ("a.h5", None, ("a.h5", None)),
])
def test_split_only_takes_the_artefact_back_from_only(artefact, only, expected):
    from analysis.run_notebooks import split_only

    assert split_only(artefact, only) == expected


@pytest.mark.parametrize("artefact,only,fragment", [
    ("a.h5", ["nbakc"], "--only 'nbakc' is not a notebook"),
    (None, ["nback", "mse"], "no ARTEFACT given"),
    (None, ["typo", "a.h5"], "--only 'typo' is not a notebook"),
])
def test_split_only_names_the_problem(artefact, only, fragment):
    from analysis.run_notebooks import split_only
    from utils import UserInputError

    with pytest.raises(UserInputError, match=re.escape(fragment)):
        split_only(artefact, only)
