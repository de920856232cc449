"""Training losses. Each named loss has a temporal offset k: the
model's readout at time t is compared with the target at time t + k. The
recurrent models use the hierarchical offset MSE; the temporal-convolution
(feedforward) models use the feedforward MSE, whose offset is always 1."""
from losses.feedforward_mse import feedforward_next_step_mse
from losses.hierarchical_offset_mse import hierarchical_offset_mse

LOSS_OFFSETS = {
    "loss_hierarchical_temporal_prediction": 1,  # the paper's: predict the next step
    "loss_hierarchical_temporal_prediction_t5": 5,  # control: predict 5 steps ahead
    "loss_hierarchical_autoencoder": 0,  # control: reconstruct the present (offset 0)
    "loss_hierarchical_temporal_prediction_feedforward": 1,  # feedforward controls (docs/faithfulness.md, "Feedforward loss")
}
# The losses each family of models can train with.
FEEDFORWARD_LOSSES = ("loss_hierarchical_temporal_prediction_feedforward",)
RECURRENT_LOSSES = tuple(name for name in LOSS_OFFSETS if name not in FEEDFORWARD_LOSSES)

__all__ = ["LOSS_OFFSETS", "FEEDFORWARD_LOSSES", "RECURRENT_LOSSES", "feedforward_next_step_mse",
           "hierarchical_offset_mse"]
