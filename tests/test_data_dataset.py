"""data.dataset: loading checks, the original's split, batches from a memmap or a resident copy."""
import pickle

import numpy as np
import pytest
import torch

from data import DatasetError, dataset
from data.dataset import ClipSource, load_clips, split_indices


@pytest.mark.parametrize("n, val", [
    (44, [0, 14, 28, 43]),                       # linspace(0, 43, 4) = 0, 14.33, 28.67, 43
    (12, [0, 11]),                               # train_size int(10.9) = 10
    (23, [0, 11, 22]),                           # train_size int(20.9) = 20
    (50, [0, 12, 24, 36, 49]),                   # 0, 12.25, 24.5, 36.75, 49 truncated
    (100, [0, 11, 22, 33, 44, 55, 66, 77, 88, 99]),
    (1, [0]),
])
def test_split_indices_match_hand_computed(n, val):
    train, got_val = split_indices(n)
    assert got_val.tolist() == val
    assert train.tolist() == sorted(set(range(n)) - set(val))


def test_split_sizes_and_disjointness_over_many_n():
    for n in range(1, 500):
        train, val = split_indices(n)
        assert len(train) == int(40 * n / 44) and len(val) == n - len(train)
        assert len(np.union1d(train, val)) == n


def _save(tmp_path, array, name="clips.npy"):
    path = tmp_path / name
    np.save(path, array)
    return path


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_load_clips_memmaps_both_float_dtypes(tmp_path, dtype):
    data = np.random.default_rng(0).normal(size=(7, 9, 12)).astype(dtype)
    clips = load_clips(_save(tmp_path, data), (3, 4), min_frames=6)
    assert isinstance(clips, np.memmap) and clips.dtype == dtype
    np.testing.assert_array_equal(clips, data)


def _write_bytes(tmp_path, payload):
    path = tmp_path / "clips.npy"
    path.write_bytes(payload)
    return path


def test_load_clips_rejects_bad_files(tmp_path):
    good = np.zeros((3, 9, 4), np.float32)
    cases = {
        "does not exist": tmp_path / "missing.npy",
        "not a .npy file": _write_bytes(tmp_path, b"just some text"),
    }
    for expected, path in cases.items():
        with pytest.raises(DatasetError, match=expected):
            load_clips(path, (2, 2), 2)
    raw = _save(tmp_path, good).read_bytes()
    for payload, expected in [(raw[:-20], "truncated"), (raw[:40], "truncated"),
                              (pickle.dumps(good), "not a .npy file")]:
        with pytest.raises(DatasetError, match=expected):
            load_clips(_write_bytes(tmp_path, payload), (2, 2), 2)
    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DatasetError, match="object"):
        load_clips(objects, (2, 2), 2)
    archive = tmp_path / "archive.npy"
    with open(archive, "wb") as handle:
        np.savez(handle, clips=good)
    with pytest.raises(DatasetError, match="npz"):
        load_clips(archive, (2, 2), 2)


@pytest.mark.parametrize("array, frame_shape, min_frames, expected", [
    (np.zeros((3, 9, 4), np.float64), (2, 2), 2, "dtype float64"),
    (np.zeros((3, 9, 4), np.int16), (2, 2), 2, "dtype int16"),
    (np.zeros((9, 4), np.float32), (2, 2), 2, "must be 3-D"),
    (np.zeros((3, 9, 4), np.float32), (20, 20), 2, "frame shape 20x20 needs 400.*--frame-shape"),
    (np.zeros((3, 5, 4), np.float32), (2, 2), 6, "5-frame clips but at least 6.*warm-up"),
    (np.zeros((0, 9, 4), np.float32), (2, 2), 2, "no clips"),
])
def test_load_clips_rejects_bad_contents(tmp_path, array, frame_shape, min_frames, expected):
    with pytest.raises(DatasetError, match=expected) as info:
        load_clips(_save(tmp_path, array), frame_shape, min_frames)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_load_clips_finds_non_finite_values_chunk_by_chunk(tmp_path, monkeypatch, bad):
    data = np.zeros((40, 5, 4), np.float16)
    data[33, 2, 1] = bad
    monkeypatch.setattr(dataset, "_CHUNK_BYTES", 5 * 4 * 2 * 3)  # 3 clips per chunk
    with pytest.raises(DatasetError, match="NaN or inf .first in clip 33"):
        load_clips(_save(tmp_path, data), (2, 2), 2)


@pytest.mark.parametrize("hold_on", [None, "cpu"])
def test_clip_source_batches_selected_rows_in_order(tmp_path, monkeypatch, hold_on):
    monkeypatch.setattr(dataset, "_CHUNK_BYTES", 3 * 4 * 2 * 3)  # resident copy filled 3 clips at a time
    data = np.arange(10 * 3 * 4, dtype=np.float16).reshape(10, 3, 4)
    clips = load_clips(_save(tmp_path, data), (2, 2), 2)
    rows = np.array([1, 4, 5, 8])
    source = ClipSource(clips, rows, hold_on=hold_on)
    batch = source.batch([3, 0, 2, 0], device="cpu")
    assert len(source) == 4 and source.nbytes == 4 * 3 * 4 * 2
    assert batch.dtype == torch.float32 and batch.shape == (4, 3, 4)
    np.testing.assert_array_equal(batch.numpy(), data[[8, 1, 5, 1]].astype(np.float32))


def test_clip_source_defaults_to_all_rows_and_takes_tensor_positions(tmp_path):
    data = np.random.default_rng(1).normal(size=(6, 3, 4)).astype(np.float32)
    source = ClipSource(load_clips(_save(tmp_path, data), (2, 2), 2))
    positions = torch.randperm(6, generator=torch.Generator().manual_seed(0))[:4]
    np.testing.assert_array_equal(source.batch(positions).numpy(), data[positions.numpy()])


def test_fits_on_compares_with_memory():
    assert dataset.fits_on("cpu", 1024)
    assert not dataset.fits_on("cpu", 2**60)
