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
