"""Writing a stage's fields into its HDF5 group (a part of the artefact,
``virtual_physiology/artefact.py``): per-unit arrays with fill values for the
units a stage did not probe, and the grating time courses streamed in during
the sweep. The stage run functions of ``virtual_physiology/stages.py`` use
these; they sit apart from the artefact's reader so that the reader can read
the stage registry without an import cycle.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np

from virtual_physiology import ArtefactError

GRATING_RESPONSES = "grating_responses"
_UNIT_CHUNK, _DIRECTION_CHUNK = 8, 18


def check_free_space(folder: Path, needed: int, what: str) -> None:
    """Refuse to start writing ``needed`` bytes into ``folder`` when they will not fit:
    HDF5 may crash (segfault) when the disk fills midway through a file."""
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise ArtefactError(f"{what} need {needed / 2**20:.1f} MiB but {folder} has {free / 2**20:.1f} MiB free: "
                            "free space or choose another ARTEFACT_PATH, then rerun (finished stages are kept)")


def create_field(group: h5py.Group, name: str, **options) -> h5py.Dataset:
    """``group.create_dataset(name, **options)`` with HDF5's Fletcher-32 checksum on
    every chunk (HDF5 then refuses to read a chunk whose bytes changed), except for
    a scalar or empty field, which HDF5 cannot chunk."""
    data = options.get("data")
    shape = np.shape(data) if data is not None else options.get("shape", ())
    checksummed = len(shape) > 0 and int(np.prod(shape)) > 0
    return group.create_dataset(name, fletcher32=checksummed, **options)


def _fill_value(dtype: np.dtype):
    if dtype == np.bool_:
        return False
    return -1 if np.issubdtype(dtype, np.integer) else np.nan


PROBED = "probed"  # a per-unit field's attribute: which rows hold results (absent: every row)


def write_per_unit(group: h5py.Group, fields: dict, n_units: int, units=None) -> None:
    """Write each array of ``fields`` as a dataset whose first axis is the
    global unit. ``units`` (n,) are the units the arrays' rows belong to (all
    units when None); the others get the fill value (NaN, -1 or False), and
    the dataset's ``probed`` attribute, (n_units,) bool, says which rows are results."""
    for name, values in fields.items():
        values = np.asarray(values)
        probed = None
        if units is not None:
            full = np.full((n_units,) + values.shape[1:], _fill_value(values.dtype), dtype=values.dtype)
            full[np.asarray(units, dtype=np.int64)] = values
            values = full
            probed = np.zeros(n_units, bool)
            probed[np.asarray(units, dtype=np.int64)] = True
        dataset = create_field(group, name, data=values)
        dataset.attrs["per_unit"] = True
        if probed is not None:
            dataset.attrs[PROBED] = probed


class GratingResponseWriter:
    """``sink`` for ``tuning.grating_sweep``: streams the (batch, T, n_hidden)
    time courses of each batch of grid combinations into
    ``grating_responses`` without holding the whole array.

    Combinations are buffered per (sf, block of 18 directions) over all units
    and each block is written when complete, so every write covers whole
    chunks; with the sweep's sf-major order about one block (104 MB at paper
    size) is in memory at a time. ``indices`` are flat C-order indices into
    (n_sf, n_dir, n_tf), as an array or a slice.
    """

    def __init__(self, group: h5py.Group, n_units: int, grid_shape: tuple[int, int, int], n_frames: int,
                 compression: str | None = None):
        self.grid_shape, self.n_units, self.n_frames = tuple(grid_shape), n_units, n_frames
        n_sf, n_dir, n_tf = self.grid_shape
        self.block = min(_DIRECTION_CHUNK, n_dir)
        self.dataset = create_field(
            group, GRATING_RESPONSES, shape=(n_units, n_sf, n_dir, n_tf, n_frames), dtype=np.float32,
            chunks=(min(_UNIT_CHUNK, n_units), 1, self.block, n_tf, n_frames), compression=compression)
        self.dataset.attrs["per_unit"] = True
        self.pending: dict[tuple[int, int], list] = {}  # (sf, first direction) -> [buffer, combinations filled]

    def __call__(self, indices, responses) -> None:
        if isinstance(indices, slice):
            indices = np.arange(*indices.indices(int(np.prod(self.grid_shape))))
        sf, direction, tf = np.unravel_index(np.asarray(indices, dtype=np.int64), self.grid_shape)
        responses = np.asarray(responses.cpu() if hasattr(responses, "cpu") else responses, dtype=np.float32)
        responses = responses.transpose(2, 0, 1)  # (n_units, batch, T)
        first = direction - direction % self.block
        for key in set(zip(sf.tolist(), first.tolist())):
            rows = np.flatnonzero((sf == key[0]) & (first == key[1]))
            width = min(self.block, self.grid_shape[1] - key[1])
            if key not in self.pending:
                self.pending[key] = [np.empty((self.n_units, width, self.grid_shape[2], self.n_frames), np.float32), 0]
            entry = self.pending[key]
            entry[0][:, direction[rows] - key[1], tf[rows]] = responses[:, rows]
            entry[1] += len(rows)
            if entry[1] == width * self.grid_shape[2]:
                self.dataset[:, key[0], key[1]:key[1] + width] = entry[0]
                del self.pending[key]

    def close(self) -> None:
        if self.pending:
            raise RuntimeError(f"grating sweep ended with {len(self.pending)} incomplete blocks")
