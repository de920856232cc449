"""Training losses. Each named loss is the hierarchical offset MSE with its own
temporal offset k (spec §3): the model's readout at time t is compared with the
target at time t + k."""
from losses.hierarchical_offset_mse import hierarchical_offset_mse

LOSS_OFFSETS = {
    "loss_hierarchical_temporal_prediction": 1,  # the paper's: predict the next step
    "loss_hierarchical_temporal_prediction_t5": 5,  # control: predict 5 steps ahead
    "loss_hierarchical_autoencoder": 0,  # control: reconstruct the present (offset 0)
}

__all__ = ["LOSS_OFFSETS", "hierarchical_offset_mse"]
