"""What the training tests share: the training step, a tiny clip file, and the fixtures
of the modules that train through the loop (import them by name: ``clips``,
``no_loss_curves``)."""
from pathlib import Path

import numpy as np
import pytest

from training.step import train_step
from training.config import TrainConfig


def noiseless_step(model, opt, x):
    """train.py's step (training.step.train_step) on the clean batch: loss, backward,
    clip by value (TrainConfig's grad_clip, the paper's 0.25), mask the gradients,
    Adam at the optimizer's own learning rate. Returns the detached loss."""
    cfg = TrainConfig(lr=opt.param_groups[0]["lr"])
    return train_step(model, opt, x, None, cfg, global_step=0)[0]


def save_tiny_clips(folder) -> Path:
    """A (44 clips, 12 frames, 16 pixels) float32 .npy of seeded Gaussian noise in
    ``folder``: the 4x4-frame dataset of the training tests."""
    path = Path(folder) / "clips.npy"
    np.save(path, np.random.default_rng(0).standard_normal((44, 12, 16)).astype(np.float32))
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """One tiny clip file (``save_tiny_clips``) for every run of a test module."""
    return save_tiny_clips(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module", autouse=True)
def no_loss_curves():
    """The loss curve's PNG (~1 s per checkpoint, 10 s on a loaded machine) is no part of what
    the loop tests check; subprocesses still draw theirs."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("training.loop.save_loss_curve", lambda run_dir, history: None)
        yield
