"""The report's offline HTML gallery: every image is an embedded PNG that
decodes, notebook figures of another checkpoint are left out with a note, the
tables and the model card are on the page; rendered in headless Chromium when
it is installed."""
import base64
import io
import json
import re
import shutil

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from analysis import gallery, report  # noqa: E402
from benchmarks.check_gallery import chromium_binary, render  # noqa: E402
from tests.analysis_helpers import tiny_run  # noqa: E402


def fake_notebook_figures(folder, name, checkpoint, artefact, n_figures=2):
    """Write n small PNGs and the summary.json a notebook would leave in folder/name."""
    out = folder / name
    out.mkdir(parents=True)
    for i in range(n_figures):
        fig, ax = plt.subplots(figsize=(2, 1.5))
        ax.plot([0, 1], [i, 1 - i])
        fig.savefig(out / f"{name}_figure_{i}.png")
        plt.close(fig)
    (out / "summary.json").write_text(json.dumps({"checkpoint": str(checkpoint), "artefact": str(artefact)}))


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
    fake_notebook_figures(figures, "mse", run["other_checkpoint"], artefact)
    report.report(str(checkpoint), str(artefact), root / "out", figures)
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
    monkeypatch.setattr(default_dataset, "default_dataset_path", lambda shape: tmp_path / f"embedded_{shape}.npy")
    run = tiny_run()
    mse = run_notebooks.parameters("mse", run["checkpoint"], run["artefact"], tmp_path / "mse", quick=True)
    assert mse["checkpoints"] == [["this model", run["checkpoint"]]] and mse["max_clips"] == 200
    assert mse["dataset"] == str(tmp_path / "embedded_(8, 8).npy")
    plaid = run_notebooks.parameters("plaid_motion", run["checkpoint"], run["artefact"], tmp_path / "p", quick=False)
    assert plaid == dict(checkpoint=run["checkpoint"], artefact=run["artefact"], output_dir=str(tmp_path / "p"))
    assert run_notebooks.default_figures_dir("/x/a.vphys.h5") == report_dir("/x/a.vphys.h5") / "figures"


def report_dir(artefact):
    from pathlib import Path

    return Path(artefact).with_name(Path(artefact).name + ".report")


@pytest.mark.parametrize("case", ["missing", "mismatched"])
def test_run_notebooks_bad_input_is_one_line(tmp_path, capsys, case):
    from analysis import run_notebooks
    from utils import run_cli

    run = tiny_run()
    args = ([run["checkpoint"], str(tmp_path / "absent.h5")] if case == "missing"
            else [run["other_checkpoint"], run["artefact"], "--only", "plaid_motion"])
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: run_notebooks.main(args + ["--figures", str(tmp_path / "figures")]))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert ("does not exist" if case == "missing" else "notebook plaid_motion stopped: UserInputError") in err
