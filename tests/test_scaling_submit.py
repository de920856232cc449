"""Job submission: sweeps, dry runs, cluster-option checks, submitit jobs and requeue."""
import json
import signal

import numpy as np
import pytest
import submitit
from safetensors.torch import load_file
from submitit.slurm.slurm import _make_sbatch_string

import submit_training_job as stj
import train
from training.run_dir import read_state_file
from training.loop import StopRequest
from training.config import find_resume_state
from utils import run_cli

TINY = ["--frame-shape", "4", "4", "--hidden-units", "6,5,4", "--batch-size", "8", "--device", "cpu"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "clips.npy"
    np.save(path, np.random.default_rng(1).standard_normal((44, 10, 16)).astype(np.float32))
    return path


def test_dry_run_lists_every_combination_and_creates_nothing(tmp_path, clips, capsys):
    stj.main(["--name", "sw", "--L1", "-6", "-5.5", "--seed", "0", "3", "--dataset", str(clips), "--save-dir",
              str(tmp_path), "--cluster", "slurm", "--partition", "gpu", "--time", "1-00:00:00", "--dry-run", *TINY])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("dry run: 4 job(s) as SLURM jobs") and "time_min=1440" in out[0]
    rows = [line.split() for line in out[2:]]
    assert [(r[2], r[3]) for r in rows] == [("-6", "0"), ("-6", "3"), ("-5.5", "0"), ("-5.5", "3")]
    assert [r[1].rsplit("/", 1)[1] for r in rows][1] == "sw_-6L1_seed3_<date-time>"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, fragment", [
    (["--cluster", "slurm", "--time", "-5"], "--time '-5' is not a positive SLURM time"),
    (["--cluster", "slurm", "--time", "soon"], "--time 'soon' is not a positive SLURM time"),
    (["--cluster", "slurm", "--time", "0:00"], "--time '0:00' is zero"),
    (["--cluster", "local", "--gpus", "-1"], "--gpus '-1' is not a whole number >= 0"),
    (["--cluster", "slurm", "--gpus", "two"], "--gpus 'two' is not a whole number"),
    (["--cluster", "slurm", "--partition", "gpu;rm"], "--partition 'gpu;rm' is not a SLURM name"),
    (["--cluster", "slurm", "--mem", "lots"], "--mem 'lots' is not a SLURM memory size"),
    (["--cluster", "local", "--account", "lab"], "--account applies to SLURM jobs only"),
    (["--partition", "gpu"], "--partition applies to submitted jobs"),
    (["--cluster", "slurm", "--time", "10"], "sbatch/srun are not on PATH"),  # no SLURM on this machine
    (["--L1", "-6", "-5", "--path", "somewhere"], "a --L1 sweep starts new runs"),
    (["--seed", "1", "1"], "--seed lists a value twice"),
])
def test_bad_job_options_get_one_line_error_and_nothing_is_created(tmp_path, clips, capsys, monkeypatch,
                                                                   args, fragment):
    monkeypatch.setattr(stj.shutil, "which", lambda command: None)  # as on any machine without SLURM
    argv = ["--dataset", str(clips), "--save-dir", str(tmp_path / "runs"), *TINY, *args]
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: stj.main(argv))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and fragment in err[0], err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("text, minutes", [("90", 90), ("1:30", 2), ("02:00:00", 120), ("1-00", 1440),
                                           ("1-2:30", 1590), ("1-0:0:30", 1441)])
def test_slurm_time_formats(text, minutes):
    assert stj.parse_slurm_time(text) == minutes


def test_slurm_parameters_give_the_sbatch_options(tmp_path):
    options = {"time_min": 90, "gpus": 2, "nodes": 3, "cpus": 8, "mem": "64G", "partition": "gpu,a100",
               "account": "lab"}
    script = _make_sbatch_string(command="python -m job", folder=tmp_path, **stj.slurm_parameters(options, "run1"))
    for line in ("--job-name=run1", "--time=90", "--nodes=3", "--ntasks-per-node=2", "--gpus-per-node=2",
                 "--cpus-per-task=8", "--mem=64G", "--partition=gpu,a100", "--account=lab", "--signal=USR2@90"):
        assert f"#SBATCH {line}" in script, line
    assert f"export PYTHONPATH={stj.ROOT}" in script


def test_local_executor_sweep_trains_two_runs_with_their_own_folders_and_logs(tmp_path, clips, capsys):
    stj.main(["--name", "sw", "--L1", "-6", "-5", "--epochs", "1", "--dataset", str(clips),
              "--save-dir", str(tmp_path), "--cluster", "local", *TINY])
    table = capsys.readouterr().out.splitlines()
    runs = sorted(tmp_path.iterdir())
    assert [r.name.split("_2")[0] for r in runs] == ["sw_-5L1_seed0", "sw_-6L1_seed0"]
    assert len(table) == 3 and all(str(r) in "\n".join(table) for r in runs)
    for run, L1 in zip(runs, (-5, -6)):
        assert json.loads((run / "config.json").read_text())["L1"] == L1
        assert (run / "1-epochs_model.safetensors").exists() and (run / "1-epochs_state.pt").exists()
        assert list((run / "logs").glob("*_log.out")) and list((run / "logs").glob("*_log.err"))
        assert "epoch 1/1 train loss" in (run / "logs" / "train.log").read_text()


def test_sweep_in_this_process_writes_each_run_its_own_log(tmp_path, clips, capsys):
    stj.main(["--name", "here", "--L1", "-6", "-5", "--epochs", "2", "--validate-every", "2", "--dataset",
              str(clips), "--save-dir", str(tmp_path), *TINY])
    runs = sorted(tmp_path.iterdir())
    assert [r.name.split("_2")[0] for r in runs] == ["here_-5L1_seed0", "here_-6L1_seed0"]
    out = capsys.readouterr().out
    for run in runs:
        assert f"run folder: {run}" in out
        lines = (run / "logs" / "train.log").read_text().splitlines()
        history = json.loads((run / "loss_history.json").read_text())
        assert "started: 40 training and 4 validation clips" in lines[0] and "finished epoch 2" in lines[-1]
        epochs = [line for line in lines if " epoch " in line and " train " in line]
        assert len(epochs) == 2 and "validation" not in epochs[0] and "validation loss" in epochs[1]
        for line, epoch, loss in zip(epochs, (1, 2), history["train"]["loss"]):
            assert f"epoch {epoch}/2 train loss {loss:.6g} " in line
        assert "epoch" not in out  # the per-epoch lines go to the log, not to stdout


def test_requeued_job_resumes_from_its_last_state(tmp_path, clips):
    """Each call of the job trains 4 steps and stops, as a pre-empted job would; each
    checkpoint() resubmission resumes it. The end result equals one uninterrupted run."""
    base = ["--dataset", str(clips), "--epochs", "2", "--validate-every", "1", *TINY]
    reference = train.train(train.config_for(train.build_parser().parse_args(
        base + ["--save-dir", str(tmp_path / "ref")]))[0], progress=False)
    cfg, _ = train.config_for(train.build_parser().parse_args(
        base + ["--save-dir", str(tmp_path / "job"), "--stop-after-steps", "4"]))
    run_dir = train.create_run_dir(cfg)
    job, calls, steps = stj.TrainingJob(cfg, run_dir), 0, []
    while not (run_dir / "2-epochs_model.safetensors").exists():
        job = job if calls == 0 else job.checkpoint().function
        assert job() == str(run_dir)
        calls += 1
        steps.append(read_state_file(find_resume_state(run_dir))["global_step"])
    assert calls == 3 and steps == [4, 8, 10]  # 5 steps per epoch
    final, expected = load_file(str(run_dir / "2-epochs_model.safetensors")), load_file(
        str(reference / "2-epochs_model.safetensors"))
    assert all(np.array_equal(final[k].numpy(), expected[k].numpy()) for k in expected)
    history = json.loads((run_dir / "loss_history.json").read_text())
    assert history == json.loads((reference / "loss_history.json").read_text())


def test_usr2_saves_first_then_reaches_the_handler_it_displaced():
    """SLURM's warning (USR2) stops the loop; once the loop has saved, submitit's
    handler (here a stand-in) gets the signal to requeue the job."""
    received = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: received.append(signum))
    try:
        with StopRequest() as stop:
            signal.raise_signal(signal.SIGUSR2)
            assert stop.requested and received == []
        assert received == [signal.SIGUSR2]
        with StopRequest() as stop:
            signal.raise_signal(signal.SIGTERM)  # a plain stop is not passed on
        assert stop.requested and received == [signal.SIGUSR2]
    finally:
        signal.signal(signal.SIGUSR2, previous)


def test_run_folders_started_in_the_same_second_are_distinct(tmp_path):
    cfg = train.TrainConfig(name="par", L1=-5.5, seed=7, save_dir=str(tmp_path))
    folders = [train.create_run_dir(cfg) for _ in range(3)]
    assert len(set(folders)) == 3 and all(f.is_dir() and f.name.startswith("par_-5.5L1_seed7_") for f in folders)


def test_submitit_debug_executor_runs_the_job_in_process(tmp_path, clips):
    cfg, _ = train.config_for(train.build_parser().parse_args(
        ["--dataset", str(clips), "--epochs", "1", "--save-dir", str(tmp_path), *TINY]))
    run_dir = train.create_run_dir(cfg)
    job = submitit.DebugExecutor(folder=run_dir / "logs").submit(stj.TrainingJob(cfg, run_dir))
    assert job.result() == str(run_dir) and (run_dir / "1-epochs_model.safetensors").exists()
