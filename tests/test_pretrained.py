"""Every shipped pretrained model loads in one line, and its card's group-1
receptive-field statistics are what the shipped weights give now."""
import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

from models.io import load_model
from step_helpers import no_loss_curves  # noqa: F401 (fixture)
from virtual_physiology.monitors import grating_monitor
from virtual_physiology.rf_summary import SUMMARY_DIRECTIONS, receptive_field_stats

PRETRAINED = Path(__file__).resolve().parents[1] / "model_checkpoints" / "pretrained"
SHIPPED = sorted(p.parent for p in PRETRAINED.glob("*/rf_summary.json"))


def test_at_least_one_model_is_shipped():
    assert SHIPPED, f"no pretrained model (a folder with rf_summary.json) under {PRETRAINED}"


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_card_statistics_are_what_the_weights_give(folder):
    summary = json.loads((folder / "rf_summary.json").read_text())
    card = (folder / "MODEL_CARD.md").read_text()
    model, config, _ = load_model(folder)
    assert summary["epoch"] == config["checkpoint_epoch"]  # the card describes the latest weights
    stats = receptive_field_stats(model, summary["rwa_clips"])["stats"]
    recorded = summary["group1_receptive_fields"]["trained"]
    for key in ("fraction_original_gabor", "median_orientation_index", "fraction_strict_gabor",
                "fraction_r_above_0.7", "median_gabor_r"):
        assert stats[key] == pytest.approx(recorded[key], abs=0.01), key
        assert f"{recorded[key]:.2f}" in card, f"the card does not quote {key} = {recorded[key]:.2f}"
    gratings = grating_monitor(model.eval(), n_directions=SUMMARY_DIRECTIONS)
    recorded = summary["group1_reduced_gratings"]["trained"]
    for key in ("f1f0_above_1", "feedback_peak_ratio"):
        assert gratings[key] == pytest.approx(recorded[key], abs=0.01), key
        assert f"{recorded[key]:.2f}" in card, f"the card does not quote {key} = {recorded[key]:.2f}"


# ---------------------------------------------------------------------------------------------
# Shipped models work on any machine: no folder of the machine that made them, data by recipe
# ---------------------------------------------------------------------------------------------
def shipped_texts():
    """(file, text) of every shipped file that holds text, weights' metadata included."""
    from safetensors import safe_open

    for path in sorted(p for p in PRETRAINED.rglob("*") if p.is_file()):
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as f:
                yield path, json.dumps(f.metadata())
        elif path.suffix in (".json", ".md", ".html", ".log", ".csv", ".txt"):
            yield path, path.read_text()


def test_no_shipped_file_names_a_folder_of_the_machine_that_made_it():
    from models.portable import MACHINE_PATH

    found = {str(path.relative_to(PRETRAINED)): MACHINE_PATH.findall(text)[:2] for path, text in shipped_texts()
             if MACHINE_PATH.search(text)}
    assert not found, f"absolute paths (fix with python -m models.portable RUN): {found}"


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_config_names_its_data_by_recipe(folder):
    config = json.loads((folder / "config.json").read_text())
    _, weights_config, _ = load_model(folder)  # the weights' own copy, which the analyses read
    for recorded in (config, weights_config):
        assert recorded["dataset_recipe"]["frame_shape"] == list(config["frame_shape"])
        assert not Path(recorded["dataset_path"]).is_absolute() and not Path(recorded["save_dir"]).is_absolute()
        assert recorded.get("dataset_identity") or recorded.get("n_clips")  # what a rebuild is checked against


def test_a_copied_pretrained_model_runs_the_data_notebooks_on_a_machine_that_never_built_its_data(tmp_path,
                                                                                                   monkeypatch):
    """The smallest shipped model, copied elsewhere, with an empty dataset cache: a tiny
    artefact, then the two notebooks that need the training data (mse rebuilds it from
    the recipe and checks it; nback reads the checkpoint)."""
    from analysis.run_notebooks import run_notebooks
    from data import default_dataset
    from virtual_physiology.pipeline import Options, Pipeline

    smallest = min(SHIPPED, key=lambda p: sum(f.stat().st_size for f in p.glob("*.safetensors")))
    run = tmp_path / "copied" / smallest.name
    shutil.copytree(smallest, run, ignore=shutil.ignore_patterns("report"))
    cache = tmp_path / "empty_cache"
    monkeypatch.setattr(default_dataset, "CACHE_DIR", cache)
    artefact = tmp_path / "tiny.vphys.h5"
    options = Options(rwa_clips=50, rwa_chunk=50, gabor_starts=1, gabor_steps=20, progress=False)
    assert Pipeline(run, artefact, options=options).run(log=lambda message: None)
    figures = run_notebooks(artefact, tmp_path / "figures", quick=True, only=["mse", "nback"], log=lambda m: None)
    assert list(cache.glob("natural_*.npy")), "the training data was not rebuilt in the (empty) cache"
    for name in ("mse", "nback"):
        assert list((figures / name).glob("*.png")), f"notebook {name} drew no figure"


def test_a_run_on_an_embedded_build_resumes_on_a_machine_that_never_built_it(tmp_path, monkeypatch, no_loss_curves):
    """A run trained on a cache file given by path (as the long pretrained runs were),
    resumed where that file is gone: --path rebuilds it from the recorded recipe."""
    import train
    from data import default_dataset

    monkeypatch.setattr(default_dataset, "CACHE_DIR", tmp_path / "cache_of_the_training_machine")
    recipe = {"frame_shape": [4, 4], "frame_step": 2, "more_photos": False, "system_footage": False}
    built = default_dataset.build_from_recipe(recipe)
    args = train.build_parser().parse_args(
        ["--dataset", str(built), "--save-dir", str(tmp_path / "runs"), "--epochs", "1", "--frame-shape", "4", "4",
         "--hidden-units", "6,5,4", "--batch-size", "8", "--device", "cpu"])
    run = train.train(train.config_for(args)[0], progress=False)
    shutil.rmtree(built.parent)
    monkeypatch.setattr(default_dataset, "CACHE_DIR", tmp_path / "empty_cache")
    cfg, state = train.config_for(train.build_parser().parse_args(["--path", str(run)]))
    assert state.parent == run
    assert Path(cfg.dataset) == tmp_path / "empty_cache" / built.name and Path(cfg.dataset).exists()


def test_missing_data_without_a_recipe_is_one_line_naming_the_file(tmp_path):
    from data.default_dataset import TrainingDataError, training_data

    config = {"dataset": str(tmp_path / "gone.npy"), "dataset_path": str(tmp_path / "gone.npy"), "frame_shape": [4, 4]}
    with pytest.raises(TrainingDataError, match=r"gone.npy is not on this machine and the run records no recipe"):
        training_data(config)


def test_a_rebuild_that_differs_from_the_recorded_fingerprint_is_refused(tmp_path, monkeypatch):
    import numpy as np

    from data import default_dataset

    other = tmp_path / "other.npy"
    np.save(other, np.zeros((3, 5, 16), np.float32))
    monkeypatch.setattr(default_dataset, "build_from_recipe", lambda recipe, cache_dir=None: other)
    recipe = {"frame_shape": [4, 4], "frame_step": 2, "more_photos": True, "system_footage": False}
    config = {"dataset": "default", "dataset_path": "data/cache/absent.npy", "dataset_recipe": recipe,
              "frame_shape": [4, 4], "dataset_identity": {"shape": [9, 5, 16], "dtype": "float32"}}
    with pytest.raises(default_dataset.TrainingDataError,
                       match=r"built by `python -m data.default_dataset --frame-shape 4 4 --frame-step 2 "
                             r"--more-photos`, is not the data the run trained on \(shape"):
        default_dataset.training_data(config)


def test_recipe_of_reads_a_cache_sidecar_and_refuses_what_its_flags_cannot_build(tmp_path):
    from data import default_dataset as dd

    def sidecar(name, version=dd.VERSION, **params):
        (tmp_path / f"{name}.json").write_text(json.dumps({"config": dd._config((4, 6), params), "version": version}))
        return tmp_path / f"{name}.npy"

    more = sidecar("more", frame_step=2, images=dd.IMAGES + tuple(dd.EXTRA_IMAGES))
    assert dd.recipe_of(more) == {"frame_shape": [4, 6], "frame_step": 2, "more_photos": True, "system_footage": False}
    assert dd.recipe_command(dd.recipe_of(more)) == ("python -m data.default_dataset --frame-shape 4 6 --frame-step 2 "
                                                     "--more-photos")
    assert dd.recipe_of(sidecar("subset", images=("camera",))) is None  # no flag picks one photograph
    assert dd.recipe_of(sidecar("old", version=dd.VERSION - 1)) is None
    assert dd.recipe_of(tmp_path / "no_sidecar.npy") is None


def test_paths_are_recorded_relative_to_the_repository_when_inside_it():
    from utils import REPO_ROOT, portable_path, recorded_path

    assert portable_path(REPO_ROOT / "data" / "cache" / "a.npy") == "data/cache/a.npy"
    assert portable_path("/elsewhere/a.npy") == "/elsewhere/a.npy"
    assert recorded_path("data/cache/a.npy") == REPO_ROOT / "data" / "cache" / "a.npy"
    assert recorded_path("/elsewhere/a.npy") == Path("/elsewhere/a.npy")


def test_portable_config_names_tp_ff_stack_folders_without_the_machine_s_folders(tmp_path):
    from models.portable import portable_config

    config = portable_config({"stacked_from": ["/work/runs/zoo/ff0_run", "/home/x/repo/model_checkpoints/ff1_run",
                                               "ff2_run"]}, tmp_path / "run", None)
    assert config["stacked_from"] == ["ff0_run", "model_checkpoints/ff1_run", "ff2_run"]


def test_models_portable_rewrites_the_paths_and_keeps_the_tensors(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file

    from models import build_model
    from models.io import save_model
    from models.portable import make_portable
    from train import TrainConfig

    config = dataclasses.asdict(TrainConfig(frame_shape=(4, 4), hidden_units=(6, 5, 4))) | {
        "dataset": "/tmp/elsewhere/data/cache/c.npy", "dataset_path": "/tmp/elsewhere/data/cache/c.npy", "save_dir": "/home/someone/runs"}
    run = tmp_path / "run"
    weights = save_model(run, build_model(config), config, epoch=1)
    (run / "logs").mkdir()
    (run / "logs" / "train.log").write_text("clips from /tmp/elsewhere/data/cache/c.npy; continue with --path /home/someone/runs/r_1\n")
    before = load_file(str(weights))
    make_portable(run)
    with safe_open(str(weights), framework="pt") as f:
        recorded = [json.loads((run / "config.json").read_text()), json.loads(f.metadata()["config"])]
    for saved in recorded:
        assert (saved["dataset"], saved["dataset_path"], saved["save_dir"]) == ("data/cache/c.npy", "data/cache/c.npy",
                                                                              str(tmp_path))
    assert (run / "logs" / "train.log").read_text() == "clips from data/cache/c.npy; continue with --path r_1\n"
    after = load_file(str(weights))
    assert all(torch.equal(before[k], after[k]) for k in before) and before.keys() == after.keys()
