"""data.prepare_dataset: a user's video folder -> (N, 50, P) clips, end to end and on bad input."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data import prepare_dataset
from data.dataset import load_clips
from tests.data_helpers import panning_video
from utils import InputError

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    panning_video(folder / "pan.mp4")
    (folder / "broken.webm").write_bytes(b"this is not a video")
    (folder / "notes.txt").write_text("ignored: not a video suffix")
    return folder


def run_script(*args, module=True):
    entry = ["-m", "data.prepare_dataset"] if module else [str(REPO / "data" / "prepare_dataset.py")]
    return subprocess.run([sys.executable, *entry, *map(str, args)], cwd=REPO, capture_output=True, text=True)


def test_script_writes_zscored_clips_and_skips_undecodable(video_dir, tmp_path):
    output = tmp_path / "out" / "clips.npy"
    result = run_script(video_dir, output, "--frame-shape", 8, 8, "--downsample", 2,
                        "--spatial-stride", 16, "--temporal-stride", 10)
    assert result.returncode == 0, result.stderr
    assert "warning: skipping broken.webm" in result.stderr
    # 48x64 frames: 3 x 4 patch corners, windows start at 0, 10, ..., 70: 96 clips, of which
    # the bottom quarter by sd and by motion (24 each, maybe the same ones) are dropped
    clips = load_clips(output, (8, 8), min_frames=50).astype(np.float32)
    assert clips.shape[1:] == (50, 64) and 48 <= len(clips) <= 72
    np.testing.assert_allclose(clips.mean(axis=(1, 2)), 0, atol=1e-2)
    np.testing.assert_allclose(clips.std(axis=(1, 2)), 1, atol=1e-2)
    assert f"wrote {output}" in result.stdout
    assert [p.name for p in output.parent.iterdir()] == ["clips.npy"]  # no temporary left


def test_running_the_file_instead_of_the_module_is_a_one_line_error(video_dir, tmp_path):
    result = run_script(video_dir, tmp_path / "clips.npy", module=False)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "python -m data.prepare_dataset" in result.stderr and not (tmp_path / "clips.npy").exists()


def test_missing_folder_is_a_one_line_error_with_exit_code_2(tmp_path):
    output = tmp_path / "clips.npy"
    result = run_script(tmp_path / "nowhere", output)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: video folder")
    assert "Traceback" not in result.stderr and not output.exists()


@pytest.mark.parametrize("contents, args, expected", [
    ({}, [], "no videos"),
    ({"a.mp4": b"garbage"}, [], "none of the videos"),
    (None, ["--frame-step", "0"], "--frame-step must be >= 1"),
    (None, ["--frame-shape", "200", "200"], "no clip could be cut"),
])
def test_bad_input_raises_and_writes_nothing(video_dir, tmp_path, contents, args, expected):
    folder = video_dir
    if contents is not None:
        folder = tmp_path / "videos"
        folder.mkdir()
        for name, payload in contents.items():
            (folder / name).write_bytes(payload)
    output = tmp_path / "clips.npy"
    with pytest.raises(InputError, match=expected):
        prepare_dataset.main([str(folder), str(output), "--downsample", "2", *args])
    assert not output.exists()


def test_output_must_be_npy(video_dir, tmp_path):
    with pytest.raises(InputError, match="must end in .npy"):
        prepare_dataset.main([str(video_dir), str(tmp_path / "clips.h5")])


def test_decoding_in_blocks_gives_the_same_clips(video_dir):
    args = dict(frame_shape=(8, 8), frame_step=1, downsample=2, spatial_stride=16, temporal_stride=10,
                reject_percentile=0)
    whole = prepare_dataset.clips_of_video(video_dir / "pan.mp4", **args)
    blocks = prepare_dataset.clips_of_video(video_dir / "pan.mp4", **args, block_bytes=1)  # one window a block
    assert whole.shape == (96, 50, 64)
    np.testing.assert_array_equal(np.sort(blocks.reshape(96, -1), axis=0), np.sort(whole.reshape(96, -1), axis=0))


def test_default_frame_step_targets_30_fps(tmp_path):
    panning_video(tmp_path / "fast.mp4", n_frames=120, fps=60)
    args = dict(frame_shape=(8, 8), downsample=2, spatial_stride=16, temporal_stride=10, reject_percentile=0)
    auto = prepare_dataset.clips_of_video(tmp_path / "fast.mp4", frame_step=None, **args)
    every = prepare_dataset.clips_of_video(tmp_path / "fast.mp4", frame_step=1, **args)
    assert len(auto) == 12 * 2 and len(every) == 12 * 8  # spans 99 vs 50 frames; strides 20 vs 10
