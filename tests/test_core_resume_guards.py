"""A run folder's guards on resume: a batched sweep killed while it wrote its checkpoints
resumes bit-exactly from the newest step all its runs saved; a config.json that does not
fit the saved weights, and --path naming a file of the run folder, are one line (or the
folder); one training process per run folder (a lock that names its holder); a second
Ctrl-C stops at once, in one line; a diverging batched run says what the others can do."""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import train
from training import ResumeError
from training.batched import sweep_jobs, train_batched
from training.loop import StopRequest, TrainingDiverged
from utils import InputError
from step_helpers import clips, no_loss_curves  # noqa: F401 (fixtures)

LOCK_FILE = ".training.lock"  # training.run_dir.LOCK_FILE

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--frame-shape", "4", "4", "--hidden-units", "6,5,4", "--batch-size", "8", "--device", "cpu"]
SWEEP = [(-5.0, 0), (-4.0, 1), (-3.0, 2)]  # 44 clips: 40 for training, 5 steps per epoch


def flags(tmp, clips, *extra):
    return ["--dataset", str(clips), "--save-dir", str(tmp), "--epochs", "3", "--validate-every", "1",
            "--checkpoint-every", "1", *TINY, *extra]


def parse(*argv):
    return train.build_parser().parse_args(list(argv))


def batched(tmp, clips, *extra):
    return train_batched([train.config_for(parse(*flags(tmp, clips, "--L1", str(L1), "--seed", str(seed), *extra)))
                          for L1, seed in SWEEP], progress=False)


def resume_sweep(run_dir, *extra):
    args = argparse.Namespace(**{**vars(parse(*extra)), "path": str(run_dir)})
    return train_batched(sweep_jobs([train.config_for(args)], args), progress=False)


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def assert_same_runs(expected, got, epoch=3):
    for a, b in zip(expected, got):
        wa, wb = (load_file(str(d / f"{epoch}-epochs_model.safetensors")) for d in (a, b))
        assert all(torch.equal(wa[k], wb[k]) for k in wa), b.name
        assert json.loads((a / "loss_history.json").read_text()) == json.loads((b / "loss_history.json").read_text())


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, clips):
    """The uninterrupted sweep: 3 epochs, a checkpoint after each."""
    return batched(tmp_path_factory.mktemp("sweep"), clips)


def copy_sweep(runs, folder):
    return [Path(shutil.copytree(run, folder / run.name)) for run in runs]


def drop_checkpoint(run, epoch):
    for name in (f"{epoch}-epochs_model.safetensors", f"{epoch}-epochs_state.pt", f"{epoch}-epochs_state.json"):
        (run / name).unlink()


# ---------------------------------------------------------------------------------------------
# Item 5: a batched sweep killed while writing its checkpoints
# ---------------------------------------------------------------------------------------------
def test_a_sweep_killed_between_its_runs_epoch_checkpoints_rolls_back_and_resumes_bit_exactly(
        tmp_path, clips, sweep, capsys):
    runs = copy_sweep(sweep, tmp_path)
    for run in runs[1:]:  # the kill came after run 0 had written epoch 3, before the others had
        drop_checkpoint(run, 3)
    assert resume_sweep(runs[2]) == runs
    assert "rolled back" in capsys.readouterr().err
    assert_same_runs(sweep, runs)


def test_a_sweep_killed_after_a_stop_request_rolls_back_to_the_interrupted_states(tmp_path, clips, sweep):
    cut = batched(tmp_path, clips, "--stop-after-steps", "7")  # every run: interrupted at step 7, epoch 1 at 5
    for name in ("2-epochs_model.safetensors", "2-epochs_state.pt", "2-epochs_state.json"):
        shutil.copy(sweep[0] / name, cut[0] / name)  # run 0 had resumed and saved epoch 2 when the kill came
    assert resume_sweep(cut[1]) == cut
    assert_same_runs(sweep, cut)


def test_a_sweep_killed_while_it_wrote_its_first_checkpoints_is_told_to_start_again(tmp_path, sweep):
    runs = copy_sweep(sweep, tmp_path)
    for run in runs[1:]:
        for epoch in (1, 2, 3):
            drop_checkpoint(run, epoch)
    with pytest.raises(InputError, match=rf"first checkpoints: {runs[1].name}, {runs[2].name} saved none.*"
                                             "start the sweep again"):
        resume_sweep(runs[0])


def test_a_sweep_whose_runs_share_no_saved_step_is_one_line(tmp_path, clips, sweep):
    runs = copy_sweep(sweep, tmp_path)
    for epoch in (1, 2, 3):
        drop_checkpoint(runs[0], epoch)
    shutil.copy(sweep[0] / "1-epochs_state.pt", runs[0] / "interrupted_state.pt")  # a state without a sidecar
    torch.save(torch.load(runs[0] / "interrupted_state.pt", weights_only=True) | {"global_step": 4},
               runs[0] / "interrupted_state.pt")
    before = [snapshot(run) for run in runs]
    with pytest.raises(InputError, match=r"no saved step in common.*resume each one without --batched"):
        resume_sweep(runs[1])
    assert [snapshot(run) for run in runs] == before


# ---------------------------------------------------------------------------------------------
# Item 9: a config.json that does not fit the weights; --path naming a file of the run folder
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def single(tmp_path_factory, clips):
    return train.train(*train.config_for(parse(*flags(tmp_path_factory.mktemp("single"), clips))), progress=False)


def test_a_config_that_does_not_fit_the_saved_weights_is_one_line_and_writes_nothing(tmp_path, single):
    run = Path(shutil.copytree(single, tmp_path / "run"))
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps(config | {"hidden_units": [6, 5, 5]}))
    before = snapshot(run)
    with pytest.raises(InputError, match=r"config.json disagrees with the config stored in "
                                             r"3-epochs_model.safetensors on hidden_units: restore config.json"):
        train.main(["--path", str(run), "--epochs", "4"])
    assert snapshot(run) == before


@pytest.mark.parametrize("edit", [{"frame_shape": [2, 8]}, {"local_inhibitory_prop": 0.4}],
                         ids=["same_pixels", "inhibitory_share"])
def test_a_config_edit_that_keeps_every_shape_is_refused_too(tmp_path, single, edit):
    """4x4 frames read as 2x8, or another inhibitory share, fit every saved tensor:
    only the config stored with the weights tells the edit apart (hostile session)."""
    run = Path(shutil.copytree(single, tmp_path / "run"))
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps(config | edit))
    before = snapshot(run)
    with pytest.raises(InputError, match=rf"disagrees with the config stored in 3-epochs_model.safetensors on "
                                             rf"{next(iter(edit))}"):
        train.main(["--path", str(run), "--epochs", "4"])
    assert snapshot(run) == before


def test_path_to_the_latest_weights_file_or_config_resumes_the_folder(tmp_path, single):
    for name in ("3-epochs_model.safetensors", "config.json"):
        run = Path(shutil.copytree(single, tmp_path / name))
        cfg, resume = train.config_for(parse("--path", str(run / name), "--epochs", "4"))
        assert resume == run / "3-epochs_state.pt"
    assert train.train(cfg, resume, progress=False) == run and (run / "4-epochs_model.safetensors").exists()


def test_path_to_an_earlier_weights_file_names_both_choices(single):
    with pytest.raises(ResumeError, match=r"2-epochs_model.safetensors is a weights file.*latest state is "
                                             r"3-epochs_state.pt: give --path .* to continue .*2-epochs_state.pt"):
        train.config_for(parse("--path", str(single / "2-epochs_model.safetensors")))


def test_path_to_a_file_outside_a_run_folder_is_one_line(single):
    with pytest.raises(ResumeError, match="train.log is no state file of a run folder .*give the run folder"):
        train.config_for(parse("--path", str(single / "logs" / "train.log")))


@pytest.mark.parametrize("name,content", [("loss_history.json", None), ("other.pt", {"weights": [1, 2]})])
def test_path_to_a_file_that_is_no_resume_state_is_one_line(tmp_path, single, name, content):
    run = Path(shutil.copytree(single, tmp_path / "run"))
    if content is not None:
        torch.save(content, run / name)
    with pytest.raises(ResumeError, match=rf"{name} is (unreadable: )?not a resume state.*give the run folder"):
        train.train(*train.config_for(parse("--path", str(run / name))), progress=False)


def test_a_run_that_stopped_before_its_first_checkpoint_is_told_to_start_again(tmp_path, single):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(single / "config.json", run / "config.json")  # killed during its first epoch
    with pytest.raises(ResumeError, match="the run stopped before it saved one; start it again"):
        train.config_for(parse("--path", str(run)))


# ---------------------------------------------------------------------------------------------
# Item 13: one training process per run folder
# ---------------------------------------------------------------------------------------------
def test_a_run_folder_being_trained_refuses_a_second_resume_naming_the_holder(tmp_path, single):
    from utils import FileLock

    run = Path(shutil.copytree(single, tmp_path / "run"))
    with FileLock(run / LOCK_FILE):
        before = snapshot(run)
        with pytest.raises(InputError, match=rf"run is being trained by pid {os.getpid()} on .*started 20.*"
                                                 "wait for it"):
            train.main(["--path", str(run), "--epochs", "4"])
        assert snapshot(run) == before
    train.main(["--path", str(run), "--epochs", "4"])  # released: the resume trains
    assert (run / "4-epochs_model.safetensors").exists() and not (run / LOCK_FILE).exists()


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_note(tmp_path, single, capsys):
    run = Path(shutil.copytree(single, tmp_path / "run"))
    (run / LOCK_FILE).write_text("pid 4194999 on elsewhere, started 2026-01-01T00:00:00+00:00")  # kill -9 left it
    train.main(["--path", str(run), "--epochs", "4"])
    note = "took over the lock left by pid 4194999 on elsewhere"
    assert note in capsys.readouterr().err and note in (run / "logs" / "train.log").read_text()
    assert (run / "4-epochs_model.safetensors").exists() and not (run / LOCK_FILE).exists()


def test_a_sweep_with_a_run_being_trained_is_refused_before_anything_is_written(tmp_path, sweep):
    from utils import FileLock

    runs = copy_sweep(sweep, tmp_path)
    with FileLock(runs[2] / LOCK_FILE):
        before = [snapshot(run) for run in runs]
        with pytest.raises(InputError, match=rf"{runs[2].name} is being trained by pid {os.getpid()}"):
            resume_sweep(runs[0], "--epochs", "4")
        assert [snapshot(run) for run in runs] == before
    assert not any((run / LOCK_FILE).exists() for run in runs)


def test_the_lock_is_exclusive_and_gone_once_released(tmp_path):
    from utils import FileLock, LockHeld

    path = tmp_path / "x.lock"
    lock = FileLock(path)
    assert lock.acquire() is None and f"pid {os.getpid()} on " in path.read_text()
    with pytest.raises(LockHeld, match=f"pid {os.getpid()}"):
        FileLock(path).acquire()
    lock.release()
    assert not path.exists()
    path.write_text("pid 1 on elsewhere, started then")  # a holder killed with its lock file left behind
    with FileLock(path) as lock:
        assert "pid 1 on elsewhere" not in path.read_text()
    assert not path.exists()
    path.write_bytes(b"\xff\xfe not\nours")  # whatever a foreign file holds is named on one line
    lock = FileLock(path)
    assert lock.acquire() == "\ufffd\ufffd not ours"
    lock.release()


def test_two_resumes_of_one_run_folder_do_not_both_train(tmp_path, single):
    run = Path(shutil.copytree(single, tmp_path / "run"))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "submit_training_job.py", "--path", str(run), "--epochs", "100000"],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    refused = None
    deadline = time.time() + 240
    while refused is None and time.time() < deadline:  # the one that finds the lock held stops at once
        refused = next((p for p in procs if p.poll() is not None), None)
        time.sleep(0.2)
    assert refused is not None
    trainer = procs[1 - procs.index(refused)]
    trainer.send_signal(signal.SIGTERM)
    trainer.communicate(timeout=120)
    err = refused.stderr.read()
    assert refused.returncode == 2 and err.count("\n") == 1 and "is being trained by pid" in err, err
    assert str(trainer.pid) in err
    log = (run / "logs" / "train.log").read_text()
    assert log.count("resumed from 3-epochs_state.pt") == 1


# ---------------------------------------------------------------------------------------------
# Item 11: a second Ctrl-C stops at once, in one line
# ---------------------------------------------------------------------------------------------
def test_a_second_ctrl_c_raises_one_line_naming_the_last_saved_state(tmp_path, single):
    with pytest.raises(KeyboardInterrupt, match=r"stopping now; the last saved state is .*3-epochs_state.pt.*"
                                                r"resume with --path"):
        with StopRequest([single], f"--path {single}") as stop:
            os.kill(os.getpid(), signal.SIGINT)
            assert stop.requested
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
    with pytest.raises(KeyboardInterrupt, match=r"stopping now; no state of .* was saved yet"):
        with StopRequest([tmp_path], f"--path {tmp_path}"):
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)


SLOW_AFTER_EPOCH_1 = """
import sys, time
import train
from utils import run_cli

real_step = train.train_step
def slow_step(*args, **kwargs):
    if args[5] == 5:  # global step 5: epoch 1 is saved
        print("slow", flush=True)
        time.sleep(60)
    return real_step(*args, **kwargs)

train.train_step = slow_step
sys.argv = ["train.py", *sys.argv[1:]]
run_cli(train.main)
"""


def test_a_second_ctrl_c_during_training_is_one_line_and_exit_130(tmp_path, clips):
    proc = subprocess.Popen([sys.executable, "-c", SLOW_AFTER_EPOCH_1, *flags(tmp_path, clips)], cwd=ROOT,
                            env=dict(os.environ, OMP_NUM_THREADS="1"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "slow"
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    (run,) = tmp_path.glob("htp_*")
    last = err.strip().splitlines()[-1]  # after the epoch lines a run without a progress bar prints
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert last.startswith(f"stopping now; the last saved state is {run / '1-epochs_state.pt'}"), err
    assert not (run / LOCK_FILE).exists()


# ---------------------------------------------------------------------------------------------
# Item 14: a diverging batched run says what the other runs can do
# ---------------------------------------------------------------------------------------------
def test_a_run_diverging_before_any_checkpoint_says_the_others_must_start_again(tmp_path, clips):
    jobs = [train.config_for(parse(*flags(tmp_path, clips, "--L1", str(L1), "--seed", str(seed))))
            for L1, seed in ((-5.0, 0), (300.0, 1))]  # lambda 1e300 is inf in float32: diverges in epoch 1
    with pytest.raises(TrainingDiverged) as err:
        train_batched(jobs, progress=False)
    message = str(err.value)
    assert "the other run has saved no state: start it again without --batched" in message
    assert "resume" not in message.split("the sweep stops with it")[1]


def test_a_run_diverging_later_says_the_others_resume_from_their_states(tmp_path, clips, monkeypatch):
    from training.batched import StackedRecurrent

    real, calls = StackedRecurrent.get_loss, []

    def nan_for_run_1_from_epoch_2(self, out, targets):  # 5 steps per epoch (validation is per model)
        calls.append(1)
        total, losses, comps = real(self, out, targets)
        if len(calls) > 5:
            losses = losses * torch.tensor([1.0, float("nan")])
        return total, losses, comps

    monkeypatch.setattr(StackedRecurrent, "get_loss", nan_for_run_1_from_epoch_2)
    jobs = [train.config_for(parse(*flags(tmp_path, clips, "--L1", str(L1), "--seed", str(seed))))
            for L1, seed in ((-5.0, 0), (-4.0, 1))]
    with pytest.raises(TrainingDiverged, match=r"diverged in epoch 2.*the other run's latest state is "
                                                      r"finite: resume it with --path .*seed0.* without --batched"):
        train_batched(jobs, progress=False)
