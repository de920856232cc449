"""The training step that the model tests share."""
import torch


def noiseless_step(model, opt, x):
    """train.py's step without noise: loss, backward, clip by value (0.25, the paper's),
    mask the gradients, Adam. Returns the detached loss."""
    opt.zero_grad()
    loss, _ = model.get_loss(model(x), (x, x))
    loss.backward()
    torch.nn.utils.clip_grad_value_(model.parameters(), 0.25)
    model.mask_gradients()
    opt.step()
    return loss.detach()
