"""Data-side one-line errors: a folder given as a dataset, prepare_dataset's output
a folder, under a file, read-only or on a full disk, and process_sessions --out a file."""

import json
from pathlib import Path

import numpy as np
import pytest

from data import DatasetError, prepare_dataset
from data.dataset import load_clips
from neural_fitting.process_sessions import process_sessions
from tests.data_helpers import panning_video
from utils import InputError

SMALL = ["--frame-shape", "8", "8", "--downsample", "2", "--spatial-stride", "16", "--temporal-stride", "10"]


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    panning_video(folder / "pan.mp4")
    return folder


def test_a_folder_given_as_the_dataset_is_called_a_folder(tmp_path):
    with pytest.raises(DatasetError, match="is a folder: give the path of an"):
        load_clips(tmp_path, (4, 4), 6)


def test_prepare_dataset_output_that_is_a_folder_or_under_a_file_is_refused_at_once(video_dir, tmp_path,
                                                                                   monkeypatch):
    decoded = []
    monkeypatch.setattr(prepare_dataset, "clips_of_video", lambda *a, **k: decoded.append(a) or np.zeros(0))
    folder = tmp_path / "clips.npy"
    folder.mkdir()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for output, match in ((folder, "is a folder"), (blocker / "clips.npy", "lies under the file")):
        with pytest.raises(InputError, match=match):
            prepare_dataset.main([str(video_dir), str(output), *SMALL])
    assert not decoded and blocker.read_text() == "x" and not list(folder.iterdir())


def test_prepare_dataset_on_a_read_only_file_system_is_refused_at_once(video_dir, tmpfs):
    read_only = tmpfs("size=1m,ro")
    with pytest.raises(InputError, match="read-only or not yours"):
        prepare_dataset.main([str(video_dir), str(read_only / "clips.npy"), *SMALL])


def test_prepare_dataset_on_a_full_disk_is_one_line_and_leaves_nothing(video_dir, tmpfs):
    full = tmpfs("size=64k")  # the clips need ~0.4 MiB
    with pytest.raises(InputError, match=r"cannot write .*clips.npy \(.*, 0.\d MiB needed\): free space"):
        prepare_dataset.main([str(video_dir), str(full / "clips.npy"), *SMALL])
    assert not list(full.iterdir())


def test_process_sessions_out_that_is_a_file_is_refused_before_processing(tmp_path, monkeypatch):
    import neural_fitting.process_sessions as ps

    processed = []
    monkeypatch.setattr(ps, "process_session", lambda *a, **k: processed.append(a))
    blocker = tmp_path / "out"
    blocker.write_text("x")
    for out in (blocker, blocker / "sub"):
        with pytest.raises(ValueError, match=r"cannot write --out .* is a file: give a writable folder"):
            process_sessions([tmp_path / "s.nwb"], ["VISp"], out)
    assert not processed and blocker.read_text() == "x"


def test_prepare_dataset_estimates_the_output_first_and_refuses_what_will_not_fit(video_dir, tmp_path, monkeypatch):
    from data import pipeline

    kept = prepare_dataset.clips_of_video(video_dir / "pan.mp4", (8, 8), None, 2, 16, 10, 25.0)
    bound = prepare_dataset.estimated_clip_bytes(video_dir / "pan.mp4", (8, 8), None, 2, 16, 10)
    # 120 frames: windows at 0, 10, ..., 70 (8) x 3 x 4 patch corners = 96 clips of 50 x 64 float32
    assert bound == 96 * 50 * 64 * 4 >= kept.nbytes > bound / 2
    monkeypatch.setattr(prepare_dataset, "available_memory", lambda: bound)  # half of it is not enough
    decoded = []
    monkeypatch.setattr(pipeline, "iter_gray_blocks", lambda *a, **k: decoded.append(a) or iter(()))
    with pytest.raises(InputError, match="could take up to .* GiB in memory .* larger --spatial-stride"):
        prepare_dataset.main([str(video_dir), str(tmp_path / "clips.npy"), *SMALL])
    assert not decoded and not (tmp_path / "clips.npy").exists()


# ---------------------------------------------------------------------------------------------
# The default dataset's cache and system footage (issue 28, items 10 and 14)
# ---------------------------------------------------------------------------------------------
def test_unreadable_system_footage_is_skipped_with_a_warning_and_left_out_of_the_key(tmp_path, monkeypatch,
                                                                                    capsys):
    import skimage.io

    from data import default_dataset

    images = tmp_path / "wallpapers" / "Forest" / "contents" / "images"
    images.mkdir(parents=True)
    skimage.io.imsave(images / "good.png", (default_dataset._photo("grass")[:200, :200] * 255).astype(np.uint8))
    (images / "garbage.png").write_bytes(b"not an image")
    (images / "empty.png").write_bytes(b"")
    (images / "dangling.png").symlink_to(tmp_path / "gone.png")
    videos = tmp_path / "opencv"
    videos.mkdir()
    (videos / "broken.avi").write_bytes(b"RIFF not a video")
    monkeypatch.setattr(default_dataset, "SYSTEM_FOOTAGE", dict(
        video=(str(videos / "*.avi"),), photo=(str(images / "*.png"),)))
    found = default_dataset.find_system_footage()
    assert [Path(p).name for p, _ in found] == ["good.png"]
    warnings = capsys.readouterr().err.strip().splitlines()
    assert len(warnings) == 4 and all(line.startswith("warning: skipping system footage ") for line in warnings)
    for name in ("garbage.png", "empty.png", "dangling.png", "broken.avi"):
        assert any(name in line for line in warnings), name
    for key, value in dict(videos=(), images=("camera",), sweeps_per_image=40).items():
        monkeypatch.setitem(default_dataset.DEFAULTS, key, value)
    default_dataset.main(["--frame-shape", "12", "12", "--system-footage", "--cache-dir", str(tmp_path / "cache")])
    (sidecar,) = (tmp_path / "cache").glob("*.json")
    assert list(json.loads(sidecar.read_text())["counts"]) == ["camera", str(images / "good.png")]


def test_a_cache_dir_that_cannot_be_written_is_one_line_before_any_build(tmp_path, tmpfs, monkeypatch):
    from data import default_dataset

    built = []
    monkeypatch.setattr(default_dataset, "build_clips", lambda config: built.append(config))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for cache_dir in (tmpfs("size=1m,ro"), blocker / "cache"):
        with pytest.raises(InputError, match=rf"cannot write the dataset cache in {cache_dir} \(.*\): "
                                                 "make it writable or give another --cache-dir"):
            default_dataset.main(["--frame-shape", "12", "12", "--cache-dir", str(cache_dir)])
    assert not built and blocker.read_text() == "x"


def test_a_truncated_clips_file_says_truncated_and_how_to_rebuild_it(tmp_path):
    from data import default_dataset

    plain = tmp_path / "clips.npy"
    np.save(plain, np.zeros((44, 12, 16), np.float32))
    size = plain.stat().st_size
    with open(plain, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(DatasetError, match=rf"clips.npy is truncated: it holds {size // 2:,} of the {size:,} bytes "
                                             "its header declares .*: copy it again, or re-create it with np.save"):
        load_clips(plain, (4, 4), 6)
    # a cached default dataset names the command that rebuilds it
    config = default_dataset._config((12, 12), {"images": default_dataset.IMAGES + tuple(default_dataset.EXTRA_IMAGES)})
    cached = tmp_path / "cache" / "natural_12x12_step1_v1_0123456789.npy"
    cached.parent.mkdir()
    np.save(cached, np.zeros((44, 50, 144), np.float16))
    cached.with_suffix(".json").write_text(json.dumps({"config": config, "version": default_dataset.VERSION}))
    with open(cached, "r+b") as f:
        f.truncate(1000)
    with pytest.raises(DatasetError, match=rf"is truncated: .*: rebuild it with python -m data.default_dataset "
                                             rf"--frame-shape 12 12 --frame-step 1 --more-photos --cache-dir {cached.parent} --force"):
        load_clips(cached, (12, 12), 6)
