"""Next-frame prediction error on clean clips: the measure the training monitor,
``rf_summary`` and ``analysis.mse`` share. It lives here, below the analyses, so
that the probes need nothing from ``analysis/`` (docs/architecture.md, "Layers").

The model's prediction at step t is the first ``n_pixels`` outputs of
``forward`` and targets frame t + offset (offset = ``model.temporal_offset``,
1 for temporal prediction).
"""
from __future__ import annotations

import numpy as np
import torch

from models.base import ProbeableModel
from virtual_physiology import ProbeError


def temporal_offset(model) -> int:
    """How many frames ahead the model's readout predicts (``ProbeableModel.temporal_offset``:
    1 unless its loss says otherwise)."""
    return int(model.temporal_offset)


@torch.no_grad()
def next_frame_errors(model: ProbeableModel, clips, warmup: int = 4, batch_size: int = 200) -> dict[str, np.ndarray]:
    """Per-clip mean squared error of the model's next-frame prediction and of
    copying the last frame, on the same targets.

    clips: (N, T, P), noise-free. Targets are frames t + offset for
    t = warmup .. T - 1 - offset; the model predicts them from frames <= t,
    the baseline copies frame t + offset - 1 (the last frame seen; for
    offset 0 it has nothing to copy and is nan). Returns 'model' and
    'copy_last', each (N,).
    """
    clips = torch.as_tensor(np.asarray(clips, np.float32))
    offset, n_pixels = temporal_offset(model), model.n_pixels
    T = clips.shape[1]
    if T - offset <= warmup:
        raise ProbeError(f"clips of {T} frames leave nothing to score after warm-up {warmup}: use longer clips")
    steps = slice(warmup, T - offset)
    targets = clips[:, warmup + offset:]
    errors = []
    for chunk in torch.split(clips, batch_size):
        pred = model(chunk.to(model.device))[0][:, steps, :n_pixels].cpu()
        errors.append(((pred - targets[: len(chunk)]) ** 2).mean(dim=(1, 2)))
        targets = targets[len(chunk):]
    copy = (((clips[:, warmup + offset - 1:T - 1] - clips[:, warmup + offset:]) ** 2).mean(dim=(1, 2))
            if offset > 0 else torch.full((clips.shape[0],), float("nan")))
    return dict(model=torch.cat(errors).numpy(), copy_last=copy.numpy())
