"""Mixed precision (bf16) and the dense recurrence backend against the fp32 block
model: the same function and gradients (to bf16 / fp32 rounding), and the masks
and Dale's law exact after optimizer steps."""
import pytest
import torch

from training import config as training_config
from models.network_hierarchical_recurrent import NetworkHierarchicalRecurrent
from step_helpers import noiseless_step

GROUPS = (12, 10, 8)


def make_model(seed=0, **kwargs):
    torch.manual_seed(seed)
    return NetworkHierarchicalRecurrent(frame_shape=(4, 5), hidden_units=GROUPS, lam=1e-3, **kwargs)


def outputs_and_gradients(model, x):
    model.zero_grad()
    out = model(x)
    loss, _ = model.get_loss(out, (x, x))
    loss.backward()
    model.mask_gradients()
    return out, loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


def relative_error(a, b):
    return ((a - b).norm() / b.norm()).item()


def test_bf16_forward_and_gradients_agree_with_fp32_to_bf16_rounding():
    model = make_model()
    x = torch.randn(6, 12, model.n_pixels, generator=torch.Generator().manual_seed(1))
    out32, loss32, grads32 = outputs_and_gradients(model, x)
    out16, loss16, grads16 = outputs_and_gradients(model.set_precision("bf16"), x)
    assert out16[0].dtype == out16[1].dtype == torch.bfloat16
    assert loss16.dtype == torch.float32  # the loss compares them with the targets in float32
    assert model.hidden_activity(x).dtype == torch.float32  # what every analysis sees
    # bf16 keeps 8 significant bits (relative rounding 2**-9 = 0.2%)
    assert relative_error(out16[0], out32[0]) < 1e-2
    assert relative_error(out16[1], out32[1]) < 1e-2
    assert abs((loss16 - loss32) / loss32) < 1e-2
    # The gradients pass through cancelling residuals (prediction - noisy target): rounding
    # only the input to bf16 already moves the recurrent ones by ~3% here.
    for name, g in grads32.items():
        assert relative_error(grads16[name], g) < 0.08, name
    assert torch.all(grads16["weight_hh"][model.hh_mask == 0] == 0)


def test_bf16_runs_the_recurrence_in_bf16_on_fp32_master_weights(monkeypatch):
    from models import recurrence

    model = make_model().set_precision("bf16")
    seen, original = [], recurrence.ReluRecurrence.forward

    def spy(ctx, drive, weight, blocks, tf32=False):
        seen.extend([drive.dtype, weight.dtype])
        return original(ctx, drive, weight, blocks, tf32)

    monkeypatch.setattr(recurrence.ReluRecurrence, "forward", staticmethod(spy))
    model(torch.randn(2, 8, model.n_pixels))
    assert seen == [torch.bfloat16, torch.bfloat16]
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_the_model_under_bf16_autocast_computes_exactly_its_bf16_mode():
    model = make_model()
    x = torch.randn(3, 8, model.n_pixels, generator=torch.Generator().manual_seed(5))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = model(x)
    native = model.set_precision("bf16")(x)
    assert torch.equal(under_autocast[0], native[0]) and torch.equal(under_autocast[1], native[1])


def test_masks_and_dale_signs_hold_exactly_after_bf16_steps():
    model = make_model().set_precision("bf16")
    opt = torch.optim.Adam(model.parameters(), lr=5e-2)
    gen = torch.Generator().manual_seed(2)
    start = model.weight_hh.detach().clone()
    for _ in range(8):
        noiseless_step(model, opt, torch.randn(4, 9, model.n_pixels, generator=gen))
        assert torch.all(model.weight_hh.detach()[model.hh_mask == 0] == 0), "a masked weight moved"
        assert all(s["exp_avg"].dtype == torch.float32 for s in opt.state.values())  # fp32 Adam state
    model.project_weights_()
    w = model.weight_hh.detach()
    inhibitory = model.hh_signed_mask.sum(0) < 0
    assert torch.all(w[:, ~inhibitory] >= 0) and torch.all(w[:, inhibitory] <= 0)
    assert not torch.equal(w, start)  # it trained
    assert torch.count_nonzero(w[:, ~inhibitory]) > 0 and torch.count_nonzero(w[:, inhibitory]) > 0


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_dense_backend_gives_the_block_backends_losses_and_gradients(precision):
    block, dense = make_model().set_precision(precision), make_model().set_precision(precision).set_recurrence("dense")
    x = torch.randn(5, 11, block.n_pixels, generator=torch.Generator().manual_seed(3))
    out_b, loss_b, grads_b = outputs_and_gradients(block, x)
    out_d, loss_d, grads_d = outputs_and_gradients(dense, x)
    tol = dict(rtol=1e-5, atol=1e-6) if precision == "fp32" else dict(rtol=2e-2, atol=2e-3)
    torch.testing.assert_close(out_d[0], out_b[0], **tol)
    torch.testing.assert_close(out_d[1], out_b[1], **tol)
    torch.testing.assert_close(loss_d, loss_b, **tol)
    for name, g in grads_b.items():
        if precision == "fp32":
            torch.testing.assert_close(grads_d[name], g, rtol=1e-4, atol=1e-7, msg=name)
        else:
            assert relative_error(grads_d[name], g) < 0.03, name


def test_dense_backend_takes_the_same_training_steps_in_fp32():
    block, dense = make_model(), make_model().set_recurrence("dense")
    opts = [torch.optim.Adam(m.parameters(), lr=1e-2) for m in (block, dense)]
    gen = torch.Generator().manual_seed(4)
    for _ in range(5):
        x = torch.randn(4, 9, block.n_pixels, generator=gen)
        for model, opt in zip((block, dense), opts):
            noiseless_step(model, opt, x)
    for (name, p_b), p_d in zip(block.named_parameters(), dense.parameters()):
        torch.testing.assert_close(p_d, p_b, rtol=1e-4, atol=1e-6, msg=name)
    assert torch.all(dense.weight_hh.detach()[dense.hh_mask == 0] == 0)


def test_unknown_precision_and_backend_are_refused():
    model = make_model()
    with pytest.raises(ValueError, match="precision"):
        model.set_precision("fp16")
    with pytest.raises(ValueError, match="backend"):
        model.set_recurrence("cudnn")


# ----- train.py: --precision, --recurrence and the deprecated --amp ---------------------
TINY_RUN = ["--frame-shape", "4", "4", "--hidden-units", "6,5,4", "--batch-size", "8", "--epochs", "1",
            "--validate-every", "1", "--device", "cpu", "--seed", "3"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    import numpy as np

    path = tmp_path_factory.mktemp("data") / "clips.npy"
    np.save(path, np.random.default_rng(2).standard_normal((20, 10, 16)).astype(np.float32))
    return path


def train_run(clips, save_dir, *extra):
    import train

    args = train.build_parser().parse_args(["--dataset", str(clips), "--save-dir", str(save_dir), *TINY_RUN, *extra])
    cfg, resume = train.config_for(args)
    return train.train(cfg, resume, progress=False)


# --recurrence auto's choice for bf16 on this CPU at TINY_RUN's 6,5,4 units (the rule: test_auto_recurrence_rule)
AUTO_BF16 = training_config.auto_recurrence(torch.device("cpu"), "bf16", 6 + 5 + 4)


@pytest.mark.parametrize("flags, precision, backend", [
    ([], "fp32", "block"),
    (["--precision", "bf16"], "bf16", AUTO_BF16),
    (["--amp"], "bf16", AUTO_BF16),  # the deprecated alias
    (["--precision", "bf16", "--recurrence", "dense"], "bf16", "dense"),
    (["--precision", "bf16", "--recurrence", "block"], "bf16", "block"),
])
def test_the_run_config_records_precision_and_recurrence_backend(tmp_path, clips, flags, precision, backend):
    import json

    from safetensors.torch import load_file

    run = train_run(clips, tmp_path, *flags)
    config = json.loads((run / "config.json").read_text())
    asked = flags[flags.index("--recurrence") + 1] if "--recurrence" in flags else "auto"
    assert (config["precision"], config["recurrence"], config["recurrence_backend"]) == (precision, asked, backend)
    weights = load_file(str(run / "1-epochs_model.safetensors"))
    assert weights["weight_hh"].dtype == torch.float32
    mask = NetworkHierarchicalRecurrent(frame_shape=(4, 4), hidden_units=(6, 5, 4)).hh_mask
    assert torch.all(weights["weight_hh"][mask == 0] == 0)


@pytest.mark.parametrize("device, precision, amx, n_hidden, backend", [
    ("cuda", "fp32", False, 2400, "dense"), ("cuda", "bf16", False, 300, "dense"),
    ("cpu", "fp32", True, 300, "block"), ("cpu", "bf16", True, 300, "dense"), ("cpu", "bf16", True, 1200, "dense"),
    ("cpu", "bf16", True, 2400, "block"), ("cpu", "bf16", False, 300, "block"),
])
def test_auto_recurrence_rule(monkeypatch, device, precision, amx, n_hidden, backend):
    from training.config import auto_recurrence

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert auto_recurrence(torch.device(device), precision, n_hidden) == backend


@pytest.mark.parametrize("flag, value", [("--precision", "fp16"), ("--recurrence", "cudnn")])
def test_unknown_precision_or_recurrence_flag_is_a_one_line_error(flag, value):
    import train
    from training import TrainingSetupError

    with pytest.raises(TrainingSetupError, match=f"unknown {flag} '{value}': choose from"):
        training_config.resolve_config(train.build_parser().parse_args([flag, value]))


def test_amp_with_precision_fp32_is_refused_in_one_line(tmp_path, clips):
    from utils import InputError

    with pytest.raises(InputError, match=r"--amp .* contradicts --precision fp32: drop one"):
        train_run(clips, tmp_path / "runs", "--amp", "--precision", "fp32")
    assert not (tmp_path / "runs").exists()


def test_amp_prints_its_deprecation_once_per_command(tmp_path, clips, capsys):
    import submit_training_job

    submit_training_job.main(["--dataset", str(clips), "--save-dir", str(tmp_path), *TINY_RUN[:-2], "--amp",
                              "--seed", "0", "1", "2", "--dry-run"])
    err = capsys.readouterr().err
    assert err.count("--amp is deprecated") == 1, err
