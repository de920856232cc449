"""Worked examples of the two registries and the model contract: a new loss
is one ``LOSSES`` entry and trains through ``train.train``; a new model kind
is one ``MODEL_KINDS`` entry, picks its own defaults and builds, saves and
reloads through the registry."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import train
from data import DatasetError
from data.dataset import load_clips
from losses import LOSS_OFFSETS, LOSSES, RECURRENT, LossSpec, hierarchical_offset_mse, min_clip_frames
from models import EQUAL_BETA, MODEL_DEFAULTS, MODEL_KINDS, MODELS, ModelKind, build_model, describe_model_defaults
from models.base import ProbeableModel, SettingError, TrainableModel, flag_wording
from models.io import load_model, save_model
from models.network_hierarchical_recurrent import NetworkHierarchicalRecurrent


TINY = ["--frame-shape", "4", "4", "--hidden-units", "6,5,4", "--batch-size", "8", "--device", "cpu"]


def unpenalised_offset_mse(model, out, data):
    """A toy loss: the hierarchical offset MSE without its L1 weight penalty."""
    return hierarchical_offset_mse(out, data, output_slices=model.output_slices, group_slices=model.group_slices,
                                   beta=model.beta, warmup=model.warmup, offset=model.temporal_offset,
                                   l1=torch.zeros(()))


@pytest.fixture
def toy_loss(monkeypatch):
    monkeypatch.setitem(LOSSES, "toy_unpenalised_t2", LossSpec(unpenalised_offset_mse, offset=2, model_families=(RECURRENT,)))
    return "toy_unpenalised_t2"


@pytest.mark.filterwarnings("ignore:Data has no positive values")  # the loss curve of a zero L1 column
def test_a_registered_loss_trains_through_train_and_is_what_get_loss_computes(tmp_path, toy_loss):
    assert LOSS_OFFSETS[toy_loss] == 2 and min_clip_frames(4, toy_loss) == 4 + 2 + 1
    clips = tmp_path / "clips.npy"
    np.save(clips, np.random.default_rng(0).standard_normal((20, 9, 16)).astype(np.float32))
    args = train.build_parser().parse_args(["--dataset", str(clips), "--save-dir", str(tmp_path / "runs"),
                                            "--epochs", "2", "--validate-every", "1", "--loss", toy_loss, *TINY])
    cfg, resume = train.config_for(args)
    run = train.train(cfg, resume, progress=False)

    history = json.loads((run / "loss_history.json").read_text())
    assert history["train"]["epoch"] == [1, 2] and history["train"]["L1"] == [0.0, 0.0]  # the toy loss was used
    model, config, _ = load_model(run)
    assert config["loss"] == toy_loss and model.temporal_offset == 2 and model.min_frames == 7
    x = torch.randn(3, 9, 16)
    pred, hidden = model(x)
    loss, components = model.get_loss((pred, hidden), (x, x))
    # known answer: readouts at steps 4..6 against targets at 6..8 (offset 2), blocks as the model's layout
    terms = [F.mse_loss(pred[:, 4:7, :16], x[:, 6:]), F.mse_loss(pred[:, 4:7, 16:22], hidden[:, 6:, :6]),
             F.mse_loss(pred[:, 4:7, 22:27], hidden[:, 6:, 6:11])]
    torch.testing.assert_close(loss, sum(b * t for b, t in zip((0.9, 0.1, 0.1), terms)))
    assert set(components) == {"L1", "mse0", "mse1", "mse2"} and components["L1"] == 0


def test_a_loss_is_refused_by_a_model_family_it_does_not_list_and_sets_the_clip_length(tmp_path, toy_loss):
    config = dict(model="network_hierarchical_feedforward", frame_shape=(2, 3), hidden_units=(4,), beta=(1.0,),
                  kernel_size_t=2, L1=-6.0, noise_std=0.5, loss=toy_loss)
    with pytest.raises(SettingError, match=f"trains with loss loss_hierarchical_temporal_prediction_feedforward, "
                                           f"not {toy_loss}") as refused:
        build_model(config)
    assert flag_wording(refused.value).startswith("NetworkHierarchicalFeedforward trains with --loss ")
    # 6-frame clips are too short for warm-up 4 + offset 2: the dataset check train.py runs before building
    np.save(tmp_path / "short.npy", np.zeros((3, 6, 16), np.float32))
    with pytest.raises(DatasetError, match="6-frame clips but at least 7 are needed"):
        load_clips(tmp_path / "short.npy", (4, 4), min_clip_frames(4, toy_loss))


class TwoAreaRecurrent(NetworkHierarchicalRecurrent):
    """A toy kind: the hierarchical recurrent model, by default with two small areas."""


@pytest.fixture
def toy_kind(monkeypatch):
    monkeypatch.setitem(MODEL_KINDS, "two_area_recurrent",
                        ModelKind(TwoAreaRecurrent, hidden_units=(5, 3), beta=EQUAL_BETA))
    return "two_area_recurrent"


def test_a_registered_model_kind_picks_its_defaults_builds_and_reloads(tmp_path, toy_kind):
    assert MODELS[toy_kind] is TwoAreaRecurrent and MODEL_DEFAULTS[toy_kind] == {"hidden_units": (5, 3),
                                                                                  "beta": EQUAL_BETA}
    assert "two_area_recurrent: hidden-units 5,3, beta 1 per group" in describe_model_defaults()
    args = train.build_parser().parse_args(["--model", toy_kind, "--frame-shape", "4", "4", "--dataset", "default"])
    cfg, _ = train.config_for(args)
    assert (cfg.hidden_units, cfg.beta, cfg.loss) == ((5, 3), (1.0, 1.0), "loss_hierarchical_temporal_prediction")
    config = {**vars(cfg), "hidden_units": list(cfg.hidden_units), "beta": list(cfg.beta)}
    torch.manual_seed(0)
    model = build_model(config)
    assert type(model) is TwoAreaRecurrent and model.group_sizes == (5, 3)
    assert model.feedback_blocks() == [(slice(0, 5), slice(5, 8))]
    save_model(tmp_path / "run", model, config, epoch=1)
    reloaded, _, _ = load_model(tmp_path / "run")
    assert type(reloaded) is TwoAreaRecurrent
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reloaded.state_dict().values()))


def test_the_contract_recurrent_weights_and_defaults_for_other_models():
    model = NetworkHierarchicalRecurrent(frame_shape=(2, 2), hidden_units=(5, 5), beta=(0.5, 0.5))
    with torch.no_grad():
        model.weight_hh.copy_(torch.randn(10, 10))
    raw = model.weight_hh.detach().clone()
    effective = model.recurrent_weights()
    assert torch.equal(model.weight_hh, raw)  # the parameter is left as it is
    model.project_weights_()
    assert torch.equal(effective, model.weight_hh)  # = what every forward pass uses
    assert model.min_frames == 4 + 1 + 1 and model.temporal_offset == 1

    class FrameCopy(ProbeableModel):  # a probe-only model: no recurrent matrix, no feedback, offset 1
        frame_shape, group_sizes = (2, 2), (4,)

        def forward(self, x):
            return x, x

    probe = FrameCopy()
    assert probe.recurrent_weights() is None and probe.feedback_blocks() == [] and probe.temporal_offset == 1
    assert probe.local_inhibitory_prop == 0.0 and not probe.supports_feedback_ablation

    class Incomplete(TrainableModel):  # the training contract is declared: a kind must implement it
        family = RECURRENT

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()
