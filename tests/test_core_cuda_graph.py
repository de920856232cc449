"""train.py --cuda-graph (training/cuda_graph.py). On a GPU: graphed steps take the
eager steps, to float32 rounding, across the warm-up, the capture, the replays and
two batch shapes, and train.py trains and resumes with and without the flag. On a
CPU: the refusals, and a state saved by a capturable Adam resuming in a plain one.
benchmarks/gpu_suite.py runs this file on a GPU machine."""
import json

import numpy as np
import pytest
import torch

import train
from training import TrainingSetupError
from training.cuda_graph import EAGER_STEPS_PER_SHAPE, GraphedTrainStep
from models.network_hierarchical_recurrent import NetworkHierarchicalRecurrent
from training.step import TrainState, make_optimizer, new_history, train_step
from training.config import TrainConfig
from utils import UserInputError

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def small_model(device, precision="fp32"):
    torch.manual_seed(0)
    model = NetworkHierarchicalRecurrent(frame_shape=(5, 6), hidden_units=(40, 30, 20), lam=1e-3)
    return model.to(device).set_recurrence("dense" if device == "cuda" else "block").set_precision(precision)


def tiny_dataset(tmp_path, n=23):
    path = tmp_path / "clips.npy"
    np.save(path, np.random.default_rng(0).standard_normal((n, 12, 30)).astype(np.float32))
    return path


def test_graphed_step_refuses_an_optimizer_it_cannot_replay():
    model = small_model("cpu")
    with pytest.raises(ValueError, match="capturable=True and a tensor lr"):
        GraphedTrainStep(model, make_optimizer(model, TrainConfig(), torch.device("cpu")), TrainConfig())


def test_cuda_graph_without_a_gpu_is_refused_before_anything_is_written(tmp_path):
    data = tiny_dataset(tmp_path)
    args = train.build_parser().parse_args(["--dataset", str(data), "--frame-shape", "5", "6", "--hidden-units",
                                            "8,8", "--beta", "0.9,0.1", "--warmup", "2", "--device", "cpu",
                                            "--cuda-graph", "--save-dir", str(tmp_path / "runs")])
    cfg, _ = train.config_for(args)
    with pytest.raises(UserInputError, match="--cuda-graph captures one process's steps on a GPU"):
        train.train(cfg, progress=False)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_capturable_adams_state_resumes_in_a_plain_adam(tmp_path):
    """A run trained with --cuda-graph resumes without it (on a CPU, say): the saved
    groups' capturable flag and tensor lr give way to the live optimizer's."""
    model = small_model("cpu")
    opt = make_optimizer(model, TrainConfig(), torch.device("cpu"))
    x = torch.randn(4, 12, 30, generator=torch.Generator().manual_seed(1))
    train_step(model, opt, x, None, TrainConfig(lr=1e-3), 0)
    state = TrainState(model, opt, torch.Generator(), torch.Generator(), new_history(["L1"]))
    saved = state.as_dict()
    for group in saved["optimizer"]["param_groups"]:  # as a graphed run saves them
        group["capturable"], group["lr"] = True, torch.tensor(1e-3)
    path = tmp_path / "s_state.pt"
    torch.save(saved, path)
    fresh = small_model("cpu")
    plain = make_optimizer(fresh, TrainConfig(), torch.device("cpu"))
    TrainState(fresh, plain, torch.Generator(), torch.Generator(), new_history(["L1"])).load(path)
    assert all(not g["capturable"] and not torch.is_tensor(g["lr"]) for g in plain.param_groups)
    train_step(fresh, plain, x, None, TrainConfig(lr=1e-3), 1)  # a CPU step with the restored Adam state


@needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_graphed_steps_take_the_eager_steps(precision):
    """Steps 1-3 of each shape eager on the side stream, then capture, then replays; the
    second batch shape (B=3) gets its own graph. The same capturable Adam eagerly is
    the reference; the default Adam differs only in how it rounds its bias correction."""
    cfg = TrainConfig(lr=3e-3, lr_half_life=5, precision=precision)
    device = torch.device("cuda")
    gen = torch.Generator(device="cuda").manual_seed(2)
    batches = [torch.randn(3 if k % 4 == 3 else 8, 12, 30, device="cuda", generator=gen) for k in range(20)]
    results = {}
    for kind in ("graphed", "eager capturable", "eager default"):
        torch.set_float32_matmul_precision("highest")
        model = small_model("cuda", precision)
        opt = make_optimizer(model, cfg, device, graphed=kind != "eager default")
        graphed = GraphedTrainStep(model, opt, cfg) if kind == "graphed" else None
        noise = torch.Generator(device="cuda").manual_seed(3)
        values = []
        for step, batch in enumerate(batches):
            if graphed is not None:
                values.append(graphed(batch, noise, step))
            else:
                values.append(train_step(model, opt, batch, noise, cfg, step))
        torch.cuda.synchronize()
        results[kind] = model, torch.stack(values)
        if graphed is not None:
            assert set(graphed.graphs) == {(8, 12, 30), (3, 12, 30)}
            assert len(batches) - sum(graphed.eager_taken.values()) > 2 * EAGER_STEPS_PER_SHAPE  # replays ran
    reference, reference_values = results["eager capturable"]
    model, values = results["graphed"]  # the same kernels, replayed
    torch.testing.assert_close(values, reference_values, rtol=1e-5, atol=1e-6)
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)
    # the default Adam rounds its bias correction otherwise: close, not equal (bf16 products amplify
    # a last-bit difference in a weight into a bf16 rounding step)
    model, values = results["eager default"]
    bound = 1e-4 if precision == "fp32" else 1e-2
    torch.testing.assert_close(values, reference_values, rtol=10 * bound, atol=1e-5)
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        assert (p - q).norm() <= bound * q.norm(), name
    model = results["graphed"][0]
    assert torch.all(model.weight_hh.detach()[model.hh_mask == 0] == 0)


@needs_cuda
def test_train_py_with_cuda_graph_trains_and_resumes_without_it(tmp_path):
    data = tiny_dataset(tmp_path)
    common = ["--dataset", str(data), "--frame-shape", "5", "6", "--hidden-units", "16,8", "--beta", "0.9,0.1",
              "--warmup", "2", "--batch-size", "5", "--device", "cuda", "--validate-every", "1",
              "--save-dir", str(tmp_path / "runs")]
    cfg, _ = train.config_for(train.build_parser().parse_args(common + ["--epochs", "3", "--cuda-graph"]))
    run = train.train(cfg, progress=False)
    cfg, state = train.config_for(train.build_parser().parse_args(["--path", str(run), "--epochs", "4",
                                                                     "--no-cuda-graph"]))
    assert not cfg.cuda_graph
    train.train(cfg, resume=state, progress=False)
    history = json.loads((run / "loss_history.json").read_text())["train"]
    assert history["epoch"] == [1, 2, 3, 4] and np.isfinite(history["loss"]).all()


def test_cuda_graph_with_a_batched_sweep_is_refused():
    from training.batched import check_sweep

    with pytest.raises(TrainingSetupError, match="--cuda-graph captures a single run's steps"):
        check_sweep([TrainConfig(L1=-5, cuda_graph=True), TrainConfig(L1=-4, cuda_graph=True)])
