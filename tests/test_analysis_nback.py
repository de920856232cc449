"""Tests for analysis.nback."""
import numpy as np
import pytest

from analysis import AnalysisError, nback
from tests.analysis_helpers import CopyLastModel


def test_sklearn_digits_fit_the_frame_keeping_aspect():
    images, labels, label = nback.load_digit_images(None)
    assert images.shape == (1797, 8, 8) and set(labels) == set(range(10)) and "not MNIST" in label
    frames = nback.digit_frames(images[:5], (20, 40))
    assert frames.shape == (5, 800)
    np.testing.assert_allclose(frames.mean(1), 0, atol=1e-5)
    np.testing.assert_allclose(frames.std(1), 1, atol=1e-4)
    grid = frames.reshape(5, 20, 40)
    assert np.all(grid[:, :, :10] == grid[:, :1, :1])  # padding left of the 20x20 digit is background


def test_npz_digits_and_bad_file(tmp_path):
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=np.zeros((3, 28, 28)), y_train=np.array([1, 2, 3]))
    images, labels, _ = nback.load_digit_images(path)
    assert images.shape == (3, 28, 28) and list(labels) == [1, 2, 3]
    (tmp_path / "bad.npz").write_text("not a zip")
    with pytest.raises(AnalysisError, match="cannot read digits"):
        nback.load_digit_images(tmp_path / "bad.npz")


def test_auto_finds_a_local_mnist_in_order_and_falls_back_to_sklearn(tmp_path, monkeypatch):
    monkeypatch.setattr(nback.Path, "home", lambda: tmp_path)
    monkeypatch.delenv("MNIST_NPZ", raising=False)
    repo_copy = tmp_path / "repo" / "data" / "mnist.npz"
    monkeypatch.setattr(nback, "REPO_MNIST", repo_copy)
    assert nback.local_mnist() is None
    assert "not MNIST" in nback.load_digit_images("auto")[2]
    repo_copy.parent.mkdir(parents=True)
    np.savez(repo_copy, images=np.ones((1, 28, 28)), labels=np.array([3]))
    assert nback.local_mnist() == repo_copy
    keras = tmp_path / ".keras" / "datasets" / "mnist.npz"
    keras.parent.mkdir(parents=True)
    np.savez(keras, x_train=np.zeros((2, 28, 28)), y_train=np.array([4, 5]))
    images, labels, label = nback.load_digit_images("auto")
    assert images.shape == (2, 28, 28) and list(labels) == [4, 5] and str(keras) in label  # Keras before the repo
    named = tmp_path / "elsewhere.npz"
    np.savez(named, images=np.ones((1, 28, 28)), labels=np.array([7]))
    monkeypatch.setenv("MNIST_NPZ", str(named))
    assert nback.local_mnist() == named  # $MNIST_NPZ comes first
    assert "not MNIST" in nback.load_digit_images(None)[2]  # None always means the bundled digits


def test_sequences_place_the_digit_after_the_lead():
    frames = np.full((3, 16), 7.0, np.float32)
    seq = nback.nback_sequences(frames, n_back=2, seed=0)
    assert seq.shape == (3, 7, 16) and np.all(seq[:, 4] == 7.0) and np.all(seq[:, 5] != 7.0)
    np.testing.assert_array_equal(seq, nback.nback_sequences(frames, n_back=2, seed=0))


def test_readout_learns_separable_features_and_not_noise():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 400)
    clean = np.eye(4)[labels] * 3 + rng.normal(0, 0.1, (400, 4))
    good = nback.readout_accuracy(clean, labels, epochs=10, lr=5e-2)
    assert good["accuracy"] > 0.95 and good["n_test"] == 80
    noise = nback.readout_accuracy(rng.normal(size=(400, 4)), labels, epochs=10, lr=5e-2)
    assert noise["accuracy"] < 0.45


def test_memoryless_model_forgets_after_one_frame():
    images, labels, _ = nback.load_digit_images(None)
    frames = nback.digit_frames(images[:300], (4, 4))
    model = CopyLastModel(frame_shape=(4, 4), group_sizes=(8, 8))
    now = nback.nback_accuracy(model, frames, labels[:300], n_back=0, epochs=40, lr=1e-2)
    later = nback.nback_accuracy(model, frames, labels[:300], n_back=1, epochs=40, lr=1e-2)
    assert now["accuracy"] > 0.4 and later["accuracy"] < 0.25


def test_feedback_memory_scores_the_model_and_its_copy_without_feedback_on_the_same_trials():
    import dataclasses

    import torch

    from models import build_model
    from models.ablation import feedback_blocks, without_feedback
    from train import TrainConfig

    torch.manual_seed(0)
    model = build_model(dataclasses.asdict(TrainConfig(frame_shape=(8, 8), hidden_units=(12, 8, 6)))).eval()
    with torch.no_grad():
        for rows, cols in feedback_blocks(model):  # feedback strong enough to change the last hidden state
            model.weight_hh[rows, cols] = torch.rand_like(model.weight_hh[rows, cols])
    images, labels, _ = nback.load_digit_images(None)
    frames, labels = nback.digit_frames(images[:200], (8, 8)), labels[:200]
    memory = nback.feedback_memory(model, frames, labels, 2, epochs=3, lr=1e-2)
    assert memory["full"] == nback.nback_accuracy(model, frames, labels, 2, epochs=3, lr=1e-2)
    assert memory["no_feedback"] == nback.nback_accuracy(without_feedback(model), frames, labels, 2, epochs=3, lr=1e-2)
    assert memory["full"]["n_test"] == memory["no_feedback"]["n_test"] == 40
    same = nback.feedback_memory(without_feedback(model), frames, labels, 2, epochs=3, lr=1e-2)
    assert same["full"] == same["no_feedback"] and (same["z"], same["p"]) == (0.0, 1.0)
