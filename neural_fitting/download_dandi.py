"""Download the same Allen sessions from DANDI:000021 with the ``dandi`` client.

    python -m neural_fitting.download_dandi --out data/allen --areas VISp VISl VISrl \
        --movie-dir path/to/templates

Needs ``pip install -r neural_fitting/requirements-dandi.txt`` (not part of
the core environment). Sessions are chosen with the Allen session table
(``--sessions-csv``, or the public sessions.csv fetched from the Allen bucket)
by the same filter as download_allen, or named with ``--sessions``; a DANDI
file ``.../sub-<mouse>_ses-<session>.nwb`` is matched by its session id (the
per-probe LFP files are skipped). The dandi client verifies each file's
dandi-etag checksum, resumes interrupted downloads, skips complete files
(``existing="overwrite-different"``) and shows progress.

Timeouts: ``--timeout`` bounds only the sessions.csv fetch. ``dandi.download``
takes no timeout argument; in dandi 0.81.0 (pinned) the bounds are its module
constants, not settings: each file request has ``timeout=DOWNLOAD_TIMEOUT``
(30 s to connect and per wait for data), and a failing file is tried up to 10
times, resuming, after a random pause of up to 5 s x attempt (or the server's
Retry-After); the env var ``DANDI_DOWNLOAD_AGGRESSIVE_RETRY=1`` grants one more
attempt whenever a failed attempt received bytes. The API calls that list the
assets have no timeout there: on connection errors and HTTP 429/5xx a call is
tried up to 12 times with exponential backoff, but a connection that stalls
without closing is not bounded. A download that still fails ends in a one-line error; running
again resumes.

DANDI does not hold the movie templates: give ``--movie-dir`` with
natural_movie_one.npy and natural_movie_three.npy (saved by
``download_allen --movies-only`` on any machine with allensdk, or your own
copies) and they are copied into ``<out>/movies``.
"""
from __future__ import annotations

import argparse
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from neural_fitting.catalog import DEFAULT_AREAS, MOVIE_TEMPLATES, check_areas, select_sessions, session_ids
from neural_fitting.fetch import download
from utils import UserInputError, add_flags, atomic_path, flag, options_from, run_cli, user_errors_from

DANDISET = "000021"
ALLEN_CACHE_URL = "https://allen-brain-observatory.s3.amazonaws.com/visual-coding-neuropixels/ecephys-cache"
INSTALL_HINT = "the dandi client is not installed: pip install -r neural_fitting/requirements-dandi.txt"
SESSION_FILE = re.compile(r"_ses-(\d+)\.nwb$")


def session_assets(paths: list[str], wanted: list[int]) -> dict[int, str]:
    """session id -> DANDI asset path, for the wanted sessions' main files.
    A ValueError names the first wanted session without a file."""
    found = {}
    for path in paths:
        match = SESSION_FILE.search(path)
        if match and "_probe-" not in path:
            found[int(match.group(1))] = path
    missing = [s for s in wanted if s not in found]
    if missing:
        raise ValueError(f"session {missing[0]} has no file in DANDI:{DANDISET}: leave it out or use "
                         f"download_allen")
    return {s: found[s] for s in wanted}


def copy_movies(movie_dir: Path, out: Path) -> None:
    """Copy both movie templates from ``movie_dir`` into ``<out>/movies`` (unless a
    same-sized copy is there); ValueError if ``movie_dir`` lacks one."""
    for name in MOVIE_TEMPLATES:
        source = movie_dir / f"{name}.npy"
        if not source.is_file():
            raise ValueError(f"{source} not found: the movie folder must hold natural_movie_one.npy and "
                             f"natural_movie_three.npy")
        target = out / "movies" / source.name
        if not (target.is_file() and target.stat().st_size == source.stat().st_size):
            with atomic_path(target) as tmp:
                shutil.copyfile(source, tmp)


@dataclass(frozen=True)
class DandiOptions:
    """The command's flags, one per field."""
    out: Path = flag(None, "data folder", type=Path, required=True)
    areas: tuple = flag(DEFAULT_AREAS, "Allen area acronyms a session must record from (any one)", nargs="+")
    sessions: tuple | None = flag(None, "session ids (skips the session table)", type=int, nargs="+")
    sessions_csv: Path | None = flag(None, "a local Allen sessions.csv instead of the public one", type=Path)
    max_sessions: int | None = flag(None, "download at most this many sessions", type=int)
    movie_dir: Path | None = flag(None, "folder with the two movie templates (.npy)", type=Path)
    version: str = flag("draft", "Dandiset version")
    timeout: float = flag(60.0, "seconds per request for sessions.csv")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_flags(parser, DandiOptions)
    args = options_from(DandiOptions, parser.parse_args(argv))
    with user_errors_from(ValueError, ConnectionError):
        fetch_sessions(args)


def fetch_sessions(args: DandiOptions) -> None:
    """What the command does: check the options, copy the movie templates if asked,
    choose the sessions (--sessions, or the session table's rows, saved as
    <out>/sessions.csv) and download their NWB files into <out>/sessions (resuming)."""
    areas = check_areas(args.areas)
    if args.max_sessions is not None and args.max_sessions < 1:
        raise UserInputError("--max-sessions must be at least 1")
    if args.movie_dir is not None:
        copy_movies(args.movie_dir, args.out)

    if args.sessions:
        ids = args.sessions
    else:
        csv = args.sessions_csv or download(f"{ALLEN_CACHE_URL}/sessions.csv", args.out / "allen_sessions.csv",
                                            timeout=args.timeout)
        if not Path(csv).is_file():
            raise UserInputError(f"--sessions-csv {csv} not found: give the Allen sessions.csv")
        chosen = select_sessions(pd.read_csv(csv), areas)
        with atomic_path(args.out / "sessions.csv") as tmp:
            chosen.to_csv(tmp, index=False)
        ids = session_ids(chosen)
    ids = ids[:args.max_sessions]

    try:
        import requests
        from dandi.dandiapi import DandiAPIClient
        from dandi.download import DownloadExisting, download as dandi_download
    except ImportError as err:
        raise UserInputError(INSTALL_HINT) from err
    try:
        with DandiAPIClient() as client:
            dandiset = client.get_dandiset(DANDISET, args.version)
            assets = session_assets([a.path for a in dandiset.get_assets()], ids)
        urls = [f"dandi://dandi/{DANDISET}@{args.version}/{path}" for path in assets.values()]
        dandi_download(urls, args.out / "sessions", existing=DownloadExisting.OVERWRITE_DIFFERENT)
    except (requests.RequestException, RuntimeError) as err:  # dandi raises RuntimeError when any file failed
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserInputError(f"DANDI:{DANDISET} download failed ({reason}): check the connection and run again "
                             f"to resume") from err
    print(f"{len(urls)} sessions in {args.out / 'sessions'}")
    if not all((args.out / "movies" / f"{name}.npy").is_file() for name in MOVIE_TEMPLATES):
        print(f"note: the movie templates are not on DANDI; put them in {args.out / 'movies'} (--movie-dir)")


if __name__ == "__main__":
    run_cli(main)
