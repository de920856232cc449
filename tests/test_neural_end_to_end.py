"""Synthetic NWB sessions -> process_sessions, movie templates + models -> model
responses, both -> the notebook's scoring (rsa_report), with a known answer.

The movie is a ring code: pixel p of frame t is 128 + 100 cos(theta_p - phi_t),
theta evenly spaced over the circle, phi_t random. Unit p fires round(pixel_p / 10)
spikes per presentation, +-1 from repeat to repeat. Across the population, bins a
and b then correlate by cos(Phi_a - Phi_b), for the neurons and for a model group
that is the pixels themselves, and any half of the units gives nearly the same RSM:
that group scores ~1 (similarity ~ ceiling) and a bin-shuffled copy of it ~0.
A copy of a session with its presentation rows out of time order must give the
same arrays: repeats differ, so only the stable sort by time recovers them.
"""
import h5py
import numpy as np
import pytest
import torch

from neural_fitting import model_responses
from neural_fitting.model_responses import ResponseSet, model_group_responses, save_responses, stimulus_chunks
from neural_fitting.process_sessions import ProcessingConfig, load_processed, process_sessions
from neural_fitting.rsa_report import best_groups, paired_tests, score_table
from neural_fitting.stimuli import MovieSpec, StimulusLayout
from neural_fitting.synthetic import spikes_for_counts, write_session
from test_neural_model_responses import RunningSumModel

MOVIES = (MovieSpec("natural_movie_one", 30, 4), MovieSpec("natural_movie_three", 60, 2))
LAYOUT = StimulusLayout(MOVIES, chunk_frames=15, bin_frames=3)  # 30 bins
CONFIG = ProcessingConfig(layout=LAYOUT, noise_ratio_repeats=2)  # the ratio depends on which repeats come first
FRAME_SHAPE = (4, 10)  # 40 pixels, 40 units


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    rng = np.random.default_rng(0)
    theta = 2 * np.pi * np.arange(np.prod(FRAME_SHAPE)) / np.prod(FRAME_SHAPE)
    (root / "movies").mkdir()
    rates = {}
    for movie in MOVIES:
        phi = rng.uniform(0, 2 * np.pi, movie.n_frames)
        frames = np.round(128 + 100 * np.cos(theta[None] - phi[:, None])).astype(np.uint8)
        np.save(root / "movies" / f"{movie.name}.npy", frames.reshape(-1, *FRAME_SHAPE))
        rates[movie.name] = np.round(frames.T / 10).astype(int)  # (units, frames)
    areas, sessions = ["VISp"] * len(theta), {}
    for session_id in ("101", "102"):
        counts = {m.name: rates[m.name][:, None] + rng.integers(-1, 2, (len(theta), m.n_repeats, m.n_frames))
                  for m in MOVIES}
        spikes = spikes_for_counts(counts, MOVIES)
        sessions[session_id] = write_session(root / "nwb" / f"{session_id}.nwb", spikes, areas, MOVIES,
                                             session_id=session_id)
    write_session(root / "shuffled" / "102.nwb", spikes, areas, MOVIES,  # a copy of the last session
                  session_id="102", shuffle_seed=1)
    return root, sessions


def test_shuffled_presentation_tables_give_the_same_session(data, tmp_path):
    root, sessions = data
    with h5py.File(root / "shuffled" / "102.nwb", "r") as f:
        assert np.any(np.diff(f["intervals/natural_movie_one_presentations/start_time"][:]) < 0)
    in_order = load_processed(process_sessions([sessions["102"]], ["VISp"], tmp_path / "a", CONFIG)[0])
    shuffled = load_processed(process_sessions([root / "shuffled" / "102.nwb"], ["VISp"], tmp_path / "b", CONFIG)[0])
    trials = in_order["trials_natural_movie_one"]
    assert not np.array_equal(trials[:, 0], trials[:, 1])  # repeats differ, so a scrambled order would show
    assert in_order.keys() == shuffled.keys()
    for key in in_order:
        np.testing.assert_array_equal(shuffled[key], in_order[key], err_msg=key)


def test_model_matching_the_neurons_scores_at_the_ceiling(data, tmp_path):
    from models import build_model
    from models.io import save_model

    root, sessions = data
    processed = tmp_path / "processed"
    assert len(process_sessions(list(sessions.values()), ["VISp"], processed, CONFIG)) == 2

    config = dict(model="network_hierarchical_recurrent", frame_shape=list(FRAME_SHAPE), hidden_units=[6, 8, 10],
                  beta=[0.9, 0.1, 0.1], warmup=4, local_inhibitory_prop=0.2, L1=-6.0,
                  loss="loss_hierarchical_temporal_prediction", detach_targets=False, noise_std=0.5011)
    torch.manual_seed(0)
    save_model(tmp_path / "run", build_model(config), config, epoch=1)
    model_responses.main(["--movie-dir", str(root / "movies"), "--model", str(tmp_path / "run"), "--label", "TP_full",
                          "--out", str(tmp_path / "tp.npz")], layout=LAYOUT)
    pixels, running_sum = model_group_responses(RunningSumModel(FRAME_SHAPE),
                                                stimulus_chunks(root / "movies", FRAME_SHAPE, LAYOUT), 3)
    save_responses(tmp_path / "pixels.npz", ResponseSet("pixels", ["input", "running sum"], [pixels, running_sum], {}))
    order = np.random.default_rng(2).permutation(len(pixels))
    save_responses(tmp_path / "shuffled.npz", ResponseSet("shuffled", ["input"], [pixels[order]], {}))

    table = score_table(processed, [tmp_path / f for f in ("tp.npz", "pixels.npz", "shuffled.npz")], ["VISp"])
    assert table.groupby("model").size().to_dict() == {"TP_full": 2 * 3, "pixels": 2 * 2, "shuffled": 2}
    assert (table["n_units"] == 40).all() and (table["ceiling"] > 0.9).all()
    assert np.isfinite(table.loc[table["model"] != "TP_full", "score"]).all()
    # groups 2 and 3 of this untrained model hardly change over time: a constant RSM scores NaN
    assert np.isfinite(table.loc[(table["model"] == "TP_full") & (table["group"] == 0), "score"]).all()
    matching = table[(table["model"] == "pixels") & (table["group"] == 0)]
    np.testing.assert_allclose(matching["score"], 1, atol=0.05)
    assert (matching["similarity"] > 0.98).all()
    assert (table.loc[table["model"] == "shuffled", "score"].abs() < 0.15).all()

    best = best_groups(table).set_index("model")
    assert best.loc["pixels", "group"] == 0 and best.loc["pixels", "n"] == 2
    tests = paired_tests(table, best_groups(table), "pixels").set_index("other")
    assert sorted(tests.index) == ["TP_full", "shuffled"] and (tests["n_sessions"] == 2).all()
    assert tests.loc["shuffled", "mean_difference"] > 0.8
