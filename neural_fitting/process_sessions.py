"""Session NWB files -> per-session spike-count arrays and the 900 RSA time bins.

    python -m neural_fitting.process_sessions --nwb-dir data/allen/sessions \
        --areas VISp VISl VISrl --out data/processed

For every session: units in the requested areas (allensdk's default quality
filters), spike counts per movie-frame presentation as units x repeats x frames,
the mean over all repeats, the Sahani-Linden noise ratio (first 10 repeats of
each movie, averaged over the two movies), the >60 filter (NaN passes, as in the
original), then 300-frame chunks averaged in 5-frame bins, as the original.

Writes, atomically and only after every session has been read:
``session_<id>.npz`` (arrays below, no pickle), ``session_<id>.json`` (counts
and parameters) and ``summary.json``. NPZ keys, for the U kept units:
``unit_ids`` (U,), ``unit_areas`` (U,) str, ``noise_ratio`` (U,),
``binned`` (U, n_bins) float32, and per movie ``trials_<movie>`` (U, R, F) int32
and ``mean_<movie>`` (U, F) float32.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from neural_fitting.nwb import check_passes, read_session
from neural_fitting.spikes import (NOISE_RATIO_MAX, NOISE_RATIO_REPEATS, noise_ratio, passes_noise_filter,
                                   presentation_counts, trials_array)
from neural_fitting.stimuli import MovieSpec, StimulusLayout, bin_mean
from utils import (UserInputError, add_flags, atomic_path, cannot_create, flag, options_from, os_error_reason, run_cli,
                   user_errors_from, write_json)


@dataclass(frozen=True)
class ProcessingConfig:
    layout: StimulusLayout = field(default_factory=StimulusLayout)
    max_noise_ratio: float = NOISE_RATIO_MAX
    nan_passes: bool = True
    noise_ratio_repeats: int = NOISE_RATIO_REPEATS
    quality_filter: bool = True

    def to_dict(self) -> dict:
        return {"layout": self.layout.to_dict(), "max_noise_ratio": self.max_noise_ratio,
                "nan_passes": self.nan_passes, "noise_ratio_repeats": self.noise_ratio_repeats,
                "quality_filter": self.quality_filter}


def process_session(path: str | Path, areas: list[str], config: ProcessingConfig = ProcessingConfig(),
                    channel_areas: dict[int, str] | None = None) -> tuple[str, dict[str, np.ndarray], dict]:
    """Read and process one session. Returns (session_id, arrays, info) where
    ``arrays`` are the NPZ contents described in the module docstring and
    ``info`` the per-area unit counts. ValueError if the file is
    unreadable, a table is missing or malformed, or no unit is in ``areas``."""
    movies = config.layout.movies
    session = read_session(path, areas, [m.name for m in movies], channel_areas, config.quality_filter)
    if len(session.unit_ids) == 0:
        raise ValueError(f"{path}: no unit in {' '.join(areas)} passes the quality filter: "
                         f"choose areas this session recorded, or drop the file")

    arrays, ratios = {}, []
    for movie in movies:
        trials = _movie_trials(session, movie, path)
        arrays[f"trials_{movie.name}"] = trials.astype(np.int32)
        arrays[f"mean_{movie.name}"] = trials.mean(axis=1, dtype=np.float64).astype(np.float32)
        ratios.append(noise_ratio(trials[:, :config.noise_ratio_repeats]))
    ratio = np.mean(ratios, axis=0)  # NaN for either movie -> NaN
    keep = passes_noise_filter(ratio, config.max_noise_ratio, config.nan_passes)

    means = np.concatenate([arrays[f"mean_{m.name}"] for m in movies], axis=1)
    arrays = {key: value[keep] for key, value in arrays.items()}
    arrays.update(unit_ids=session.unit_ids[keep], unit_areas=session.unit_areas[keep].astype(str),
                  noise_ratio=ratio[keep], binned=bin_mean(means[keep], config.layout.bin_frames).astype(np.float32))
    info = {area: {"units": int(np.sum(session.unit_areas == area)),
                   "kept": int(np.sum(arrays["unit_areas"] == area)),
                   "nan_ratio_kept": int(np.sum(np.isnan(ratio[keep]) & (session.unit_areas[keep] == area)))}
            for area in areas}
    return session.session_id, arrays, info


def _movie_trials(session, movie: MovieSpec, path) -> np.ndarray:
    table = session.presentations[movie.name]
    counts = presentation_counts(session.spike_times, table.start, table.stop)
    trials = trials_array(counts, table.frame, table.repeat, movie.n_frames, movie.n_repeats,
                          table=f"{path}: {movie.name}_presentations")
    check_passes(table, f"{path}: the {movie.name}_presentations table")  # once each (repeat, frame) is known
    return trials


def process_sessions(paths: list[str | Path], areas: list[str], out: str | Path,
                     config: ProcessingConfig = ProcessingConfig(), channel_areas: dict[int, str] | None = None,
                     skip_bad_sessions: bool = False) -> list[Path]:
    """Process every file, then write the results. With ``skip_bad_sessions``
    a session raising ValueError is listed in summary.json instead of
    stopping the run. Returns the NPZ paths written."""
    if not paths:
        raise ValueError("no session NWB files given: give at least one *.nwb session file")
    if not areas:
        raise ValueError("no areas given: name some Allen areas, e.g. VISp VISl VISrl")
    out = Path(out)
    problem = cannot_create(out)
    if problem is not None:  # checked before the (long) processing, so it fails at once
        raise ValueError(f"cannot write --out {out}: {problem}: give a writable folder")
    results, skipped = {}, {}
    for path in paths:
        try:
            session_id, arrays, info = process_session(path, areas, config, channel_areas)
        except ValueError as err:
            if not skip_bad_sessions:
                raise
            skipped[str(path)] = str(err)
            continue
        if session_id in results:
            raise ValueError(f"session {session_id} appears twice ({results[session_id][0]} and {path}): "
                             f"pass each session once")
        results[session_id] = (path, arrays, info)
    empty = [a for a in areas if not any(r[2][a]["kept"] for r in results.values())]
    if empty:
        raise ValueError(f"no unit in {' '.join(empty)} in any session: check the area names "
                         f"(Allen acronyms such as VISp) or add sessions that recorded them")

    written = []
    try:
        for session_id, (path, arrays, info) in results.items():
            target = out / f"session_{session_id}.npz"
            with atomic_path(target) as tmp:
                with open(tmp, "wb") as handle:
                    np.savez_compressed(handle, **arrays)
            write_json(target.with_suffix(".json"), {"session_id": session_id, "source": str(path), "areas": info,
                                                     "config": config.to_dict()})
            written.append(target)
        write_json(out / "summary.json", {"sessions": sorted(results), "skipped": skipped, "areas": areas,
                                          "config": config.to_dict()})
    except OSError as err:  # a full disk, or the folder made read-only meanwhile; each file is whole or absent
        raise ValueError(f"cannot write --out {out} ({os_error_reason(err)}): free space or choose another --out, "
                         f"then run again ({len(written)} of {len(results)} sessions were written, each complete; "
                         "summary.json is written last)") from err
    return written


def load_processed(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of one ``session_<id>.npz`` (read without pickle)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a processed session file ({err}): run "
                         f"python -m neural_fitting.process_sessions again") from err


def read_channel_areas(path: str | Path) -> dict[int, str]:
    """channel id -> area from an Allen cache ``channels.csv`` (columns ``id``
    and ``ecephys_structure_acronym``); missing labels become ''."""
    import pandas as pd

    try:
        table = pd.read_csv(path, usecols=["id", "ecephys_structure_acronym"])
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read channel areas ({err}): give the Allen channels.csv") from err
    labels = table["ecephys_structure_acronym"].fillna("").astype(str)
    return dict(zip(table["id"].astype(int), labels))


@dataclass(frozen=True)
class ProcessOptions:
    """The command's flags, one per field."""
    nwb_dir: Path | None = flag(None, "folder searched recursively for *.nwb session files", type=Path,
                                exclusive="source")
    nwb: tuple | None = flag(None, "session NWB files", type=Path, nargs="+", exclusive="source")
    areas: tuple = flag(None, "Allen area acronyms, e.g. VISp VISl VISrl", nargs="+", required=True)
    out: Path = flag(None, "output folder", type=Path, required=True)
    channels_csv: Path | None = flag(None, "Allen channels.csv whose area labels override the file's", type=Path)
    max_noise_ratio: float = flag(NOISE_RATIO_MAX, "units whose noise ratio NP/SP exceeds this are dropped")
    nan_fails: bool = flag(False, "drop units whose noise ratio is NaN (the original keeps them)")
    quality_filter: bool = flag(True, "allensdk's default unit filters (--no-quality-filter skips them)")
    skip_bad_sessions: bool = flag(False, "list unusable sessions in summary.json instead of stopping")


def main(argv: list[str] | None = None, layout: StimulusLayout = StimulusLayout()) -> None:
    """The CLI; ``layout`` is the paper's (900 + 3600 frames) unless a test gives a tiny one."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_flags(parser, ProcessOptions)
    args = options_from(ProcessOptions, parser.parse_args(argv))

    if args.nwb_dir is not None:
        if not args.nwb_dir.is_dir():
            raise UserInputError(f"--nwb-dir {args.nwb_dir} is not a folder: give the folder holding the *.nwb files")
        paths = sorted(args.nwb_dir.rglob("*.nwb"))
        # DANDI also holds per-probe LFP files beside each session file; they have no units
        paths = [p for p in paths if "_probe-" not in p.name and not p.name.startswith("probe_")]
        if not paths:
            raise UserInputError(f"--nwb-dir {args.nwb_dir} holds no *.nwb session file: download sessions "
                                 f"there or pass --nwb FILE ...")
    else:
        paths = args.nwb
    with user_errors_from(ValueError):
        channel_areas = read_channel_areas(args.channels_csv) if args.channels_csv else None
        config = ProcessingConfig(layout=layout, max_noise_ratio=args.max_noise_ratio,
                                  nan_passes=not args.nan_fails, quality_filter=args.quality_filter)
        written = process_sessions(paths, args.areas, args.out, config, channel_areas, args.skip_bad_sessions)
    print(f"wrote {len(written)} sessions to {args.out}")


if __name__ == "__main__":
    run_cli(main)
