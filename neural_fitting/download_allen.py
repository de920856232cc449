"""Download Allen Neuropixels sessions and movie templates with allensdk.

    .venv-allen/bin/python -m neural_fitting.download_allen --out data/allen --areas VISp VISl VISrl

Needs its own venv (allensdk 2.16.2 pins numpy<1.24 and pandas 1.5.3; see
README.md and requirements-allen.txt). Sessions: ``session_type ==
brain_observatory_1.1``, ``full_genotype == wt/wt`` and at least one of the
areas (the original's filter). Writes the shared layout of ``catalog.py``:
session files are hard-linked from allensdk's cache (``<out>/allensdk_cache``)
into ``<out>/sessions``, the templates saved as ``<out>/movies/<name>.npy``,
plus sessions.csv and channels.csv (allensdk substitutes these channel areas
for the files' own; pass it to process_sessions --channels-csv to match).

allensdk keeps what it has downloaded (no second download), times out after
``--timeout`` seconds per request and tries ``--tries`` times; the warehouse
publishes no checksums, so a file is checked by opening it.
"""
from __future__ import annotations

import argparse
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neural_fitting import RecordingError
from neural_fitting.catalog import DEFAULT_AREAS, MOVIE_TEMPLATES, check_areas, select_sessions, session_ids
from utils import UserInputError, add_flags, atomic_path, flag, options_from, run_cli, user_errors_from

INSTALL_HINT = ("allensdk is not installed here: make its own venv with python3.11 -m venv .venv-allen && "
                ".venv-allen/bin/pip install -r neural_fitting/requirements-allen.txt")


def import_cache_class():
    try:
        from allensdk.brain_observatory.ecephys.ecephys_project_cache import EcephysProjectCache
    except ImportError as err:
        raise RecordingError(INSTALL_HINT) from err
    return EcephysProjectCache


def save_movie(cache, name: str, target: Path) -> Path:
    """Save allensdk's template ``name`` as .npy unless a readable one is there."""
    if target.is_file():
        try:
            np.load(target, mmap_mode="r", allow_pickle=False)
            return target
        except (OSError, ValueError):
            pass  # damaged: fetch again
    movie = np.asarray(cache.get_natural_movie_template(MOVIE_TEMPLATES[name]))
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, movie)
    return target


def link_session(cache, session_id: int, target: Path) -> Path:
    """Download one session through the cache and hard-link it to ``target``."""
    if target.is_file():
        return target
    cache.get_session_data(session_id)  # downloads (or finds) and opens the file
    source = Path(cache.get_cache_path(None, cache.SESSION_NWB_KEY, session_id, session_id))
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another file system: copy instead
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)
    return target


@dataclass(frozen=True)
class AllenOptions:
    """The command's flags, one per field."""
    out: Path = flag(None, "data folder", type=Path, required=True)
    areas: tuple = flag(DEFAULT_AREAS, "Allen area acronyms a session must record from (any one)", nargs="+")
    max_sessions: int | None = flag(None, "download at most this many sessions", type=int)
    movies_only: bool = flag(False, "fetch only the two movie templates")
    timeout: int = flag(1200, "seconds per HTTP request (allensdk's default)")
    tries: int = flag(3, "attempts per file")


def fetch_all(cache_class, args: AllenOptions, areas: list[str]) -> list[int] | None:
    """Templates, then (unless --movies-only) the session tables and files; returns the session ids."""
    from tqdm.auto import tqdm

    cache = cache_class.from_warehouse(manifest=str(args.out / "allensdk_cache" / "manifest.json"),
                                       timeout=args.timeout, fetch_tries=args.tries)
    for name in MOVIE_TEMPLATES:
        save_movie(cache, name, args.out / "movies" / f"{name}.npy")
    if args.movies_only:
        return None
    chosen = select_sessions(cache.get_session_table(), areas)
    ids = session_ids(chosen)[:args.max_sessions]
    with atomic_path(args.out / "sessions.csv") as tmp:
        chosen.loc[ids].to_csv(tmp)
    channels = cache.get_channels()
    with atomic_path(args.out / "channels.csv") as tmp:
        channels.loc[channels["ecephys_session_id"].isin(ids), ["ecephys_session_id", "ecephys_structure_acronym"]
                     ].to_csv(tmp, index_label="id")
    for session_id in tqdm(ids, desc="sessions"):
        link_session(cache, session_id, args.out / "sessions" / f"session_{session_id}.nwb")
    return ids


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_flags(parser, AllenOptions)
    args = options_from(AllenOptions, parser.parse_args(argv))
    with user_errors_from(ValueError):
        areas = check_areas(args.areas)
    if args.max_sessions is not None and args.max_sessions < 1:
        raise UserInputError("--max-sessions must be at least 1")

    cache_class = import_cache_class()
    try:
        ids = fetch_all(cache_class, args, areas)
    except OSError as err:  # requests' errors are OSErrors too
        reason = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise UserInputError(f"the Allen warehouse could not be reached ({reason}): check the connection and "
                             f"run again (finished files are kept), or use download_dandi") from err
    if ids is None:
        return
    print(f"{len(ids)} sessions in {args.out / 'sessions'}; movie templates in {args.out / 'movies'}")


if __name__ == "__main__":
    run_cli(main)
