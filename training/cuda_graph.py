"""train_step as CUDA graphs (train.py --cuda-graph): a GPU step of this model is
hundreds of small kernels, so on a GPU its time goes to launching them. A captured
graph launches them all at once.

What is captured: everything after the noise (forward, loss, backward, clipping,
gradient masking and Adam), one graph per batch shape (an epoch's last batch is
usually smaller). What stays outside: the noise, drawn eagerly from the run's own
generator as in an eager step, so the noise stream, and with it an exact resume,
do not depend on the flag; and the learning rate, written into Adam's tensor ``lr``
before each replay.

The graphed steps are the eager steps' kernels, replayed: they take the same steps
as ``train_step`` with the same optimizer to float32 rounding
(tests/test_core_cuda_graph.py checks this on a GPU). A capturable Adam
(``make_optimizer(..., graphed=True)``) keeps its step count on the device, so its
bias correction rounds slightly differently from the default Adam's.
"""
from __future__ import annotations

import collections

import torch
from torch import nn

from training.step import learning_rate, noisy_pair, set_learning_rate, update_weights

EAGER_STEPS_PER_SHAPE = 3  # eager steps on a side stream before a shape is captured (cuBLAS workspaces, Adam's state)


class GraphedTrainStep:
    """A callable with train_step's contract for one process on one GPU:
    ``step(batch, generator, global_step)`` -> the detached [loss, *components].

    The first ``eager_steps`` steps of each batch shape run eagerly on a side
    stream (the warm-up that capture needs); the next is captured and replayed, and
    every later step of that shape is one replay. ``optimizer`` must come from
    ``make_optimizer(..., graphed=True)``: a capturable Adam with a tensor lr."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, cfg,
                 eager_steps: int = EAGER_STEPS_PER_SHAPE):
        if not all(group.get("capturable") and torch.is_tensor(group["lr"]) for group in optimizer.param_groups):
            raise ValueError("a graphed step needs an optimizer with capturable=True and a tensor lr "
                             "(training.step.make_optimizer(..., graphed=True))")
        self.model, self.optimizer, self.cfg, self.eager_steps = model, optimizer, cfg, eager_steps
        self.graphs: dict[tuple, tuple] = {}  # batch shape -> (graph, static input, static target, static values)
        self.eager_taken = collections.Counter()
        self.side_stream = torch.cuda.Stream()

    def __call__(self, batch: torch.Tensor, generator: torch.Generator | None, global_step: int) -> torch.Tensor:
        x, y = noisy_pair(self.model, batch, generator)
        set_learning_rate(self.optimizer, learning_rate(self.cfg, global_step))
        shape = tuple(x.shape)
        if shape not in self.graphs and self.eager_taken[shape] < self.eager_steps:
            self.eager_taken[shape] += 1
            self.side_stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.side_stream):
                values = self._update(x, y)
            torch.cuda.current_stream().wait_stream(self.side_stream)
            return values
        if shape not in self.graphs:
            self.graphs[shape] = self._capture(x, y)
        graph, static_x, static_y, static_values = self.graphs[shape]
        static_x.copy_(x)
        static_y.copy_(y)
        graph.replay()
        return static_values.clone()  # the next replay overwrites static_values

    def _update(self, x, y):
        return update_weights(self.model, self.optimizer, x, y, self.cfg, autocast_cache=False)

    def _capture(self, x, y):
        """Record one step at the inputs' shape; nothing runs until the graph is replayed.
        The gradients are unset first, so the captured backward allocates them in the
        graph's own memory pool and every replay overwrites them."""
        static_x, static_y = x.clone(), y.clone()
        self.optimizer.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_values = self._update(static_x, static_y)
        return graph, static_x, static_y, static_values
