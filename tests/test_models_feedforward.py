"""Known-answer tests of the temporal-convolution (feedforward) models: the
stacks against a tap-by-tap formula, the time alignment, the FF loss against
the original's unpadded formula, the detached inputs, the RWA lag, and the
one-line errors of bad settings."""
import dataclasses

import pytest
import torch

import train
from losses import feedforward_next_step_mse
from training import config as training_config
from models import build_model
from models.base import SettingError
from models.network_feedforward import NetworkFeedforwardStacked
from models.network_hierarchical_feedforward import NetworkHierarchicalFeedforward
from virtual_physiology import ProbeError
from virtual_physiology.rwa import response_weighted_average

FF_LOSS = "loss_hierarchical_temporal_prediction_feedforward"


def ff_config(**changes):
    base = dict(dataclasses.asdict(train.TrainConfig()), model="network_hierarchical_feedforward", loss=FF_LOSS,
                frame_shape=(2, 3), hidden_units=(4, 3, 2), beta=(1, 1, 1))
    return base | changes


def tap_by_tap(model, x):
    """Hidden states of every stack from the defining sum over kernel taps,
    h[t] = ReLU(b + sum_j W[:, :, j] u[t - (k-1) + j]), front-zero-padded: (B, T, H)."""
    B, T, _ = x.shape
    groups, u = [], x
    for stack in model.stacks:
        W, b = stack.conv.weight.detach(), stack.conv.bias.detach()
        k = W.shape[-1]
        valid = [sum(u[:, t - (k - 1) + j] @ W[:, :, j].T for j in range(k)) + b for t in range(k - 1, u.shape[1])]
        h = torch.stack(valid, 1).relu()
        groups.append(torch.cat([torch.zeros(B, T - h.shape[1], h.shape[2]), h], 1))
        u = h
    return torch.cat(groups, -1)


@pytest.mark.parametrize("kernel", [1, 3, 5])
def test_stacks_follow_the_tap_formula_and_forward_uses_the_readouts(kernel):
    torch.manual_seed(kernel)
    model = build_model(ff_config(kernel_size_t=kernel))
    x = torch.randn(3, 14, 6)
    expected = tap_by_tap(model, x)
    torch.testing.assert_close(model.hidden_activity(x), expected, rtol=1e-5, atol=1e-6)
    pred, hidden = model(x)
    torch.testing.assert_close(hidden, expected, rtol=1e-5, atol=1e-6)
    assert model.starts == [(kernel - 1) * (g + 1) for g in range(3)] and model.group_lags == (0, 1, 2)
    for g, (stack, rows, out) in enumerate(zip(model.stacks, model.group_slices, model.output_slices)):
        s = model.starts[g]
        assert torch.count_nonzero(pred[:, :s, out]) == 0 and torch.count_nonzero(hidden[:, :s, rows]) == 0
        torch.testing.assert_close(pred[:, s:, out], stack.readout(expected[:, s:, rows]))


def test_a_frame_reaches_exactly_the_steps_whose_window_holds_it():
    """All weights and inputs positive (every unit active): changing frame s
    changes group g at exactly t = s .. s + (k-1)(g+1), and only from s_g on."""
    torch.manual_seed(0)
    model = build_model(ff_config())
    with torch.no_grad():
        for p in model.parameters():
            p.abs_().mul_(0.1).add_(0.01)
    x = torch.rand(1, 20, 6)
    base = model.hidden_activity(x)
    for s in (0, 3, 9, 19):
        bumped = x.clone()
        bumped[:, s] += 1.0
        changed = (model.hidden_activity(bumped) != base)[0]
        for g, rows in enumerate(model.group_slices):
            t = torch.arange(20)
            expected = (t >= s) & (t <= s + 4 * (g + 1)) & (t >= 4 * (g + 1))
            assert torch.equal(changed[:, rows].all(1), expected) and torch.equal(changed[:, rows].any(1), expected)


def test_short_clips_give_zero_responses_and_short_training_clips_a_user_error():
    model = build_model(ff_config())
    assert torch.count_nonzero(model.hidden_activity(torch.randn(2, 3, 6))) == 0
    assert model.hidden_activity(torch.randn(2, 9, 6))[:, 4:, :4].abs().sum() > 0
    assert model.min_frames == 14
    x = torch.randn(2, 13, 6)
    with pytest.raises(ValueError, match="at least 14 frames"):
        model.get_loss(model(x), (x, x))


def test_ff_loss_is_the_originals_formula_on_unpadded_outputs():
    torch.manual_seed(1)
    model = build_model(ff_config(L1=-2.0))
    x, y = torch.randn(4, 16, 6), torch.randn(4, 16, 6)
    loss, comps = model.get_loss(model(x), (x, y))
    # The original: p_g = readout(h_g) on the T - 4(g+1) valid steps; p_g[:, :-1] against y[:, 5:] or h_{g-1}[:, 5:].
    h = [model.stacks[0].hidden(x)]
    for stack in model.stacks[1:]:
        h.append(stack.hidden(h[-1]))
    targets = [y] + h[:-1]
    mse = [((stack.readout(hg)[:, :-1] - tg[:, 5:]) ** 2).mean() for stack, hg, tg in zip(model.stacks, h, targets)]
    l1 = 1e-2 * sum(p.abs().sum() for n, p in model.named_parameters() if n.endswith("weight"))
    torch.testing.assert_close(loss, l1 + sum(mse))
    assert list(comps) == ["L1", "mse0", "mse1", "mse2"]
    torch.testing.assert_close(torch.stack([comps[f"mse{g}"] for g in range(3)]), torch.stack(mse).detach())


def test_higher_stacks_train_lower_ones_only_through_their_targets():
    """The gradient of stack 1's error w.r.t. stack 0's weights: exactly zero
    through stack 1's (detached) input, non-zero through its live target."""
    torch.manual_seed(2)
    model = build_model(ff_config())
    x = torch.randn(3, 16, 6)
    w0 = model.stacks[0].conv.weight

    def grad_of_mse1(detach_target):
        pred, hidden = model(x)
        hidden = hidden.detach() if detach_target else hidden
        loss, _ = feedforward_next_step_mse((pred, hidden), (x, x), output_slices=model.output_slices,
                                            group_slices=model.group_slices, starts=model.starts,
                                            trained_groups=(1,), l1=torch.zeros(()))
        return torch.autograd.grad(loss, w0, allow_unused=True)[0]

    through_input = grad_of_mse1(detach_target=True)
    assert through_input is None or torch.count_nonzero(through_input) == 0
    through_target = grad_of_mse1(detach_target=False)
    assert torch.count_nonzero(through_target) > 0
    # ... and that is all of it: the same as differentiating the target alone.
    pred, hidden = model(x)
    s = model.starts[1]
    direct = torch.autograd.grad(((pred[:, s:-1, 6:10].detach() - hidden[:, s + 1:, :4]) ** 2).mean(), w0)[0]
    torch.testing.assert_close(through_target, direct)


def _two_tap_model():
    """Stack 0: unit 0 sees the newest frame through unit-norm filter a, unit 1
    the frame before through b; stack 1: unit 2 copies unit 0 one hidden step
    back (its tap k-2), so unit 2 responds ReLU(a . x[t - 1])."""
    model = NetworkHierarchicalFeedforward(frame_shape=(4, 4), hidden_units=(2, 1))
    gen = torch.Generator().manual_seed(3)
    a, b = torch.nn.functional.normalize(torch.randn(2, 16, generator=gen), dim=1)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.stacks[0].conv.weight[0, :, 4] = a
        model.stacks[0].conv.weight[1, :, 3] = b
        model.stacks[1].conv.weight[0, 0, 3] = 1.0
    return model, a, b


def test_rwa_lags_group_g_by_g_frames_as_the_original():
    """For white noise and unit-norm a, E[x ReLU(a.x)] / E[ReLU(a.x)] = sqrt(pi / 2) a.
    Group 0 at lag 0 gives a for unit 0 and nothing for unit 1 (an older tap);
    group 1 at the original's lag 1 pairs unit 2's response with the frame it saw."""
    model, a, b = _two_tap_model()
    assert model.group_lags == (0, 1)
    rwa = torch.as_tensor(response_weighted_average(model, n_clips=150, n_frames=54, progress=False)["rwa"])
    expected = (torch.pi / 2) ** 0.5 * a
    torch.testing.assert_close(rwa[0], expected, atol=0.08, rtol=0)
    torch.testing.assert_close(rwa[2], expected, atol=0.08, rtol=0)
    assert rwa[1].norm() < 0.15 and abs(torch.dot(rwa[1], b)) < 0.1


def test_zero_lag_rwa_is_an_option():
    """With lags (0, 0), unit 2 is paired with the frame after the one it saw
    (independent noise): nothing; unit 0 is unchanged."""
    model, a, _ = _two_tap_model()
    rwa = torch.as_tensor(response_weighted_average(model, n_clips=150, n_frames=54, progress=False,
                                                    lags=(0, 0))["rwa"])
    torch.testing.assert_close(rwa[0], (torch.pi / 2) ** 0.5 * a, atol=0.08, rtol=0)
    assert rwa[2].norm() < 0.15
    with pytest.raises(ProbeError, match="one whole number >= 0 per group"):
        response_weighted_average(model, n_clips=2, lags=(0,))


def test_tp_ff_readout_is_the_originals_transposed_convolution():
    """Stack 0 of TP_FF predicts the frame with ConvTranspose2d(units -> 1, (1, P))
    on (B, units, L, 1): one bias for all P pixels, weight and bias initialised
    U(+-1/sqrt(P)); a higher stack with ConvTranspose2d(units -> n_below, (1, 1)).
    The jointly trained model keeps the original's Linear readout."""
    torch.manual_seed(4)
    frame, units = (10, 40), 50  # P = 400: bound 0.05, where a Linear(50 -> 400) would draw up to 0.14
    model = build_model(ff_config(model="network_feedforward_stacked", stacked_from=["a"], frame_shape=frame,
                                  hidden_units=(units, 30), beta=(1, 1)))
    readout = model.stacks[0].readout
    assert readout.weight.shape == (units, 1, 1, 400) and readout.bias.shape == (1,)
    assert 0.048 < readout.weight.abs().max() <= 0.05 and readout.bias.abs().max() <= 0.05
    assert model.stacks[1].readout.weight.shape == (30, units, 1, 1) and model.stacks[1].readout.bias.shape == (units,)
    h = torch.rand(2, 7, units)
    original = torch.nn.ConvTranspose2d(units, 1, (1, 400))
    original.load_state_dict(readout.state_dict())
    expected = original(h.transpose(1, 2)[..., None])  # (B, 1, L, P)
    torch.testing.assert_close(readout(h), expected[:, 0])
    torch.testing.assert_close(readout(h), h @ readout.weight[:, 0, 0] + readout.bias, rtol=1e-5, atol=1e-6)
    h1 = torch.rand(2, 7, 30)
    torch.testing.assert_close(model.stacks[1].readout(h1),
                               h1 @ model.stacks[1].readout.weight[:, :, 0, 0] + model.stacks[1].readout.bias)
    x = torch.randn(1, 12, 400)
    pred, hidden = model(x)
    torch.testing.assert_close(pred[0, 4:, :400], readout(hidden[:, 4:, :units])[0])
    joint = build_model(ff_config())
    assert all(isinstance(stack.readout, torch.nn.Linear) for stack in joint.stacks)


def test_tp_ff_checkpoints_with_a_linear_readout_still_load(tmp_path):
    """A TP_FF checkpoint saved with the earlier nn.Linear readout (P biases)
    loads into that form and predicts exactly as saved."""
    from models.io import load_model, save_model

    torch.manual_seed(5)
    config = ff_config(model="network_feedforward_stacked", stacked_from=["a"])
    model = build_model(config)
    for stack in model.stacks:
        stack.readout = torch.nn.Linear(stack.conv.out_channels, stack.conv.in_channels)
    save_model(tmp_path, model, config, epoch=1)
    loaded = load_model(tmp_path)[0]
    assert all(isinstance(stack.readout, torch.nn.Linear) for stack in loaded.stacks)
    x = torch.randn(2, 16, 6)
    torch.testing.assert_close(loaded(x)[0], model(x)[0], rtol=0, atol=0)


def _resolved(*flags):
    return dataclasses.asdict(training_config.resolve_config(train.build_parser().parse_args(list(flags))))


def test_each_model_kind_picks_its_own_defaults():
    """--model alone trains: each kind fills in its loss, groups and beta; an
    explicit flag always wins, and only an explicit contradiction is an error."""
    paper = _resolved()
    assert (paper["model"], paper["loss"], paper["beta"]) == (
        "network_hierarchical_recurrent", "loss_hierarchical_temporal_prediction", (0.9, 0.1, 0.1))
    joint = _resolved("--model", "network_hierarchical_feedforward")
    assert (joint["loss"], joint["hidden_units"], joint["beta"]) == (FF_LOSS, (800, 800, 800), (1.0, 1.0, 1.0))
    assert _resolved("--model", "network_hierarchical_feedforward", "--hidden-units", "4,3")["beta"] == (1.0, 1.0)
    stack = _resolved("--model", "network_feedforward")
    assert (stack["loss"], stack["hidden_units"], stack["beta"]) == (FF_LOSS, (800,), (1.0,))
    vanilla = _resolved("--model", "network_recurrent", "--loss", "loss_hierarchical_temporal_prediction_t5")
    assert (vanilla["loss"], vanilla["hidden_units"], vanilla["beta"]) == (
        "loss_hierarchical_temporal_prediction_t5", (2400,), (1.0,))
    for kind in ("network_hierarchical_feedforward", "network_feedforward", "network_recurrent"):
        small = _resolved("--model", kind, "--frame-shape", "2", "3", "--hidden-units", "4")
        assert build_model(small).group_sizes == (4,)
    contradiction = _resolved("--model", "network_hierarchical_feedforward", "--beta", "0.9,0.1,0.1")
    with pytest.raises(SettingError, match="pass beta 1,1,1") as refused:
        build_model(contradiction)
    assert "pass --beta 1,1,1" in refused.value.flag_wording()
    help_text = " ".join(train.build_parser().format_help().split())
    assert f"network_hierarchical_feedforward: loss {FF_LOSS}, beta 1 per group" in help_text
    assert "network_feedforward: loss" in help_text and "network_recurrent: hidden-units 2400" in help_text


def test_bad_settings_are_one_line_user_errors():
    cases = [
        (ff_config(loss="loss_hierarchical_temporal_prediction"), "trains with --loss " + FF_LOSS),
        (ff_config(beta=(0.9, 0.1, 0.1)), "--beta 1,1,1"),
        (ff_config(kernel_size_t=0), "--kernel-size-t 0"),
        (ff_config(lower_stacks="somewhere"), "--lower-stacks is for --model network_feedforward"),
        (ff_config(model="network_feedforward"), "pass --lower-stacks RUN"),
        (ff_config(model="network_feedforward", hidden_units=(4,), beta=(1,), lower_stacks="x"), "needs a stack"),
        (ff_config(model="network_feedforward_stacked"), "assembled, not trained"),
        (ff_config(model="network_recurrent", loss="loss_hierarchical_temporal_prediction"), "one group"),
        (ff_config(model="network_recurrent", hidden_units=(4,), beta=(1,)), "not " + FF_LOSS),
    ]
    for config, message in cases:  # the library's error, worded in flags for the CLIs
        with pytest.raises(SettingError) as refused:
            build_model(config)
        assert message in refused.value.flag_wording(), refused.value.flag_wording()
        assert "--" not in str(refused.value), str(refused.value)
    assert isinstance(build_model(ff_config(model="network_feedforward_stacked", stacked_from=["a"])),
                      NetworkFeedforwardStacked)
