"""Data-parallel training: torchrun with 2 gloo processes takes the same steps as one
process, stops and resumes together, and only process 0 writes."""
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
from models import build_model

ROOT = Path(__file__).resolve().parents[1]
# 40 training clips in batches of 7: 7,7,7,7,7,5, split 3+4 and 2+3 over two processes
RUN = ["--dataset", "{clips}", "--frame-shape", "4", "4", "--hidden-units", "6,5,4", "--batch-size", "7",
       "--epochs", "2", "--validate-every", "1", "--checkpoint-every", "1", "--device", "cpu", "--seed", "3"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "clips.npy"
    np.save(path, np.random.default_rng(2).standard_normal((44, 10, 16)).astype(np.float32))
    return path


def args_for(clips, save_dir, *extra):
    return [a.replace("{clips}", str(clips)) for a in RUN] + ["--save-dir", str(save_dir), *extra]


def torchrun(args, nproc=2, finished=True):
    """train.py under torchrun; a run not ``finished`` (cut short by a limit) has its processes exit 3, which
    torchrun reports as a failure of the job."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", "train.py", *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                          timeout=900)
    assert (proc.returncode == 0) == finished, proc.stderr[-3000:]
    if not finished:
        assert "exitcode  : 3" in proc.stderr, proc.stderr[-3000:]
    return proc


def in_process(args):
    cfg, resume = train.config_for(train.build_parser().parse_args(args))
    return train.train(cfg, resume, progress=False)


def assert_close(got: dict, want: dict, atol=1e-6):
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_allclose(got[k].numpy(), want[k].numpy(), rtol=0, atol=atol, err_msg=k)


def test_two_processes_take_the_same_steps_stop_and_resume_as_one(tmp_path, clips):
    single = in_process(args_for(clips, tmp_path / "one", "--stop-after-steps", "3"))
    single_state = torch.load(single / "interrupted_state.pt", weights_only=True)
    in_process(["--path", str(single)])

    stopped = torchrun(args_for(clips, tmp_path / "ddp", "--stop-after-steps", "3"), finished=False)
    (run,) = (tmp_path / "ddp").iterdir()  # process 1 created no folder of its own
    assert stopped.stderr.count("stop request: saved a resumable state") == 1  # only process 0 reports
    assert "cut short during epoch 1 of" in stopped.stderr
    state = torch.load(run / "interrupted_state.pt", weights_only=True)
    assert state["global_step"] == 3
    assert_close(state["model"], single_state["model"])  # 3 steps, uneven slices of the batch
    np.testing.assert_allclose(state["sums"].numpy(), single_state["sums"].numpy(), rtol=1e-6)

    resumed = torchrun(["--path", str(run)])  # both processes load the state; each checkpoint checks they agree
    assert f"run folder: {run}" in resumed.stdout
    for epoch in (1, 2):
        assert_close(load_file(str(run / f"{epoch}-epochs_model.safetensors")),
                     load_file(str(single / f"{epoch}-epochs_model.safetensors")))
    got, want = (json.loads((r / "loss_history.json").read_text()) for r in (run, single))
    for split in ("train", "validation"):
        assert got[split]["epoch"] == want[split]["epoch"] == [1, 2]
        np.testing.assert_allclose(got[split]["loss"], want[split]["loss"], rtol=1e-6)
    weights = load_file(str(run / "2-epochs_model.safetensors"))
    model = build_model(json.loads((run / "config.json").read_text()))
    assert torch.all(weights["weight_hh"][model.hh_mask == 0] == 0)  # the connectivity mask holds exactly
    assert json.loads((run / "config.json").read_text())["processes"] == 2


def test_precision_choices_are_recorded_and_reset(tmp_path, clips):
    fast = in_process(args_for(clips, tmp_path, "--epochs", "1", "--tf32", "--name", "fast"))
    # the recurrent model takes TF32 in its recurrent layer only (tests/test_core_tf32.py):
    # torch's global float32 products stay IEEE
    assert torch.get_float32_matmul_precision() == "highest"
    assert json.loads((fast / "config.json").read_text())["tf32"] is True
    # a model without a recurrent layer to single out lets every product use TF32
    in_process(args_for(clips, tmp_path, "--epochs", "1", "--tf32", "--name", "ff", "--model", "network_feedforward",
                        "--hidden-units", "6", "--beta", "1"))
    assert torch.get_float32_matmul_precision() == "high"
    exact = in_process(args_for(clips, tmp_path, "--epochs", "1", "--name", "exact"))
    assert torch.get_float32_matmul_precision() == "highest"
    config = json.loads((exact / "config.json").read_text())
    assert config["tf32"] is False and config["amp"] is False
