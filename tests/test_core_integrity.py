"""Corrupt weights never pass silently: loaded tensors must be finite, and each shipped
pretrained weights file must match the SHA-256 in its folder's SHA256SUMS manifest."""
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from models.checkpoint import CheckpointError
from models.io import load_model
from models.checkpoint import CHECKSUMS_FILE
from training.run_dir import RunDir
from test_core_reliability import MODEL_CONFIG, tiny_tensors

ROOT = Path(__file__).resolve().parents[1]
PRETRAINED = ROOT / "model_checkpoints" / "pretrained"
SHIPPED = sorted(p for p in PRETRAINED.iterdir() if p.is_dir() and RunDir(p).weights_by_epoch())


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_weights_with_a_non_finite_value_are_refused_naming_the_file_and_tensor(tmp_path, value):
    tensors = tiny_tensors()
    tensors["weight_hh"][1, 2] = value
    path = tmp_path / "2-epochs_model.safetensors"
    save_file(tensors, str(path), metadata={"config": json.dumps(MODEL_CONFIG)})
    with pytest.raises(CheckpointError, match=rf"{path}: tensor 'weight_hh' holds 1 non-finite value \(NaN or inf\)"):
        load_model(path)


def test_every_shipped_pretrained_model_lists_each_weights_file_in_its_manifest():
    assert len(SHIPPED) >= 3  # the three htp_* models and the zoo
    for folder in SHIPPED:
        manifest = (folder / CHECKSUMS_FILE).read_text().splitlines()
        listed = dict(reversed(line.split("  ", 1)) for line in manifest)
        weights = {p.name: p for p in RunDir(folder).weights_by_epoch().values()}
        assert sorted(listed) == sorted(weights), folder  # every weights file, nothing else
        for name, digest in listed.items():
            assert hashlib.sha256(weights[name].read_bytes()).hexdigest() == digest, weights[name]


def test_writing_the_manifest_gives_the_shipped_one(tmp_path):
    """The manifest is made by RunDir.write_checksums, in sha256sum's format (`sha256sum -c` reads it)."""
    for folder in SHIPPED:
        copy = tmp_path / folder.name
        copy.mkdir()
        for weights in RunDir(folder).weights_by_epoch().values():
            shutil.copy(weights, copy / weights.name)
        RunDir(copy).write_checksums()
        assert (copy / CHECKSUMS_FILE).read_bytes() == (folder / CHECKSUMS_FILE).read_bytes()


def flipped_copy(tmp_path, bit=29):
    """A copy of the smallest pretrained folder whose weights have one exponent bit flipped in 1000 floats."""
    source = min(SHIPPED, key=lambda p: RunDir(p).latest_weights().stat().st_size)
    copy = Path(shutil.copytree(source, tmp_path / source.name, ignore=shutil.ignore_patterns("report", "*.png")))
    weights = RunDir(copy).latest_weights()
    header = 8 + int.from_bytes(weights.read_bytes()[:8], "little")
    data = bytearray(weights.read_bytes())
    values = np.frombuffer(data, dtype=np.uint32, count=(len(data) - header) // 4 - 1, offset=header)
    values[np.linspace(0, len(values) - 1, 1000).astype(int)] ^= np.uint32(1 << bit)
    weights.write_bytes(bytes(data))
    return copy, weights


def test_a_pretrained_copy_with_flipped_bits_is_refused_on_load(tmp_path):
    copy, weights = flipped_copy(tmp_path)
    assert all(torch.isfinite(t).all() for t in load_file(str(weights)).values())  # finite: only the hash tells
    with pytest.raises(CheckpointError, match=rf"{weights} does not match its SHA-256 in {copy / CHECKSUMS_FILE}"):
        load_model(copy)
    with pytest.raises(CheckpointError, match="does not match its SHA-256"):
        load_model(weights)


def test_the_intact_pretrained_models_load():
    for folder in SHIPPED:
        model, config, _ = load_model(folder)
        assert config["checkpoint_epoch"] == max(RunDir(folder).weights_by_epoch())
