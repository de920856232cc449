"""A plain dense masked implementation of the original model, written from its
description with no shortcuts: nn.RNN + nn.Linear, dense masks, the Dale
projection on every forward, the loss with slicing as described, and the
original's step (clip by value, then mask gradients, then Adam).

It is the yardstick for the fast model: tests check that both give the same
losses, gradients and trained weights, and the training benchmark times both.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DenseReference(nn.Module):
    def __init__(self, frame_size, hidden_units, beta, warmup=4, inhibitory_prop=0.2, lam=1e-6, offset=1,
                 noise_std=0.5011):
        super().__init__()
        self.groups = list(hidden_units)
        self.out_groups = [frame_size] + self.groups[:-1]
        self.beta, self.warmup, self.lam, self.offset = list(beta), warmup, lam, offset
        self.inhibitory_prop, self.noise_std = inhibitory_prop, noise_std
        H, O = sum(self.groups), sum(self.out_groups)
        self.rnn = nn.RNN(frame_size, H, num_layers=1, nonlinearity="relu", batch_first=True)
        self.fc = nn.Linear(H, O)
        with torch.no_grad():
            self.rnn.weight_hh_l0.copy_(torch.eye(H) / 100)

        def sl(sizes, g):
            start = sum(sizes[:g])
            return slice(start, start + sizes[g])

        self.ih_mask = torch.zeros(H, frame_size)
        self.ih_mask[: self.groups[0]] = 1
        self.hh_mask = torch.zeros(H, H)
        self.exc, self.inh = [], []
        for g in range(len(self.groups)):
            cur = sl(self.groups, g)
            n_inh = int(inhibitory_prop * self.groups[g])
            exc, inh = slice(cur.start, cur.stop - n_inh), slice(cur.stop - n_inh, cur.stop)
            self.exc.append(exc)
            self.inh.append(inh)
            self.hh_mask[cur, cur] = 1
            if g > 0:
                self.hh_mask[sl(self.groups, g - 1), cur] = 1
                self.hh_mask[sl(self.groups, g - 1), inh] = 0
            if g < len(self.groups) - 1:
                self.hh_mask[sl(self.groups, g + 1), cur] = 1
                self.hh_mask[sl(self.groups, g + 1), inh] = 0
        self.fc_mask = torch.zeros(O, H)
        for g in range(len(self.groups)):
            self.fc_mask[sl(self.out_groups, g), sl(self.groups, g)] = 1
        self.group_slices = [sl(self.groups, g) for g in range(len(self.groups))]
        self.out_slices = [sl(self.out_groups, g) for g in range(len(self.groups))]

    def forward(self, x):
        with torch.no_grad():
            self.rnn.weight_ih_l0.mul_(self.ih_mask)
            self.rnn.weight_hh_l0.mul_(self.hh_mask)
            self.fc.weight.mul_(self.fc_mask)
            if self.inhibitory_prop > 0:
                w = self.rnn.weight_hh_l0
                for exc, inh in zip(self.exc, self.inh):
                    w[:, exc] = w[:, exc].abs()
                    w[:, inh] = -w[:, inh].abs()
        h, _ = self.rnn(x)
        return self.fc(h), h

    def loss(self, out, y):
        pred, h = out
        w, k = self.warmup, self.offset
        end = -k if k else None
        weights = torch.cat([p.flatten() for n, p in self.named_parameters() if "weight" in n])
        total = self.lam * weights.abs().sum()
        terms = [F.mse_loss(pred[:, w:end, self.out_slices[0]], y[:, w + k:])]
        for g in range(1, len(self.groups)):
            terms.append(F.mse_loss(pred[:, w:end, self.out_slices[g]], h[:, w + k:, self.group_slices[g - 1]]))
        for b, t in zip(self.beta, terms):
            total = total + b * t
        return total, terms

    def mask_gradients(self):
        self.rnn.weight_ih_l0.grad.mul_(self.ih_mask)
        self.rnn.weight_hh_l0.grad.mul_(self.hh_mask)
        self.fc.weight.grad.mul_(self.fc_mask)

    def train_step(self, optimizer, x, y):
        """One step on already-noised (x, y), as the original's loop does it."""
        optimizer.zero_grad()
        out = self(x)
        loss, _ = self.loss(out, y)
        loss.backward()
        nn.utils.clip_grad_value_(self.parameters(), 0.25)
        self.mask_gradients()
        optimizer.step()
        return loss.detach()
