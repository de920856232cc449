"""The training step that the model tests share."""
from models.training import train_step
from models.training_config import TrainConfig


def noiseless_step(model, opt, x):
    """train.py's step (models.training.train_step) on the clean batch: loss, backward,
    clip by value (TrainConfig's grad_clip, the paper's 0.25), mask the gradients,
    Adam at the optimizer's own learning rate. Returns the detached loss."""
    cfg = TrainConfig(lr=opt.param_groups[0]["lr"])
    return train_step(model, opt, x, None, cfg, global_step=0)[0]
