"""Checkpoints: safe to load, written atomically, readable from a run folder or
a single file.

The run folder's layout (config.json, ``{epoch}-epochs_model.safetensors`` with
the config and epoch in the file's metadata, ``{epoch}-epochs_state.pt``, the
loss history and curve, logs/train.log) is ``models.checkpoint.RunFolder``'s;
reading one checkpoint (which file, its config, frame shape, groups, hash and
model) is ``models.checkpoint.Checkpoint``'s. A folder written by the original
code (``hyperparameters.csv`` plus ``N-epochs_model.pt`` state dicts) also loads;
its pickled loss history is never opened.
"""
from __future__ import annotations

import copy
from pathlib import Path

from models.checkpoint import Checkpoint, RunFolder


def save_model(run_dir, model, config: dict, epoch: int, history: dict | None = None) -> Path:
    """Write config.json and the weights (and optionally the loss history) for
    ``epoch`` into ``run_dir``; every file goes through a temporary file and a
    rename. Returns the weights file."""
    run = RunFolder(run_dir)
    run.write_config(config)
    path = run.save_weights(model, config, epoch)
    if history is not None:
        run.write_history(history)
    return path


def load_model(path, device="cpu", frame_shape=None):
    """Load a checkpoint -> (model, config, history).

    ``path`` is a run folder (its latest epoch), a ``.safetensors`` weights file,
    or a folder / ``.pt`` file written by the original code. ``frame_shape``
    is needed only for an original checkpoint whose frame size is not 400
    (20x20) or 800 (20x40).
    """
    checkpoint = Checkpoint(path, frame_shape)  # a CheckpointError names the file and the fix
    model = checkpoint.load(device)
    return model, copy.deepcopy(checkpoint.config), dict(checkpoint.history)
