"""data.default_dataset on a tiny configuration: deterministic, cached, frame_step raises copy-last MSE."""
import json
from pathlib import Path

import numpy as np
import pytest

from data import DatasetError, default_dataset, pipeline
from data.dataset import load_clips


TINY = dict(videos=["carphone"], images=["camera"], sweeps_per_image=40)


def test_build_is_deterministic_cached_and_described(tmp_path):
    first = default_dataset.default_dataset_path((20, 20), cache_dir=tmp_path / "a", **TINY)
    second = default_dataset.default_dataset_path((20, 20), cache_dir=tmp_path / "b", **TINY)
    assert first.name == second.name and first.name.startswith("natural_20x20_step1_v")
    assert first.read_bytes() == second.read_bytes()
    built_at = first.stat().st_mtime_ns
    assert default_dataset.default_dataset_path((20, 20), cache_dir=tmp_path / "a", **TINY) == first
    assert first.stat().st_mtime_ns == built_at  # served from the cache
    clips = load_clips(first, (20, 20), min_frames=50)
    stats = json.loads(first.with_suffix(".json").read_text())
    assert clips.dtype == np.float16 and stats["shape"] == list(clips.shape)
    assert sum(stats["counts"].values()) == len(clips) and stats["counts"]["camera"] > 20
    assert stats["copy_last_mse"] == pytest.approx(pipeline.copy_last_mse(clips))
    np.testing.assert_allclose(clips.astype(np.float32).std(axis=(1, 2)), 1, atol=1e-2)
    assert sorted(p.name for p in first.parent.iterdir()) == sorted([first.name, first.with_suffix(".json").name])


def test_larger_frame_step_makes_copy_last_worse_and_wide_frames_work(tmp_path):
    mse = {}
    for step in (1, 2):
        path = default_dataset.default_dataset_path((20, 40), cache_dir=tmp_path, frame_step=step, **TINY)
        clips = load_clips(path, (20, 40), min_frames=50)
        assert clips.shape[1:] == (50, 800)
        mse[step] = pipeline.copy_last_mse(clips)
    assert mse[2] > 1.3 * mse[1]


@pytest.mark.parametrize("params, expected", [
    (dict(colour="red"), "unknown default-dataset parameter"),
    (dict(frame_step=0), "frame_step 0 must be >= 1"),
    (dict(videos=["bunny"]), "unknown default video"),
    (dict(images=["text"]), "unknown default image"),
    (dict(dtype="int8"), "dtype 'int8'"),
])
def test_bad_parameters_are_user_errors(tmp_path, params, expected):
    with pytest.raises(DatasetError, match=expected):
        default_dataset.default_dataset_path((20, 20), cache_dir=tmp_path, **{**TINY, **params})
    assert not any(tmp_path.iterdir())


def test_the_extra_photographs_load_from_their_packages_and_add_clips(tmp_path):
    for name in default_dataset.EXTRA_IMAGES:
        photo = default_dataset._photo(name)
        assert photo.ndim == 2 and photo.dtype == np.float32 and min(photo.shape) >= 400
        assert 0 <= photo.min() < 0.1 and 0.85 < photo.max() <= 1 and photo.std() > 0.1  # a real, full-range photo
    base = default_dataset.default_dataset_path((12, 12), cache_dir=tmp_path, **TINY)
    more = default_dataset.default_dataset_path((12, 12), cache_dir=tmp_path, **{**TINY, "images": ["camera", "china"]})
    assert base != more  # another cache key, so the default set's bytes are untouched
    counts = json.loads(more.with_suffix(".json").read_text())["counts"]
    assert counts["china"] > 20 and counts["camera"] == json.loads(base.with_suffix(".json").read_text())["counts"]["camera"]


def test_system_footage_is_used_when_asked_for_and_recorded_in_the_sidecar(tmp_path, monkeypatch):
    import av
    import skimage.io

    wallpapers = tmp_path / "wallpapers" / "Forest" / "contents" / "images"
    wallpapers.mkdir(parents=True)
    skimage.io.imsave(wallpapers / "forest.png", (default_dataset._photo("grass") * 255).astype(np.uint8))
    videos = tmp_path / "opencv"
    videos.mkdir()
    with av.open(str(videos / "drift.avi"), "w") as container:  # a photo panned 1 px per frame
        stream = container.add_stream("mjpeg", rate=25)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuvj420p"
        image = (default_dataset._photo("gravel")[:120] * 255).astype(np.uint8)
        for t in range(120):
            frame = av.VideoFrame.from_ndarray(np.stack([image[:, t:t + 160]] * 3, axis=-1), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    monkeypatch.setattr(default_dataset, "SYSTEM_FOOTAGE", dict(
        video=(str(videos / "*.avi"),), photo=(str(tmp_path / "wallpapers/*/contents/images/*.png"),)))
    found = default_dataset.find_system_footage()
    assert [Path(p).name for p, _ in found] == ["drift.avi", "forest.png"]
    path = default_dataset.default_dataset_path((12, 12), cache_dir=tmp_path / "cache", **TINY, system_footage=found)
    stats = json.loads(path.with_suffix(".json").read_text())
    assert stats["config"]["system_footage"] == [[p, size] for p, size in found]
    assert stats["counts"][found[0][0]] > 5 and stats["counts"][found[1][0]] > 20
    plain = default_dataset.default_dataset_path((12, 12), cache_dir=tmp_path / "cache", **TINY)
    assert plain != path and "system_footage" not in json.loads(plain.with_suffix(".json").read_text())["config"]


@pytest.mark.parametrize("present", [False, True])
def test_system_footage_flag_says_what_it_found_and_that_nothing_was(tmp_path, monkeypatch, capsys, present):
    wallpapers = tmp_path / "wallpapers"
    wallpapers.mkdir()
    if present:
        import skimage.io  # a readable photo: find_system_footage skips files that do not decode

        skimage.io.imsave(wallpapers / "forest.jpg", (default_dataset._photo("grass")[:64, :64] * 255).astype(np.uint8))
    monkeypatch.setattr(default_dataset, "SYSTEM_FOOTAGE", dict(video=(str(tmp_path / "opencv/*.avi"),),
                                                                photo=(str(wallpapers / "*.jpg"),)))
    real = default_dataset.default_dataset_path
    asked = []

    def tiny_build(frame_shape, **options):
        asked.append(options.get("system_footage"))
        return real((12, 12), cache_dir=tmp_path / "cache", **TINY)
    monkeypatch.setattr(default_dataset, "default_dataset_path", tiny_build)
    default_dataset.main(["--system-footage"])
    out = capsys.readouterr().out
    if present:
        assert f"system footage 1 file found (0 videos, 1 photo): {wallpapers / 'forest.jpg'}" in out
        assert [path for path, _ in asked[0]] == [str(wallpapers / "forest.jpg")]
    else:
        assert "system footage none found on this machine (looked for " in out and "the plain dataset" in out
        assert asked == [[]]
