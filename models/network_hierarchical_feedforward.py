"""The jointly trained hierarchical feedforward temporal-prediction model
("Feedforward" in the MSE analysis; the original's NetworkHierarchicalFeedforward).

Stack 0 convolves the last k = 5 frames, stack g the last 5 hidden states of
stack g-1 (detached); each predicts the next frame of its own input. Every
stack trains at once, with the original's FF loss: the unweighted sum of all
stacks' next-step errors (beta = 1) plus lam * sum|W|. Architecture, time
alignment and RWA lag: models/temporal_convolution.py.

    python submit_training_job.py --model network_hierarchical_feedforward   # its FF loss, beta 1,1,1
"""
from __future__ import annotations

from models.base import SettingError
from models.temporal_convolution import TemporalConvHierarchy


class NetworkHierarchicalFeedforward(TemporalConvHierarchy):
    @classmethod
    def from_config(cls, config: dict) -> "NetworkHierarchicalFeedforward":
        """Build from a resolved run config (train.TrainConfig as a dict)."""
        cls.check_config(config)
        if config.get("lower_stacks"):
            raise SettingError("{lower_stacks} is for {model} network_feedforward (stacks trained one at a time)",
                               "lower_stacks", "model")
        return cls(**cls.init_arguments(config))
