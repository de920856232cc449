"""A tiny Allen-shaped session written with pynwb goes through reading, counting,
filtering and binning; counts are checked against spikes placed by hand.
Bad input gives a one-line ValueError and writes nothing."""
import json

import numpy as np
import pytest

from neural_fitting.nwb import read_session
from neural_fitting.process_sessions import ProcessingConfig, load_processed, main, process_sessions
from neural_fitting.stimuli import MovieSpec, StimulusLayout, bin_mean
from neural_fitting.synthetic import spikes_for_counts, write_session
from utils import run_cli

MOVIES = (MovieSpec("natural_movie_one", 6, 4), MovieSpec("natural_movie_three", 12, 2))
CONFIG = ProcessingConfig(layout=StimulusLayout(MOVIES, chunk_frames=3, bin_frames=3))
AREAS = ["VISp", "VISl", "VISp", "VISp", "VISl", "CA1"]
QUALITY = ["good", "good", "good", "good", "noise", "good"]


def designed_counts():
    """unit -> movie -> (repeats, frames) spike counts.
    0, 1: same response every repeat (ratio 0), kept.
    2: movie three flat mean with alternating noise: SP < 0 -> NaN ratio, kept (NaN passes).
    3: movie three SP = 0 exactly with noise: ratio inf > 60, dropped.
    4: poor sorting quality, 5: outside the areas: never read."""
    rng = np.random.default_rng(0)
    counts = {u: {m.name: np.tile(rng.integers(0, 4, m.n_frames), (m.n_repeats, 1)) for m in MOVIES}
              for u in range(6)}
    counts[2]["natural_movie_three"] = np.array([[1, 0] * 6, [0, 1] * 6])
    counts[3]["natural_movie_three"] = np.array([[0, 2, 4] * 4, [2, 2, 2] * 4])
    return counts


def spikes_for(counts):
    """Spike times placed by hand (unit -> movie -> counts): c spikes evenly inside each presentation window."""
    return spikes_for_counts({m.name: np.stack([counts[u][m.name] for u in range(len(counts))]) for m in MOVIES},
                             MOVIES)


@pytest.fixture(scope="module")
def session_file(tmp_path_factory):
    counts = designed_counts()
    path = write_session(tmp_path_factory.mktemp("nwb") / "session.nwb", spikes_for(counts), AREAS, MOVIES,
                         session_id="715093703", quality=QUALITY)
    return path, counts


def test_whole_pipeline_matches_hand_placed_spikes(session_file, tmp_path):
    path, counts = session_file
    out = tmp_path / "processed"
    written = process_sessions([path], ["VISp", "VISl"], out, CONFIG)
    assert [p.name for p in written] == ["session_715093703.npz"]
    data = load_processed(written[0])
    np.testing.assert_array_equal(data["unit_ids"], [500, 501, 502])
    np.testing.assert_array_equal(data["unit_areas"], ["VISp", "VISl", "VISp"])
    for movie in MOVIES:
        expected = np.stack([counts[u][movie.name] for u in (0, 1, 2)])
        np.testing.assert_array_equal(data[f"trials_{movie.name}"], expected)
        np.testing.assert_allclose(data[f"mean_{movie.name}"], expected.mean(axis=1), rtol=1e-6)
    means = np.concatenate([np.stack([counts[u][m.name] for u in (0, 1, 2)]).mean(axis=1) for m in MOVIES], axis=1)
    assert data["binned"].shape == (3, 6)
    np.testing.assert_allclose(data["binned"], bin_mean(means, 3), rtol=1e-6)
    np.testing.assert_allclose(data["noise_ratio"][:2], [0, 0], atol=1e-12)
    assert np.isnan(data["noise_ratio"][2])
    info = json.loads(written[0].with_suffix(".json").read_text())
    assert info["areas"]["VISp"] == {"units": 3, "kept": 2, "nan_ratio_kept": 1}
    assert info["areas"]["VISl"]["units"] == 1  # unit 4 fails the quality filter


def test_nan_ratio_dropped_when_asked(session_file, tmp_path):
    path, _ = session_file
    config = ProcessingConfig(layout=CONFIG.layout, nan_passes=False)
    data = load_processed(process_sessions([path], ["VISp"], tmp_path, config)[0])
    np.testing.assert_array_equal(data["unit_ids"], [500])


@pytest.mark.parametrize("area_via", ["electrodes", "units_column"])
def test_standard_layouts_give_the_same_areas(tmp_path, area_via):
    spikes = [np.array([1.0 + 0.01 * u]) for u in range(3)]
    path = write_session(tmp_path / "s.nwb", spikes, ["VISp", "CA1", "VISl"], MOVIES, area_via=area_via)
    session = read_session(path, ["VISp", "VISl"], ["natural_movie_one"])
    np.testing.assert_array_equal(session.unit_ids, [500, 502])
    np.testing.assert_array_equal(session.unit_areas, ["VISp", "VISl"])


def test_channel_areas_override_the_file(session_file):
    path, _ = session_file
    session = read_session(path, ["VISam"], ["natural_movie_one"], channel_areas={10: "VISam"})
    np.testing.assert_array_equal(session.unit_ids, [500])


def test_cli_writes_summary(session_file, tmp_path):
    path, _ = session_file
    main(["--nwb-dir", str(path.parent), "--areas", "VISp", "--out", str(tmp_path / "out")], layout=CONFIG.layout)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["sessions"] == ["715093703"] and summary["skipped"] == {}


def _fails_cleanly(paths, areas, out, match):
    with pytest.raises(ValueError, match=match) as err:
        process_sessions(paths, areas, out, CONFIG)
    assert "\n" not in str(err.value)
    assert not out.exists() or not any(out.iterdir())


def test_no_units_in_area(session_file, tmp_path):
    _fails_cleanly([session_file[0]], ["VISam"], tmp_path / "out", "no unit in VISam")


def test_missing_stimulus_table(session_file, tmp_path):
    path = write_session(tmp_path / "one_movie.nwb", [np.array([1.5])], ["VISp"], MOVIES[:1])
    # the good session comes first: it must not be written either
    _fails_cleanly([session_file[0], path], ["VISp"], tmp_path / "out", "no natural_movie_three_presentations")


def test_truncated_file(session_file, tmp_path):
    data = session_file[0].read_bytes()
    broken = tmp_path / "broken.nwb"
    broken.write_bytes(data[: len(data) // 2])
    _fails_cleanly([broken], ["VISp"], tmp_path / "out", "truncated")


def test_skip_bad_sessions_lists_them(session_file, tmp_path):
    broken = tmp_path / "broken.nwb"
    broken.write_bytes(session_file[0].read_bytes()[:1000])
    written = process_sessions([session_file[0], broken], ["VISp"], tmp_path / "out", CONFIG, skip_bad_sessions=True)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert len(written) == 1 and list(summary["skipped"]) == [str(broken)]


def test_cli_error_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as code:
        run_cli(lambda: main(["--nwb-dir", str(tmp_path / "nothing"), "--areas", "VISp", "--out", str(tmp_path)]))
    assert code.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1
