"""Movie frames -> model / VGG19 responses in the RSA's chunk and bin order."""
import numpy as np
import pytest
import torch
from torch import nn

from models.base import ProbeableModel
from neural_fitting.model_responses import (ResponseSet, load_responses, main, model_group_responses,
                                            prepare_frames, resize_matrix, save_responses, stimulus_chunks)
from neural_fitting.stimuli import MovieSpec, StimulusLayout, bin_mean
from neural_fitting.vgg import LAYER_NAMES, VGG19Features, load_vgg19, vgg_frame_features, vgg_inputs
from utils import run_cli

MOVIES = (MovieSpec("natural_movie_one", 6, 4), MovieSpec("natural_movie_three", 12, 2))
LAYOUT = StimulusLayout(MOVIES, chunk_frames=3, bin_frames=3)


class RunningSumModel(ProbeableModel):
    """Group 1 is the input; group 2 its running sum over the clip, so any state
    carried from one chunk into the next would show."""

    def __init__(self, frame_shape=(2, 4)):
        super().__init__()
        self.frame_shape = frame_shape
        self.group_sizes = (self.n_pixels, self.n_pixels)
        self.offset = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        hidden = torch.cat([x, x.cumsum(dim=1)], dim=-1) + self.offset
        return x, hidden


def test_area_resize_is_block_mean_for_integer_factors():
    image = np.random.default_rng(0).normal(size=(12, 20))
    shrunk = resize_matrix(12, 4) @ image @ resize_matrix(20, 5).T
    np.testing.assert_allclose(shrunk, image.reshape(4, 3, 5, 4).mean(axis=(1, 3)))
    # a 304 -> 20 shrink (factor 15.2): rows sum to one, and each input pixel's weights sum to 20 / 304
    weights = resize_matrix(304, 20)
    np.testing.assert_allclose(weights.sum(axis=1), 1)
    np.testing.assert_allclose(weights.sum(axis=0), 20 / 304)


def test_bilinear_resize_samples_between_neighbours():
    # factor 2: output i samples at 2i + 0.5, halfway between pixels 2i and 2i + 1
    np.testing.assert_allclose(resize_matrix(4, 2, "bilinear") @ np.array([0.0, 2, 4, 8]), [1, 6])
    with pytest.raises(ValueError, match="interpolation"):
        resize_matrix(4, 2, "cubic")


def test_frames_are_z_scored_per_frame():
    movie = np.random.default_rng(1).uniform(0, 255, (3, 8, 16))
    movie[2] = 7.0
    frames = prepare_frames(movie, (4, 8))
    assert frames.shape == (3, 4, 8)
    np.testing.assert_allclose(frames[:2].mean(axis=(1, 2)), 0, atol=1e-6)
    np.testing.assert_allclose(frames[:2].std(axis=(1, 2)), 1, atol=1e-5)
    np.testing.assert_array_equal(frames[2], 0)


@pytest.fixture
def movie_dir(tmp_path):
    rng = np.random.default_rng(2)
    for movie in MOVIES:
        np.save(tmp_path / f"{movie.name}.npy", rng.integers(0, 255, (movie.n_frames, 4, 8), dtype=np.uint8))
    return tmp_path


def test_chunks_keep_movie_order(movie_dir):
    chunks = stimulus_chunks(movie_dir, (2, 4), LAYOUT)
    assert chunks.shape == (6, 3, 2, 4)
    first = prepare_frames(np.load(movie_dir / "natural_movie_one.npy"), (2, 4))
    np.testing.assert_array_equal(chunks[:2].reshape(6, 2, 4), first)


def test_model_groups_are_binned_per_chunk(movie_dir):
    model = RunningSumModel()
    chunks = stimulus_chunks(movie_dir, model.frame_shape, LAYOUT)
    groups = model_group_responses(model, chunks, LAYOUT.bin_frames, batch_chunks=4)
    flat = chunks.reshape(6, 3, 8)
    assert [g.shape for g in groups] == [(6, 8), (6, 8)]
    np.testing.assert_allclose(groups[0], bin_mean(flat, 3, axis=1).reshape(6, 8), atol=1e-6)
    np.testing.assert_allclose(groups[1], bin_mean(np.cumsum(flat, axis=1), 3, axis=1).reshape(6, 8), atol=1e-5)


def test_wrong_frame_shape_and_missing_movie(movie_dir, tmp_path):
    chunks = stimulus_chunks(movie_dir, (2, 2), LAYOUT)
    with pytest.raises(ValueError, match="expects 8"):
        model_group_responses(RunningSumModel(), chunks, 3)
    with pytest.raises(ValueError, match="natural_movie_one.npy not found"):
        stimulus_chunks(tmp_path / "empty", (2, 4), LAYOUT)


def test_response_file_round_trip(tmp_path):
    groups = [np.arange(6.0, dtype=np.float32).reshape(3, 2), np.ones((3, 1), np.float32)]
    path = save_responses(tmp_path / "r.npz", ResponseSet("TP_full", ["group 1", "group 2"], groups, {"k": 1}))
    loaded = load_responses(path)
    assert loaded.label == "TP_full" and loaded.group_names == ["group 1", "group 2"] and loaded.meta == {"k": 1}
    np.testing.assert_array_equal(loaded.groups[0], groups[0])


def test_vgg_keys_match_torchvision_and_load_safely(tmp_path):
    net = VGG19Features()
    state = net.state_dict()
    assert len(state) == 32 and state["features.0.weight"].shape == (64, 3, 3, 3)
    assert state["features.34.weight"].shape == (512, 512, 3, 3) and net.relu_indices[-1] == 35
    assert LAYER_NAMES[0] == "conv1_1" and LAYER_NAMES[-1] == "conv5_4" and len(LAYER_NAMES) == 16
    full = {**{k: torch.randn_like(v) for k, v in state.items()}, "classifier.0.weight": torch.zeros(2, 2)}
    torch.save(full, tmp_path / "vgg19.pth")
    loaded = load_vgg19(tmp_path / "vgg19.pth")
    assert torch.equal(loaded.state_dict()["features.10.bias"], full["features.10.bias"])
    from safetensors.torch import save_file
    save_file(full, str(tmp_path / "vgg19.safetensors"))
    assert torch.equal(load_vgg19(tmp_path / "vgg19.safetensors").features[0].weight, full["features.0.weight"])
    del full["features.34.weight"]
    torch.save(full, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match="features.34.weight"):
        load_vgg19(tmp_path / "partial.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read"):
        load_vgg19(tmp_path / "junk.pth")


def test_vgg_inputs_and_layer_sizes():
    frames = np.ones((2, 20, 40), np.float32)
    x = vgg_inputs(frames)
    assert x.shape == (2, 3, 40, 40)
    np.testing.assert_allclose(x[0, :, 0, 0], -np.array([0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225], rtol=1e-6)
    np.testing.assert_allclose(x[0, :, 10, 0], (1 - np.array([0.485, 0.456, 0.406])) / [0.229, 0.224, 0.225],
                               rtol=1e-6)
    features = vgg_frame_features(VGG19Features().eval(), frames[:1])
    sizes = [f.shape[1] for f in features]
    assert sizes[:2] == [64 * 40 * 40] * 2 and sizes[-1] == 512 * 2 * 2 and len(sizes) == 16
    assert all(f.min() >= 0 for f in features)  # post-ReLU


def test_cli_runs_a_saved_model(movie_dir, tmp_path):
    from models import build_model
    from models.io import load_model, save_model

    config = dict(model="network_hierarchical_recurrent", frame_shape=[2, 4], hidden_units=[5, 6, 7],
                  beta=[0.9, 0.1, 0.1], warmup=4, local_inhibitory_prop=0.2, L1=-6.0,
                  loss="loss_hierarchical_temporal_prediction", detach_targets=False, noise_std=0.5011)
    torch.manual_seed(0)
    save_model(tmp_path / "run", build_model(config), config, epoch=1)
    main(["--movie-dir", str(movie_dir), "--model", str(tmp_path / "run"), "--label", "TP_full",
          "--out", str(tmp_path / "tp.npz")], layout=LAYOUT)
    saved = load_responses(tmp_path / "tp.npz")
    assert saved.label == "TP_full" and [g.shape for g in saved.groups] == [(6, 5), (6, 6), (6, 7)]
    model = load_model(tmp_path / "run")[0]
    expected = model_group_responses(model, stimulus_chunks(movie_dir, (2, 4), LAYOUT), 3)
    for got, want in zip(saved.groups, expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_cli_without_vgg_weights_is_one_line(tmp_path, capsys):
    argv = ["--movie-dir", str(tmp_path), "--vgg-weights", str(tmp_path / "vgg19.pth"), "--label", "VGG19",
            "--out", str(tmp_path / "r.npz")]
    with pytest.raises(SystemExit):
        run_cli(lambda: main(argv))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot be downloaded" in err
