"""Training's guards: non-finite numbers and divergence, a changed dataset on resume,
exact resume under every allowed override, safe run names, unwritable or full
save folders, and atomic writes (mode, stale temporaries)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import train
from training import config as training_config
from training.loop import TrainingDiverged
from training.step import validate, validation_generator
from models.checkpoint import CheckpointError
from models.network_hierarchical_recurrent import NetworkHierarchicalRecurrent
from utils import InputError, atomic_path, remove_stale_temporaries, write_json

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--frame-shape", "4", "4", "--hidden-units", "6,5,4", "--batch-size", "8", "--device", "cpu"]
BASE = ["--epochs", "3", "--validate-every", "1", "--checkpoint-every", "2", *TINY]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "clips.npy"
    np.save(path, np.random.default_rng(0).standard_normal((44, 12, 16)).astype(np.float32))
    return path


def run(save_dir, dataset, *extra):
    """train.py's main in this process (its errors reach run_cli, which exits 2)."""
    train.main(["--dataset", str(dataset), "--save-dir", str(save_dir), *BASE, *extra])
    (run_dir,) = Path(save_dir).iterdir()
    return run_dir


def resume(run_dir, *extra):
    train.main(["--path", str(run_dir), *extra])
    return run_dir


def cut_short(command, *args):
    """``command(*args)`` for a run stopped by --stop-after-steps: it exits 3 (unfinished)."""
    with pytest.raises(SystemExit) as stop:
        command(*args)
    assert stop.value.code == 3


def weights(run_dir, epoch=3):
    return load_file(str(run_dir / f"{epoch}-epochs_model.safetensors"))


def folder_snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, clips):
    return run(tmp_path_factory.mktemp("full"), clips)


# ---------------------------------------------------------------------------------------------
# Non-finite numbers, unsafe names: refused before any folder exists
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flags,fragment", [
    (["--lr", "inf"], "--lr inf is not finite"),
    (["--L1", "inf"], "--L1 inf is not finite"),
    (["--L1", "400"], "--L1 400.0 is out of range"),  # 10 ** 400 is no float
    (["--beta", "nan,0.1,0.1"], "--beta (nan, 0.1, 0.1) is not finite"),
    (["--beta=-0.5,0.1,0.1"], "weights >= 0"),
    (["--beta", "0,0,0"], "at least one of them positive"),
    (["--noise-std", "inf"], "--noise-std inf is not finite"),
    (["--grad-clip", "nan"], "--grad-clip nan is not finite"),
    (["--max-minutes", "-1"], "--max-minutes -1.0 is out of range"),
    (["--name", "../../x"], "is not a plain name"),
    (["--name", "/abs/x"], "is not a plain name"),
    (["--name", "a/b"], "is not a plain name"),
    (["--name", "a\nb"], "is not a plain name"),
    (["--name", ".hidden"], "is not a plain name"),
    (["--name", "x" * 300], "is not a plain name"),
])
def test_bad_numbers_and_names_are_refused_before_any_folder(tmp_path, clips, flags, fragment):
    with pytest.raises(InputError) as err:
        run(tmp_path / "runs", clips, *flags)
    assert fragment in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "runs").exists() and not list(tmp_path.parent.glob("x_*"))


def test_a_plain_name_of_the_longest_allowed_length_trains(tmp_path, clips):
    run_dir = run(tmp_path, clips, "--name", "a" * training_config.MAX_NAME_LENGTH, "--epochs", "0")
    assert run_dir.parent == tmp_path and (run_dir / "0-epochs_model.safetensors").exists()


# ---------------------------------------------------------------------------------------------
# Divergence: stop at the first non-finite epoch, keep the last finite checkpoint
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flags,scale", [(["--lr", "1000"], 1.0), ([], 1e20)])
def test_divergence_in_the_first_epoch_saves_no_checkpoint(tmp_path, flags, scale):
    data = tmp_path / "clips.npy"
    np.save(data, (np.random.default_rng(0).standard_normal((44, 12, 16)) * scale).astype(np.float32))
    with pytest.raises(TrainingDiverged, match="diverged in epoch 1 .*no checkpoint was written"):
        run(tmp_path / "runs", data, *flags)
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.json", "logs"]
    assert "diverged" in (run_dir / "logs" / "train.log").read_text()


def test_divergence_later_keeps_the_last_finite_checkpoint_as_latest(tmp_path, clips, monkeypatch):
    """The loss turns NaN from the second epoch on (injected: which lr diverges
    when depends on float rounding); epoch 1's checkpoint must stay the latest."""
    real_get_loss, calls = NetworkHierarchicalRecurrent.get_loss, []

    def nan_from_epoch_2(self, *args, **kwargs):  # 5 training steps and 1 validation batch per epoch
        calls.append(1)
        loss, comps = real_get_loss(self, *args, **kwargs)
        return (loss * float("nan"), comps) if len(calls) > 6 else (loss, comps)

    monkeypatch.setattr(NetworkHierarchicalRecurrent, "get_loss", nan_from_epoch_2)
    with pytest.raises(TrainingDiverged, match="epoch 2 .*1-epochs_model.safetensors, is finite"):
        run(tmp_path, clips, "--checkpoint-every", "1")
    (run_dir,) = tmp_path.iterdir()
    assert not list(run_dir.glob("2-epochs_*")) and not (run_dir / "interrupted_state.pt").exists()
    assert all(torch.isfinite(w).all() for w in weights(run_dir, 1).values())
    assert json.loads((run_dir / "loss_history.json").read_text())["train"]["epoch"] == [1]
    assert training_config.find_resume_state(run_dir).name == "1-epochs_state.pt"


def test_a_stop_after_divergence_mid_epoch_saves_nothing(tmp_path, clips, monkeypatch):
    real_get_loss = NetworkHierarchicalRecurrent.get_loss
    monkeypatch.setattr(NetworkHierarchicalRecurrent, "get_loss",
                        lambda self, *a, **k: (lambda lc: (lc[0] * float("nan"), lc[1]))(real_get_loss(self, *a, **k)))
    with pytest.raises(TrainingDiverged, match="epoch 1"):
        run(tmp_path, clips, "--stop-after-steps", "2")
    (run_dir,) = tmp_path.iterdir()
    assert not (run_dir / "interrupted_state.pt").exists()


def test_divergence_exits_non_zero_in_one_line(tmp_path):
    data = tmp_path / "clips.npy"
    np.save(data, np.full((44, 12, 16), 1e20, np.float32))
    proc = subprocess.run([sys.executable, "train.py", "--dataset", str(data), "--save-dir", str(tmp_path / "r"),
                           *BASE], cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    lines = [line for line in proc.stderr.strip().splitlines() if not line.startswith("epoch ")]  # progress lines
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: training diverged"), proc.stderr


# ---------------------------------------------------------------------------------------------
# Resume: the same dataset only, and exact under every allowed override
# ---------------------------------------------------------------------------------------------
def interrupted_run(tmp_path, clips, steps=7):  # 5 steps per epoch: mid-way through epoch 2
    cut_short(run, tmp_path / "runs", clips, "--stop-after-steps", str(steps))
    (run_dir,) = (tmp_path / "runs").iterdir()
    return run_dir


@pytest.mark.parametrize("change", ["fewer_clips", "more_clips", "new_content", "other_dtype"])
def test_resume_refuses_a_changed_dataset_and_writes_nothing(tmp_path, clips, change):
    data = tmp_path / "clips.npy"
    shutil.copy(clips, data)
    run_dir = interrupted_run(tmp_path, data)
    original = np.load(clips)
    changed = {"fewer_clips": original[:40], "more_clips": np.concatenate([original, original[:6]]),
               "new_content": original[::-1].copy(), "other_dtype": original.astype(np.float16)}[change]
    np.save(data, changed)
    before = folder_snapshot(run_dir)
    with pytest.raises(InputError, match="is not the dataset .* trained on"):
        resume(run_dir)
    assert folder_snapshot(run_dir) == before


def test_resume_accepts_the_same_content_elsewhere_and_from_another_folder(tmp_path, clips, uninterrupted,
                                                                           monkeypatch):
    start = tmp_path / "start"
    start.mkdir()
    shutil.copy(clips, start / "clips.npy")
    monkeypatch.chdir(start)
    cut_short(run, tmp_path / "runs", "clips.npy", "--stop-after-steps", "7")  # a relative --dataset
    (run_dir,) = (tmp_path / "runs").iterdir()
    config = json.loads((run_dir / "config.json").read_text())
    assert config["dataset"] == str(start / "clips.npy") and config["dataset_identity"]["shape"] == [44, 12, 16]
    monkeypatch.chdir(tmp_path)
    moved = tmp_path / "moved.npy"
    (start / "clips.npy").rename(moved)
    with pytest.raises(InputError, match="does not exist"):
        resume(run_dir)
    resume(run_dir, "--dataset", "moved.npy")  # the same content: accepted, and recorded
    assert json.loads((run_dir / "config.json").read_text())["dataset"] == str(moved)
    full, resumed = weights(uninterrupted), weights(run_dir)
    assert all(torch.equal(full[k], resumed[k]) for k in full)


@pytest.mark.parametrize("override", [
    ["--validate-every", "2"], ["--validate-every", "3"], ["--checkpoint-every", "1"], ["--max-minutes", "100"],
    ["--device", "cpu"], ["--stop-after-steps", "4"], ["--dataset", "COPY"], ["--epochs", "EPOCHS"],
    ["--rf-monitor-every", "1", "--rf-monitor-clips", "20"],
])
def test_resume_is_exact_under_every_allowed_override(tmp_path, clips, uninterrupted, override):
    if override[0] == "--epochs":  # a run first planned for 2 epochs, then extended to 3
        run_dir = run(tmp_path / "runs", clips, "--epochs", "2")
        resume(run_dir, "--epochs", "3")
    else:
        if override[1] == "COPY":
            override = ["--dataset", str(shutil.copy(clips, tmp_path / "copy.npy"))]
        run_dir = interrupted_run(tmp_path, clips)
        if override[0] == "--stop-after-steps":
            cut_short(resume, run_dir, *override)
            resume(run_dir)
        else:
            resume(run_dir, *override)
    full, resumed = weights(uninterrupted), weights(run_dir)
    assert all(torch.equal(full[k], resumed[k]) for k in full), override
    a, b = (json.loads((d / "loss_history.json").read_text())["train"] for d in (uninterrupted, run_dir))
    assert a == b


def test_resume_that_switches_the_recurrence_backend_agrees_to_rounding(tmp_path, clips, uninterrupted):
    # block and dense compute the same function but sum in another order, so (like
    # --device) a switch on resume, e.g. a CPU run moved to a GPU, is exact only to
    # float32 rounding; every other allowed override is bit-exact (above)
    run_dir = interrupted_run(tmp_path, clips)
    resume(run_dir, "--recurrence", "dense")
    full, resumed = weights(uninterrupted), weights(run_dir)
    assert all(torch.allclose(full[k], resumed[k], rtol=1e-4, atol=1e-6) for k in full)
    assert json.loads((run_dir / "config.json").read_text())["recurrence"] == "dense"


def test_validation_draws_the_same_noise_at_every_pass(clips):
    """Its own generator, seeded afresh: validating the same weights twice gives one value."""
    cfg = training_config.resolve_config(train.build_parser().parse_args(["--dataset", str(clips), *TINY]))
    model = train.checked_model(cfg, 12, clips)
    source = train.ClipSource(np.load(clips), np.arange(4))
    device = torch.device("cpu")
    first = validate(model, source, cfg, device, validation_generator(cfg, device))
    assert validate(model, source, cfg, device, validation_generator(cfg, device)) == first


def test_resuming_past_the_last_epoch_says_so(tmp_path, clips, capsys):
    run_dir = run(tmp_path, clips)
    checkpoints = sorted(run_dir.glob("*-epochs_*"))
    resume(run_dir, "--epochs", "2")
    log = (run_dir / "logs" / "train.log").read_text().splitlines()
    assert "nothing to train: the run already has 3 complete epochs" in log[-1]
    assert "finished epoch 2" not in "\n".join(log) and sorted(run_dir.glob("*-epochs_*")) == checkpoints


# ---------------------------------------------------------------------------------------------
# Unwritable save folders and a full disk: one line, nothing half-written
# ---------------------------------------------------------------------------------------------
def test_save_dir_that_is_a_file_or_under_a_file_is_one_line(tmp_path, clips):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for save_dir in (blocker, blocker / "sub"):
        with pytest.raises(InputError, match="cannot create the run folder in --save-dir"):
            run(save_dir, clips)
    assert blocker.read_text() == "x"


@pytest.fixture
def small_tmpfs(tmpfs):
    """A 1 MiB tmpfs (needs root; skipped where mounting is not allowed)."""
    return tmpfs("size=1m")


def test_disk_full_while_checkpointing_is_one_line_and_leaves_no_partial_file(small_tmpfs, clips):
    # 3 x 200 units: the weights alone (~2 MB) cannot fit in 1 MiB, the config and log can
    with pytest.raises(InputError, match=r"cannot write a checkpoint to .*\(.*\): free space"):
        run(small_tmpfs, clips, "--hidden-units", "200,200,200", "--epochs", "1")
    (run_dir,) = small_tmpfs.iterdir()
    names = sorted(p.name for p in run_dir.iterdir())
    assert not [n for n in names if n.endswith(".tmp")] and not [n for n in names if "epochs" in n], names
    json.loads((run_dir / "config.json").read_text())


def test_read_only_save_dir_is_one_line(small_tmpfs, clips):
    subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], check=True)
    with pytest.raises(InputError, match="cannot create the run folder .*Read-only file system"):
        run(small_tmpfs / "runs", clips)


def test_immutable_save_dir_is_one_line(tmp_path, clips):
    folder = tmp_path / "locked"
    folder.mkdir()
    if os.geteuid() != 0 or subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i needs root and a file system that supports it")
    try:
        with pytest.raises(InputError, match="cannot create the run folder .*Operation not permitted"):
            run(folder, clips)
        assert not list(folder.iterdir())
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


@pytest.mark.parametrize("config", [None, "{not json", "[1, 2]", b"\xff\xfe\x00"])
def test_resume_with_a_missing_or_corrupt_config_is_one_line(tmp_path, clips, config):
    run_dir = interrupted_run(tmp_path, clips)
    target = run_dir / "config.json"
    if config is None:
        target.unlink()
    else:
        target.write_bytes(config if isinstance(config, bytes) else config.encode())
    with pytest.raises(InputError, match="config.json (is missing|is unreadable|does not hold)"):
        resume(run_dir)


# ---------------------------------------------------------------------------------------------
# Atomic writes: the umask's mode, recognisable temporaries, stale ones removed
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_atomic_writes_get_the_mode_the_umask_gives(tmp_path, umask):
    old = os.umask(umask)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        (tmp_path / "plain").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_every_file_of_a_run_checkpoints_included_gets_the_mode_the_umask_gives(tmp_path, clips, umask):
    old = os.umask(umask)
    try:
        run_dir = run(tmp_path, clips, "--epochs", "2")
    finally:
        os.umask(old)
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert any(p.suffix == ".safetensors" for p in files) and any(p.name.endswith("_state.pt") for p in files)
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in files}
    assert set(modes.values()) == {oct(0o666 & ~umask)}, modes  # safetensors' save_file alone would give 0o600


def test_stale_temporaries_of_dead_processes_go_at_the_next_write(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    with atomic_path(tmp_path / "x.bin") as tmp:
        mine = tmp.name
        stale = tmp_path / mine.replace(f"-{os.getpid()}-", f"-{dead_pid}-")
        live = tmp_path / mine.replace(f"-{os.getpid()}-", "-1-")  # pid 1 always runs
        other_host = tmp_path / mine.replace(".partial-", ".partial-otherhost").replace(f"-{os.getpid()}-",
                                                                                           f"-{dead_pid}-")
        unrelated = tmp_path / ".notes.tmp"
        for path in (stale, live, other_host, unrelated):
            path.write_bytes(b"partial")
        tmp.write_bytes(b"done")
    assert (tmp_path / "x.bin").read_bytes() == b"done"
    write_json(tmp_path / "y.json", {})  # the next write to the folder clears the dead one's temporary
    assert not stale.exists() and live.exists() and other_host.exists() and unrelated.exists()
    assert remove_stale_temporaries(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# Checkpoints that cannot be loaded: one line each
# ---------------------------------------------------------------------------------------------
MODEL_CONFIG = {"model": "network_hierarchical_recurrent", "loss": "loss_hierarchical_temporal_prediction",
                "frame_shape": [2, 3], "hidden_units": [4, 5, 6], "beta": [0.9, 0.1, 0.1], "warmup": 2,
                "local_inhibitory_prop": 0.2, "L1": -3.0, "detach_targets": False, "noise_std": 0.5011}


def tiny_tensors():
    torch.manual_seed(0)
    model = NetworkHierarchicalRecurrent.from_config(MODEL_CONFIG)
    return {k: v.contiguous() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("metadata,match", [
    ({"config": "{not json"}, "is not valid JSON"),
    ({"config": json.dumps({**MODEL_CONFIG, "model": "nope"})}, "does not describe a model .*unknown model 'nope'"),
    ({"config": json.dumps({"model": "network_hierarchical_recurrent"})}, "does not describe a model .*missing"),
    ({"config": json.dumps([1, 2])}, "names no model kind"),
])
def test_weights_with_bad_config_metadata_are_one_line(tmp_path, metadata, match):
    from safetensors.torch import save_file

    from models.io import load_model

    path = tmp_path / "3-epochs_model.safetensors"
    save_file(tiny_tensors(), str(path), metadata=metadata)
    with pytest.raises(CheckpointError, match=match):
        load_model(path)


def test_a_hugging_face_checkpoint_given_to_run_bash_is_one_line(tmp_path):
    from safetensors.torch import save_file

    folder = tmp_path / "hf"
    folder.mkdir()
    save_file(tiny_tensors(), str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"architectures": ["BertModel"], "hidden_size": 8}))
    proc = subprocess.run(["bash", str(ROOT / "run.bash"), str(folder / "model.safetensors"), "--no-progress"],
                          capture_output=True, text=True, timeout=900)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "names no model kind" in lines[0], proc.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]


def test_weights_missing_a_tensor_are_one_line(tmp_path):
    from safetensors.torch import save_file

    from models.io import load_model

    tensors = tiny_tensors()
    del tensors["weight_hh"]
    save_file(tensors, str(tmp_path / "1-epochs_model.safetensors"), metadata={"config": json.dumps(MODEL_CONFIG)})
    with pytest.raises(CheckpointError, match="do not fit the model"):
        load_model(tmp_path / "1-epochs_model.safetensors")


ORIGINAL_HP = {"name": "orig", "lam": 1e-6, "frame_size": 6, "hidden_units_groups": "4,5,6",
               "beta_weights": "0.9,0.1,0.1", "warmup": 2, "local_inhibitory_prop": 0.2}


def original_folder(tmp_path, hp=ORIGINAL_HP, csv_bytes=None, weights=None):
    import csv

    run_dir = tmp_path / "orig"
    run_dir.mkdir()
    if csv_bytes is None:
        with open(run_dir / "hyperparameters.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow([""] + list(hp))
            writer.writerow([0] + list(hp.values()))
    else:
        (run_dir / "hyperparameters.csv").write_bytes(csv_bytes)
    if weights is None:
        model = NetworkHierarchicalRecurrent.from_config({**MODEL_CONFIG, "frame_shape": [2, 3]})
        torch.save(model.to_original_state_dict(), run_dir / "5-epochs_model.pt")
    else:
        torch.save(weights, run_dir / "5-epochs_model.pt")
    return run_dir


class NotATensor:  # a pickled object: weights_only=True must refuse it, in one line
    pass


@pytest.mark.parametrize("case,match", [
    ("missing_column", "lacks the column 'beta_weights'"),
    ("not_a_number", "holds values the model cannot use"),
    ("mismatched_beta", "holds values the model cannot use .*beta has 2 weights"),
    ("binary_garbage", "is not a text CSV file"),
    ("pickled_object", "cannot read original checkpoint"),
])
def test_bad_original_layout_folders_are_one_line(tmp_path, case, match):
    from models.io import load_model

    hp = dict(ORIGINAL_HP)
    kwargs = {}
    if case == "missing_column":
        del hp["beta_weights"]
    elif case == "not_a_number":
        hp["warmup"] = "four"
    elif case == "mismatched_beta":
        hp["beta_weights"] = "0.9,0.1"
    elif case == "binary_garbage":
        kwargs["csv_bytes"] = bytes(range(256)) * 4
    else:
        kwargs["weights"] = {"rnn.weight_hh_l0": NotATensor()}
    run_dir = original_folder(tmp_path, hp, **kwargs)
    with pytest.raises(CheckpointError, match=match):
        load_model(run_dir, frame_shape=(2, 3))


def test_a_good_original_layout_folder_still_loads(tmp_path):
    from models.io import load_model

    model, config, _ = load_model(original_folder(tmp_path), frame_shape=(2, 3))
    assert config["hidden_units"] == [4, 5, 6] and config["checkpoint_epoch"] == 5


# ---------------------------------------------------------------------------------------------
# --cluster: the checks of a local run, before any job is queued
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cluster", [["--cluster", "local"], ["--cluster", "slurm", "--dry-run"], ["--dry-run"]])
@pytest.mark.parametrize("problem,match", [
    ("nan_dataset", "contains NaN or inf"),
    ("short_clips", "5-frame clips but at least 6 are needed"),
    ("bad_loss", "does not apply"),
])
def test_cluster_jobs_are_checked_like_a_local_run_before_submission(tmp_path, clips, monkeypatch, cluster,
                                                                    problem, match):
    import submit_training_job as stj

    submitted = []
    monkeypatch.setattr(stj, "submit", lambda *args: submitted.append(args))
    data, extra = clips, []
    if problem == "nan_dataset":
        data = tmp_path / "nan.npy"
        np.save(data, np.full((44, 12, 16), np.nan, np.float32))
    elif problem == "short_clips":
        data = tmp_path / "short.npy"
        np.save(data, np.zeros((44, 5, 16), np.float32))
    else:
        extra = ["--loss", "loss_hierarchical_temporal_prediction_feedforward"]
    with pytest.raises(InputError, match=match):
        stj.main(["--dataset", str(data), "--save-dir", str(tmp_path / "runs"), *TINY, *extra, *cluster])
    assert not submitted and not (tmp_path / "runs").exists()


def test_a_run_named_before_the_name_rule_still_resumes(tmp_path, clips, uninterrupted):
    run_dir = interrupted_run(tmp_path, clips)
    config = json.loads((run_dir / "config.json").read_text())
    config["name"] = "lr=1e-4 run"  # allowed by older versions, refused for new runs now
    del config["recurrence"]  # older runs predate the flag: they used the block backend
    (run_dir / "config.json").write_text(json.dumps(config))
    resume(run_dir)
    full, resumed = weights(uninterrupted), weights(run_dir)
    assert all(torch.equal(full[k], resumed[k]) for k in full)
    assert json.loads((run_dir / "config.json").read_text())["recurrence"] == "block"


def test_a_noise_state_from_another_kind_of_device_is_one_line(tmp_path, clips):
    run_dir = interrupted_run(tmp_path, clips)
    state_file = run_dir / "interrupted_state.pt"
    state = torch.load(state_file, weights_only=True)
    state["rng"]["noise"] = torch.zeros(16, dtype=torch.uint8)  # a CUDA generator's state is 16 bytes
    torch.save(state, state_file)
    with pytest.raises(InputError, match="saved on another kind of device"):
        resume(run_dir)


@pytest.mark.parametrize("seed", ["-1", "18446744073709551616", "4294967296"])
def test_a_seed_out_of_range_is_refused_before_any_folder(tmp_path, clips, seed):
    with pytest.raises(InputError, match=rf"--seed {seed} is out of range: seeds are 0 to 4294967295"):
        run(tmp_path / "runs", clips, "--seed", seed)
    assert not (tmp_path / "runs").exists()


def test_a_sweep_with_a_seed_out_of_range_is_one_line(tmp_path, clips):
    import submit_training_job

    with pytest.raises(InputError, match=r"--seed -1 is out of range"):
        submit_training_job.main(["--dataset", str(clips), "--save-dir", str(tmp_path / "runs"), *BASE,
                                  "--seed", "0", "-1"])
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("writer,error", [
    ("torch.save", RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4480 vs 4370")),
    ("torch.save", RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")),
    ("save_file", OSError(28, "No space left on device")),
])
def test_a_full_disk_during_a_checkpoint_is_one_line_and_leaves_earlier_files_intact(tmp_path, clips, monkeypatch,
                                                                                       writer, error):
    from models import checkpoint as checkpoint_module  # writes the weights
    from training import run_dir as run_dir_module  # writes the resume states

    run_dir = run(tmp_path / "runs", clips, "--epochs", "2", "--checkpoint-every", "1")
    before = folder_snapshot(run_dir)

    def full(*args, **kwargs):
        raise error
    if writer == "torch.save":
        monkeypatch.setattr(run_dir_module.torch, "save", full)
    else:
        monkeypatch.setattr(checkpoint_module, "save_file", full)
    with pytest.raises(InputError) as err:
        resume(run_dir, "--epochs", "3")
    message = str(err.value)
    assert "\n" not in message and "cannot write a checkpoint to" in message, message
    assert "the files already there are intact" in message and f"resume with --path {run_dir}" in message
    after = folder_snapshot(run_dir)
    kept = [k for k in before if "epochs" in str(k) or k.name == "loss_history.json"]  # config.json: rewritten on resume
    assert len(kept) == 7 and all(after[k] == before[k] for k in kept)
    assert not [k for k in after if str(k).endswith(".tmp")]


# ---------------------------------------------------------------------------------------------
# A run cut short by a limit exits 3 (not 0), so `train && bash run.bash RUN` stops there
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("limit", [["--max-minutes", "0.0001"], ["--stop-after-steps", "7"]])
def test_a_run_cut_short_by_a_limit_exits_3_naming_where_to_continue(tmp_path, clips, capsys, limit):
    with pytest.raises(SystemExit) as stop:
        run(tmp_path / "runs", clips, *limit)
    assert stop.value.code == 3
    (run_dir,) = (tmp_path / "runs").iterdir()
    err = capsys.readouterr().err.splitlines()
    where = "after epoch 1 of 3 (optimizer step 5 " if limit[0] == "--max-minutes" else "during epoch 2 of 3 (optimizer step 7 "
    assert err[-1].startswith(f"cut short {where}") and f"--path {run_dir}" in err[-1], err[-1]
    resume(run_dir)  # finishes: exit 0 (no SystemExit)
    assert (run_dir / "3-epochs_model.safetensors").exists()


def test_a_sweep_with_a_job_cut_short_runs_the_others_and_exits_3(tmp_path, clips, capsys):
    import submit_training_job

    with pytest.raises(SystemExit) as stop:
        submit_training_job.main(["--dataset", str(clips), "--save-dir", str(tmp_path / "runs"), *BASE,
                                  "--seed", "0", "1", "--stop-after-steps", "3"])
    assert stop.value.code == 3
    assert capsys.readouterr().err.count("cut short during epoch 1 of 3 (optimizer step 3 ") >= 2  # one per job
    assert all((d / "interrupted_state.pt").exists() for d in (tmp_path / "runs").iterdir())


def test_negative_stop_after_steps_is_refused_and_zero_means_no_limit(tmp_path, clips):
    with pytest.raises(InputError, match=r"--stop-after-steps -1 is out of range"):
        run(tmp_path / "runs", clips, "--stop-after-steps", "-1")
    assert not (tmp_path / "runs").exists()
    run_dir = run(tmp_path / "runs", clips, "--stop-after-steps", "0", "--max-minutes", "0")
    assert (run_dir / "3-epochs_model.safetensors").exists()
