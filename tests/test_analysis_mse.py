"""Known-answer tests for analysis.mse."""
import numpy as np
import pytest
import torch

from analysis import mse
from data import DatasetError
from tests.analysis_helpers import CopyLastModel
from virtual_physiology import ProbeError


def test_next_frame_errors_are_aligned_with_copy_last(tmp_path):
    rng = np.random.default_rng(0)
    clips = rng.normal(size=(5, 12, 16)).astype(np.float32)
    errors = mse.next_frame_errors(CopyLastModel(), clips, warmup=4, batch_size=2)
    np.testing.assert_allclose(errors["model"], errors["copy_last"], rtol=1e-6)
    expected = ((clips[:, 4:11] - clips[:, 5:12]) ** 2).mean(axis=(1, 2))
    np.testing.assert_allclose(errors["copy_last"], expected, rtol=1e-6)
    with pytest.raises(ProbeError):
        mse.next_frame_errors(CopyLastModel(), clips[:, :5], warmup=4)


def test_split_clips_uses_the_original_split(tmp_path):
    path = tmp_path / "clips.npy"
    np.save(path, np.arange(44, dtype=np.float32)[:, None, None] * np.ones((44, 6, 16), np.float32))
    validation = mse.split_clips(path, (4, 4), "validation")
    np.testing.assert_array_equal(validation[:, 0, 0], [0, 14, 28, 43])
    assert mse.split_clips(path, (4, 4), "train", max_clips=3)[:, 0, 0].tolist() == [1, 2, 3]
    with pytest.raises(DatasetError):
        mse.split_clips(path, (5, 5), "full")


@pytest.mark.parametrize("angle", [0.0, 90.0, 135.0, 250.0])
def test_moving_bar_moves_along_its_motion_vector(angle):
    clip, motion = mse.moving_bar(angle, 9, frame_shape=(20, 20), whiten=False)
    assert clip.shape == (9, 400) and abs(clip.mean()) < 1e-5
    com = mse.centre_of_mass(clip - clip.min(), (20, 20))
    step = (com[-1] - com[0]) / 8
    assert step @ motion == pytest.approx(1.0, abs=0.15)
    if angle % 90 == 0:  # an oblique bar's visible segment also slides along the bar, inside the crop
        assert abs(step @ np.array([-motion[1], motion[0]])) < 0.15


def test_centre_of_mass_and_scores():
    frame = np.zeros((1, 1, 12))
    frame[0, 0, 2 * 4 + 3] = 1.0  # row 2, column 3 on a 3x4 frame
    np.testing.assert_allclose(mse.centre_of_mass(frame, (3, 4))[0, 0], [3, 2])
    shifted = np.zeros_like(frame)
    shifted[0, 0, 2 * 4 + 1] = 1.0
    scores = mse.rollout_scores(shifted, frame, np.array([[1.0, 0.0]]), (3, 4))
    assert scores["com_error"][0, 0] == pytest.approx(2.0)
    assert scores["mse"][0, 0] == pytest.approx(2 / 12)


def test_rollout_feeds_back_predictions():
    model = CopyLastModel(frame_shape=(20, 20))
    result = mse.bar_rollout_benchmark(model, n_angles=4, n_context=6, n_predict=3)
    # a copy-last model rolls out to copies of the last seen frame: identical to the baseline
    np.testing.assert_allclose(result["model"]["mse"], result["copy_last"]["mse"], rtol=1e-5)
    assert result["model"]["mse"].shape == (4, 3)
    # the bar keeps moving, so the copy error grows with the horizon
    assert np.all(np.diff(result["copy_last"]["com_error"].mean(0)) > 0)
    pred = mse.rollout(model, torch.zeros(2, 5, 400).numpy() + 1.0, 3, 2)
    assert pred.shape == (2, 2, 400) and np.all(pred == 1.0)
