"""A single run (train.py) and a batched sweep (training/batched.py) share one training
loop (training.loop.run_epochs): each test below runs one scenario down both paths and
expects the same control flow of both."""
from pathlib import Path

import pytest

import train
from training.batched import sweep_jobs, train_batched
from training import config as training_config
from step_helpers import clips, no_loss_curves  # noqa: F401 (fixtures)

TINY = ["--frame-shape", "4", "4", "--hidden-units", "6,5,4", "--batch-size", "8", "--device", "cpu"]
SWEEP = [(-5.0, 0), (-4.0, 1)]  # 44 clips: 40 for training, 5 steps per epoch
PATHS = ["single", "batched"]


def start(path, tmp, clips, *extra):
    """New runs of 1 epoch: one by train.py's ``train``, or a sweep of two by
    ``train_batched``; returns their run folders."""
    def config(L1, seed):
        return train.config_for(train.build_parser().parse_args(
            ["--dataset", str(clips), "--save-dir", str(tmp), "--epochs", "1", "--L1", str(L1), "--seed", str(seed),
             *TINY, *extra]))

    if path == "single":
        return [train.train(*config(*SWEEP[0]), progress=False)]
    return train_batched([config(L1, seed) for L1, seed in SWEEP], progress=False)


def resume(path, run_dirs):
    """Resume the runs of ``start`` (the sweep by any one of its folders)."""
    args = train.build_parser().parse_args(["--path", str(run_dirs[0])])
    if path == "single":
        return [train.train(*train.config_for(args), progress=False)]
    return train_batched(sweep_jobs([train.config_for(args)], args), progress=False)


def log_lines(run_dir):
    """The run's log, each line without its date and time."""
    return [line.split(" ", 2)[2] for line in (run_dir / "logs" / "train.log").read_text().splitlines()]


def files(run_dir):
    return {p.relative_to(run_dir): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("path", PATHS)
def test_a_run_stopped_after_its_last_step_finishes_that_epoch_on_resume(tmp_path, clips, path):
    """A stop after the epoch's last step saves before the epoch's bookkeeping; the resumed
    run takes no step, completes the epoch and says it finished (not that nothing was left)."""
    runs = start(path, tmp_path, clips, "--stop-after-steps", "5")
    assert all((run / "interrupted_state.pt").exists() and not (run / "1-epochs_model.safetensors").exists()
               for run in runs)
    assert resume(path, runs) == runs
    for run in runs:
        assert (run / "1-epochs_model.safetensors").exists()
        assert log_lines(run)[-1] == "finished epoch 1"


@pytest.mark.parametrize("path", PATHS)
def test_resuming_finished_runs_writes_nothing_but_one_log_line(tmp_path, clips, path, capsys):
    runs = start(path, tmp_path, clips)
    before = [(files(run), log_lines(run)) for run in runs]
    capsys.readouterr()
    assert resume(path, runs) == runs
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("nothing to train")]
    assert said == ["nothing to train: the run already has 1 complete epochs and --epochs is 1; give a larger "
                    "--epochs to continue"]  # once, for one run or a sweep
    for run, (old_files, old_log) in zip(runs, before):
        new_files = files(run)
        del new_files[Path("logs", "train.log")]
        assert new_files == {k: v for k, v in old_files.items() if k.parts[0] != "logs"}  # config.json included
        assert log_lines(run) == old_log + said


@pytest.mark.parametrize("path", PATHS)
def test_bf16_on_a_cpu_without_native_products_is_warned_of_once(tmp_path, clips, path, capsys, monkeypatch):
    monkeypatch.setattr(training_config, "native_bf16_cpu", lambda: False)
    runs = start(path, tmp_path, clips, "--precision", "bf16", "--epochs", "0")
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "use --precision fp32" in warnings[0]
    for run in runs:
        assert warnings[0] in log_lines(run) and (run / "0-epochs_model.safetensors").exists()
