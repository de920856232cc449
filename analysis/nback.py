"""n-back memory: can a linear readout of the hidden units name a digit shown
n noise frames ago? (the original's nback notebook)

Sequence per trial: 4 frames of N(0, 1) noise, one digit frame, then n noise
frames. Features are all hidden units at the last step; a linear softmax
readout is trained on 80% of the trials and scored on the rest.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from skimage.transform import resize
from torch import nn

from analysis import AnalysisError
from analysis.stats import two_proportion_ztest
from models.ablation import without_feedback
from models.base import ProbeableModel

SKLEARN_DIGITS_LABEL = "scikit-learn 8x8 digits, upsampled (not MNIST)"
REPO_MNIST = Path(__file__).resolve().parents[1] / "data" / "mnist.npz"  # git-ignored, like all .npz


def local_mnist() -> Path | None:
    """The first real MNIST .npz found on this machine, or None. Looked for, in
    order: the file named by $MNIST_NPZ, Keras's download cache
    ``~/.keras/datasets/mnist.npz``, and ``data/mnist.npz`` in this repository."""
    candidates = [os.environ.get("MNIST_NPZ"), Path.home() / ".keras" / "datasets" / "mnist.npz", REPO_MNIST]
    return next((Path(c) for c in candidates if c and Path(c).is_file()), None)


def load_digit_images(path="auto") -> tuple[np.ndarray, np.ndarray, str]:
    """Digit images (N, h, w) float, labels (N,) int and a description.

    path: an .npz holding ``images``/``labels`` or Keras-style ``x_train``/
    ``y_train`` (real MNIST, which the user supplies). "auto": real MNIST if
    ``local_mnist`` finds it, else as None. None: the 1,797 8x8 digits bundled
    with scikit-learn (offline; coarse, so results are not comparable with
    MNIST and figures say so).
    """
    if path == "auto":
        path = local_mnist()
    if path is None:
        from sklearn.datasets import load_digits

        digits = load_digits()
        return digits.images.astype(float), digits.target.astype(int), SKLEARN_DIGITS_LABEL
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = ("images", "labels") if "images" in data else ("x_train", "y_train")
            images, labels = data[keys[0]].astype(float), data[keys[1]].astype(int)
    except (OSError, ValueError, KeyError) as err:
        raise AnalysisError(f"cannot read digits from {path}: pass an .npz with images/labels "
                            "(or x_train/y_train), or None for the scikit-learn digits") from err
    if images.ndim != 3 or len(images) != len(labels):
        raise AnalysisError(f"{path}: images must be (N, h, w) with one label each")
    return images, labels, f"MNIST-style digits from {path}"


def digit_frames(images, frame_shape) -> np.ndarray:
    """Fit each image into ``frame_shape`` keeping its aspect ratio (bilinear),
    centre it on a zero background and z-score the frame: (N, h, w) -> (N, P)."""
    height, width = frame_shape
    images = np.asarray(images, float)
    scale = min(height / images.shape[1], width / images.shape[2])
    h, w = max(1, round(images.shape[1] * scale)), max(1, round(images.shape[2] * scale))
    top, left = (height - h) // 2, (width - w) // 2
    frames = np.zeros((len(images), height, width))
    for i, image in enumerate(images):
        frames[i, top:top + h, left:left + w] = resize(image, (h, w), order=1, anti_aliasing=False)
    frames = frames.reshape(len(images), -1)
    std = frames.std(axis=1, keepdims=True)
    return ((frames - frames.mean(axis=1, keepdims=True)) / np.where(std > 0, std, 1)).astype(np.float32)


def nback_sequences(frames, n_back: int, n_lead: int = 4, seed: int = 0) -> np.ndarray:
    """(N, P) digit frames -> (N, n_lead + 1 + n_back, P) trials with fresh
    N(0, 1) noise (``numpy.random.default_rng(seed)``) before and after the digit."""
    frames = np.asarray(frames, np.float32)
    rng = np.random.default_rng(seed)
    seq = rng.standard_normal((len(frames), n_lead + 1 + n_back, frames.shape[1])).astype(np.float32)
    seq[:, n_lead] = frames
    return seq


@torch.no_grad()
def final_hidden_state(model: ProbeableModel, sequences, batch_size: int = 100) -> np.ndarray:
    """Hidden units at the last step: (N, T, P) -> (N, n_hidden)."""
    sequences = torch.as_tensor(np.asarray(sequences, np.float32))
    return torch.cat([model.hidden_activity(chunk.to(model.device))[:, -1].cpu()
                      for chunk in torch.split(sequences, batch_size)]).numpy()


def readout_accuracy(features, labels, train_fraction: float = 0.8, epochs: int = 100, lr: float = 1e-4,
                     batch_size: int = 100, seed: int = 0) -> dict:
    """Train a linear softmax readout (Adam, cross-entropy; the original's
    Linear(n_hidden -> 10), lr 1e-4, batches of 100) on the first
    ``train_fraction`` of a seeded permutation of the trials and score the rest
    after the last epoch (the original read the accuracy before its last epoch).

    Returns accuracy, n_correct, n_test.
    """
    features = torch.as_tensor(np.asarray(features, np.float32))
    labels = torch.as_tensor(np.asarray(labels, np.int64))
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=generator)
    n_train = int(train_fraction * len(labels))
    if n_train < 1 or n_train == len(labels):
        raise AnalysisError(f"{len(labels)} trials cannot be split {train_fraction:.0%}/rest: use more trials")
    train, test = order[:n_train], order[n_train:]
    readout = nn.Linear(features.shape[1], int(labels.max()) + 1)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        readout.reset_parameters()
    optimizer = torch.optim.Adam(readout.parameters(), lr=lr)
    for _ in range(epochs):
        for batch in torch.split(train[torch.randperm(n_train, generator=generator)], batch_size):
            optimizer.zero_grad()
            nn.functional.cross_entropy(readout(features[batch]), labels[batch]).backward()
            optimizer.step()
    with torch.no_grad():
        n_correct = int((readout(features[test]).argmax(1) == labels[test]).sum())
    return dict(accuracy=n_correct / len(test), n_correct=n_correct, n_test=len(test))


def nback_accuracy(model: ProbeableModel, frames, labels, n_back: int, seed: int = 0, **readout_kwargs) -> dict:
    """One point of the n-back curve: sequences, final hidden states, readout."""
    features = final_hidden_state(model, nback_sequences(frames, n_back, seed=seed))
    return readout_accuracy(features, labels, seed=seed, **readout_kwargs)


def feedback_memory(model: ProbeableModel, frames, labels, n_back: int, seed: int = 0, **readout_kwargs) -> dict:
    """One n-back point of the full model and of its copy with every feedback
    block zeroed (``models.ablation.without_feedback``), on the same trials and
    readout split: ``{"full": nback_accuracy, "no_feedback": nback_accuracy, "z", "p"}``
    with the pooled two-proportion z-test of the two accuracies
    (``stats.two_proportion_ztest``). The original's trained TP_full: 31.4% vs
    21.9% at 5-back on MNIST (its nback notebook's figure)."""
    scores = {name: nback_accuracy(variant, frames, labels, n_back, seed=seed, **readout_kwargs)
              for name, variant in (("full", model), ("no_feedback", without_feedback(model)))}
    z, p = two_proportion_ztest(scores["full"]["n_correct"], scores["full"]["n_test"],
                                scores["no_feedback"]["n_correct"], scores["no_feedback"]["n_test"])
    return dict(scores, z=z, p=p)
