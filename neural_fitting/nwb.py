"""Read units and movie presentations from an Allen Neuropixels session NWB file.

Reads the HDF5 layout with h5py directly, so it works for files written by
allensdk (ndx-aibs-ecephys types, DANDI:000021) and for files written from
standard pynwb types alike, and needs neither allensdk nor the extension's
namespace. What is read:

- ``units``: ``spike_times`` (ragged), the unit ``id`` and the unit's area:
  a ``structure_acronym`` / ``ecephys_structure_acronym`` column on the units
  table if there is one, else the electrode row of the unit's ``peak_channel_id``
  (Allen) or of its first ``electrodes`` entry (standard NWB), taking that
  row's ``structure_acronym``, ``ecephys_structure_acronym`` or ``location``.
  ``channel_areas`` (e.g. from the Allen cache's channels.csv, whose labels
  allensdk substitutes for the file's) overrides the electrode labels.
- allensdk's default unit filters, applied to the columns that exist:
  quality == "good", peak channel ``valid_data``, amplitude_cutoff <= 0.1,
  presence_ratio >= 0.95, isi_violations <= 0.5 (a NaN metric fails, as there).
- ``intervals/<movie>_presentations``: start_time, stop_time, frame and, if
  present, a ``repeat`` column (otherwise repeats are inferred from time order).
  Spikes are counted by two binary searches per unit, which assume well-formed
  intervals, so a table is refused, naming its row, unless every time is finite,
  no presentation starts before the session (NWB times count from the session's
  reference time, so they are >= 0), stops before it starts, lasts more than
  ``MAX_PASS_PAUSE`` median presentations or overlaps the next one (``read_session``),
  and each pass through the movie (one repeat) shows its frames in order, without
  a pause of more than ``MAX_PASS_PAUSE`` median presentation durations between
  two frames (``check_passes``: a movie is played continuously; a start moved far
  out of place, e.g. to 1e12 s, would otherwise give a frame no spikes, or give
  the spikes to another frame).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from neural_fitting import RecordingError
from neural_fitting.spikes import repeat_index

AREA_COLUMNS = ("structure_acronym", "ecephys_structure_acronym")
ELECTRODES = "general/extracellular_ephys/electrodes"
QUALITY_LIMITS = {  # allensdk's UNIT_FILTER_DEFAULTS: column -> (comparison, limit)
    "amplitude_cutoff": (np.less_equal, 0.1),
    "presence_ratio": (np.greater_equal, 0.95),
    "isi_violations": (np.less_equal, 0.5),
}
MAX_PASS_PAUSE = 100  # median presentation durations between two frames of one pass (Allen: 3.3 s)


class MalformedTable(RecordingError):
    """A table whose values cannot be counted from (a NaN time, a stop before its
    start ...): the message names the table and the row, and is passed on as is."""


@dataclass
class Presentations:
    """One movie's presentation table, in time order: (P,) arrays."""

    start: np.ndarray
    stop: np.ndarray
    frame: np.ndarray  # int64
    repeat: np.ndarray  # int64, 0-based
    rows: np.ndarray  # int64: each presentation's row in the file's table, for messages


@dataclass
class Session:
    session_id: str
    unit_ids: np.ndarray  # (U,) int64
    unit_areas: np.ndarray  # (U,) str
    spike_times: list[np.ndarray]  # U arrays, seconds
    presentations: dict[str, Presentations]


def read_session(path: str | Path, areas: list[str], movies: list[str],
                 channel_areas: dict[int, str] | None = None, quality_filter: bool = True) -> Session:
    """Units in ``areas`` (after the quality filter) and the presentation tables
    of ``movies``. Raises ValueError for an unreadable or truncated file
    or a missing table. A session with no unit in ``areas`` gives U = 0."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            return _read(f, path, areas, movies, channel_areas or {}, quality_filter)
    except MalformedTable:
        raise
    except (OSError, KeyError, ValueError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"{path}: not a readable NWB session file ({reason}); it may be truncated or "
                         f"corrupt: download it again") from err


def _read(f: h5py.File, path: Path, areas, movies, channel_areas, quality_filter) -> Session:
    if "units" not in f:
        raise ValueError(f"{path}: has no units table: use a session file with sorted units")
    units = f["units"]
    areas_of_units, valid = _unit_areas(f, path, channel_areas)
    keep = np.isin(areas_of_units, list(areas))
    if quality_filter:
        keep &= valid & _passes_quality(units)
    rows = np.flatnonzero(keep)
    ends = units["spike_times_index"][:].astype(np.int64)
    begins = np.r_[0, ends[:-1]]
    times = units["spike_times"]
    unit_ids = units["id"][:].astype(np.int64)
    spike_times = [np.asarray(times[begins[r]:ends[r]], dtype=np.float64) for r in rows]
    for r, spikes in zip(rows, spike_times):
        _require_finite(spikes, path, "units", "spike_times", f"unit id {unit_ids[r]}")
    return Session(
        session_id=_session_id(f, path),
        unit_ids=unit_ids[rows],
        unit_areas=areas_of_units[rows],
        spike_times=spike_times,
        presentations={name: _presentations(f, path, name) for name in movies},
    )


def _unit_areas(f, path, channel_areas) -> tuple[np.ndarray, np.ndarray]:
    """(U,) area label and (U,) peak-channel validity of every unit."""
    units = f["units"]
    n_units = len(units["id"])
    for column in AREA_COLUMNS:
        if column in units:
            return _strings(units[column]), np.ones(n_units, bool)
    if ELECTRODES not in f:
        raise ValueError(f"{path}: units have no area column and the file has no electrodes table: "
                         f"add structure_acronym to the units table")
    electrodes = f[ELECTRODES]
    electrode_ids = electrodes["id"][:].astype(np.int64)
    column = next((c for c in (*AREA_COLUMNS, "location") if c in electrodes), None)
    labels = _strings(electrodes[column]) if column else np.full(len(electrode_ids), "", dtype=object)
    labels = np.array([channel_areas.get(int(i), lab) for i, lab in zip(electrode_ids, labels)], dtype=object)
    valid = electrodes["valid_data"][:].astype(bool) if "valid_data" in electrodes else np.ones(len(labels), bool)

    if "peak_channel_id" in units:
        order = np.argsort(electrode_ids)
        peak = units["peak_channel_id"][:].astype(np.int64)
        pos = np.clip(np.searchsorted(electrode_ids, peak, sorter=order), 0, len(order) - 1)
        rows = order[pos]
        found = electrode_ids[rows] == peak
    elif "electrodes" in units:
        region = units["electrodes"][:].astype(np.int64)
        ends = units["electrodes_index"][:].astype(np.int64)
        begins = np.r_[0, ends[:-1]]
        found = ends > begins
        rows = region[np.minimum(begins, len(region) - 1)] if len(region) else np.zeros(n_units, np.int64)
    else:
        raise ValueError(f"{path}: units have neither peak_channel_id nor electrodes, so their area is "
                         f"unknown: add a structure_acronym column")
    areas = np.where(found, labels[rows], "")
    return areas.astype(str), valid[rows] & found


def _passes_quality(units) -> np.ndarray:
    keep = np.ones(len(units["id"]), bool)
    if "quality" in units:
        keep &= _strings(units["quality"]) == "good"
    for column, (compare, limit) in QUALITY_LIMITS.items():
        if column in units:
            keep &= compare(units[column][:].astype(float), limit)  # NaN compares False: dropped
    return keep


def _presentations(f, path, movie) -> Presentations:
    name = f"intervals/{movie}_presentations"
    if name not in f:
        raise ValueError(f"{path}: no {movie}_presentations table, so this session did not show {movie}: "
                         f"use brain_observatory_1.1 sessions")
    table = f[name]
    for column in ("start_time", "stop_time", "frame"):
        if column not in table:
            raise ValueError(f"{path}: {movie}_presentations lacks the {column} column: the table is not "
                             f"an Allen movie presentation table")
    start = table["start_time"][:].astype(float)
    stop = table["stop_time"][:].astype(float)
    frame = _numbers(table["frame"])
    shown = np.isfinite(frame) & (frame >= 0)  # blank/"null" rows are not movie frames
    order = np.argsort(start[shown], kind="stable")
    rows = np.flatnonzero(shown)[order]  # each presentation's row in the file's table
    start, stop, frame = start[rows], stop[rows], frame[rows].astype(np.int64)
    for column, values in (("start_time", start), ("stop_time", stop)):
        _require_finite(values, path, f"{movie}_presentations", column, "a presentation")
    if "repeat" in table:
        repeat = _numbers(table["repeat"])[rows].astype(np.int64)
        repeat -= repeat.min() if len(repeat) else 0
    else:
        repeat = repeat_index(frame, start)
    _check_intervals(f"{path}: the {movie}_presentations table", start, stop, rows)
    return Presentations(start, stop, frame, repeat, rows)


def _check_intervals(table: str, start, stop, rows) -> None:
    """MalformedTable naming the first row that starts before the session, stops
    before it starts, lasts more than ``MAX_PASS_PAUSE`` median presentations or
    runs past the next presentation's start (by more than half a median one: a
    frame's spikes would be counted twice). (P,) arrays in time order; ``rows``
    are their rows in the file."""
    fix = "fix or drop that row, or download the session again"
    early = np.flatnonzero(start < 0)
    if len(early):
        i = early[0]
        raise MalformedTable(f"{table}, row {rows[i]}: start_time {start[i]:g} s lies before the session's start "
                             f"(0 s): {fix}")
    backwards = np.flatnonzero(stop < start)
    if len(backwards):
        i = backwards[0]
        raise MalformedTable(f"{table}, row {rows[i]}: stop_time {stop[i]:g} s is before its start_time "
                             f"{start[i]:g} s: {fix}")
    typical = float(np.median(stop - start)) if len(start) else 0.0
    long = np.flatnonzero(stop - start > MAX_PASS_PAUSE * max(typical, 1e-3))
    if len(long):
        i = long[0]
        raise MalformedTable(f"{table}, row {rows[i]}: lasts {stop[i] - start[i]:g} s, more than {MAX_PASS_PAUSE} "
                             f"times the median presentation ({typical:g} s): {fix}")
    overlap = np.flatnonzero(stop[:-1] > start[1:] + typical / 2)  # in time order: one frame on screen at a time
    if len(overlap):
        i = overlap[0]
        raise MalformedTable(f"{table}, row {rows[i]}: stop_time {stop[i]:g} s runs past the start of the next "
                             f"presentation (row {rows[i + 1]}, {start[i + 1]:g} s) by more than half a median "
                             f"presentation: {fix}")


def check_passes(presentations: Presentations, table: str) -> None:
    """MalformedTable unless each pass through the movie (one repeat) shows its
    frames in order, with no pause longer than ``MAX_PASS_PAUSE`` median
    presentation durations between two of them (module docstring). Made once
    every (repeat, frame) is known to occur exactly once
    (``spikes.trials_array``), so that a missing row is reported as missing,
    not as the shift of the inferred repeats it causes. ``table`` names the table."""
    p = presentations
    by_pass = np.lexsort((p.frame, p.repeat))  # each repeat's frames in frame order
    same_pass = p.repeat[by_pass][1:] == p.repeat[by_pass][:-1]
    step = np.diff(p.start[by_pass])
    longest = MAX_PASS_PAUSE * max(float(np.median(p.stop - p.start)) if len(p.start) else 0.0, 1e-3)
    # the pause first: a start moved far away is named itself, not the frame it now follows
    for bad, what in ((same_pass & (step > longest), "after"), (same_pass & (step <= 0), "before")):
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            a, b = by_pass[k], by_pass[k + 1]
            pause = f" (a pause longer than {longest:g} s inside one pass through the movie)" if what == "after" else ""
            raise MalformedTable(
                f"{table}, row {p.rows[b]} (frame {p.frame[b]}, repeat {p.repeat[b]}) starts at {p.start[b]:g} s, "
                f"{what} row {p.rows[a]} (frame {p.frame[a]}, repeat {p.repeat[a]}) at {p.start[a]:g} s{pause}: the "
                "frames of a pass must follow each other in order: fix or drop those rows, or download the session again")


def _require_finite(values: np.ndarray, path: Path, table: str, column: str, what: str) -> None:
    """A NaN or inf in a time column would silently shift spike counts: refuse it,
    naming the table. (A NaN *frame* marks a blank row and is skipped, not refused.)"""
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        raise MalformedTable(f"{path}: the {table} table has {len(bad)} NaN or infinite {column} value(s) "
                         f"(first in {what}): fix or drop those rows, or download the session again")


def _session_id(f, path) -> str:
    for name in ("general/session_id", "identifier"):
        if name in f:
            value = f[name][()]
            text = value.decode() if isinstance(value, bytes) else str(value)
            text = re.sub(r"[^A-Za-z0-9_-]", "_", text).strip("_")
            if text:
                return text
    return path.stem


def _strings(dataset) -> np.ndarray:
    values = dataset[:]
    if values.dtype.kind in "OS":
        values = np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values], dtype=object)
    return values.astype(str)


def _numbers(dataset) -> np.ndarray:
    """A numeric column, or a string column of numbers ('null' and the like -> NaN)."""
    values = dataset[:]
    if values.dtype.kind in "iufb":
        return values.astype(float)
    out = np.full(len(values), np.nan)
    for i, v in enumerate(_strings(dataset)):
        try:
            out[i] = float(v)
        except ValueError:
            pass
    return out
