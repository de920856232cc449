"""--tf32: the original's GPU arithmetic, TF32 in the recurrent layer (cuDNN's RNN
default) and IEEE float32 in the readout and loss.

A dispatch mode records torch's CUDA float32 matmul setting at every matrix
product of a training step, forward and backward. The setting is what cuBLAS
reads when the product runs, so the records say which products would run in
TF32 on a GPU; on a CPU they run in IEEE float32 either way."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from training import TrainingSetupError
from training.batched import StackedRecurrent
from models.network_hierarchical_recurrent import NetworkHierarchicalRecurrent
from training.config import TrainConfig, set_arithmetic

PRODUCTS = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.bmm.default,
            torch.ops.aten.baddbmm.default, torch.ops.aten.mm.out, torch.ops.aten.addmm.out}


class ProductSettings(TorchDispatchMode):
    """Collects, at each matrix product, whether torch.backends.cuda.matmul.fp32_precision
    asks for TF32 (its other values, "ieee" and the default "none", mean IEEE float32)."""

    def __init__(self):
        super().__init__()
        self.settings = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in PRODUCTS:
            self.settings.append("tf32" if torch.backends.cuda.matmul.fp32_precision == "tf32" else "ieee")
        return func(*args, **(kwargs or {}))


def make_model(tf32, seed=0):
    torch.manual_seed(seed)
    return NetworkHierarchicalRecurrent(frame_shape=(3, 3), hidden_units=(6, 5, 4), lam=1e-3).set_tf32(tf32)


def clips(model, seed=1):
    return torch.randn(4, 10, model.n_pixels, generator=torch.Generator().manual_seed(seed))


def settings_of(step):
    with ProductSettings() as mode:
        step()
    return mode.settings


def full_step(model, x):
    """Forward, loss (readout included) and backward, as a training step takes them."""
    model.zero_grad()
    loss, _ = model.get_loss(model(x), (x, x))
    loss.backward()


def recurrent_layer_step(model, x):
    """The recurrent layer alone (input projection and recurrence), forward and backward."""
    model.zero_grad()
    model._hidden(x).sum().backward()


def test_tf32_covers_the_recurrent_layer_and_nothing_else():
    model, x = make_model(tf32=True), clips(make_model(False))
    before = torch.backends.cuda.matmul.fp32_precision
    layer = settings_of(lambda: recurrent_layer_step(model, x))
    step = settings_of(lambda: full_step(model, x))
    assert layer and set(layer) == {"tf32"}  # input projection and recurrence, forward and backward
    # the full step: the same products in TF32, and the readout's (forward and backward) in IEEE fp32
    assert step.count("tf32") == len(layer)
    assert step.count("ieee") >= 2 * len(model.readout_weights)
    assert len(step) == step.count("tf32") + step.count("ieee")
    assert torch.backends.cuda.matmul.fp32_precision == before  # restored after the step


def test_without_tf32_every_product_is_ieee():
    model = make_model(tf32=False)
    assert set(settings_of(lambda: full_step(model, clips(model)))) == {"ieee"}


def test_tf32_leaves_bf16_products_alone():
    model = make_model(tf32=True).set_precision("bf16")
    assert set(settings_of(lambda: full_step(model, clips(model)))) == {"ieee"}


def test_on_a_cpu_tf32_computes_what_fp32_computes():
    x = clips(make_model(False))
    results = []
    for tf32 in (False, True):
        model = make_model(tf32)
        full_step(model, x)
        loss, _ = model.get_loss(model(x), (x, x))
        results.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (loss32, grads32), (loss_tf, grads_tf) = results
    # the TF32 path's input projection is a product plus a bias add, F.linear's one fused
    # addmm: the same maths, summed in another order
    torch.testing.assert_close(loss_tf, loss32, rtol=1e-6, atol=0)
    for name, g in grads32.items():
        torch.testing.assert_close(grads_tf[name], g, rtol=1e-5, atol=1e-7, msg=name)


def test_stacked_models_split_like_the_single_model():
    models = [make_model(tf32=True, seed=k) for k in range(3)]
    stack = StackedRecurrent(models)
    x = torch.stack([clips(models[0], seed=k) for k in range(3)])

    def layer():  # the forward pass (readout included), and the backward pass of the recurrent layer only
        stack.zero_grad()
        stack(x)[1][0].sum().backward()  # group 1's activity depends on the whole layer, not on the readout

    def step():
        stack.zero_grad()
        loss = stack.get_loss(stack(x), x)[0]
        loss.backward()

    layer_settings, step_settings = settings_of(layer), settings_of(step)
    n_readout = len(stack.readout_weights)  # one batched readout product per block
    assert layer_settings.count("ieee") == n_readout and layer_settings.count("tf32") > 0
    assert step_settings.count("tf32") == layer_settings.count("tf32")
    assert step_settings.count("ieee") >= 2 * n_readout  # plus the readout's backward products
    # model 0 of the stack computes what model 0 alone computes
    single = make_model(tf32=True, seed=0)
    torch.testing.assert_close(stack(x)[0][0][0], single(x[0])[0][:, :, :9].transpose(0, 1), rtol=1e-5, atol=1e-6)


def test_set_arithmetic_keeps_the_global_products_ieee_for_recurrent_models():
    model = make_model(tf32=False)
    set_arithmetic(model, TrainConfig(tf32=True), torch.device("cpu"))
    assert model.tf32 and torch.get_float32_matmul_precision() == "highest"


def test_tf32_with_bf16_is_refused_in_one_line(tmp_path):
    import numpy as np
    import train

    data = tmp_path / "clips.npy"
    np.save(data, np.zeros((4, 10, 9), dtype=np.float32))
    args = train.build_parser().parse_args(["--dataset", str(data), "--frame-shape", "3", "3", "--tf32",
                                            "--precision", "bf16", "--save-dir", str(tmp_path)])
    with pytest.raises(TrainingSetupError, match="--tf32 changes only float32 products"):
        train.config_for(args)
    assert not any(p.is_dir() for p in tmp_path.iterdir())


@pytest.mark.skipif(not (torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 8),
                    reason="needs an Ampere or newer CUDA GPU")
def test_cuda_tf32_rounds_the_recurrent_layer_only():
    x = clips(make_model(False)).cuda()
    fp32, tf32 = make_model(False).cuda(), make_model(True).cuda()
    h32, h_tf = fp32._hidden(x), tf32._hidden(x)
    assert not torch.equal(h32, h_tf)  # TF32 really ran
    torch.testing.assert_close(h_tf, h32, rtol=1e-2, atol=1e-3)
    # the model's readout of its (TF32) hidden states is the IEEE product of them
    torch.manual_seed(2)  # the same input noise-free forward twice: the hidden states repeat exactly
    pred, hidden = tf32(x)
    groups = torch.split(hidden.transpose(0, 1), tf32.group_sizes, dim=-1)
    ieee = torch.cat([torch.nn.functional.linear(hg, w) for hg, w in zip(groups, tf32.readout_weights)], -1)
    torch.testing.assert_close(pred, (ieee + tf32.readout_bias).transpose(0, 1), rtol=0, atol=0)
