"""models.checkpoint.Checkpoint: each kind of path a user gives (run folder, weights
file, a weights file written before the config went into its metadata, the original
code's folder and .pt file, a stacked TP_FF checkpoint) resolves to the known weights
file, run folder, config, epoch, frame shape, group sizes and slices, SHA-256 and
optimizer steps, and loads the model saved; every refusal is a CheckpointError."""
import csv
import hashlib
import json

import pytest
import torch
from safetensors.torch import save_file

from models.checkpoint import Checkpoint, CheckpointError, original_frame_shape
from models.io import load_model, save_model
from models.network_hierarchical_recurrent import NetworkHierarchicalRecurrent

CONFIG = {"model": "network_hierarchical_recurrent", "loss": "loss_hierarchical_temporal_prediction",
          "frame_shape": [2, 3], "hidden_units": [4, 5, 6], "beta": [0.9, 0.1, 0.1], "warmup": 2,
          "local_inhibitory_prop": 0.2, "L1": -3.0, "detach_targets": False, "noise_std": 0.5011,
          "n_train": 250, "batch_size": 100}
SLICES = [slice(0, 4), slice(4, 9), slice(9, 15)]


def tiny_model(seed: int) -> NetworkHierarchicalRecurrent:
    torch.manual_seed(seed)
    return NetworkHierarchicalRecurrent.from_config(CONFIG)


def assert_same_weights(model, expected) -> None:
    for name, value in expected.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name


@pytest.fixture
def run(tmp_path):
    """A run folder with the epochs 2 and 3 of two different models and a loss history."""
    folder = tmp_path / "run"
    save_model(folder, tiny_model(2), CONFIG, epoch=2)
    save_model(folder, tiny_model(3), CONFIG, epoch=3, history={"loss": [1.0, 0.5]})
    return folder


def test_a_run_folder_is_its_latest_epoch(run):
    checkpoint = Checkpoint(run)
    weights = run / "3-epochs_model.safetensors"
    assert checkpoint.path == run and checkpoint.weights == weights and checkpoint.run.path == run
    assert not checkpoint.original
    assert checkpoint.config == {**CONFIG, "checkpoint_epoch": 3} and checkpoint.epoch == 3
    assert checkpoint.frame_shape == (2, 3) and checkpoint.group_sizes == (4, 5, 6)
    assert checkpoint.group_slices == SLICES
    assert checkpoint.sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert checkpoint.optimizer_steps == 9  # 3 epochs x ceil(250 / 100)
    assert checkpoint.history == {"loss": [1.0, 0.5]}
    assert_same_weights(checkpoint.load(), tiny_model(3))


def test_a_weights_file_is_that_epoch(run):
    checkpoint = Checkpoint(run / "2-epochs_model.safetensors")
    assert checkpoint.weights == run / "2-epochs_model.safetensors" and checkpoint.run.path == run
    assert checkpoint.epoch == 2 and checkpoint.optimizer_steps == 6
    assert_same_weights(checkpoint.load(), tiny_model(2))


def test_load_model_returns_what_the_checkpoint_holds_and_a_config_of_its_own(run):
    model, config, history = load_model(run)
    assert_same_weights(model, tiny_model(3))
    assert config == Checkpoint(run).config and history == {"loss": [1.0, 0.5]}
    config["hidden_units"].append(7)  # a caller's edit stays with the caller
    assert load_model(run)[1]["hidden_units"] == [4, 5, 6]


def test_a_weights_file_without_metadata_takes_config_json_and_an_unknown_epoch(tmp_path):
    """Checkpoints written before the config and epoch went into the file's metadata."""
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    weights = tmp_path / "7-epochs_model.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_model(7).state_dict().items()}, str(weights))
    checkpoint = Checkpoint(tmp_path)
    assert checkpoint.weights == weights and checkpoint.epoch == -1 and checkpoint.optimizer_steps is None
    assert checkpoint.group_slices == SLICES and checkpoint.history == {}
    assert_same_weights(checkpoint.load(), tiny_model(7))


def original_folder(tmp_path, frame_size=6):
    """A folder as the original code wrote it: hyperparameters.csv (pandas' layout) and
    N-epochs_model.pt state dicts in its own parameter names."""
    folder = tmp_path / "orig"
    folder.mkdir()
    hp = {"name": "orig", "lam": 1e-3, "frame_size": frame_size, "hidden_units_groups": "4,5,6",
          "beta_weights": "0.9,0.1,0.1", "warmup": 2, "local_inhibitory_prop": 0.2}
    with open(folder / "hyperparameters.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([""] + list(hp))
        writer.writerow([0] + list(hp.values()))
    for epoch in (5, 12):
        torch.save(tiny_model(epoch).to_original_state_dict(), folder / f"{epoch}-epochs_model.pt")
    return folder


def test_an_original_folder_and_its_pt_file(tmp_path):
    folder = original_folder(tmp_path)
    for given, epoch in ((folder, 12), (folder / "5-epochs_model.pt", 5)):
        checkpoint = Checkpoint(given, frame_shape=(2, 3))
        assert checkpoint.original and checkpoint.weights == folder / f"{epoch}-epochs_model.pt"
        assert checkpoint.run.path == folder and checkpoint.epoch == epoch
        assert checkpoint.frame_shape == (2, 3) and checkpoint.group_slices == SLICES
        assert checkpoint.config["L1"] == pytest.approx(-3.0) and checkpoint.config["source"] == "original"
        assert checkpoint.optimizer_steps is None and checkpoint.history == {}  # the CSV records no clip count
        assert_same_weights(checkpoint.load(), tiny_model(epoch))


def test_an_original_frame_shape_from_its_pixel_count():
    assert original_frame_shape(400) == (20, 20) and original_frame_shape(800) == (20, 40)
    assert original_frame_shape(36) == (6, 6) and original_frame_shape(6, (2, 3)) == (2, 3)
    with pytest.raises(CheckpointError, match=r"frame_size 6: pass frame_shape=\(H, W\) with H\*W = 6"):
        original_frame_shape(6)
    with pytest.raises(CheckpointError, match="frame_size 6"):
        original_frame_shape(6, (3, 3))


def test_an_original_checkpoint_of_no_known_frame_shape_is_refused_when_read(tmp_path):
    checkpoint = Checkpoint(original_folder(tmp_path))  # the path resolves; its frame shape is unknown
    with pytest.raises(CheckpointError, match="frame_size 6: pass frame_shape"):
        checkpoint.frame_shape


def test_a_stacked_checkpoint_counts_every_stacks_steps(tmp_path):
    weights = save_model(tmp_path / "stacked", tiny_model(1), {**CONFIG, "stack_steps": [9, 6, 3]}, epoch=3)
    assert Checkpoint(weights).optimizer_steps == 18


@pytest.mark.parametrize("make,match", [
    (lambda root: root / "absent", "checkpoint .*absent does not exist: give a run folder or a weights file"),
    (lambda root: root, "no checkpoint .* in .*: train one first"),
    (lambda root: (root / "w.pt").write_bytes(b"") or root / "w.pt", r"w.pt is not a .safetensors weights file"),
])
def test_a_path_that_holds_no_checkpoint_is_refused_at_once(tmp_path, make, match):
    with pytest.raises(CheckpointError, match=match):
        Checkpoint(make(tmp_path))


def test_a_corrupt_file_is_refused_when_first_read(run):
    weights = run / "3-epochs_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:40])
    checkpoint = Checkpoint(run)
    with pytest.raises(CheckpointError, match="3-epochs_model.safetensors is corrupt or truncated"):
        checkpoint.config
