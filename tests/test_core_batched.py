"""Batched sweeps (training/batched.py, submit_training_job.py --batched): K models
trained as one stack end where their own single runs end, to float32 rounding."""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import train
from training.batched import SWEEP_KEY, StackedRecurrent, sweep_jobs, train_batched
from training.loop import TrainingDiverged
from models.io import load_model
from models.network_hierarchical_recurrent import NetworkHierarchicalRecurrent
from step_helpers import clips  # noqa: F401 (a fixture)

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--frame-shape", "4", "4", "--hidden-units", "6,5,4", "--batch-size", "8", "--device", "cpu"]
SWEEP = [(-5.0, 0), (-4.0, 1), (-3.0, 2)]  # (L1, seed): every model differs in both
# The single run uses the block recurrence (per-block products), the stack batched
# products: the summation order differs, so 15 Adam steps agree to float32 rounding.
RTOL, ATOL = 1e-5, 1e-6


def flags(tmp, clips, *extra):
    return ["--dataset", str(clips), "--save-dir", str(tmp), "--epochs", "3", "--validate-every", "1",
            "--checkpoint-every", "2", *TINY, *extra]


def config(tmp, clips, L1, seed, *extra):
    return train.config_for(train.build_parser().parse_args(flags(tmp, clips, "--L1", str(L1), "--seed", str(seed),
                                                                  *extra)))


def batched(tmp, clips, *extra):
    return train_batched([config(tmp, clips, L1, seed, *extra) for L1, seed in SWEEP], progress=False)


def final_weights(run_dir):
    return load_file(str(run_dir / "3-epochs_model.safetensors"))


@pytest.fixture(scope="module")
def singles(tmp_path_factory, clips):
    tmp = tmp_path_factory.mktemp("singles")
    return [train.train(*config(tmp, clips, L1, seed), progress=False) for L1, seed in SWEEP]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, clips):
    return batched(tmp_path_factory.mktemp("batched"), clips)


def test_each_batched_model_ends_with_its_single_runs_weights_and_losses(singles, sweep):
    names = [run.name for run in sweep]
    for single, run in zip(singles, sweep):
        a, b = final_weights(single), final_weights(run)
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(b[key], a[key], rtol=RTOL, atol=ATOL, msg=key)
        assert not torch.equal(a["weight_hh"], torch.zeros_like(a["weight_hh"]))
        ha = json.loads((single / "loss_history.json").read_text())
        hb = json.loads((run / "loss_history.json").read_text())
        for split in ("train", "validation"):
            assert ha[split]["epoch"] == hb[split]["epoch"] == [1, 2, 3]
            for key in ha[split]:
                np.testing.assert_allclose(hb[split][key], ha[split][key], rtol=RTOL)
        ca, cb = (json.loads((d / "config.json").read_text()) for d in (single, run))
        assert cb.pop(SWEEP_KEY) == names  # the only difference: the runs it trained with
        assert ca.pop("save_dir") != cb.pop("save_dir") and ca == cb
        assert "batched with 2 other run(s)" in (run / "logs" / "train.log").read_text()
    # the models really are different ones: their own seeds and lambdas
    finals = [final_weights(run)["weight_ih"] for run in sweep]
    assert not torch.equal(finals[0], finals[1]) and not torch.equal(finals[1], finals[2])


def test_batched_runs_load_like_single_runs(sweep):
    for (L1, seed), run in zip(SWEEP, sweep):
        model, cfg, history = load_model(run)
        assert isinstance(model, NetworkHierarchicalRecurrent)
        assert (cfg["L1"], cfg["seed"], cfg["checkpoint_epoch"]) == (L1, seed, 3)
        assert model.lam == pytest.approx(10.0 ** L1) and history["train"]["epoch"] == [1, 2, 3]
        state = torch.load(run / "2-epochs_state.pt", weights_only=True)
        assert set(state) == {"model", "optimizer", "history", "epoch", "step", "global_step", "permutation",
                              "sums", "rng"}
        assert (state["epoch"], state["step"], state["global_step"]) == (3, 0, 10)
        assert len(state["optimizer"]["state"]) == len(list(model.parameters()))


def test_masked_entries_stay_zero_and_dale_signs_hold_in_the_stack():
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(NetworkHierarchicalRecurrent(frame_shape=(4, 4), hidden_units=(6, 5, 4), lam=10.0 ** -seed))
    stack = StackedRecurrent(models)
    opt = torch.optim.Adam(stack.parameters(), lr=0.05)  # large steps, so Adam does flip signs
    mask, signed = models[0].hh_mask.bool(), models[0].hh_signed_mask
    x = torch.randn(3, 8, 12, 16, generator=torch.Generator().manual_seed(0))
    flipped = False
    for _ in range(10):
        opt.zero_grad()
        stack.get_loss(stack(x), x)[0].backward()
        torch.nn.utils.clip_grad_value_(stack.parameters(), 0.25)
        stack.mask_gradients()
        opt.step()
        w = stack.weight_hh.detach()
        assert torch.all(w[:, ~mask] == 0)  # exact zeros, before any projection
        flipped |= bool((torch.sign(w) * signed < 0).any())  # a sign Adam flipped ...
        stack.project_weights_()
        assert torch.all(stack.weight_hh[:, mask] * signed[mask] >= 0)  # ... is reflected back
    assert flipped
    off_diagonal = mask & ~torch.eye(15, dtype=torch.bool)
    assert torch.all((stack.weight_hh.detach()[:, off_diagonal] != 0).any(1))  # every model's allowed entries moved


@pytest.mark.parametrize("stop_after", [7, 10])  # mid-epoch and at an epoch boundary (5 steps per epoch)
def test_resumed_batched_sweep_continues_every_run_bit_exactly(tmp_path, clips, sweep, stop_after):
    cut = batched(tmp_path, clips, "--stop-after-steps", str(stop_after))
    assert all((run / "interrupted_state.pt").exists() for run in cut)
    args = argparse.Namespace(**{**vars(train.build_parser().parse_args(flags(tmp_path, clips))), "path": str(cut[1])})
    jobs = sweep_jobs([train.config_for(args)], args)  # any one folder names the whole sweep
    assert [resume.parent for _, resume in jobs] == cut
    assert train_batched(jobs, progress=False) == cut
    for full, run in zip(sweep, cut):
        a, b = final_weights(full), final_weights(run)
        assert all(torch.equal(a[k], b[k]) for k in a)
        assert (json.loads((full / "loss_history.json").read_text())
                == json.loads((run / "loss_history.json").read_text()))


def test_a_batched_runs_state_resumes_as_a_single_run(tmp_path, clips, singles, sweep):
    import shutil

    run = Path(shutil.copytree(sweep[2], tmp_path / "run"))
    (run / "3-epochs_model.safetensors").unlink()
    (run / "3-epochs_state.pt").unlink()
    (run / "3-epochs_state.json").unlink(missing_ok=True)
    assert train.train(*train.config_for(train.build_parser().parse_args(["--path", str(run)])),
                       progress=False) == run
    a, b = final_weights(singles[2]), final_weights(run)
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=RTOL, atol=ATOL, msg=key)


def run_cli(args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "submit_training_job.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)


def test_cli_batched_sweep_and_its_refusals(tmp_path, clips):
    proc = run_cli(["--batched", "--name", "sw", "--L1", "-5", "-4", "--seed", "3", "--dataset", str(clips),
                    "--save-dir", str(tmp_path), "--epochs", "1", *TINY])
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = sorted(tmp_path.iterdir())
    assert [r.name.split("_2")[0] for r in runs] == ["sw_-4L1_seed3", "sw_-5L1_seed3"]
    assert all(str(r) in proc.stdout and (r / "1-epochs_model.safetensors").exists() for r in runs)
    for extra, fragment in ((["--cluster", "local"], "drop --cluster"),
                            (["--model", "network_hierarchical_feedforward"], "recurrent models only")):
        proc = run_cli(["--batched", "--L1", "-5", "-4", *flags(tmp_path / "no", clips), *extra])
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and fragment in lines[0], proc.stderr
        assert not (tmp_path / "no").exists()


def test_bf16_stack_computes_each_models_bf16_forward():
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(NetworkHierarchicalRecurrent(frame_shape=(4, 4), hidden_units=(6, 5, 4)).set_precision("bf16"))
    stack = StackedRecurrent(models)
    x = torch.randn(3, 8, 12, 16, generator=torch.Generator().manual_seed(0))
    preds, groups = stack(x)
    assert preds[0].dtype == torch.bfloat16
    for k, model in enumerate(models):
        mine = (torch.cat([p[k] for p in preds], -1).transpose(0, 1).float(),
                torch.cat([h[k] for h in groups], -1).transpose(0, 1).float())
        with torch.no_grad():
            bf16 = [t.float() for t in model(x[k])]
            fp32 = [t.float() for t in model.set_precision("fp32")(x[k])]
        for a, b, c in zip(mine, bf16, fp32):
            # products accumulate in float32 and round once to bfloat16, so another summation
            # order changes a few rounded outputs by one bf16 step, and later steps inherit it;
            # the fp32 computation differs everywhere, by far more
            assert (a == b).float().mean() > 0.8  # measured: 87-95% of the outputs bit-equal
            assert (a - b).abs().mean() < 0.5 * (b - c).abs().mean()  # measured: 0.2-0.3


def test_a_diverging_model_leaves_the_others_gradients_alone_and_stops_the_sweep(tmp_path, clips):
    models = []
    for seed in range(2):
        torch.manual_seed(seed)
        models.append(NetworkHierarchicalRecurrent(frame_shape=(4, 4), hidden_units=(6, 5, 4)))
    x = torch.randn(2, 8, 12, 16, generator=torch.Generator().manual_seed(0))
    grads = []
    for lam in (1e-6, float("inf")):  # model 1's loss is finite, then infinite
        stack = StackedRecurrent(models)
        stack.lam[1] = lam
        stack.get_loss(stack(x), x)[0].backward()
        grads.append([p.grad[0].clone() for p in stack.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*grads))  # model 0 never sees its neighbour's loss
    # L1 = 300: lambda 1e300 is inf in float32, so that run diverges in its first epoch
    jobs = [config(tmp_path, clips, L1, seed) for L1, seed in ((-5.0, 0), (300.0, 1))]
    with pytest.raises(TrainingDiverged, match="seed1.*diverged in epoch 1.*the sweep stops with it"):
        train_batched(jobs, progress=False)
    bad = next(tmp_path.glob("htp_300L1_seed1_*"))
    assert "diverged in epoch 1" in (bad / "logs" / "train.log").read_text()
    assert not list(tmp_path.glob("*/*-epochs_model.safetensors"))  # nothing of the diverged epoch is saved


def test_a_registered_loss_other_than_the_offset_mse_is_refused_not_replaced(monkeypatch):
    from losses import LOSSES, RECURRENT, LossSpec
    from training.batched import check_sweep
    from training.config import TrainConfig
    from training import TrainingSetupError

    monkeypatch.setitem(LOSSES, "toy_loss", LossSpec(lambda model, out, data: None, 1, (RECURRENT,)))
    check_sweep([TrainConfig(L1=-5), TrainConfig(L1=-4)])  # the paper's loss stacks
    with pytest.raises(TrainingSetupError, match="offset-MSE losses only"):
        check_sweep([TrainConfig(L1=-5, loss="toy_loss"), TrainConfig(L1=-4, loss="toy_loss")])


def test_a_sweep_records_the_monitor_it_is_given_for_every_run(tmp_path, clips):
    jobs = [config(tmp_path, clips, L1, seed, "--rf-monitor-every", "2", "--rf-monitor-clips", "10")
            for L1, seed in SWEEP[:2]]
    runs = train_batched(jobs, progress=False, monitor=train.receptive_field_monitor(jobs[0][0]))
    for run in runs:
        rows = json.loads((run / "loss_history.json").read_text())["rf_monitor"]
        assert rows["epoch"] == [2] and rows["rwa_clips"] == [10] and "f1f0_above_1" in rows
        assert "Gabor-like (original's test)" in (run / "logs" / "train.log").read_text()
