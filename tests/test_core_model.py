"""The fast model against the dense masked reference, its invariants, the loss
on a hand-made input, the original's layout and the feedback ablation."""
import csv

import pytest
import torch

from dense_reference import DenseReference
from losses import hierarchical_offset_mse
from models.ablation import shuffle_feedback, without_feedback
from models.io import load_model, save_model
from models.network_hierarchical_recurrent import NetworkHierarchicalRecurrent
from step_helpers import noiseless_step
from models.network_recurrent import NetworkRecurrent

CASES = [  # frame shape, groups, beta, inhibitory proportion, loss / offset
    ((4, 5), (12, 10, 8), (0.9, 0.1, 0.1), 0.2, "loss_hierarchical_temporal_prediction", 1),
    ((3, 3), (10,), (1.0,), 0.2, "loss_hierarchical_temporal_prediction", 1),
    ((2, 4), (6, 7, 5, 9), (0.7, 0.1, 0.1, 0.1), 0.0, "loss_hierarchical_temporal_prediction_t5", 5),
    ((3, 4), (10, 10), (0.5, 0.5), 0.3, "loss_hierarchical_autoencoder", 0),
]


def pair(frame_shape, groups, beta, prop, loss, offset, lam=1e-3, seed=1):
    torch.manual_seed(seed)
    fast = NetworkHierarchicalRecurrent(frame_shape=frame_shape, hidden_units=groups, beta=beta,
                                        local_inhibitory_prop=prop, lam=lam, loss=loss)
    P = frame_shape[0] * frame_shape[1]
    torch.manual_seed(seed)
    ref = DenseReference(P, groups, beta, inhibitory_prop=prop, lam=lam, offset=offset)
    return fast, ref


def dense_grads(fast):
    """The fast model's gradients in the original's dense layout."""
    H, P = fast.n_hidden, fast.n_pixels
    g_ih = torch.zeros(H, P)
    g_ih[: fast.group_sizes[0]] = fast.weight_ih.grad
    g_fc = torch.zeros(sum(fast.output_sizes), H)
    for w, out, hid in zip(fast.readout_weights, fast.output_slices, fast.group_slices):
        g_fc[out, hid] = w.grad
    return {"rnn.weight_ih_l0": g_ih, "rnn.weight_hh_l0": fast.weight_hh.grad, "rnn.bias_ih_l0": fast.bias_ih.grad,
            "rnn.bias_hh_l0": fast.bias_hh.grad, "fc.weight": g_fc, "fc.bias": fast.readout_bias.grad}


@pytest.mark.parametrize("case", CASES)
def test_same_initialisation_as_the_original_for_the_same_seed(case):
    fast, ref = pair(*case)
    ours = fast.to_original_state_dict()
    theirs = ref.state_dict()
    n0 = fast.group_sizes[0]
    assert torch.equal(ours["rnn.weight_ih_l0"][:n0], theirs["rnn.weight_ih_l0"][:n0])
    assert torch.equal(ours["rnn.weight_hh_l0"], theirs["rnn.weight_hh_l0"])
    for key in ("rnn.bias_ih_l0", "rnn.bias_hh_l0", "fc.bias"):
        assert torch.equal(ours[key], theirs[key])
    assert torch.equal(ours["fc.weight"], theirs["fc.weight"] * ref.fc_mask)


@pytest.mark.parametrize("case", CASES)
def test_forward_loss_and_gradients_match_dense_reference(case):
    fast, ref = pair(*case)
    ref.load_state_dict(fast.to_original_state_dict())
    x = torch.randn(5, 11, fast.n_pixels)
    out_fast, out_ref = fast(x), ref(x)
    torch.testing.assert_close(out_fast[0], out_ref[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out_fast[1], out_ref[1], rtol=1e-5, atol=1e-6)
    loss_fast, comps = fast.get_loss(out_fast, (x, x))
    loss_ref, terms = ref.loss(out_ref, x)
    torch.testing.assert_close(loss_fast, loss_ref, rtol=1e-6, atol=1e-7)
    for g, term in enumerate(terms):
        torch.testing.assert_close(comps[f"mse{g}"], term.detach(), rtol=1e-6, atol=1e-7)
    loss_fast.backward()
    loss_ref.backward()
    ref.mask_gradients()
    fast.mask_gradients()
    for key, grad in dense_grads(fast).items():
        ref_grad = dict(ref.named_parameters())[key].grad
        torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-7, msg=key)


@pytest.mark.parametrize("case", CASES[:2])
def test_training_steps_match_dense_reference(case):
    fast, ref = pair(*case)
    ref.load_state_dict(fast.to_original_state_dict())
    opt_f = torch.optim.Adam(fast.parameters(), lr=1e-2)
    opt_r = torch.optim.Adam(ref.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        x = torch.randn(4, 9, fast.n_pixels, generator=gen)
        noiseless_step(fast, opt_f, x)
        ref.train_step(opt_r, x, x)
    ours, theirs = fast.to_original_state_dict(), ref.state_dict()
    n0 = fast.group_sizes[0]
    torch.testing.assert_close(ours["rnn.weight_ih_l0"][:n0], theirs["rnn.weight_ih_l0"][:n0], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(ours["rnn.weight_hh_l0"], theirs["rnn.weight_hh_l0"], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(ours["fc.weight"], theirs["fc.weight"] * ref.fc_mask, rtol=1e-4, atol=1e-6)
    # the reference's masked input rows were zeroed at its first forward pass
    assert torch.count_nonzero(theirs["rnn.weight_ih_l0"][n0:]) == 0


def test_masks_and_dale_signs_hold_after_training_steps():
    torch.manual_seed(0)
    model = NetworkHierarchicalRecurrent(frame_shape=(3, 3), hidden_units=(10, 10, 10), lam=1e-3)
    opt = torch.optim.Adam(model.parameters(), lr=5e-2)
    for _ in range(10):
        x = torch.randn(4, 8, 9)
        noiseless_step(model, opt, x)
        w = model.weight_hh.detach()
        assert torch.all(w[model.hh_mask == 0] == 0), "a masked weight moved"
    model.project_weights_()
    w = model.weight_hh.detach()
    inh = torch.zeros(30, dtype=torch.bool)
    for start in (8, 18, 28):  # last int(0.2 * 10) = 2 units of each group
        inh[start:start + 2] = True
    assert torch.all(w[:, ~inh] >= 0) and torch.all(w[:, inh] <= 0)
    assert torch.count_nonzero(w[:, ~inh]) > 0 and torch.count_nonzero(w[:, inh]) > 0
    # inhibitory units project only within their own group; no connections two groups apart
    assert torch.count_nonzero(w[10:20, 8:10]) == 0 and torch.count_nonzero(w[0:10, 18:20]) == 0
    assert torch.count_nonzero(w[0:10, 20:30]) == 0 and torch.count_nonzero(w[20:30, 0:10]) == 0
    before = w.clone()
    model.project_weights_()
    assert torch.equal(model.weight_hh.detach(), before), "the projection is not idempotent"


def test_initial_recurrent_weights_are_identity_over_100_with_negative_inhibitory_diagonal():
    model = NetworkHierarchicalRecurrent(frame_shape=(2, 2), hidden_units=(5, 5), beta=(0.9, 0.1))
    model.project_weights_()
    expected = torch.eye(10) / 100
    expected[4, 4] = expected[9, 9] = -0.01  # int(0.2 * 5) = 1 inhibitory unit per group
    assert torch.equal(model.weight_hh.detach(), expected)


def test_loss_known_answer_on_hand_made_input():
    # frame of 2 pixels, groups (3, 2): outputs [2 pixels | 3 units of group 1]
    B, T = 1, 4
    pred = torch.zeros(B, T, 5)
    pred[..., 2:] = 1.0  # group-2 readout predicts 1 everywhere
    hidden = torch.zeros(B, T, 5)
    hidden[..., :3] = 3.0  # group-1 activity is 3: error 2 -> squared 4
    target = torch.ones(B, T, 2)  # frames are 1, predictions 0: squared error 1
    loss, comps = hierarchical_offset_mse(
        (pred, hidden), (None, target), output_slices=[slice(0, 2), slice(2, 5)], group_slices=[slice(0, 3), slice(3, 5)],
        beta=(0.9, 0.1), warmup=1, offset=1, l1=torch.tensor(0.5))
    assert comps["mse0"].item() == pytest.approx(1.0)
    assert comps["mse1"].item() == pytest.approx(4.0)
    assert loss.item() == pytest.approx(0.5 + 0.9 * 1.0 + 0.1 * 4.0)


def test_loss_uses_the_temporal_offset_and_warmup():
    # the frame at time t is t; a readout that outputs t + k predicts perfectly only with offset k
    T = 9
    frames = torch.arange(T, dtype=torch.float32).view(1, T, 1)
    for k in (0, 1, 5):
        pred = frames + k
        loss, comps = hierarchical_offset_mse(
            (pred, torch.zeros(1, T, 1)), (None, frames), output_slices=[slice(0, 1)], group_slices=[slice(0, 1)],
            beta=(1.0,), warmup=2, offset=k, l1=torch.tensor(0.0))
        assert comps["mse0"].item() == 0.0
        loss_wrong, _ = hierarchical_offset_mse(
            (pred, torch.zeros(1, T, 1)), (None, frames), output_slices=[slice(0, 1)], group_slices=[slice(0, 1)],
            beta=(1.0,), warmup=2, offset=k + 1, l1=torch.tensor(0.0))
        assert loss_wrong.item() == pytest.approx(1.0)


def test_detach_targets_stops_gradient_into_the_lower_group_through_its_target():
    torch.manual_seed(0)
    grads = {}
    for detach in (False, True):
        torch.manual_seed(0)
        model = NetworkHierarchicalRecurrent(frame_shape=(2, 2), hidden_units=(6, 6), beta=(0.0, 1.0),
                                             lam=0.0, detach_targets=detach)
        x = torch.randn(3, 7, 4, generator=torch.Generator().manual_seed(1))
        loss, _ = model.get_loss(model(x), (x, x))
        loss.backward()
        grads[detach] = model.weight_ih.grad.clone()
    # beta_0 = 0 leaves only group 2's loss. At initialisation W_hh = I/100, so the feedforward
    # weights are 0 and group 2 does not depend on group 1: group 1's input weights can only get
    # gradient through group 2's target, i.e. group 1's own activity.
    assert torch.count_nonzero(grads[True]) == 0
    assert torch.count_nonzero(grads[False]) > 0


def test_feedback_ablation_zeroes_exactly_the_feedback_blocks():
    torch.manual_seed(0)
    model = NetworkHierarchicalRecurrent(frame_shape=(2, 2), hidden_units=(5, 5, 5), beta=(0.9, 0.1, 0.1))
    with torch.no_grad():
        model.weight_hh.copy_(torch.rand(15, 15))
    model.project_weights_()
    before = model.weight_hh.detach().clone()
    ablated = without_feedback(model)
    assert torch.equal(model.weight_hh.detach(), before), "the original model was modified"
    w = ablated.weight_hh.detach()
    fb = torch.zeros(15, 15, dtype=torch.bool)
    fb[0:5, 5:10] = fb[5:10, 10:15] = True
    assert torch.count_nonzero(w[fb]) == 0 and torch.count_nonzero(before[fb]) > 0
    assert torch.equal(w[~fb], before[~fb])
    shuffled = shuffle_feedback(model, 1.0, seed=3, mass_preserving=True)
    s = shuffled.weight_hh.detach()
    assert torch.equal(s[~fb], before[~fb])
    assert torch.equal(torch.sort(s[0:5, 5:10].flatten()).values, torch.sort(before[0:5, 5:10].flatten()).values)
    assert not torch.equal(s[fb], before[fb])
    assert torch.equal(shuffle_feedback(model, 0.0).weight_hh, model.weight_hh)


def test_feedback_shuffle_draws_from_whole_blocks_so_masked_entries_eat_weight():
    """Known answer: every allowed feedback weight is 1 and 10 of each block's
    50 columns (the inhibitory ones) are masked. Shuffling all 2500 entries of
    a block, as the original does, leaves 1 on an allowed entry only where an
    allowed entry's value landed: a hypergeometric 2000 * 2000 / 2500 = 1600
    (sd 8), i.e. 80% of the mass; shuffling half leaves 90%. The
    mass-preserving option keeps all 2000."""
    model = NetworkHierarchicalRecurrent(frame_shape=(2, 2), hidden_units=(50, 50, 50), beta=(0.9, 0.1, 0.1))
    with torch.no_grad():
        model.weight_hh.fill_(1.0)
    model.project_weights_()
    blocks = ((slice(0, 50), slice(50, 100)), (slice(50, 100), slice(100, 150)))
    allowed = model.hh_mask[blocks[0]] > 0
    assert int(allowed.sum()) == 2000 and bool((model.weight_hh.detach()[blocks[0]][allowed] == 1).all())
    for fraction, kept in ((1.0, 0.8), (0.5, 0.9)):
        w = shuffle_feedback(model, fraction, seed=1).weight_hh.detach()
        for block in blocks:
            values = w[block]
            assert set(values.unique().tolist()) <= {0.0, 1.0} and torch.count_nonzero(values[~allowed]) == 0
            assert float(values.sum()) / 2000 == pytest.approx(kept, abs=0.03)
    w = shuffle_feedback(model, 1.0, seed=1, mass_preserving=True).weight_hh.detach()
    assert all(float(w[block].sum()) == 2000 for block in blocks)


def test_the_same_noise_sample_goes_on_input_and_target():
    """x + n and y + n with one n ~ N(0, 0.5011^2), drawn from the generator given."""
    model = NetworkHierarchicalRecurrent(frame_shape=(2, 2), hidden_units=(5, 5, 5), beta=(0.9, 0.1, 0.1))
    x, y = torch.zeros(64, 10, 4), torch.arange(2560.0).reshape(64, 10, 4)
    noisy_x, noisy_y = model.preprocess_data((x, y), torch.Generator().manual_seed(7))
    torch.testing.assert_close(noisy_y - y, noisy_x, rtol=0, atol=1e-3)
    expected = torch.randn(x.shape, generator=torch.Generator().manual_seed(7)) * 0.5011
    torch.testing.assert_close(noisy_x, expected, rtol=0, atol=0)


def test_original_state_dict_round_trip():
    torch.manual_seed(0)
    model = NetworkHierarchicalRecurrent(frame_shape=(2, 3), hidden_units=(4, 5, 6), beta=(0.9, 0.1, 0.1))
    other = NetworkHierarchicalRecurrent(frame_shape=(2, 3), hidden_units=(4, 5, 6), beta=(0.9, 0.1, 0.1))
    other.from_original_state_dict(model.to_original_state_dict())
    for (k, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items()):
        assert torch.equal(a, b), k


def test_checkpoint_written_by_the_original_code_loads(tmp_path):
    torch.manual_seed(0)
    ref = DenseReference(20 * 20, (6, 5, 4), (0.9, 0.1, 0.1), lam=1e-6)
    opt = torch.optim.Adam(ref.parameters(), lr=1e-2)
    x = torch.randn(2, 8, 400)
    ref.train_step(opt, x, x)
    run = tmp_path / "orig_-6.0L1_Nov 5-10-30"
    run.mkdir()
    torch.save(ref.state_dict(), run / "7-epochs_model.pt")
    # the original pickles its loss history; it must never be opened
    (run / "7-epochs_losshistory.pickle").write_bytes(b"not a pickle, and never read")
    hp = {"name": "orig", "lam": 1e-6, "frame_size": 400, "hidden_units_groups": "6,5,4",
          "beta_weights": "0.9,0.1,0.1", "warmup": 4, "local_inhibitory_prop": 0.2, "lr": 1e-4,
          "batch_size": 100, "epochs": 2000, "checkpoints": 1000, "loss": "loss_hierarchical_temporal_prediction",
          "model": "network_hierarchical_recurrent", "dataset": "", "path": "", "device": "cpu"}
    with open(run / "hyperparameters.csv", "w", newline="") as f:  # the layout of pandas' DataFrame(hp, index=[0]).to_csv
        writer = csv.writer(f)
        writer.writerow([""] + list(hp))
        writer.writerow([0] + list(hp.values()))
    x = torch.randn(3, 10, 400)
    with torch.no_grad():
        pred_ref, h_ref = ref(x)
    for model, config, history in (load_model(run), NetworkHierarchicalRecurrent.load(run)):
        assert config["frame_shape"] == [20, 20] and config["hidden_units"] == [6, 5, 4]
        assert config["checkpoint_epoch"] == 7 and history == {}
        with torch.no_grad():
            pred, h = model(x)
        torch.testing.assert_close(h, h_ref, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(pred, pred_ref, rtol=1e-5, atol=1e-6)


def test_load_classmethod_returns_model_hyperparameters_and_loss_history(tmp_path):
    config = {"model": "network_hierarchical_recurrent", "loss": "loss_hierarchical_temporal_prediction",
              "frame_shape": [2, 3], "hidden_units": [4, 5, 6], "beta": [0.9, 0.1, 0.1], "warmup": 2,
              "local_inhibitory_prop": 0.2, "L1": -3.0, "detach_targets": False, "noise_std": 0.5011}
    torch.manual_seed(0)
    saved = NetworkHierarchicalRecurrent.from_config(config)
    history = {"train": {"epoch": [1, 2], "loss": [0.5, 0.25]}, "validation": {"epoch": [2], "loss": [0.3]}}
    save_model(tmp_path / "run", saved, config, 2, history)
    torch.manual_seed(1)  # a different init: the loaded weights must be the saved ones
    model, hyperparameters, loss_history = NetworkHierarchicalRecurrent.load(tmp_path / "run", "cpu")
    assert type(model) is NetworkHierarchicalRecurrent and not model.training
    assert hyperparameters["hidden_units"] == [4, 5, 6] and hyperparameters["L1"] == -3.0
    assert hyperparameters["checkpoint_epoch"] == 2 and loss_history == history
    x = torch.randn(2, 7, 6)
    with torch.no_grad():
        want, got = saved(x), model(x)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    with pytest.raises(TypeError, match="network_hierarchical_recurrent model, not NetworkRecurrent"):
        NetworkRecurrent.load(tmp_path / "run")
