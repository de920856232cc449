"""Tiny Allen-shaped session NWB files written from standard pynwb types.

For tests and demos (no real data can be fetched offline): one electrode
group, electrodes whose ``location`` is the area, units with ``spike_times``
and the Allen metric columns, and one ``<movie>_presentations`` interval table
per movie with a ``frame`` column, the movie played ``n_repeats`` times in a
row, built from standard NWB types only (no allensdk).
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from neural_fitting.stimuli import MovieSpec

FRAME_SECONDS = 1 / 30  # Allen movies play at 30 frames per second


def movie_schedule(movies: tuple[MovieSpec, ...], frame_seconds: float = FRAME_SECONDS,
                   gap_seconds: float = 1.0) -> dict[str, np.ndarray]:
    """Start time of every presentation: name -> (n_repeats, n_frames) seconds.

    The movies play one after the other, each repeat straight after the
    previous, with ``gap_seconds`` of grey before each movie."""
    schedule, t = {}, 0.0
    for movie in movies:
        t += gap_seconds
        steps = np.arange(movie.n_repeats * movie.n_frames).reshape(movie.n_repeats, movie.n_frames)
        schedule[movie.name] = t + steps * frame_seconds
        t += movie.n_repeats * movie.n_frames * frame_seconds
    return schedule


def spikes_for_counts(counts: dict[str, np.ndarray], movies: tuple[MovieSpec, ...],
                      frame_seconds: float = FRAME_SECONDS, gap_seconds: float = 1.0) -> list[np.ndarray]:
    """Spike times giving exact presentation counts: movie name -> (U, n_repeats,
    n_frames) counts; c spikes are spread evenly inside each presentation window
    of ``movie_schedule`` (none on a boundary). Returns one sorted array per unit."""
    schedule = movie_schedule(movies, frame_seconds, gap_seconds)
    n_units = len(counts[movies[0].name])
    per_unit = [[] for _ in range(n_units)]
    for movie in movies:
        starts = schedule[movie.name].ravel()
        for u, unit_counts in enumerate(np.asarray(counts[movie.name]).reshape(n_units, -1)):
            for start, c in zip(starts, unit_counts):
                per_unit[u].append(start + frame_seconds * np.arange(1, c + 1) / (c + 1))
    return [np.sort(np.concatenate(times)) for times in per_unit]


def write_session(path: str | Path, spike_times: list[np.ndarray], unit_areas: list[str],
                  movies: tuple[MovieSpec, ...], *, frame_seconds: float = FRAME_SECONDS, gap_seconds: float = 1.0,
                  session_id: str = "100", area_via: str = "peak_channel", quality: list[str] | None = None,
                  shuffle_seed: int | None = None) -> Path:
    """Write a session NWB file; returns ``path``.

    ``spike_times``: one array per unit; ``unit_areas``: the area of each unit.
    Unit u gets id 500 + u and its own channel (id 10 + u). ``area_via`` says
    where the reader must find the area: "peak_channel" (Allen: a
    ``peak_channel_id`` column), "electrodes" (standard NWB: the units'
    ``electrodes`` region) or "units_column" (a ``structure_acronym`` column on
    the units table). ``quality`` defaults to "good" for every unit. With
    ``shuffle_seed`` the presentation rows are written in a seeded random order
    instead of time order, so the reader must sort them.
    """
    import pynwb
    from pynwb.epoch import TimeIntervals

    n_units = len(spike_times)
    quality = quality or ["good"] * n_units
    nwb = pynwb.NWBFile(session_description="synthetic Allen-shaped session", identifier=session_id,
                        session_id=session_id, session_start_time=datetime(2019, 1, 1, tzinfo=timezone.utc))
    device = nwb.create_device(name="probeA")
    group = nwb.create_electrode_group(name="probeA", description="synthetic probe", location="brain", device=device)
    nwb.add_electrode_column(name="valid_data", description="channel usable")
    for u, area in enumerate(unit_areas):
        nwb.add_electrode(group=group, location=area, id=10 + u, valid_data=True)

    columns = {"quality": "sorting quality", "amplitude_cutoff": "metric", "presence_ratio": "metric",
               "isi_violations": "metric"}
    if area_via == "peak_channel":
        columns["peak_channel_id"] = "channel with the largest waveform"
    elif area_via == "units_column":
        columns["structure_acronym"] = "area of the unit"
    for name, description in columns.items():
        nwb.add_unit_column(name=name, description=description)
    for u in range(n_units):
        extra = {"peak_channel": {"peak_channel_id": 10 + u}, "units_column": {"structure_acronym": unit_areas[u]},
                 "electrodes": {"electrodes": [u]}}[area_via]
        nwb.add_unit(spike_times=np.sort(np.asarray(spike_times[u], float)), id=500 + u, quality=quality[u],
                     amplitude_cutoff=0.01, presence_ratio=0.99, isi_violations=0.1, **extra)

    for movie in movies:
        starts = movie_schedule(movies, frame_seconds, gap_seconds)[movie.name]
        table = TimeIntervals(name=f"{movie.name}_presentations", description=f"{movie.name} frames")
        table.add_column(name="frame", description="movie frame shown")
        starts, frames = starts.ravel(), np.tile(np.arange(movie.n_frames), movie.n_repeats)
        order = np.arange(len(starts))
        if shuffle_seed is not None:
            order = np.random.default_rng(shuffle_seed).permutation(len(starts))
        for start, frame in zip(starts[order], frames[order]):
            table.add_interval(start_time=float(start), stop_time=float(start + frame_seconds), frame=float(frame))
        nwb.add_time_intervals(table)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path
