"""Every control model kind through the training command (2 epochs on tiny
data), reloaded from its checkpoint, assembled (TP_FF) and probed by the
virtual physiology; the ablation specs of ``--ablation`` flags."""
import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import submit_training_job
import train
from analysis.mse import next_frame_errors
import training.loop as training
from models import build_model
from models.ablation import apply_ablation, shuffle_feedback, without_feedback
from models.base import SettingError
from models.checkpoint import CheckpointError
from models.io import load_model
from models.network_feedforward_stacked import main as stack_main
from training.run_dir import RunDir
from utils import UserInputError, seed_everything
from virtual_physiology import VirtualPhysiology
from virtual_physiology.artefact import STAGES
from virtual_physiology.pipeline import Options, Pipeline
from virtual_physiology.rwa import response_weighted_average
from virtual_physiology.tuning import grating_sweep

ROOT = Path(__file__).resolve().parents[1]
FF_LOSS = "loss_hierarchical_temporal_prediction_feedforward"
TINY = ["--frame-shape", "4", "4", "--batch-size", "8", "--epochs", "2", "--validate-every", "1", "--device", "cpu"]
KINDS = {  # name: (extra flags, model class name, number of groups); group g has SIZES[g] units
    "htp": (["--hidden-units", "6,5,4"], "NetworkHierarchicalRecurrent", 3),
    "hier_ff": (["--model", "network_hierarchical_feedforward", "--loss", FF_LOSS, "--hidden-units", "6,5,4",
                 "--beta", "1,1,1"], "NetworkHierarchicalFeedforward", 3),
    "tp_ff0": (["--model", "network_feedforward", "--loss", FF_LOSS, "--hidden-units", "6", "--beta", "1"],
               "NetworkFeedforward", 1),
    "autoencoder": (["--loss", "loss_hierarchical_autoencoder", "--hidden-units", "6,5,4"],
                    "NetworkHierarchicalRecurrent", 3),
    "t5": (["--loss", "loss_hierarchical_temporal_prediction_t5", "--hidden-units", "6,5,4"],
           "NetworkHierarchicalRecurrent", 3),
    "vanilla": (["--model", "network_recurrent", "--hidden-units", "6", "--beta", "1"], "NetworkRecurrent", 1),
}
SIZES = [6, 5, 4]


def _train(base: Path, name: str, *args) -> Path:
    """One run of submit_training_job's main, in process; returns its run folder."""
    submit_training_job.main(["--name", name, "--dataset", str(base / "tiny.npy"), "--save-dir", str(base / name),
                              *TINY, *args])
    (run,) = (base / name).iterdir()
    return run


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine: one thread avoids thread contention (~20x faster under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("controls")
    np.save(base / "tiny.npy", np.random.default_rng(0).standard_normal((44, 16, 16)).astype(np.float32))
    saved, save_weights = {}, RunDir.save_weights

    def save_and_keep(run, model, *args, **kwargs):  # the model as saved, to compare with its reload
        saved[run.path] = copy.deepcopy(model).eval()
        return save_weights(run, model, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:  # the loss-curve figure is plotted by the command-line run below
        patch.setattr(training, "save_loss_curve", lambda *args: None)
        patch.setattr(RunDir, "save_weights", save_and_keep)
        out = {name: _train(base, name, *flags) for name, (flags, _, _) in KINDS.items()}
        out["tp_ff1"] = _train(base, "tp_ff1", *KINDS["tp_ff0"][0][:4], "--hidden-units", "6,5", "--beta", "1,1",
                               "--lower-stacks", str(out["tp_ff0"]))
        out["untrained_tp_ff1"] = _train(base, "untrained", *KINDS["tp_ff0"][0][:4], "--hidden-units", "6,5",
                                         "--beta", "1,1", "--lower-stacks", str(out["tp_ff0"]), "--epochs", "0")
    stack_main([str(out["tp_ff0"]), str(out["tp_ff1"]), "--out", str(base / "tp_ff_stacked")])
    out["tp_ff_stacked"] = base / "tp_ff_stacked"
    out["base"], out["saved"] = base, saved
    return out


def _initial_model(run: Path):
    """The model as train.py built it before the first step (same seed)."""
    config = json.loads((run / "config.json").read_text())
    seed_everything(config["seed"])
    return build_model(config)


@pytest.mark.parametrize("kind", [*KINDS, "tp_ff1", "untrained_tp_ff1"])
def test_each_kind_reloads_to_exactly_the_model_it_saved(runs, kind):
    before, (after, _, _) = runs["saved"][runs[kind]], load_model(runs[kind])
    x = torch.randn(2, 16, 16, generator=torch.Generator().manual_seed(3))
    for a, b in zip(before(x), after(x)):  # (predictions, hidden)
        assert torch.equal(a, b)
    assert torch.equal(before.hidden_activity(x), after.hidden_activity(x))


@pytest.mark.parametrize("kind", [*KINDS, "tp_ff1"])
def test_each_kind_trains_reloads_and_moves_only_its_trainable_weights(runs, kind):
    model, config, history = load_model(runs[kind])
    n_groups = 2 if kind == "tp_ff1" else KINDS[kind][2]
    assert type(model).__name__ == (KINDS.get(kind) or KINDS["tp_ff0"])[1] and len(model.group_sizes) == n_groups
    assert config["checkpoint_epoch"] == 2 and history["train"]["epoch"] == [1, 2]
    for key in ["loss", "L1"] + [f"mse{g}" for g in range(n_groups)]:
        assert np.isfinite(history["validation"][key]).all() and len(history["train"][key]) == 2, key
    initial = dict(_initial_model(runs[kind]).named_parameters())
    for name, p in model.named_parameters():
        assert torch.equal(p, initial[name]) != p.requires_grad, name  # trained moved, frozen did not
    x = torch.randn(2, 16, 16, generator=torch.Generator().manual_seed(0))
    assert model.hidden_activity(x).shape == (2, 16, sum(model.group_sizes))


def test_the_command_line_run_equals_the_same_run_in_process(runs, tmp_path):
    flags = KINDS["hier_ff"][0]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "submit_training_job.py", "--name", "hier_ff", "--dataset",
                           str(runs["base"] / "tiny.npy"), "--save-dir", str(tmp_path), *TINY, *flags],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    (run,) = tmp_path.iterdir()
    from_cli, _, _ = load_model(run)
    in_process, _, _ = load_model(runs["hier_ff"])
    x = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(from_cli(x), in_process(x), rtol=1e-4, atol=1e-6)
    assert not torch.equal(from_cli.stacks[2].conv.weight, _initial_model(run).stacks[2].conv.weight)


def test_tp_ff_stacks_chain_into_one_self_contained_model(runs, tmp_path):
    stack0, _, _ = load_model(runs["tp_ff0"])
    stack1, _, _ = load_model(runs["tp_ff1"])
    assert all(torch.equal(a, b) for a, b in zip(stack1.stacks[0].parameters(), stack0.stacks[0].parameters()))
    x = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(2))
    h0 = stack0.stacks[0].hidden(x)
    h1 = stack1.stacks[1].hidden(h0)
    expected = torch.cat([torch.cat([torch.zeros(3, 4, 6), h0], 1), torch.cat([torch.zeros(3, 8, 5), h1], 1)], -1)
    # Loading the stacked checkpoint needs none of the runs it came from.
    moved = tmp_path / "moved"
    shutil.copytree(runs["tp_ff_stacked"], moved)
    shutil.move(runs["tp_ff0"], tmp_path / "away")
    try:
        stacked, config, _ = load_model(moved)
    finally:
        shutil.move(tmp_path / "away", runs["tp_ff0"])
    assert type(stacked).__name__ == "NetworkFeedforwardStacked" and config["checkpoint_epoch"] == 2
    assert config["stacked_from"] == [str(runs["tp_ff0"].resolve()), str(runs["tp_ff1"].resolve())]
    each_stack = [load_model(runs[name])[1] for name in ("tp_ff0", "tp_ff1")]
    assert config["stack_steps"] == [c["checkpoint_epoch"] * -(-c["n_train"] // c["batch_size"]) for c in each_stack]
    torch.testing.assert_close(stacked.hidden_activity(x), expected)
    torch.testing.assert_close(stacked(x), stack1(x))
    with pytest.raises(UserInputError, match="not trained on top"):
        stack_main([str(runs["hier_ff"]), str(runs["tp_ff1"]), "--out", str(tmp_path / "bad")])
    with pytest.raises(UserInputError, match="not feedforward stacks"):
        stack_main([str(runs["t5"]), "--out", str(tmp_path / "bad")])
    with pytest.raises(UserInputError, match="not empty"):
        stack_main([str(runs["tp_ff0"]), "--out", str(runs["tp_ff1"])])


def test_untrained_control_loads_with_its_trained_stack_below(runs):
    untrained, config, _ = load_model(runs["untrained_tp_ff1"])
    stack0, _, _ = load_model(runs["tp_ff0"])
    assert config["checkpoint_epoch"] == 0 and config["epochs"] == 0
    assert torch.equal(untrained.stacks[0].conv.weight, stack0.stacks[0].conv.weight)
    assert torch.equal(untrained.stacks[1].conv.weight, _initial_model(runs["untrained_tp_ff1"]).stacks[1].conv.weight)
    assert untrained.hidden_activity(torch.randn(1, 20, 16)).shape == (1, 20, 11)


def test_lower_stacks_may_list_the_chain_and_mismatches_are_user_errors(runs, tmp_path):
    config = json.loads((runs["tp_ff1"] / "config.json").read_text())
    stack1, _, _ = load_model(runs["tp_ff1"])
    stack2 = build_model(config | {"hidden_units": [6, 5, 3], "beta": [1, 1, 1],
                                   "lower_stacks": f"{runs['tp_ff0']}, {runs['tp_ff1']}"})
    assert [p.requires_grad for p in stack2.parameters()] == [False] * 8 + [True] * 4
    assert all(torch.equal(a, b) for a, b in zip(stack2.stacks[:2].parameters(), stack1.stacks.parameters()))
    with pytest.raises(SettingError) as refused:
        build_model(config | {"hidden_units": [7, 5]})
    assert "--hidden-units 6,N" in refused.value.flag_wording()
    with pytest.raises(CheckpointError, match="does not exist"):
        build_model(config | {"lower_stacks": str(runs["base"] / "missing")})
    # a checkpoint whose config names a lower stack that is gone: that stack's message, not re-wrapped
    missing = runs["base"] / "missing"
    weights = sorted(runs["tp_ff1"].glob("*-epochs_model.safetensors"))[-1]
    with safe_open(str(weights), framework="pt") as f:
        meta = f.metadata()
    moved = tmp_path / "moved" / weights.name
    moved.parent.mkdir()
    save_file(load_file(str(weights)), str(moved),
              metadata=meta | {"config": json.dumps(json.loads(meta["config"]) | {"lower_stacks": str(missing)})})
    with pytest.raises(CheckpointError) as gone:
        load_model(moved)
    assert str(gone.value) == f"checkpoint {missing} does not exist: give a run folder or a weights file"


@pytest.mark.parametrize("kind", [*KINDS, "tp_ff_stacked"])
def test_rwa_grating_sweep_and_prediction_error_run_on_every_kind(runs, kind):
    model, _, _ = load_model(runs[kind])
    clips = np.load(runs["base"] / "tiny.npy")[:5]
    errors = next_frame_errors(model, clips)["model"]
    assert errors.shape == (5,) and np.isfinite(errors).all()
    result = response_weighted_average(model, n_clips=20, n_frames=54, chunk_clips=7, progress=False)
    assert result["rwa"].shape == (model.n_hidden, 16) and result["kept"].any()
    grid = dict(sf=np.array([0.25, 0.5]), directions=np.arange(0, 360, 90.0), tf=np.array([0.05, 0.2]))
    mean = grating_sweep(model, grid, batch_size=5, progress=False)["mean_responses"]
    assert mean.shape == (model.n_hidden, 2, 4, 2) and np.isfinite(mean).all()


@pytest.mark.parametrize("kind", [*KINDS, "tp_ff1", "tp_ff_stacked"])
def test_full_virtual_physiology_on_every_kind(runs, kind, tmp_path):
    artefact = tmp_path / "vp.h5"
    options = Options(rwa_clips=30, gabor_starts=1, gabor_steps=5, progress=False)
    assert Pipeline(runs[kind], artefact, options=options).run(log=lambda *_: None)
    name, n = KINDS[kind][1:] if kind in KINDS else ("NetworkFeedforward" + "Stacked" * (kind == "tp_ff_stacked"), 2)
    recurrent = "Recurrent" in name
    with VirtualPhysiology.load(artefact) as vp:
        meta, stages = vp.metadata["model"], vp.metadata["stages"]
        assert vp.stages == list(STAGES) and meta["kind"] == name and meta["group_sizes"] == SIZES[:n]
        assert meta["group_lags"] == list(range(n))  # the original's lag g for every kind
        kept = [vp.array("kept", group=g) for g in range(n)]
        assert [k.size for k in kept] == SIZES[:n] and kept[0].any()
        assert [[u["hidden_unit_index"] for u in units] for units in vp.data] == [
            (np.flatnonzero(k) + sum(SIZES[:g])).tolist() for g, k in enumerate(kept)]
        feedback = name == "NetworkHierarchicalRecurrent"
        assert stages["nofeedback"]["complete"] and stages["nofeedback"]["notes"][0].startswith("skipped") != feedback
        assert ("nofeedback/plaid_pattern_index" in vp.fields()) == feedback
        if recurrent:  # group 1's excitatory units: 6 - int(0.2 * 6)
            assert vp.connectivity()["weights"].shape == (5, 5)
        else:
            assert stages["connectivity"]["notes"][0].startswith("skipped")


def test_ablation_specs_zero_or_shuffle_exactly_the_feedback_entries(runs):
    torch.manual_seed(0)
    model = build_model(json.loads((runs["t5"] / "config.json").read_text()))
    with torch.no_grad():
        model.weight_hh.add_(torch.rand(model.weight_hh.shape))
    model.project_weights_()
    before = model.weight_hh.detach().clone()
    feedback = torch.zeros_like(before, dtype=torch.bool)
    feedback[0:6, 6:11] = feedback[6:11, 11:15] = True
    allowed = feedback & (model.hh_mask > 0)
    assert apply_ablation(model, "none") is model
    ablated = apply_ablation(model, " no-feedback ").weight_hh.detach()
    assert torch.equal(ablated, without_feedback(model).weight_hh)
    assert torch.count_nonzero(ablated[feedback]) == 0 and torch.equal(ablated[~feedback], before[~feedback])
    shuffled = apply_ablation(model, "shuffle-feedback:0.5:3").weight_hh.detach()
    assert torch.equal(shuffled, shuffle_feedback(model, 0.5, 3).weight_hh)
    assert torch.equal(shuffled[~feedback], before[~feedback])
    assert torch.count_nonzero(shuffled[feedback & ~allowed]) == 0
    for rows, cols in ((slice(0, 6), slice(6, 11)), (slice(6, 11), slice(11, 15))):
        # half of all the block's entries, masked ones included, swap values (the original's control)
        assert set(shuffled[rows, cols].flatten().tolist()) <= set(before[rows, cols].flatten().tolist())
    n_changed = torch.count_nonzero(shuffled[allowed] != before[allowed])
    assert 0 < n_changed <= round(0.5 * 6 * 5) + round(0.5 * 5 * 4)
    assert torch.equal(apply_ablation(model, "shuffle-feedback:0.5").weight_hh, shuffle_feedback(model, 0.5, 0).weight_hh)
    assert torch.equal(model.weight_hh, before)
    for spec, message in (("no-feedback:1", "unknown ablation"), ("shuffle-feedback", "unknown ablation"),
                          ("shuffle-feedback:half", "must be a number"), ("shuffle-feedback:0.5:x", "integer"),
                          ("shuffle-feedback:1.5", r"in \[0, 1\]"), ("lesion", "unknown ablation")):
        with pytest.raises(SettingError, match=message):
            apply_ablation(model, spec)
    with pytest.raises(SettingError) as once:  # named once, not re-wrapped by the handler of other errors
        apply_ablation(model, "shuffle-feedback:half")
    assert str(once.value) == "ablation 'shuffle-feedback:half': FRACTION must be a number and SEED an integer"
    for kind in ("hier_ff", "vanilla"):
        other, _, _ = load_model(runs[kind])
        assert apply_ablation(other, "none") is other
        with pytest.raises(SettingError, match="no feedback connections"):
            apply_ablation(other, "no-feedback")
