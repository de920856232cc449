"""NaN or infinite times in NWB tables and NaN pixels in movie templates are
refused in one line naming the table, before anything is written."""
import shutil

import h5py
import numpy as np
import pytest

from neural_fitting.model_responses import load_movie
from test_neural_pipeline import AREAS, MOVIES, QUALITY, _fails_cleanly, designed_counts, spikes_for
from neural_fitting.synthetic import write_session


@pytest.fixture(scope="module")
def clean_session(tmp_path_factory):
    return write_session(tmp_path_factory.mktemp("nwb") / "session.nwb", spikes_for(designed_counts()), AREAS,
                         MOVIES, session_id="715093703", quality=QUALITY)


def spoiled(clean_session, tmp_path, dataset, row):
    path = tmp_path / "spoiled.nwb"
    shutil.copy(clean_session, path)
    with h5py.File(path, "r+") as f:
        f[dataset][row] = np.nan
    return path


@pytest.mark.parametrize("dataset,row,match", [
    ("intervals/natural_movie_one_presentations/start_time", 3,
     "natural_movie_one_presentations table has 1 NaN or infinite start_time"),
    ("intervals/natural_movie_three_presentations/stop_time", 0,
     "natural_movie_three_presentations table has 1 NaN or infinite stop_time"),
    ("units/spike_times", 0, r"units table has 1 NaN or infinite spike_times value\(s\) \(first in unit id 500\)"),
])
def test_nan_times_are_refused_naming_the_table(clean_session, tmp_path, dataset, row, match):
    _fails_cleanly([spoiled(clean_session, tmp_path, dataset, row)], ["VISp"], tmp_path / "out", match)


def test_a_nan_frame_number_is_a_blank_row_not_an_error(clean_session, tmp_path):
    from neural_fitting.nwb import read_session

    path = tmp_path / "blank.nwb"
    shutil.copy(clean_session, path)
    with h5py.File(path, "r+") as f:
        table = f["intervals/natural_movie_one_presentations"]
        n_rows = len(table["frame"])
        frame = table["frame"][:].astype(float)
        del table["frame"]
        frame[2] = np.nan
        table["frame"] = frame
    presentations = read_session(path, ["VISp"], ["natural_movie_one"]).presentations["natural_movie_one"]
    assert len(presentations.frame) == n_rows - 1


def test_a_movie_template_with_nan_pixels_is_refused(tmp_path):
    movie = np.zeros((6, 4, 5), np.float32)
    movie[4, 1, 2] = np.nan
    np.save(tmp_path / "natural_movie_one.npy", movie)
    with pytest.raises(ValueError, match="NaN or infinite pixels .first in frame 4"):
        load_movie(tmp_path, "natural_movie_one", 6)
    movie[4, 1, 2] = 0
    np.save(tmp_path / "natural_movie_one.npy", movie)
    assert load_movie(tmp_path, "natural_movie_one", 6).shape == (6, 4, 5)


# ---------------------------------------------------------------------------------------------
# Malformed presentation intervals: refused naming the table and the row (counting by
# searchsorted(stop) - searchsorted(start) would give negative or misplaced counts)
# ---------------------------------------------------------------------------------------------
def edited(clean_session, tmp_path, edit):
    path = tmp_path / "edited.nwb"
    shutil.copy(clean_session, path)
    with h5py.File(path, "r+") as f:
        edit(f["intervals/natural_movie_one_presentations"])
    return path


@pytest.mark.parametrize("edit,match", [
    (lambda t: t["stop_time"].__setitem__(5, t["start_time"][5] - 0.5),
     r"natural_movie_one_presentations table, row 5: stop_time .* is before its start_time"),
    (lambda t: t["start_time"].__setitem__(3, 1e12),
     r"natural_movie_one_presentations table, row 3: stop_time .* is before its start_time"),
    (lambda t: t["stop_time"].__setitem__(7, 1e12),
     r"natural_movie_one_presentations table, row 7: lasts 1e\+12 s, more than 100 times the median presentation"),
    (lambda t: t["stop_time"].__setitem__(7, t["start_time"][9]),
     r"natural_movie_one_presentations table, row 7: stop_time 1.3 s runs past the start of the next presentation "
     r"\(row 8, 1.26667 s\)"),
    (lambda t: t["start_time"].__setitem__(0, -2.0),
     r"natural_movie_one_presentations table, row 0: start_time -2 s lies before the session's start"),
    (lambda t: [t["start_time"].__setitem__(3, 1e12), t["stop_time"].__setitem__(3, 1e12 + 0.03)],
     r"natural_movie_one_presentations table, row 3 \(frame 3, repeat 3\) starts at 1e\+12 s, after row 20 "
     r"\(frame 2, repeat 3\) at .* \(a pause longer than"),
    (lambda t: [t["start_time"].__setitem__(3, 1.2), t["stop_time"].__setitem__(3, 1.21)],
     r"natural_movie_one_presentations table, row 4 \(frame 4, repeat 0\) starts at 1.13333 s, before row 3 "
     r"\(frame 3, repeat 0\) at 1.2 s"),
    (lambda t: [t["start_time"].__setitem__(23, 1e12), t["stop_time"].__setitem__(23, 1e12 + 0.03)],
     r"natural_movie_one_presentations table, row 23 \(frame 5, repeat 3\) starts at 1e\+12 s, after row 22 "
     r"\(frame 4, repeat 3\)"),
])
def test_malformed_presentation_intervals_are_refused_naming_the_row(clean_session, tmp_path, edit, match):
    _fails_cleanly([edited(clean_session, tmp_path, edit)], ["VISp"], tmp_path / "out", match)


def test_well_formed_intervals_with_a_short_pause_still_count(clean_session, tmp_path):
    """A pass that pauses for a few frames (a dropped-frame hiccup) is no error."""
    from neural_fitting.nwb import read_session

    def pause(table):  # everything from row 8 on is shown 0.1 s later
        table["start_time"][8:] = table["start_time"][8:] + 0.1
        table["stop_time"][8:] = table["stop_time"][8:] + 0.1
    presentations = read_session(edited(clean_session, tmp_path, pause), ["VISp"],
                                 ["natural_movie_one"]).presentations["natural_movie_one"]
    assert len(presentations.start) == 24


# ---------------------------------------------------------------------------------------------
# --out on a read-only or full file system: one line, before the long work where it can be told
# ---------------------------------------------------------------------------------------------
def model_run(tmp_path):
    from models import build_model
    from models.io import save_model

    config = dict(model="network_hierarchical_recurrent", frame_shape=[2, 4], hidden_units=[5, 6, 7],
                  beta=[0.9, 0.1, 0.1], warmup=4, local_inhibitory_prop=0.2, L1=-6.0,
                  loss="loss_hierarchical_temporal_prediction", detach_targets=False, noise_std=0.5011)
    save_model(tmp_path / "run", build_model(config), config, epoch=1)
    return tmp_path / "run"


def response_argv(tmp_path, out):
    from test_neural_model_responses import LAYOUT

    movies = tmp_path / "movies"
    movies.mkdir(exist_ok=True)
    for spec in LAYOUT.movies:
        np.save(movies / f"{spec.name}.npy", np.random.default_rng(0).random((spec.n_frames, 6, 8), np.float32))
    return ["--movie-dir", str(movies), "--model", str(model_run(tmp_path)), "--label", "TP", "--out", str(out)], LAYOUT


def cli_error(main, argv, layout, capsys):
    from utils import run_cli

    with pytest.raises(SystemExit) as code:
        run_cli(lambda: main(argv, layout=layout))
    err = capsys.readouterr().err
    assert code.value.code == 2 and err.count("\n") == 1, err
    return err


def test_model_responses_into_a_read_only_folder_is_one_line(tmp_path, tmpfs, capsys):
    from neural_fitting.model_responses import main

    read_only = tmpfs("size=1m,ro")
    argv, layout = response_argv(tmp_path, read_only / "r.npz")
    assert "cannot write --out" in cli_error(main, argv, layout, capsys)


def test_model_responses_on_a_full_disk_is_one_line(tmp_path, monkeypatch, capsys):
    import errno

    from neural_fitting import model_responses

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(model_responses.np, "savez", full)
    argv, layout = response_argv(tmp_path, tmp_path / "r.npz")
    err = cli_error(model_responses.main, argv, layout, capsys)
    assert "cannot write --out" in err and "No space left on device" in err
    assert not list(tmp_path.glob("*.npz")) and not list(tmp_path.glob(".*tmp"))


def test_process_sessions_into_a_read_only_folder_is_one_line(clean_session, tmpfs, capsys):
    from neural_fitting.process_sessions import main
    from test_neural_pipeline import CONFIG

    read_only = tmpfs("size=1m,ro")
    argv = ["--nwb", str(clean_session), "--areas", "VISp", "--out", str(read_only / "out")]
    assert "cannot write --out" in cli_error(main, argv, CONFIG.layout, capsys)


def test_process_sessions_on_a_full_disk_is_one_line(clean_session, tmp_path, monkeypatch, capsys):
    import errno

    from neural_fitting import process_sessions
    from test_neural_pipeline import CONFIG

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(process_sessions.np, "savez_compressed", full)
    argv = ["--nwb", str(clean_session), "--areas", "VISp", "--out", str(tmp_path / "out")]
    err = cli_error(process_sessions.main, argv, CONFIG.layout, capsys)
    assert "cannot write --out" in err and "No space left on device" in err
    assert not [p for p in (tmp_path / "out").iterdir()]  # the first write failed: no file, no temporary


def test_model_responses_of_a_model_with_infinite_responses_is_one_line(tmp_path, capsys):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from neural_fitting.model_responses import main

    argv, layout = response_argv(tmp_path, tmp_path / "r.npz")
    weights = next((tmp_path / "run").glob("*.safetensors"))
    tensors = load_file(str(weights))
    with safe_open(str(weights), "pt") as f:
        metadata = f.metadata()
    tensors["bias_hh"][:] = 1.8e38  # finite weights whose responses overflow
    save_file(tensors, str(weights), metadata=metadata)
    err = cli_error(main, argv, layout, capsys)
    assert "non-finite" in err and "nothing was written" in err and not (tmp_path / "r.npz").exists()
