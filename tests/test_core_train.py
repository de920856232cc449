"""The training command: smoke runs, exact resume, interruption and bad input."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from training import ResumeError, TrainingSetupError
from training import config as training_config
from models.io import load_model
from training.step import learning_rate

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--frame-shape", "4", "4", "--hidden-units", "6,5,4", "--batch-size", "8", "--device", "cpu"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "clips.npy"
    np.save(path, np.random.default_rng(0).standard_normal((44, 12, 16)).astype(np.float32))
    return path


def run_cli(args, cwd=ROOT, check=True):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "submit_training_job.py", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(proc.stderr[-2000:])
    return proc


def train_in_process(tmp, clips, *extra):
    import train

    args = train.build_parser().parse_args(["--dataset", str(clips), "--save-dir", str(tmp), "--epochs", "3",
                                            "--validate-every", "1", "--checkpoint-every", "2", *TINY, *extra])
    cfg, resume = train.config_for(args)
    return train.train(cfg, resume, progress=False)


def final_weights(run_dir):
    return load_file(str(run_dir / "3-epochs_model.safetensors"))


def test_cli_smoke_writes_checkpoints_history_curve_and_config(tmp_path, clips):
    proc = run_cli(["--name", "smoke", "--L1", "-5", "--dataset", str(clips), "--save-dir", str(tmp_path),
                    "--epochs", "2", "--validate-every", "1", *TINY])
    (run,) = tmp_path.iterdir()
    assert run.name.startswith("smoke_-5L1_")
    assert str(run) in proc.stdout
    for name in ("config.json", "2-epochs_model.safetensors", "2-epochs_state.pt", "loss_history.json", "loss_curve.png"):
        assert (run / name).exists(), name
    config = json.loads((run / "config.json").read_text())
    assert config["L1"] == -5 and config["hidden_units"] == [6, 5, 4] and config["lr"] == 1e-4
    history = json.loads((run / "loss_history.json").read_text())
    assert history["train"]["epoch"] == [1, 2] and len(history["validation"]["mse0"]) == 2
    assert all(np.isfinite(history["train"]["loss"]))
    model, cfg, hist = load_model(run)
    assert cfg["checkpoint_epoch"] == 2 and model.group_sizes == (6, 5, 4)
    torch.load(run / "2-epochs_state.pt", weights_only=True)  # resumable state is safe to load


PAPER_VALUES = {  # TrainConfig field: (as the help writes it, the default)
    "L1": ("-6", -6.0), "lr": ("1e-4", 1e-4), "batch_size": ("100", 100), "epochs": ("2000", 2000),
    "beta": ("0.9,0.1,0.1", (0.9, 0.1, 0.1)), "hidden_units": ("800,800,800", (800, 800, 800)),
    "frame_shape": ("20 20", (20, 20)), "warmup": ("4", 4), "local_inhibitory_prop": ("0.2", 0.2),
    "noise_std": ("0.5011", 0.5011), "grad_clip": ("0.25", 0.25), "validate_every": ("10", 10),
    "checkpoint_every": ("1000", 1000),
}


def test_help_gives_each_flag_its_own_paper_value():
    import submit_training_job
    import train

    out = run_cli(["--help"]).stdout
    for parser in (train.build_parser(), submit_training_job.build_parser()):
        helps = {option: action.help for action in parser._actions for option in action.option_strings}
        for name, (text, value) in PAPER_VALUES.items():
            flag = "--" + name.replace("_", "-")
            assert flag in out
            assert getattr(train.TrainConfig(), name) == value, name
            # "(paper: 100)" or "(paper README example: -6)", not a prefix of another number
            assert re.search(rf"\(paper[^:)]*: {re.escape(text)}(?![\d.,])", helps[flag]), (flag, helps[flag])
        assert "resume" in helps["--path"]


def test_epochs_zero_saves_the_untrained_model(tmp_path, clips):
    run_cli(["--name", "untrained", "--dataset", str(clips), "--save-dir", str(tmp_path), "--epochs", "0", *TINY])
    (run,) = tmp_path.iterdir()
    model, cfg, _ = load_model(run / "0-epochs_model.safetensors")
    assert cfg["epochs"] == 0 and model.hidden_activity(torch.zeros(1, 5, 16)).shape == (1, 5, 15)
    # stored as every forward pass sees it: I/100 after the sign projection, so the
    # inhibitory units' self-weights are -0.01 (int(20%) of each group of 6, 5, 4: units 5 and 10)
    stored = load_file(str(run / "0-epochs_model.safetensors"))["weight_hh"].diagonal()
    inhibitory = [5, 10]
    assert torch.all(stored[inhibitory] == -0.01)
    assert torch.all(stored[[i for i in range(15) if i not in inhibitory]] == 0.01)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, clips):
    return train_in_process(tmp_path_factory.mktemp("full"), clips)


def test_training_is_reproducible_with_a_seed(tmp_path, clips, uninterrupted):
    a = final_weights(uninterrupted)
    b = final_weights(train_in_process(tmp_path / "b", clips))
    c = final_weights(train_in_process(tmp_path / "c", clips, "--seed", "1"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["weight_hh"], c["weight_hh"])


@pytest.mark.parametrize("stop_after", [3, 6, 9])  # mid-epoch (5 steps per epoch) and at an epoch boundary
def test_interrupted_then_resumed_run_equals_uninterrupted(tmp_path, clips, stop_after, uninterrupted):
    full = final_weights(uninterrupted)
    run = train_in_process(tmp_path / "cut", clips, "--stop-after-steps", str(stop_after))
    assert (run / "interrupted_state.pt").exists() and not (run / "3-epochs_model.safetensors").exists()
    resumed = train_in_process(tmp_path / "cut", clips, "--path", str(run))
    assert resumed == run
    weights = final_weights(run)
    for key in full:
        assert torch.equal(full[key], weights[key]), key
    a = json.loads((uninterrupted / "loss_history.json").read_text())
    b = json.loads((run / "loss_history.json").read_text())
    assert a == b


def test_time_limit_stops_between_epochs_with_a_normal_checkpoint(tmp_path, clips, uninterrupted):
    run = train_in_process(tmp_path / "cut", clips, "--max-minutes", "1e-6")
    assert (run / "1-epochs_model.safetensors").exists() and not (run / "2-epochs_model.safetensors").exists()
    train_in_process(tmp_path / "cut", clips, "--path", str(run))
    full, weights = final_weights(uninterrupted), final_weights(run)
    assert all(torch.equal(full[k], weights[k]) for k in full)


@pytest.mark.parametrize("limit,where", [(["--max-minutes", "1e-6"], "after epoch 1 of 3 (optimizer step 5 of 15)"),
                                         (["--stop-after-steps", "7"], "during epoch 2 of 3 (optimizer step 7 of 15)")])
def test_a_run_cut_short_ends_with_how_far_it_got_and_the_command_that_continues_it(tmp_path, clips, limit, where):
    proc = run_cli(["--name", "cut", "--dataset", str(clips), "--save-dir", str(tmp_path), "--epochs", "3", *TINY,
                    *limit], check=False)
    assert proc.returncode == 3, proc.stderr[-2000:]  # cut short: not a finished model (docs/training.md, "Stopping and resuming")
    (run,) = tmp_path.iterdir()
    last = proc.stderr.strip().splitlines()[-1]
    assert last == f"cut short {where}; continue with: python submit_training_job.py --path {run}", proc.stderr


def test_a_finished_run_has_no_cut_short_line_and_prints_one_line_per_epoch_without_a_terminal(tmp_path, clips):
    proc = run_cli(["--name", "whole", "--dataset", str(clips), "--save-dir", str(tmp_path), "--epochs", "2", *TINY])
    assert "cut short" not in proc.stderr
    epochs = [line for line in proc.stderr.splitlines() if line.startswith("epoch ")]  # stderr is a pipe: no bar
    assert [line.split()[1] for line in epochs] == ["1/2", "2/2"], proc.stderr


def test_the_demo_always_trains_all_its_epochs():
    demo = training_config.TrainConfig(**training_config.PRESETS["demo"])
    assert demo.max_minutes == 0 and demo.stop_after_steps == 0 and demo.epochs == 60


def test_no_name_on_a_cpu_asks_for_name_with_what_would_run_and_a_timed_estimate(tmp_path, clips):
    """The paper's units and epochs (small frames and batches, so the timing is quick)."""
    proc = run_cli(["--dataset", str(clips), "--save-dir", str(tmp_path), "--frame-shape", "4", "4",
                    "--batch-size", "8", "--device", "cpu"], check=False)
    assert_one_line_error(proc, "no --name: this would train network_hierarchical_recurrent with 800+800+800 units",
                          "on 4x4 frames for 2000 epochs (10,000 steps) on the CPU, about", "by a 3-step timing",
                          "give --name NAME to start it")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("signum,preset", [(signal.SIGINT, []), (signal.SIGTERM, ["--preset", "demo"])])
def test_a_signal_saves_a_resumable_state_and_exits_128_plus_signal(tmp_path, clips, signum, preset):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "submit_training_job.py", "--dataset", str(clips), "--save-dir",
                             str(tmp_path), "--epochs", "100000", "--checkpoint-every", "1", *preset, *TINY, "--name", "sig"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # a normal checkpoint first (the demo would summarise it after the stop); the bound only guards against a hang
    deadline = time.monotonic() + 900
    while not list(tmp_path.glob("*/*-epochs_model.safetensors")):
        if proc.poll() is not None:
            pytest.fail(f"training exited ({proc.returncode}) before its first checkpoint: {proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("waited 900 s for the first checkpoint (*-epochs_model.safetensors) and none appeared")
        time.sleep(0.2)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 128 + signum, err[-2000:]  # so `train && bash run.bash RUN` stops here
    (run,) = tmp_path.iterdir()
    state = torch.load(run / "interrupted_state.pt", weights_only=True)
    assert state["global_step"] > 0 and "--path" in err
    assert not (run / "rf_summary.json").exists() and "run folder" not in out  # the demo summarises only a finished run


def assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


BAD_ARRAYS = {  # each error's own wording; TINY needs 4x4 frames and 4 + 1 + 1 frames per clip
    "nan": (np.full((44, 12, 16), np.nan, np.float32), "contains NaN or inf"),
    "wrong_ndim": (np.zeros((44, 12 * 16), np.float32), "it must be 3-D"),
    "wrong_pixels": (np.zeros((44, 12, 15), np.float32), "15 pixels per frame but frame shape 4x4 needs 16"),
    "too_short": (np.zeros((44, 5, 16), np.float32), "5-frame clips but at least 6 are needed"),
    "empty": (np.zeros((0, 12, 16), np.float32), "holds no clips"),
    "one_clip": (np.zeros((1, 12, 16), np.float32), "holds 1 clip, which the split keeps for validation"),
    "float64": (np.zeros((44, 12, 16), np.float64), "has dtype float64"),
    "object": (np.array([None] * 4, dtype=object), "holds an object (pickled) array"),
}


@pytest.mark.parametrize("kind", sorted(BAD_ARRAYS))
def test_bad_dataset_gets_one_line_error_and_writes_nothing(tmp_path, kind):
    array, wording = BAD_ARRAYS[kind]
    path = tmp_path / "clips.npy"  # a neutral name: the message must carry the wording itself
    np.save(path, array, allow_pickle=True)
    out = tmp_path / "runs"
    proc = run_cli(["--dataset", str(path), "--save-dir", str(out), "--epochs", "1", *TINY], check=False)
    assert_one_line_error(proc, wording)
    assert not out.exists()


@pytest.mark.parametrize("args,fragment", [
    (["--dataset", "/nonexistent/clips.npy"], "does not exist"),
    (["--beta", "0.9,0.1"], "--beta"),
    (["--hidden-units", "a,b"], "--hidden-units"),
    (["--model", "nope"], "--model"),
    (["--loss", "nope"], "--loss"),
    (["--lr", "-1"], "--lr"),
    (["--preset", "nope"], "preset"),
    (["--loss", "loss_hierarchical_temporal_prediction_feedforward"], "does not apply"),
    (["--path", "/nonexistent/run"], "--path"),
])
def test_bad_flags_get_one_line_error(tmp_path, clips, args, fragment):
    base = ["--dataset", str(clips), "--save-dir", str(tmp_path / "runs"), "--epochs", "1", *TINY]
    proc = run_cli(base + args, check=False)
    assert_one_line_error(proc, fragment)
    assert not (tmp_path / "runs").exists()


def test_corrupt_checkpoint_gets_one_line_error(tmp_path):
    bad = tmp_path / "run"
    bad.mkdir()
    (bad / "config.json").write_text("{}")
    (bad / "3-epochs_model.safetensors").write_bytes(b"\x00" * 10)
    (bad / "3-epochs_state.pt").write_bytes(b"garbage")
    proc = run_cli(["--path", str(bad)], check=False)
    assert_one_line_error(proc, "unreadable")
    from models.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="corrupt"):
        load_model(bad)


def test_receptive_field_summary_of_a_run(tmp_path, clips, uninterrupted):
    from virtual_physiology.rf_summary import summarise

    summary = summarise(uninterrupted, n_clips=50)
    errors = summary["clean_validation_next_frame_mse"]["trained"]
    # white-noise clips: copying the last frame doubles the error of predicting zero
    assert errors["copy_last_frame"] == pytest.approx(2 * errors["predict_zero"], rel=0.2)
    for split in ("trained", "untrained"):
        stats = summary["group1_receptive_fields"][split]
        assert stats["units"] == 6 and 0 <= stats["fraction_strict_gabor"] <= stats["fraction_r_above_0.7"] <= 1
    assert (uninterrupted / "rf_summary.png").stat().st_size > 0
    assert json.loads((uninterrupted / "rf_summary.json").read_text())["rwa_clips"] == 50
    assert (summary["epoch"], summary["epochs"], summary["step"]) == (3, 3, 15)  # 5 steps per epoch


def test_rf_monitor_logs_rows_and_leaves_the_trajectory_unchanged(tmp_path, clips, uninterrupted):
    from virtual_physiology.rf_summary import monitor_row, next_frame_errors, receptive_field_stats

    run = train_in_process(tmp_path, clips, "--rf-monitor-every", "2", "--rf-monitor-clips", "20")
    monitored, plain = final_weights(run), final_weights(uninterrupted)
    assert all(torch.equal(monitored[k], plain[k]) for k in plain)  # its generators are its own
    rows = json.loads((run / "loss_history.json").read_text())["rf_monitor"]
    assert rows["epoch"] == [2] and rows["step"] == [10]  # 3 epochs of 5 steps, every 2nd epoch checked
    assert rows["rwa_clips"] == [20]  # each row records its clip count
    # the row is what the measurements give on the epoch-2 weights
    model, config, _ = load_model(run / "2-epochs_model.safetensors")
    stats = receptive_field_stats(model, 20)["stats"]
    errors = next_frame_errors(model, np.load(clips), config["warmup"])
    assert rows["fraction_strict_gabor"][0] == stats["fraction_strict_gabor"]
    assert rows["fraction_original_gabor"][0] == stats["fraction_original_gabor"]
    assert rows["median_orientation_index"][0] == pytest.approx(stats["median_orientation_index"])
    assert rows["clean_mse"][0] == pytest.approx(errors["model"], rel=1e-5)
    assert rows["copy_last_frame_mse"][0] == pytest.approx(errors["copy_last_frame"], rel=1e-5)
    again = monitor_row(model, np.load(clips), config["warmup"], n_clips=20)
    assert set(again) == set(rows) - {"epoch", "step"}
    for key in ("responsive_G1", "f1f0_above_1", "feedback_peak_ratio", "clean_mse_no_feedback_ratio", "w_G2_to_G1"):
        assert rows[key][0] == pytest.approx(again[key], rel=1e-5, nan_ok=True), key
    assert "group-1 RFs: Gabor-like (original's test)" in (run / "logs" / "train.log").read_text()


def test_summary_verdict_follows_the_numbers():
    from virtual_physiology.rf_summary import verdict

    assert verdict({"fraction_original_gabor": 0.8, "median_orientation_index": 0.4}).startswith("Most")
    assert "fewer than 60%" in verdict({"fraction_original_gabor": 0.5, "median_orientation_index": 0.39})
    assert "not yet oriented" in verdict({"fraction_original_gabor": 0.9, "median_orientation_index": 0.12})


@pytest.mark.parametrize("loss, offset", [("loss_hierarchical_autoencoder", 0), ("loss_hierarchical_temporal_prediction_t5", 5)])
def test_summary_errors_score_the_models_own_offset(loss, offset):
    from models.network_hierarchical_recurrent import NetworkHierarchicalRecurrent
    from virtual_physiology.rf_summary import next_frame_errors

    torch.manual_seed(0)
    model = NetworkHierarchicalRecurrent(frame_shape=(4, 4), hidden_units=(6, 5, 4), loss=loss)
    clips = np.random.default_rng(1).standard_normal((44, 12, 16)).astype(np.float32)
    errors = next_frame_errors(model, clips, warmup=4)
    val = clips[np.linspace(0, 43, 4).astype(int)]  # the 4 validation clips of 44
    with torch.no_grad():
        pred = model(torch.from_numpy(val))[0][:, 4:12 - offset, :16].numpy()
    assert errors["model"] == pytest.approx(((pred - val[:, 4 + offset:]) ** 2).mean(), rel=1e-5)
    assert errors["predict_zero"] == pytest.approx((val[:, 4 + offset:] ** 2).mean(), rel=1e-6)
    if offset == 0:
        assert np.isnan(errors["copy_last_frame"])  # nothing to copy when the target is the current frame


def test_rf_curve_measures_every_checkpoint_and_remeasures_a_corrupt_cache(tmp_path, clips, uninterrupted):
    import shutil

    from utils import UserInputError
    from virtual_physiology.rf_summary import main as rf_main, monitor_row, rf_curve

    run = Path(shutil.copytree(uninterrupted, tmp_path / "run"))
    (run / "rf_curve.json").write_text("{not json")
    curve = rf_curve(run, n_clips=20)
    assert curve["epoch"] == [2, 3] and curve["step"] == [10, 15]  # 5 steps per epoch
    model, config, _ = load_model(run / "3-epochs_model.safetensors")
    row = monitor_row(model, np.load(clips), config["warmup"], n_clips=20)
    for key in ("median_orientation_index", "fraction_original_gabor", "f1f0_above_1", "responsive_G2", "w_G1_G1"):
        assert curve[key][1] == pytest.approx(row[key], nan_ok=True), key
    assert json.loads((run / "rf_curve.json").read_text()) == curve
    assert (run / "rf_curve.png").stat().st_size > 0
    with pytest.raises(UserInputError, match="--clips 0"):
        rf_main([str(run), "--curve", "--clips", "0"])


def test_rf_curve_measures_again_a_cache_of_the_monitor_before_it_measured_gratings(tmp_path, uninterrupted):
    import shutil

    from virtual_physiology.rf_summary import rf_curve

    run = Path(shutil.copytree(uninterrupted, tmp_path / "run"))
    old = {"rwa_clips": 20, "epoch": [2, 3], "step": [10, 15], "fraction_strict_gabor": [0.0, 0.0],
           "median_orientation_index": [0.1, 0.1], "median_gabor_r": [0.3, 0.3], "clean_mse": [1.0, 1.0],
           "copy_last_frame_mse": [2.0, 2.0]}  # rf_curve.json as the RF-only monitor wrote it
    (run / "rf_curve.json").write_text(json.dumps(old))
    curve = rf_curve(run, n_clips=20)
    assert curve["version"] == 2 and curve["epoch"] == [2, 3] and len(curve["f1f0_above_1"]) == 2


def test_rf_curve_is_written_whole_or_not_at_all(tmp_path, clips, uninterrupted, monkeypatch):
    """rf_curve.json always covers every checkpoint of the folder: a truncated checkpoint
    is refused before any is measured; an interrupted measurement keeps what it measured
    apart (.rf_curve.partial.json), and the next run measures only the rest."""
    import shutil

    from models.checkpoint import CheckpointError
    from virtual_physiology import rf_summary

    run = Path(shutil.copytree(uninterrupted, tmp_path / "run"))
    weights = run / "3-epochs_model.safetensors"
    whole = weights.read_bytes()
    weights.write_bytes(whole[:len(whole) // 2])
    with pytest.raises(CheckpointError, match="3-epochs_model.safetensors is corrupt or truncated"):
        rf_summary.rf_curve(run, n_clips=20)
    assert not (run / "rf_curve.json").exists() and not (run / ".rf_curve.partial.json").exists()
    weights.write_bytes(whole)
    real, calls = rf_summary.monitor_row, []

    def interrupted_at_the_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(rf_summary, "monitor_row", interrupted_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        rf_summary.rf_curve(run, n_clips=20)
    assert not (run / "rf_curve.json").exists()
    assert json.loads((run / ".rf_curve.partial.json").read_text())["epoch"] == [2]
    curve = rf_summary.rf_curve(run, n_clips=20)
    assert len(calls) == 3 and curve["epoch"] == [2, 3] and not (run / ".rf_curve.partial.json").exists()
    assert json.loads((run / "rf_curve.json").read_text()) == curve


def test_learning_rate_halves_every_half_life_and_resume_stays_exact(tmp_path, clips):
    import train

    cfg = train.TrainConfig(lr=1e-3, lr_half_life=10)
    assert [learning_rate(cfg, s) for s in (0, 10, 20)] == pytest.approx([1e-3, 5e-4, 2.5e-4])
    assert learning_rate(train.TrainConfig(lr=1e-3), 10**6) == 1e-3  # 0: constant, as the paper
    floored = train.TrainConfig(lr=1e-3, lr_half_life=10, lr_floor=2e-4)
    assert [learning_rate(floored, s) for s in (0, 10, 20, 30, 10**6)] == pytest.approx([1e-3, 5e-4, 2.5e-4, 2e-4, 2e-4])
    full = final_weights(train_in_process(tmp_path / "full", clips, "--lr-half-life", "4"))
    constant = final_weights(train_in_process(tmp_path / "constant", clips))
    assert not torch.equal(full["weight_hh"], constant["weight_hh"])
    run = train_in_process(tmp_path / "cut", clips, "--lr-half-life", "4", "--stop-after-steps", "7")
    train_in_process(tmp_path / "cut", clips, "--path", str(run))
    assert all(torch.equal(full[k], final_weights(run)[k]) for k in full)


# ---------------------------------------------------------------------------------------------
# The pieces train.py is made of: list flags in either form, the step, the state, the run folder
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("parser_of", ["train", "submit_training_job"])
def test_list_flags_take_the_comma_and_the_space_form(parser_of):
    import importlib

    import train

    parser = importlib.import_module(parser_of).build_parser()

    def resolved(*flags):
        cfg = training_config.resolve_config(parser.parse_args(list(flags)))
        return cfg.frame_shape, cfg.hidden_units, cfg.beta

    expected = ((4, 5), (6, 5, 4), (0.5, 0.25, 0.25))
    assert resolved("--frame-shape", "4", "5", "--hidden-units", "6,5,4", "--beta", "0.5,0.25,0.25") == expected
    assert resolved("--frame-shape", "4,5", "--hidden-units", "6", "5", "4", "--beta", "0.5", "0.25", "0.25") == expected
    assert resolved("--frame-shape=4,5", "--hidden-units", "6,5", "4", "--beta=0.5,0.25,0.25") == expected
    with pytest.raises(TrainingSetupError, match="--frame-shape needs two positive integers"):
        resolved("--frame-shape", "4", "5", "6")
    with pytest.raises(TrainingSetupError, match="--hidden-units '6,x' is not a comma-separated list"):
        resolved("--hidden-units", "6", "x")


def test_resume_accepts_a_list_flag_in_the_other_form(tmp_path, clips, uninterrupted):
    import train

    run = train_in_process(tmp_path, clips, "--stop-after-steps", "7")  # saved from "--hidden-units 6,5,4"
    args = train.build_parser().parse_args(["--path", str(run), "--hidden-units", "6", "5", "4", "--frame-shape", "4,4"])
    cfg, _ = train.config_for(args)
    assert cfg.hidden_units == (6, 5, 4) and cfg.frame_shape == (4, 4)
    with pytest.raises(ResumeError, match="--hidden-units cannot change"):
        train.config_for(train.build_parser().parse_args(["--path", str(run), "--hidden-units", "6", "5"]))


def tiny_model(seed=0):
    from models.network_hierarchical_recurrent import NetworkHierarchicalRecurrent

    torch.manual_seed(seed)
    return NetworkHierarchicalRecurrent(frame_shape=(2, 2), hidden_units=(5, 4), beta=(0.9, 0.1), lam=1e-3)


def test_train_step_slices_of_two_processes_add_up_to_the_whole_batch():
    """Known answer for the DDP share weighting without DDP: with no effective clip, each
    process's gradient is share * world * (its slice's mean-loss gradient), and DDP
    averages them over the 2 processes, so their mean is the whole batch's gradient;
    the returned share-weighted losses add up to the batch's loss. Batch of 5: slices
    of 2 and 3 clips, the same noise as one process draws."""
    import copy

    from training.step import train_step
    from training.config import TrainConfig

    cfg = TrainConfig(lr=0.1, grad_clip=1e6)
    x = torch.randn(5, 8, 4, generator=torch.Generator().manual_seed(1))
    start = tiny_model()
    grads, values = [], []
    for rank, world in ((0, 1), (0, 2), (1, 2)):
        model = copy.deepcopy(start)
        step_values = train_step(model, torch.optim.SGD(model.parameters(), lr=1.0), x,
                                 torch.Generator().manual_seed(3), cfg, 0, rank=rank, world=world)
        grads.append({k: p.grad for k, p in model.named_parameters()})  # kept after the step
        values.append(step_values)
    whole, first, second = grads
    for key in whole:
        assert whole[key].abs().max() > 0, key
        torch.testing.assert_close((first[key] + second[key]) / 2, whole[key], rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(values[1] + values[2], values[0], rtol=1e-6, atol=0)


def test_train_step_clips_to_the_configured_value_and_follows_the_lr_schedule():
    """The gradient the optimizer used is clipped to +-grad_clip (1e-4 here, far below
    the initial gradients, so entries sit at the bound) and masked (W_hh's masked
    entries 0). lr_half_life 1 halves the lr per step: at global_step 3 the optimizer
    runs at lr / 8, whatever it was built with."""
    from training.step import train_step
    from training.config import TrainConfig

    model = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=123.0)
    x = torch.randn(4, 8, 4, generator=torch.Generator().manual_seed(1))
    train_step(model, opt, x, None, TrainConfig(lr=8.0, lr_half_life=1, grad_clip=1e-4), global_step=3)
    assert opt.param_groups[0]["lr"] == 1.0
    grads = torch.cat([p.grad.abs().flatten() for p in model.parameters()])
    assert grads.max() == pytest.approx(1e-4) and (grads == grads.max()).sum() > 10
    assert torch.all(model.weight_hh.grad[model.hh_mask == 0] == 0) and torch.any(model.hh_mask == 0)


def test_train_state_round_trip_and_latest_state_read_from_sidecars(tmp_path):
    from training.run_dir import RunDir, position_path
    from training.step import TrainState

    def fresh(seed):
        model = tiny_model(seed)
        return TrainState(model, torch.optim.Adam(model.parameters()), torch.Generator().manual_seed(seed),
                          torch.Generator().manual_seed(seed + 1), {"train": {"epoch": [1]}})

    saved = fresh(0)
    saved.epoch, saved.step, saved.global_step, saved.permutation = 2, 3, 13, torch.tensor([2, 0, 1])
    saved.sums = torch.tensor([1.0, 2.0])
    run = RunDir(tmp_path)
    saved.save(run.state_path(2))
    assert json.loads(position_path(run.state_path(2)).read_text()) == {"epoch": 2, "step": 3, "global_step": 13}
    loaded = fresh(1).load(run.state_path(2))
    a, b = saved.as_dict(), loaded.as_dict()
    assert a.keys() == b.keys() == {"model", "optimizer", "history", "epoch", "step", "global_step", "permutation",
                                    "sums", "rng"}
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert (b["epoch"], b["step"], b["global_step"], b["history"]) == (2, 3, 13, {"train": {"epoch": [1]}})
    assert torch.equal(b["permutation"], a["permutation"]) and torch.equal(b["sums"], a["sums"])
    assert all(torch.equal(a["rng"][k], b["rng"][k]) for k in ("shuffle", "noise"))

    # the sidecar names the steps, so a state it describes is never opened to compare them
    run.interrupted_state_path.write_bytes(b"not a state file")
    position_path(run.interrupted_state_path).write_text('{"epoch": 3, "step": 1, "global_step": 16}')
    assert run.latest_state() == run.interrupted_state_path
    # a state older than the sidecars is opened instead
    run.interrupted_state_path.unlink()
    position_path(run.interrupted_state_path).unlink()
    torch.save(saved.as_dict() | {"global_step": 20}, run.state_path(4))
    assert run.latest_state() == run.state_path(4)
    run.state_path(4).write_bytes(b"garbage")
    with pytest.raises(ValueError, match="unreadable"):
        run.latest_state()


def test_config_json_is_written_once_per_training_process(tmp_path, clips, monkeypatch):
    import models.checkpoint
    import training.run_dir

    written = []
    real = training.run_dir.write_json
    for module in (models.checkpoint, training.run_dir):  # the config and history; the state sidecars
        monkeypatch.setattr(module, "write_json", lambda path, obj: (written.append(Path(path).name),
                                                                   real(path, obj)))
    run = train_in_process(tmp_path, clips)  # checkpoints at epochs 2 and 3
    assert written.count("config.json") == 1 and written.count("loss_history.json") == 2
    assert sorted(training.run_dir.RunDir(run).weights_by_epoch()) == [2, 3]


def test_threads_are_applied_and_recorded_and_a_bad_value_is_one_line(tmp_path, clips):
    run_cli(["--name", "t", "--dataset", str(clips), "--save-dir", str(tmp_path / "one"), "--epochs", "1", *TINY,
             "--threads", "1"])
    (run,) = (tmp_path / "one").iterdir()
    config = json.loads((run / "config.json").read_text())
    assert config["threads"] == "1" and config["torch_threads"] == 1
    proc = run_cli(["--name", "t", "--dataset", str(clips), "--save-dir", str(tmp_path / "bad"), *TINY,
                    "--threads", "0"], check=False)
    assert_one_line_error(proc, "--threads '0' is neither auto nor a positive whole number")
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("given,expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_the_entry_points_make_idle_openmp_threads_sleep_unless_the_environment_says_otherwise(given, expected):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | ({"OMP_WAIT_POLICY": given} if given else {})
    for module in ("train", "submit_training_job"):
        proc = subprocess.run([sys.executable, "-c", f"import os, {module}; print(os.environ['OMP_WAIT_POLICY'])"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        assert proc.stdout.strip() == expected, (module, proc.stderr[-2000:])


@pytest.mark.parametrize("precision,native,warns", [("bf16", False, True), ("bf16", True, False),
                                                     ("fp32", False, False)])
def test_bf16_on_a_cpu_without_native_bf16_products_warns_in_one_line(monkeypatch, precision, native, warns):
    monkeypatch.setattr(training_config, "native_bf16_cpu", lambda: native)
    warning = training_config.slow_bf16_warning(training_config.TrainConfig(precision=precision), torch.device("cpu"))
    assert (warning is not None) == warns
    if warns:
        assert "\n" not in warning and "use --precision fp32" in warning


def test_one_demo_time_everywhere():
    import submit_training_job

    help_text = " ".join(submit_training_job.build_parser().format_help().split())
    readme = " ".join((ROOT / "README.md").read_text().split())
    for where, text in (("--help", help_text), ("the docstring", submit_training_job.__doc__), ("README", readme)):
        assert training_config.DEMO_TIME in text, f"{where} does not quote the demo time {training_config.DEMO_TIME!r}"
