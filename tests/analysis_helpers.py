"""Tiny models and a tiny checkpoint + artefact shared by the analysis tests."""
import atexit
import dataclasses
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models import build_model
from models.base import ProbeableModel
from models.io import save_model
from train import TrainConfig
from virtual_physiology.pipeline import Options, Pipeline


class CopyLastModel(ProbeableModel):
    """Predicts that the next frame equals the current one; hidden = the frame's first pixels."""

    temporal_offset = 1

    def __init__(self, frame_shape=(4, 4), group_sizes=(3, 2)):
        super().__init__()
        self.frame_shape, self.group_sizes = tuple(frame_shape), tuple(group_sizes)
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return x.clone(), x[..., : self.n_hidden].relu()


@functools.cache
def tiny_run() -> dict:
    """A tiny trained-shape model saved as a run folder, its virtual-physiology
    artefact (the real pipeline at tiny settings), a second checkpoint that does
    not match it and a small clips file; built once per test session."""
    root = Path(tempfile.mkdtemp(prefix="analysis_tests_"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    torch.manual_seed(0)
    config = dataclasses.asdict(TrainConfig(frame_shape=(8, 8), hidden_units=(12, 12, 12)))
    model = build_model(config)
    with torch.no_grad():  # random recurrent weights (spectral radius < 1) so every group responds
        model.weight_hh.copy_(torch.randn_like(model.weight_hh) * 0.02)
        model.weight_ih.mul_(4)
        model.project_weights_()
    save_model(root / "run", model, config, epoch=1)
    other = build_model(config)
    save_model(root / "other", other, config, epoch=1)
    artefact = root / "run" / "tiny.vphys.h5"
    options = Options(rwa_clips=50, rwa_chunk=50, gabor_starts=1, gabor_steps=20, progress=False)
    Pipeline(root / "run", artefact, options=options).run(log=lambda message: None)
    clips = root / "clips.npy"
    np.save(clips, np.random.default_rng(0).normal(size=(60, 20, 64)).astype(np.float32))
    return dict(root=root, checkpoint=str(root / "run"), other_checkpoint=str(root / "other"),
                artefact=str(artefact), clips=str(clips))


def copied_run(folder, weights_from: str = "checkpoint") -> dict:
    """A copy of the tiny run folder (with its artefact) under ``folder``; its
    weights file replaced by the other checkpoint's with ``weights_from="other_checkpoint"``,
    so the artefact no longer matches the weights beside it."""
    run = tiny_run()
    copy = Path(folder) / "run"
    shutil.copytree(run["checkpoint"], copy)
    for weights in Path(run[weights_from]).glob("*-epochs_model.safetensors"):
        shutil.copy(weights, copy / weights.name)
    return dict(checkpoint=str(copy), artefact=str(copy / "tiny.vphys.h5"))
