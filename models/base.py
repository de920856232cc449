"""The interfaces every model kind offers to training and to the analyses.

``ProbeableModel``: what virtual physiology, the notebooks, the report and the
neural fitting use, so they work on any model kind:

- ``frame_shape``: (H, W) of the input frames; P = H * W pixels.
- ``group_sizes``: units per group ("area"), in hierarchy order.
- ``group_lags``: frames by which group g's response lags the input. In the
  hierarchical recurrent model each group is one synaptic hop further from the
  input, so group g (0-based) lags by g frames; the original's RWA uses that
  lag for every model kind (docs/faithfulness.md, "RWA method").
- ``group_slices``: the columns of ``hidden_activity`` that hold each group
  (the hidden activity per group is ``hidden_activity(x)[..., group_slices[g]]``).
- ``hidden_activity(x)``: hidden units for stimuli ``x`` of shape (B, T, P),
  returned as (B, T, sum(group_sizes)), aligned in time with the input (a model
  whose group g only starts responding after k frames pads the first k frames
  with zeros). No gradient is recorded.
- ``forward(x)`` -> ``(predictions, hidden)``; the first P predictions at
  step t are of frame t + ``temporal_offset``.
- ``local_inhibitory_prop``: the last int(p * n_g) units of each group are
  inhibitory (Dale's law); 0 for a model without that split.
- ``recurrent_weights()``: the effective (H, H) recurrent matrix [post, pre],
  or None for a model without one.
- ``supports_feedback_ablation`` and ``feedback_blocks()``: whether, and
  where, ``models.ablation`` can remove inter-areal feedback.

``TrainableModel`` adds what ``train.py`` needs: ``from_config``,
``preprocess_data`` (the training noise), ``get_loss`` (through the
``losses.LOSSES`` registry), ``mask_gradients``, ``project_weights_``,
``min_frames`` and ``own_mixed_precision``.

Model code reports a setting it cannot be built with as a ``SettingError``
(a ValueError in the library's terms); CLIs show it in flag terms with
``flag_wording``.
"""
from __future__ import annotations

import abc
import re

import torch
from torch import nn

from losses import LOSSES, LossSpec
from utils import InputError


def contiguous_slices(sizes) -> list[slice]:
    """Consecutive slices of the given lengths: (3, 2) -> [slice(0, 3), slice(3, 5)]."""
    out, start = [], 0
    for n in sizes:
        out.append(slice(start, start + n))
        start += n
    return out


class SettingError(InputError):
    """A setting a model cannot be built with (a run's), or modified with (an ablation's).

    The message names settings by their run-config key in braces:
    ``SettingError("the feedforward loss weights every stack equally: pass {beta} 1,1,1", "beta")``.
    ``str(err)`` writes the key plainly ("pass beta 1,1,1"); ``flag_wording()``
    writes the command-line flag ("pass --beta 1,1,1"), for CLIs. Only the keys
    listed in ``settings`` are replaced, so braces inside quoted values (a path)
    are left alone unless they spell one of those keys.
    """

    def __init__(self, template: str, *settings: str):
        self.template, self.settings = template, settings
        super().__init__(self._render(lambda key: key))

    def flag_wording(self) -> str:
        return self._render(lambda key: "--" + key.replace("_", "-"))

    def _render(self, spell) -> str:
        keys = "|".join(re.escape(key) for key in self.settings)
        return re.sub(rf"\{{({keys})\}}", lambda m: spell(m.group(1)), self.template) if keys else self.template


def flag_wording(err: Exception) -> str:
    """An error's message as a CLI shows it: a ``SettingError`` with flag names,
    any other error as its own message."""
    return err.flag_wording() if isinstance(err, SettingError) else str(err)


class ProbeableModel(nn.Module):
    """Base class: subclasses set ``frame_shape`` and ``group_sizes`` and
    implement ``forward``; everything else has a default derived from those."""

    frame_shape: tuple[int, int]
    group_sizes: tuple[int, ...]
    temporal_offset: int = 1  # a next-frame predictor unless the model's loss says otherwise
    local_inhibitory_prop: float = 0.0
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

    def recurrent_weights(self) -> torch.Tensor | None:
        """The (H, H) recurrent weights [post, pre] as the network uses them, or
        None: this model has no recurrent weight matrix."""
        return None

    def feedback_blocks(self) -> list[tuple[slice, slice]]:
        """(rows, columns) of ``recurrent_weights()`` holding the feedback of
        group g+1 onto group g, lowest group first; empty without feedback.
        A model with ``supports_feedback_ablation`` also has the raw parameter
        ``weight_hh`` and its 0/1 mask ``hh_mask`` (H, H), which
        ``models.ablation`` edits in those blocks."""
        return []


class TrainableModel(ProbeableModel, metaclass=abc.ABCMeta):
    """A model kind train.py can train. Subclasses set ``family`` (which
    ``losses.LOSSES`` entries fit, checked by ``check_loss``), ``loss_name``
    and ``noise_std`` and implement the abstract members."""

    family: str
    loss_name: str
    noise_std: float
    # True for a model with its own mixed-precision path (``set_precision`` and
    # ``set_recurrence``: the recurrent models); the others train bf16 under torch.autocast
    own_mixed_precision: bool = False

    @classmethod
    @abc.abstractmethod
    def from_config(cls, config: dict) -> "TrainableModel":
        """A fresh model from a resolved run config (train.TrainConfig as a dict);
        a setting it cannot use is a ``SettingError``."""

    @property
    @abc.abstractmethod
    def loss_warmup(self) -> int:
        """The first time step the loss scores (readouts before it are unscored)."""

    @abc.abstractmethod
    def weight_l1(self) -> torch.Tensor:
        """Sum of |W| over the weights the L1 penalty covers."""

    @abc.abstractmethod
    def mask_gradients(self) -> None:
        """Zero the gradients of entries that must stay 0 (after clipping, before
        the optimizer step)."""

    def project_weights_(self) -> None:
        """Put the weights, in place, in the form every forward pass gives them (masks,
        Dale's law), so that saved weights are those the model computes with. This
        default is for a model without such constraints: nothing to do."""

    @classmethod
    def check_loss(cls, loss: str) -> LossSpec:
        """The registered loss ``loss``, if this model's family trains with it;
        else a ``SettingError`` that lists the losses that fit."""
        fitting = [name for name, spec in LOSSES.items() if cls.family in spec.model_families]
        if loss not in fitting:
            raise SettingError(f"{cls.__name__} trains with {{loss}} {' or '.join(fitting)}, not {loss} (that loss "
                               f"does not apply to the {cls.family} models)", "loss")
        return LOSSES[loss]

    @property
    def loss_spec(self) -> LossSpec:
        return LOSSES[self.loss_name]

    @property
    def temporal_offset(self) -> int:
        return self.loss_spec.offset

    @property
    def min_frames(self) -> int:
        """Shortest training clip: loss_warmup + temporal_offset + 1 (``LossSpec.min_frames``)."""
        return self.loss_spec.min_frames(self.loss_warmup)

    def preprocess_data(self, data, generator: torch.Generator | None = None):
        """(x, y) -> (x + n, y + n) with ONE Gaussian noise sample n of std
        ``self.noise_std`` on both input and target (docs/faithfulness.md, "Same
        noise on input and target": the target's noise is unpredictable)."""
        x, y = data
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype).mul_(self.noise_std)
        if y is x:  # the usual case (next-frame targets are the clip itself): one sum serves both
            noisy = noise.add_(x)
            return noisy, noisy
        return x + noise, y + noise

    def get_loss(self, out, data):
        """(loss, components) of this model's registered loss (``losses.LOSSES[loss_name].function``)."""
        return self.loss_spec.function(self, out, data)
