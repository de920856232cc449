"""The recurrence backends and precisions on a GPU against the fp32 block model on
the CPU. Every test here skips without CUDA; benchmarks/gpu_suite.py runs this
file first on a GPU machine."""
import pytest
import torch

from models.network_hierarchical_recurrent import NetworkHierarchicalRecurrent
from step_helpers import noiseless_step

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def model_on(device, recurrence="block", precision="fp32"):
    torch.manual_seed(0)
    model = NetworkHierarchicalRecurrent(frame_shape=(5, 6), hidden_units=(40, 30, 20), lam=1e-3)
    return model.to(device).set_recurrence(recurrence).set_precision(precision)


def loss_and_gradients(model, x):
    model.zero_grad()
    loss, _ = model.get_loss(model(x), (x, x))
    loss.backward()
    model.mask_gradients()
    return loss.detach().cpu(), {n: p.grad.detach().cpu() for n, p in model.named_parameters()}


@pytest.fixture
def exact_fp32():
    """TF32 off for the fp32 comparisons (it is off by default in train.py too)."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_float32_matmul_precision(before)


@pytest.mark.parametrize("recurrence", ["block", "dense"])
def test_cuda_fp32_backends_match_the_cpu_block_model(recurrence, exact_fp32):
    x = torch.randn(6, 12, 30, generator=torch.Generator().manual_seed(1))
    loss_cpu, grads_cpu = loss_and_gradients(model_on("cpu"), x)
    loss_gpu, grads_gpu = loss_and_gradients(model_on("cuda", recurrence), x.cuda())
    torch.testing.assert_close(loss_gpu, loss_cpu, rtol=1e-5, atol=1e-6)
    for name, g in grads_cpu.items():
        torch.testing.assert_close(grads_gpu[name], g, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("recurrence", ["block", "dense"])
def test_cuda_bf16_agrees_with_cpu_fp32_to_bf16_rounding(recurrence):
    x = torch.randn(6, 12, 30, generator=torch.Generator().manual_seed(2))
    loss_cpu, grads_cpu = loss_and_gradients(model_on("cpu"), x)
    loss_gpu, grads_gpu = loss_and_gradients(model_on("cuda", recurrence, "bf16"), x.cuda())
    assert abs((loss_gpu - loss_cpu) / loss_cpu) < 1e-2
    for name, g in grads_cpu.items():
        assert ((grads_gpu[name] - g).norm() / g.norm()) < 0.08, name


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cuda_dense_training_keeps_masks_exact(precision):
    model = model_on("cuda", "dense", precision)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator(device="cuda").manual_seed(3)
    for _ in range(5):
        x = torch.randn(4, 10, 30, device="cuda", generator=gen)
        noiseless_step(model, opt, x)
    assert torch.all(model.weight_hh.detach()[model.hh_mask == 0] == 0)
