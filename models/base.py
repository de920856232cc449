"""The one interface every model kind offers to training and to the analyses.

Virtual physiology, the notebooks, the report and the neural fitting only ever
talk to a model through these members, so they work on any model kind:

- ``frame_shape``: (H, W) of the input frames; P = H * W pixels.
- ``group_sizes``: units per group ("area"), in hierarchy order.
- ``group_lags``: frames by which group g's response lags the input. In the
  hierarchical recurrent model each group is one synaptic hop further from the
  input, so group g (0-based) lags by g frames; the original's RWA uses that
  lag for every model kind (docs/faithfulness.md, "RWA method").
- ``group_slices``: the columns of ``hidden_activity`` that hold each group.
- ``hidden_activity(x)``: hidden units for stimuli ``x`` of shape (B, T, P),
  returned as (B, T, sum(group_sizes)), aligned in time with the input (a model
  whose group g only starts responding after k frames pads the first k frames
  with zeros). No gradient is recorded.
- ``forward(x)`` -> ``(predictions, hidden)`` and ``get_loss(out, data)`` ->
  ``(loss, components)`` for training.
- ``supports_feedback_ablation``: whether ``models.ablation`` can remove feedback.
"""
from __future__ import annotations

import torch
from torch import nn


def contiguous_slices(sizes) -> list[slice]:
    """Consecutive slices of the given lengths: (3, 2) -> [slice(0, 3), slice(3, 5)]."""
    out, start = [], 0
    for n in sizes:
        out.append(slice(start, start + n))
        start += n
    return out


class ProbeableModel(nn.Module):
    """Base class: subclasses set ``frame_shape`` and ``group_sizes`` and
    implement ``forward``; everything else derives from those."""

    frame_shape: tuple[int, int]
    group_sizes: tuple[int, ...]
    supports_feedback_ablation: bool = False

    @property
    def n_pixels(self) -> int:
        return self.frame_shape[0] * self.frame_shape[1]

    @property
    def n_hidden(self) -> int:
        return sum(self.group_sizes)

    @property
    def group_lags(self) -> tuple[int, ...]:
        return tuple(range(len(self.group_sizes)))

    @property
    def group_slices(self) -> list[slice]:
        return contiguous_slices(self.group_sizes)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.no_grad()
    def hidden_activity(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, P) stimuli -> (B, T, n_hidden) responses, time-aligned with ``x``."""
        return self(x)[1]
