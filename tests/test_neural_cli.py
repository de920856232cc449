"""neural_fitting's commands: flags built from their options dataclasses (utils.flag,
add_flags, options_from) keep every flag name the commands had, and the library's
ValueErrors reach the user as one line."""
import argparse
from pathlib import Path

import pytest

from neural_fitting import download_allen, download_dandi, model_responses, process_sessions
from utils import UserInputError, add_flags, options_from, run_cli, user_errors_from


def parse(options_class, argv):
    parser = argparse.ArgumentParser()
    add_flags(parser, options_class)
    return options_from(options_class, parser.parse_args(argv))


def test_process_sessions_flags_keep_their_names_and_defaults():
    args = parse(process_sessions.ProcessOptions, ["--nwb", "a.nwb", "b.nwb", "--areas", "VISp", "--out", "o"])
    assert args.nwb == [Path("a.nwb"), Path("b.nwb")] and args.nwb_dir is None and args.areas == ["VISp"]
    assert args.max_noise_ratio == 60.0 and not args.nan_fails and args.quality_filter
    assert not args.skip_bad_sessions
    args = parse(process_sessions.ProcessOptions,
                 ["--nwb-dir", "d", "--areas", "VISp", "VISl", "--out", "o", "--channels-csv", "c.csv",
                  "--max-noise-ratio", "30", "--nan-fails", "--no-quality-filter", "--skip-bad-sessions"])
    assert args.nwb_dir == Path("d") and args.channels_csv == Path("c.csv") and args.max_noise_ratio == 30.0
    assert args.nan_fails and not args.quality_filter and args.skip_bad_sessions


def test_exclusive_and_required_flags_are_enforced():
    with pytest.raises(SystemExit):  # --nwb-dir and --nwb together
        parse(process_sessions.ProcessOptions, ["--nwb-dir", "d", "--nwb", "a.nwb", "--areas", "VISp", "--out", "o"])
    with pytest.raises(SystemExit):  # neither --model nor --vgg-weights
        parse(model_responses.ResponseOptions, ["--movie-dir", "m", "--label", "x", "--out", "o.npz"])
    with pytest.raises(SystemExit):  # --interpolation outside its choices
        parse(model_responses.ResponseOptions, ["--movie-dir", "m", "--model", "r", "--label", "x", "--out", "o",
                                                "--interpolation", "cubic"])


def test_model_responses_and_download_flags_keep_their_names_and_defaults():
    args = parse(model_responses.ResponseOptions, ["--movie-dir", "m", "--vgg-weights", "v.pth", "--label", "VGG19",
                                                   "--out", "o.npz", "--frame-shape", "10", "20"])
    assert args.vgg_weights == Path("v.pth") and args.model is None and args.frame_shape == [10, 20]
    assert args.interpolation == "area" and args.device == "auto"
    assert parse(model_responses.ResponseOptions, ["--movie-dir", "m", "--model", "r", "--label", "x",
                                                   "--out", "o"]).frame_shape == (20, 40)
    allen = parse(download_allen.AllenOptions, ["--out", "d", "--movies-only", "--timeout", "5", "--tries", "1"])
    assert allen.areas == ("VISp", "VISl", "VISrl") and allen.movies_only and (allen.timeout, allen.tries) == (5, 1)
    assert allen.max_sessions is None
    dandi = parse(download_dandi.DandiOptions, ["--out", "d", "--sessions", "1", "2", "--max-sessions", "1",
                                                "--sessions-csv", "s.csv", "--movie-dir", "m", "--version", "v1"])
    assert dandi.sessions == [1, 2] and dandi.max_sessions == 1 and dandi.sessions_csv == Path("s.csv")
    assert dandi.movie_dir == Path("m") and dandi.version == "v1" and dandi.timeout == 60.0


def test_library_value_errors_become_one_line_user_errors(tmp_path, capsys):
    with pytest.raises(UserInputError, match="^unknown area 'VISx'"):
        download_dandi.main(["--out", str(tmp_path), "--areas", "VISx"])
    with pytest.raises(SystemExit) as code:
        run_cli(lambda: download_dandi.main(["--out", str(tmp_path), "--movie-dir", str(tmp_path / "none")]))
    assert code.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "natural_movie_one.npy not found" in err
    with pytest.raises(KeyError):  # only the named types are translated
        with user_errors_from(ValueError):
            raise KeyError("a bug")
