"""Stacks of temporal convolutions: the architecture shared by the feedforward
control models (the paper's "Feedforward" and TP_FF controls).

Stack g reads its input u (the frames for g = 0, the hidden state of stack
g-1 above that) through a temporal convolution over its last k frames, a
ReLU and a linear readout that predicts u's next frame:

    h_g[t] = ReLU( b_g + sum_{j=0}^{k-1} W_g[:, :, j] u[t - (k-1) + j] ),    p_g[t] = A_g h_g[t] + c_g

Stack g's input is the DETACHED hidden state of stack g-1: no stack's loss
trains the stacks below through their outputs (only through the targets).

Time alignment: every output is aligned with the input clip. h_g[t] depends on
frames t - s_g .. t with s_g = (k-1)(g+1), so it exists from t = s_g on and is 0
before (front zero padding to the clip length T, as the original pads its
stacked model); p_g[t] predicts u[t+1], so ``forward`` has the recurrent
model's layout and analyses read it the same way.

RWA lag: group g reports lag g (``group_lags``), as the original's RWA lags
group g by g frames for every model kind (docs/faithfulness.md, "RWA lag of
the feedforward controls"). A convolution has no synaptic delay, so frame t
reaches h_g[t] through the newest tap of every stack: the lag-0 RWA is the
newest tap's spatial filter and lag g is the tap g frames back. Pass
``lags=(0,) * n_groups`` to ``virtual_physiology.rwa.response_weighted_average``
for the zero-lag RWA.

``nn.Conv1d(n_in, n, k)`` over (B, n_in, T) is the original's
``Conv2d(1, n, (k, P))`` over (B, 1, T, P) for stack 0 and ``Conv2d(n_in, n,
(k, 1))`` above, with the same default initialisation (U(+-1/sqrt(k n_in))).
The readout A_g, c_g is ``nn.Linear(n, n_in)`` for the jointly trained model,
as in the original, and the original's transposed convolution for TP_FF
(``TransposedConvReadout``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from losses import FEEDFORWARD
from models.base import SettingError, TrainableModel, contiguous_slices


class TransposedConvReadout(nn.ConvTranspose2d):
    """TP_FF's readout as the original computes it (docs/faithfulness.md,
    "TP_FF readout"): (B, L, n_units) -> (B, L, n_out).

    Stack 0 predicts a frame with ``ConvTranspose2d(n_units, 1, (1, P))`` on
    the hidden state laid out (B, n_units, L, 1): out[t, p] = c + sum_u h[t, u]
    W[u, 0, 0, p], ONE bias c shared by all P pixels. A stack above predicts
    the n_out channels of the stack below with ``ConvTranspose2d(n_units,
    n_out, (1, 1))``, one bias per channel. PyTorch's default initialisation
    gives weight and bias U(+-1/sqrt(n_out)) (its fan-in of a transposed
    convolution is out_channels * kernel size).
    """

    def __init__(self, n_units: int, n_out: int, predicts_frames: bool):
        channels, width = (1, n_out) if predicts_frames else (n_out, 1)
        super().__init__(n_units, channels, (1, width))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out = super().forward(h.transpose(1, 2).unsqueeze(-1))  # (B, channels, L, width)
        return out.permute(0, 2, 1, 3).flatten(2)


class TemporalConvStack(nn.Module):
    """One stack: (B, L, n_in) -> hidden (B, L-k+1, n_units) -> readout (B, L-k+1, n_in).

    ``transposed_readout``: TP_FF's ``TransposedConvReadout`` (stack 0 when
    ``reads_frames``) instead of ``nn.Linear``. Loading a state dict whose
    readout is the ``nn.Linear`` form (TP_FF checkpoints written before the
    readout followed the original) switches this stack to that form, so those
    checkpoints load and predict as they were trained.
    """

    def __init__(self, n_in: int, n_units: int, kernel_size_t: int, transposed_readout: bool = False,
                 reads_frames: bool = True):
        super().__init__()
        self.conv = nn.Conv1d(n_in, n_units, kernel_size_t)
        self.readout = (TransposedConvReadout(n_units, n_in, reads_frames) if transposed_readout
                        else nn.Linear(n_units, n_in))
        self.register_load_state_dict_pre_hook(self._linear_readout_if_saved_so)

    def _linear_readout_if_saved_so(self, module, state_dict, prefix, *args) -> None:
        saved = state_dict.get(prefix + "readout.weight")
        if saved is not None and saved.dim() == 2 and not isinstance(self.readout, nn.Linear):
            self.readout = nn.Linear(self.conv.out_channels, self.conv.in_channels).to(saved.device)

    def hidden(self, u: torch.Tensor) -> torch.Tensor:
        """Valid (unpadded) responses; none (length 0) when L < k."""
        if u.shape[1] < self.conv.kernel_size[0]:
            return u.new_zeros(u.shape[0], 0, self.conv.out_channels)
        return F.relu(self.conv(u.transpose(1, 2))).transpose(1, 2)


def _pad_front(x: torch.Tensor, length: int) -> torch.Tensor:
    """(B, L, n) -> (B, length, n) with length - L zero rows in front."""
    return F.pad(x, (0, 0, length - x.shape[1], 0))


class TemporalConvHierarchy(TrainableModel):
    """Stacks of ``TemporalConvStack``, one per group. Subclasses choose which
    groups' errors are trained (``trained_groups``) and how they are built.
    Every loss of the feedforward family has offset 1: p[t] predicts frame t + 1."""

    family = FEEDFORWARD
    transposed_readout = False  # True for TP_FF: the original's ConvTranspose2d readout

    def __init__(self, frame_shape=(20, 20), hidden_units=(800, 800, 800), kernel_size_t=5, lam=1e-6,
                 noise_std=0.5011, loss="loss_hierarchical_temporal_prediction_feedforward"):
        super().__init__()
        self.check_loss(loss)
        self.loss_name = loss
        self.frame_shape = tuple(int(s) for s in frame_shape)
        self.group_sizes = tuple(int(n) for n in hidden_units)
        self.kernel_size_t = int(kernel_size_t)
        self.lam = float(lam)
        self.noise_std = float(noise_std)
        self.output_sizes = (self.n_pixels,) + self.group_sizes[:-1]  # stack g predicts its own input
        self.output_slices = contiguous_slices(self.output_sizes)
        self.stacks = nn.ModuleList(TemporalConvStack(n_in, n, self.kernel_size_t, self.transposed_readout, g == 0)
                                    for g, (n_in, n) in enumerate(zip(self.output_sizes, self.group_sizes)))

    @property
    def trained_groups(self) -> tuple[int, ...]:
        return tuple(range(len(self.group_sizes)))

    @property
    def starts(self) -> list[int]:
        """First time step at which each group has a response: s_g = (k-1)(g+1)."""
        return [(self.kernel_size_t - 1) * (g + 1) for g in range(len(self.group_sizes))]

    @property
    def loss_warmup(self) -> int:
        """The top group's first response, s_G: its first prediction with a target."""
        return self.starts[-1]

    @classmethod
    def check_config(cls, config: dict) -> None:
        """The run settings every feedforward model needs (``SettingError`` otherwise)."""
        cls.check_loss(config["loss"])
        if any(float(b) != 1.0 for b in config["beta"]):
            ones = ",".join("1" * len(config["hidden_units"]))
            raise SettingError(f"the feedforward loss weights every stack equally: pass {{beta}} {ones}", "beta")
        if int(config["kernel_size_t"]) < 1:
            raise SettingError(f"{{kernel_size_t}} {config['kernel_size_t']} must be at least 1 frame", "kernel_size_t")

    @classmethod
    def init_arguments(cls, config: dict) -> dict:
        """Constructor arguments from a run config."""
        return dict(frame_shape=config["frame_shape"], hidden_units=config["hidden_units"],
                    kernel_size_t=config["kernel_size_t"], lam=10.0 ** config["L1"], noise_std=config["noise_std"],
                    loss=config["loss"])

    # ----- forward --------------------------------------------------------------------
    def _stack_hidden(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Valid responses of every stack, unpadded: group g has T - s_g steps."""
        if x.dim() != 3 or x.shape[-1] != self.n_pixels:
            raise ValueError(f"expected input of shape (batch, time, {self.n_pixels}), got {tuple(x.shape)}")
        hidden, u = [], x
        for stack in self.stacks:
            h = stack.hidden(u)
            hidden.append(h)
            u = h.detach()  # the stack above sees this one as data, as in the original
        return hidden

    def forward(self, x: torch.Tensor):
        """x: (B, T, P) -> (predictions (B, T, O), hidden (B, T, H)), both aligned
        with x and zero before each group's first step; O = P + sum of all group
        sizes but the last (the recurrent model's layout)."""
        T = x.shape[1]
        hidden = self._stack_hidden(x)
        pred = [_pad_front(stack.readout(h), T) for stack, h in zip(self.stacks, hidden)]
        return torch.cat(pred, -1), torch.cat([_pad_front(h, T) for h in hidden], -1)

    @torch.no_grad()
    def hidden_activity(self, x: torch.Tensor) -> torch.Tensor:
        """Hidden units only (no readout): (B, T, P) -> (B, T, H), front-zero-padded."""
        return torch.cat([_pad_front(h, x.shape[1]) for h in self._stack_hidden(x)], -1)

    # ----- training -------------------------------------------------------------------
    def weight_l1(self) -> torch.Tensor:
        """Sum of |W| over the convolution and readout weights (not biases) of the trained stacks."""
        return sum(self.stacks[g].conv.weight.abs().sum() + self.stacks[g].readout.weight.abs().sum()
                   for g in self.trained_groups)

    def mask_gradients(self):
        """Nothing is masked in a convolution stack."""
