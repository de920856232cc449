"""The hierarchical recurrent temporal-prediction network (TP_full).

One ReLU RNN whose hidden units form groups ("areas"). Group 1 sees the frame
and its readout predicts the next frame; the readout of group g > 1 predicts the
next hidden activity of group g-1, as in the original. Connectivity is block-masked:
recurrent within a group, feedforward g -> g+1 and feedback g+1 -> g. The last
``local_inhibitory_prop`` of each group are inhibitory and project only inside
their group; Dale's law gives excitatory columns of W_hh the sign + and
inhibitory columns the sign -.

The maths is the original's; the layout is leaner. The original stores a dense
(H x P) input matrix whose rows outside group 1 are masked to 0 and a dense
(O x H) readout whose off-diagonal blocks are masked to 0. Masked entries get
zero gradient, so Adam never moves them: storing only the non-zero blocks is the
same optimisation, without the wasted work. ``to_original_state_dict`` and
``from_original_state_dict`` convert between the two layouts.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from losses import RECURRENT
from models.base import SettingError, TrainableModel, contiguous_slices
from models.io import load_model
from models.readout import BlockReadout
from models.recurrence import RECURRENCE_BACKENDS, InputDrive, ReluRecurrence, recurrence_blocks

# --precision: the dtype of the matrix products (None: that of the parameters)
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


class NetworkHierarchicalRecurrent(TrainableModel):
    family = RECURRENT
    supports_feedback_ablation = True
    own_mixed_precision = True

    def __init__(
        self,
        frame_shape=(20, 20),
        hidden_units=(800, 800, 800),
        beta=(0.9, 0.1, 0.1),
        warmup=4,
        local_inhibitory_prop=0.2,
        lam=1e-6,
        loss="loss_hierarchical_temporal_prediction",
        detach_targets=False,
        noise_std=0.5011,
    ):
        super().__init__()
        self.frame_shape = tuple(int(s) for s in frame_shape)
        self.group_sizes = tuple(int(n) for n in hidden_units)
        if len(beta) != len(self.group_sizes):
            raise SettingError(f"{{beta}} has {len(beta)} weights but there are {len(self.group_sizes)} groups", "beta")
        self.check_loss(loss)
        self.beta = tuple(float(b) for b in beta)
        self.warmup = int(warmup)
        self.local_inhibitory_prop = float(local_inhibitory_prop)
        self.lam = float(lam)
        self.loss_name = loss
        self.detach_targets = bool(detach_targets)
        self.noise_std = float(noise_std)

        P, H = self.n_pixels, self.n_hidden
        self.output_sizes = (P,) + self.group_sizes[:-1]
        self.output_slices = contiguous_slices(self.output_sizes)
        self._init_parameters_like_original()

        hh_mask, col_sign = self._connectivity(self.group_sizes, self.local_inhibitory_prop)
        self.register_buffer("hh_mask", hh_mask, persistent=False)
        # Dale's law as a per-column sign; all +1 when there are no inhibitory units,
        # and then the original applies no sign constraint at all (see project_weights_).
        self.register_buffer("hh_signed_mask", hh_mask * col_sign, persistent=False)
        self.set_recurrence("block")
        self.set_precision("fp32")
        self.set_tf32(False)

    @classmethod
    def from_config(cls, config: dict) -> "NetworkHierarchicalRecurrent":
        """Build from a resolved run config (train.TrainConfig as a dict)."""
        return cls(
            frame_shape=config["frame_shape"],
            hidden_units=config["hidden_units"],
            beta=config["beta"],
            warmup=config["warmup"],
            local_inhibitory_prop=config["local_inhibitory_prop"],
            lam=10.0 ** config["L1"],
            loss=config["loss"],
            detach_targets=config["detach_targets"],
            noise_std=config["noise_std"],
        )

    @classmethod
    def load(cls, path, device="cpu", frame_shape=None):
        """A saved model -> (model, hyperparameters, loss_history), in eval mode on ``device``.

        ``path`` is anything ``models.io.load_model`` reads: a run folder, a weights
        file, or a folder written by the original code. The checkpoint must hold
        this class (or a subclass), so ``NetworkRecurrent.load`` refuses a
        three-group model (TypeError)."""
        model, hyperparameters, loss_history = load_model(path, device, frame_shape)
        if not isinstance(model, cls):
            raise TypeError(f"{path} holds a {hyperparameters['model']} model, not {cls.__name__}: "
                            "load it with models.io.load_model")
        return model, hyperparameters, loss_history

    # ----- construction -------------------------------------------------------------
    def _init_parameters_like_original(self):
        """PyTorch's default init for nn.RNN(P, H) followed by nn.Linear(H, O), drawn
        in the same order and shapes, so a given torch seed gives the original's
        initial weights; then W_hh = I/100 as the original writes it
        (docs/faithfulness.md, "Initial recurrent weights")."""
        P, H, O = self.n_pixels, self.n_hidden, sum(self.output_sizes)
        bound = 1.0 / math.sqrt(H)  # nn.RNN: U(+-1/sqrt(H)); nn.Linear(H, .): U(+-1/sqrt(fan_in = H))
        w_ih = torch.empty(H, P).uniform_(-bound, bound)
        torch.empty(H, H).uniform_(-bound, bound)  # W_hh draw, overwritten below; kept for the RNG stream
        b_ih = torch.empty(H).uniform_(-bound, bound)
        b_hh = torch.empty(H).uniform_(-bound, bound)
        fc_w = torch.empty(O, H).uniform_(-bound, bound)
        fc_b = torch.empty(O).uniform_(-bound, bound)

        n0 = self.group_sizes[0]
        self.weight_ih = nn.Parameter(w_ih[:n0].clone())  # only group 1 receives the frame
        self.weight_hh = nn.Parameter(torch.eye(H) / 100)
        self.bias_ih = nn.Parameter(b_ih)
        self.bias_hh = nn.Parameter(b_hh)
        self.readout_weights = nn.ParameterList(
            nn.Parameter(fc_w[out, hid].clone()) for out, hid in zip(self.output_slices, self.group_slices)
        )
        self.readout_bias = nn.Parameter(fc_b)

    @staticmethod
    def _connectivity(group_sizes, inhibitory_prop):
        """The original's W_hh mask (rows postsynaptic) and per-column Dale sign.

        Blocks (g, g), (g-1, g) (feedback g -> g-1) and (g+1, g) (feedforward
        g -> g+1) are allowed; the inhibitory columns of group g (its last
        int(prop * n_g) units) are then cleared in the rows of groups g +- 1.
        """
        slices = contiguous_slices(group_sizes)
        H = sum(group_sizes)
        mask = torch.zeros(H, H)
        sign = torch.ones(H)
        for g, cols in enumerate(slices):
            n_inh = int(inhibitory_prop * group_sizes[g])
            inh = slice(cols.stop - n_inh, cols.stop)
            sign[inh] = -1.0
            for rows_g in (g - 1, g, g + 1):
                if 0 <= rows_g < len(slices):
                    mask[slices[rows_g], cols] = 1.0
                    if rows_g != g:
                        mask[slices[rows_g], inh] = 0.0
        return mask, sign

    # ----- how the step is computed (not part of the model: never saved) ----------------
    def set_recurrence(self, backend: str):
        """"block" (skip the zero blocks of W_hh; fastest for fp32 on CPUs) or "dense"
        (one product per time step with the whole masked W_hh; for GPUs, and for small
        bf16 models on AMX CPUs: ``training_config.auto_recurrence``). The same
        function and, after ``mask_gradients``, the same gradients."""
        if backend not in RECURRENCE_BACKENDS:
            raise ValueError(f"unknown recurrence backend {backend!r}: choose from {', '.join(RECURRENCE_BACKENDS)}")
        self.recurrence = backend
        self._blocks = recurrence_blocks(backend, self.hh_mask, self.group_slices)
        return self

    def set_precision(self, precision: str):
        """"fp32" (the original's arithmetic) or "bf16" (mixed precision: the matrix
        products in bfloat16 with float32 accumulation; the fp32 parameters stay the
        master copy that the optimizer, clipping, masks and Dale's law act on, and
        the loss is computed in float32)."""
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}: choose from {', '.join(PRECISIONS)}")
        self.precision = precision
        return self

    def set_tf32(self, enabled: bool):
        """The original's arithmetic on Ampere and newer GPUs (train.py's --tf32): the
        recurrent layer's products (input and recurrent weights, forward and backward)
        in TF32, as cuDNN's RNN runs them by default, and the readout and loss in
        IEEE float32. Only float32 products on CUDA change; bf16 and CPU runs are
        unaffected (``models.recurrence.tf32_products``)."""
        self.tf32 = bool(enabled)
        return self

    def _tf32_for(self, dtype: torch.dtype) -> bool:
        """Whether this step's products take --tf32's split: only float32 products do."""
        return self.tf32 and dtype == torch.float32

    def _compute_dtype(self, device: torch.device) -> torch.dtype:
        """The dtype of the matrix products: bf16 when asked for, or when the caller
        runs the model under autocast (whose dtype then applies to the whole step)."""
        if torch.is_autocast_enabled(device.type):
            return torch.get_autocast_dtype(device.type)
        return PRECISIONS[self.precision] or self.weight_hh.dtype

    # ----- constraints -----------------------------------------------------------------
    @torch.no_grad()
    def project_weights_(self):
        """Mask W_hh and apply Dale's law in place, as the original does at the start
        of every forward pass (docs/faithfulness.md, "Masks and Dale reflection"):
        E-columns <- |W|, I-columns <- -|W|.

        In place on purpose: the gradient is then taken at the projected weights and
        Adam updates the projected values, exactly as in the original. Without
        inhibitory units the original applies the mask only."""
        if self.local_inhibitory_prop > 0:
            self.weight_hh.abs_().mul_(self.hh_signed_mask)
        else:
            self.weight_hh.mul_(self.hh_mask)

    def recurrent_weights(self) -> torch.Tensor:
        """W_hh as every forward pass uses it: masked and Dale-projected
        (what ``project_weights_`` writes), as a new (H, H) tensor [post, pre];
        the parameter itself is left as it is."""
        with torch.no_grad():
            if self.local_inhibitory_prop > 0:
                return self.weight_hh.abs() * self.hh_signed_mask
            return self.weight_hh * self.hh_mask

    def feedback_blocks(self) -> list[tuple[slice, slice]]:
        """(rows of group g, columns of group g+1) for every g: the blocks of
        W_hh that carry feedback from group g+1 onto group g."""
        s = self.group_slices
        return [(s[g], s[g + 1]) for g in range(len(s) - 1)]

    def mask_gradients(self):
        """Zero the gradient of masked W_hh entries (after clipping, before the
        optimizer step), so their Adam moments stay 0 and the weights stay 0. The
        input and readout matrices hold no masked entries in this layout."""
        if self.weight_hh.grad is not None:
            self.weight_hh.grad.mul_(self.hh_mask)

    # ----- forward --------------------------------------------------------------------
    def _hidden(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, P) -> time-major hidden states (T, B, H)."""
        if x.dim() != 3 or x.shape[-1] != self.n_pixels:
            raise ValueError(f"expected input of shape (batch, time, {self.n_pixels}), got {tuple(x.shape)}")
        self.project_weights_()
        dtype = self._compute_dtype(x.device)  # each .to() below is a no-op in fp32, one cast per step in bf16
        bias = (self.bias_ih + self.bias_hh).to(dtype)
        tf32 = self._tf32_for(dtype)
        with torch.autocast(x.device.type, enabled=False):  # the dtypes are chosen here, not per op
            drive = InputDrive.apply(x, self.weight_ih.to(dtype), bias, tf32)  # only group 1 sees the frame
            return ReluRecurrence.apply(drive, self.weight_hh.to(dtype), self._blocks, tf32)

    def forward(self, x: torch.Tensor):
        """x: (B, T, P) -> (predictions (B, T, O), hidden (B, T, H)), O = P + sum of
        all group sizes but the last (the original's output layout). Both are in the
        dtype of the products: bfloat16 in bf16 mode, where ``get_loss`` compares them
        with the targets in float32 (``hidden_activity`` always returns float32)."""
        h = self._hidden(x)
        dtype = h.dtype
        with torch.autocast(x.device.type, enabled=False):  # block-diagonal readout: group g -> block g
            pred = BlockReadout.apply(h, self.readout_bias.to(dtype), tuple(self.output_slices),
                                      tuple(self.group_slices), *(w.to(dtype) for w in self.readout_weights))
        return pred.transpose(0, 1), h.transpose(0, 1)

    @torch.no_grad()
    def hidden_activity(self, x: torch.Tensor) -> torch.Tensor:
        """Hidden units only (the readout is skipped): (B, T, P) -> (B, T, H)."""
        return self._hidden(x).to(self.weight_hh.dtype).transpose(0, 1)

    # ----- training ---------------------------------------------------------------------
    def weight_l1(self) -> torch.Tensor:
        """Sum of |W| over every weight matrix (not biases), as the original's L1 term."""
        total = self.weight_ih.abs().sum() + self.weight_hh.abs().sum()
        for w in self.readout_weights:
            total = total + w.abs().sum()
        return total

    @property
    def loss_warmup(self) -> int:
        return self.warmup

    # ----- the original's dense layout -------------------------------------------------------
    def to_original_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights in the original's dense layout (nn.RNN + nn.Linear key names)."""
        P, H = self.n_pixels, self.n_hidden
        w_ih = self.weight_ih.new_zeros(H, P)
        w_ih[: self.group_sizes[0]] = self.weight_ih.detach()
        fc = self.weight_hh.new_zeros(sum(self.output_sizes), H)
        for w, out, hid in zip(self.readout_weights, self.output_slices, self.group_slices):
            fc[out, hid] = w.detach()
        return {
            "rnn.weight_ih_l0": w_ih,
            "rnn.weight_hh_l0": self.weight_hh.detach().clone(),
            "rnn.bias_ih_l0": self.bias_ih.detach().clone(),
            "rnn.bias_hh_l0": self.bias_hh.detach().clone(),
            "fc.weight": fc,
            "fc.bias": self.readout_bias.detach().clone(),
        }

    @torch.no_grad()
    def from_original_state_dict(self, state: dict[str, torch.Tensor]):
        """Load weights from the original's dense layout. Input rows outside group 1
        and off-diagonal readout blocks are dropped: the original's first forward
        pass would zero them anyway. W_hh is kept as stored (it is projected at
        the next forward pass, as in the original)."""
        expected = {k: tuple(v.shape) for k, v in self.to_original_state_dict().items()}
        for key, shape in expected.items():
            if key not in state:
                raise KeyError(f"state dict lacks {key!r}")
            if tuple(state[key].shape) != shape:
                raise ValueError(f"{key} has shape {tuple(state[key].shape)}, expected {shape}")
        self.weight_ih.copy_(state["rnn.weight_ih_l0"][: self.group_sizes[0]])
        self.weight_hh.copy_(state["rnn.weight_hh_l0"])
        self.bias_ih.copy_(state["rnn.bias_ih_l0"])
        self.bias_hh.copy_(state["rnn.bias_hh_l0"])
        for w, out, hid in zip(self.readout_weights, self.output_slices, self.group_slices):
            w.copy_(state["fc.weight"][out, hid])
        self.readout_bias.copy_(state["fc.bias"])
        return self
