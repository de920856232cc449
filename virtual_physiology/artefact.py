"""The virtual-physiology artefact: one HDF5 file per model, written
atomically and resumably, and read back as arrays or as the original's
per-unit dictionaries.

File layout
- root attribute ``metadata``: JSON with the format name and version, the
  checkpoint (path, weights file, SHA-256 of the weights file), the
  ``ablation`` of the probed model (a ``models.ablation.apply_ablation``
  spec; ``none``, also when the field is absent, for the model as trained),
  the model (class, config, frame shape, group sizes, lags), the grating
  grid, every stage with its completion flag, settings, timing and notes,
  the quirks reproduced on purpose, and library versions;
- one HDF5 group per stage (the registry ``virtual_physiology.stages.STAGES``:
  ``rwa``, ``gabor``, ``gratings``, ``modulation``, ``plaid``, ``surround``,
  ``nofeedback``, ``connectivity``), one dataset per field (``Stage.writes``).
  Per-unit fields have the unit as first axis: the global hidden-unit index
  0 .. n_hidden-1 (group g is ``group_slices[g]``); units a stage did not
  probe hold NaN (floats), -1 (integers) or False (booleans).
- integrity: every dataset carries HDF5's Fletcher-32 checksum on each chunk
  (``fields.create_field``), and the root attribute ``metadata_sha256`` the
  SHA-256 of the metadata's JSON, so flipped bytes are a one-line error when
  they are read (``read_field``, ``read_metadata``), not numbers; artefacts
  written before this have neither and read as before;
- ``gratings/grating_responses`` (n_hidden, n_sf, n_dir, n_tf, 50) float32,
  the full time courses (4.1 GB at paper size), is chunked as 8 units x 1 sf
  x 18 directions x n_tf x 50 frames: it is streamed in during the sweep and
  one unit reads back in n_sf * 4 chunks.

Resuming: each stage is first written to ``ARTEFACT.parts/<stage>.h5``
(through a temporary file and a rename) with the checkpoint hash, the
ablation, its settings, a random part id and the part ids of the stages it
read. A stage is reused when its part (or, once assembled, the artefact's
copy) has the same checkpoint hash, ablation and settings and its inputs are
unchanged; a stage of another checkpoint or ablation is never reused nor
assembled beside this one's. The artefact is assembled from the current
stages into a temporary file renamed over ``ARTEFACT``; the parts folder is
removed once every stage is complete.
No pickle anywhere.
"""
from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import re
import shutil
import time
import uuid
from functools import cached_property
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

from models.base import contiguous_slices
from utils import atomic_path, os_error_reason
from virtual_physiology import ArtefactError
from virtual_physiology.fields import GRATING_RESPONSES
from virtual_physiology.stages import STAGES

FORMAT = "virtual_physiology"
FORMAT_VERSION = 1
_METADATA_KEYS = ("model", "stages", "grid", "checkpoint")  # what readers of an artefact rely on
_MODEL_KEYS = ("frame_shape", "group_sizes")
METADATA_SHA256 = "metadata_sha256"


def read_metadata(path: Path) -> dict:
    """The metadata of an existing artefact; a one-line error if ``path`` is
    not one (it is then never overwritten), or if its metadata fails its checksum."""
    try:
        with h5py.File(path, "r") as f:
            text, recorded = f.attrs["metadata"], f.attrs.get(METADATA_SHA256)
            meta = json.loads(text)
    except (OSError, KeyError, ValueError) as err:
        cut = re.search(r"truncated file: eof = (\d+), .*stored_eof = (\d+)", str(err))
        if cut:  # the pipeline writes artefacts whole (a rename), so a copy or a transfer was cut short
            raise ArtefactError(f"{path} is truncated: it holds {int(cut[1]):,} of the {int(cut[2]):,} bytes HDF5 "
                                "expects (an interrupted copy?): copy it again, or move it away and rerun bash "
                                "run.bash MODEL_CHECKPOINT") from err
        raise ArtefactError(f"{path} exists and is not a virtual-physiology artefact: "
                            "choose another ARTEFACT_PATH or move that file away") from err
    if recorded is not None and hashlib.sha256(text.encode()).hexdigest() != recorded:
        raise ArtefactError(f"{path}: its metadata fails its checksum, so the file is corrupt: make it again with "
                            "bash run.bash MODEL_CHECKPOINT ARTEFACT_PATH --force")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ArtefactError(f"{path} is not a virtual-physiology artefact: choose another ARTEFACT_PATH")
    missing = [key for key in _METADATA_KEYS if key not in meta]
    if missing or not isinstance(meta["stages"], dict) or not all(k in meta["model"] for k in _MODEL_KEYS):
        raise ArtefactError(f"{path} claims to be a virtual-physiology artefact but its metadata lacks "
                            f"{', '.join(missing) or 'model or stage records'}: move it away and run the pipeline again")
    return meta


def write_metadata(f: h5py.File, metadata: dict) -> None:
    """Store ``metadata`` as the artefact's JSON attribute with its SHA-256 beside it
    (``read_metadata`` checks the two agree)."""
    text = json.dumps(metadata)
    f.attrs["metadata"] = text
    f.attrs[METADATA_SHA256] = hashlib.sha256(text.encode()).hexdigest()


def read_field(dataset: h5py.Dataset, selection=()) -> np.ndarray:
    """``dataset[selection]``; a chunk whose bytes no longer match its checksum (or
    cannot be read) is a one-line error naming the field and the fix."""
    try:
        return dataset[selection]
    except OSError as err:
        raise ArtefactError(f"{dataset.file.filename}: {dataset.name} fails its checksum or cannot be read "
                            f"({os_error_reason(err)}), so the file is corrupt: make it again with bash run.bash "
                            "MODEL_CHECKPOINT ARTEFACT_PATH --force") from err


class StageStore:
    """Completed stages of one artefact, in its parts folder or, once
    assembled, in the artefact itself (module docstring)."""

    def __init__(self, artefact, checkpoint_sha256: str, force: bool = False, ablation: str = "none"):
        self.artefact = Path(artefact)
        self.parts = self.artefact.with_name(self.artefact.name + ".parts")
        self.sha256, self.ablation = checkpoint_sha256, ablation
        self.assembled: dict = {}
        if self.artefact.exists():
            meta = read_metadata(self.artefact)
            if meta["checkpoint"]["sha256"] != checkpoint_sha256:
                if not force:
                    raise ArtefactError(
                        f"{self.artefact} was made from another checkpoint ({meta['checkpoint']['path']}): "
                        "pass --force to replace it or choose another ARTEFACT_PATH")
            elif meta.get("ablation", "none") != ablation:
                if not force:
                    raise ArtefactError(
                        f"{self.artefact} was made with ablation {meta.get('ablation', 'none')!r}, not {ablation!r}: "
                        "pass --force to replace it or choose another ARTEFACT_PATH")
            else:
                self.assembled = {k: v for k, v in meta["stages"].items() if v.get("complete")}

    def _part(self, stage: str) -> Path:
        return self.parts / f"{stage}.h5"

    def record(self, stage: str) -> dict | None:
        """The stage's record (settings, part id, inputs, ...) and where it
        lives, or None if no result from this checkpoint exists."""
        part = self._part(stage)
        if part.exists():
            try:
                with h5py.File(part, "r") as f:
                    record = json.loads(f.attrs["part"])
                if record["checkpoint_sha256"] == self.sha256 and record.get("ablation", "none") == self.ablation:
                    return dict(record, source=str(part), group="/")
            except (OSError, KeyError, ValueError):
                pass  # an unreadable part is rebuilt
        if stage in self.assembled:
            return dict(self.assembled[stage], source=str(self.artefact), group=stage)
        return None

    def consistent(self, stage: str) -> bool:
        """Present, and every stage it read still has the part it read."""
        record = self.record(stage)
        if record is None:
            return False
        for dependency, part_id in record["inputs"].items():
            upstream = self.record(dependency)
            if upstream is None or upstream["part_id"] != part_id:
                return False
        return True

    def current(self, stage: str, settings: dict) -> bool:
        record = self.record(stage)
        return self.consistent(stage) and record["settings"] == json.loads(json.dumps(settings))

    @contextlib.contextmanager
    def read(self, stage: str) -> Iterator[h5py.Group]:
        record = self.record(stage)
        if record is None:
            raise RuntimeError(f"stage {stage} has not been run")
        with h5py.File(record["source"], "r", rdcc_nbytes=64 * 2 ** 20) as f:
            yield f[record["group"]]

    def load(self, stage: str, *fields: str) -> dict[str, np.ndarray]:
        """Fields of a stage as arrays (all but the grating time courses when none are named)."""
        with self.read(stage) as group:
            names = fields or [k for k in group.keys() if k != GRATING_RESPONSES]
            return {name: read_field(group[name]) for name in names}

    @contextlib.contextmanager
    def write(self, stage: str, settings: dict, inputs=(), notes=None) -> Iterator[h5py.File]:
        """Write a stage's part: yields the open file; on success records the
        checkpoint hash, settings, inputs' part ids and timing, then renames
        it into place. ``notes`` (a list) may be appended to in the block."""
        notes = [] if notes is None else notes
        record = dict(stage=stage, checkpoint_sha256=self.sha256, ablation=self.ablation,
                      settings=json.loads(json.dumps(settings)),
                      inputs={d: self.record(d)["part_id"] for d in inputs}, part_id=uuid.uuid4().hex)
        start = time.perf_counter()
        with atomic_path(self._part(stage)) as tmp:
            with h5py.File(tmp, "w") as f:
                yield f
                record.update(seconds=round(time.perf_counter() - start, 3), notes=notes)
                f.attrs["part"] = json.dumps(record)

    def assemble(self, metadata: dict) -> bool:
        """Write the artefact from every consistent stage (temporary file, then
        rename); True, and the parts folder removed, when all are complete."""
        stages = {}
        with atomic_path(self.artefact) as tmp:
            with h5py.File(tmp, "w") as out:
                for stage in STAGES:
                    complete = self.consistent(stage)
                    record = self.record(stage) if complete else None
                    if complete:
                        with h5py.File(record["source"], "r") as src:
                            group = out.create_group(stage)
                            for name in src[record["group"]].keys():
                                src.copy(src[record["group"]][name], group, name)
                    stages[stage] = {k: v for k, v in (record or {}).items()
                                     if k not in ("source", "group", "checkpoint_sha256")}
                    stages[stage]["complete"] = complete
                write_metadata(out, dict(metadata, stages=stages))
        self.assembled = {k: v for k, v in stages.items() if v["complete"]}
        done = all(v["complete"] for v in stages.values())
        if done and self.parts.exists():
            shutil.rmtree(self.parts)
        return done


class _OnDisk(int):
    """The unit whose grating time courses ``UnitData`` reads on access."""

    def __repr__(self):
        return f"<read from the artefact on access: unit {int(self)}>"


class UnitData(collections.UserDict):
    """One unit's dictionary in ``VirtualPhysiology.data``, with the
    original's keys. ``grating_responses`` (n_sf, n_dir, n_tf, 50) is read
    from the file each time it is looked up, never kept in memory."""

    def __init__(self, fields: dict, reader):
        super().__init__(fields)
        self._reader = reader

    def __getitem__(self, key):
        value = super().__getitem__(key)
        return self._reader(int(value)) if isinstance(value, _OnDisk) else value


def _data_prefix(stage: str) -> str | None:
    """The prefix of a stage's per-unit fields in ``VirtualPhysiology.data``
    (``Stage.data_prefix``); None for a stage kept out of ``data`` and for one
    this code does not register (an artefact from code with other probes)."""
    return STAGES[stage].data_prefix if stage in STAGES else None


class VirtualPhysiology:
    """A loaded artefact (keeps the file open; use as a context manager or
    call ``close``).

    Array view: ``array(name, group=None, kept_only=False)`` with ``name`` a
    field (``"OSI"``) or ``"stage/field"`` (needed for the no-feedback rerun:
    ``"nofeedback/plaid_pattern_index"``); ``fields()`` lists them.

    The original's view: ``data[g]`` is the list of group g's units kept by
    the RWA (units silent to white noise are absent, as in the original),
    each a dict with the original's keys (``hidden_unit_index`` = the global
    hidden-unit index, as the original's, plus ``group_unit_index`` within
    the group; ``modulation_ratio`` is False where the fit was rejected, as
    the original's) and ``grating_responses`` read on demand.
    """

    def __init__(self, path):
        self.path = Path(path)
        self.metadata = read_metadata(self.path)
        self._file = h5py.File(self.path, "r", rdcc_nbytes=64 * 2 ** 20)
        model = self.metadata["model"]
        self.frame_shape = tuple(model["frame_shape"])
        self.group_sizes = tuple(int(n) for n in model["group_sizes"])
        self.group_slices = contiguous_slices(self.group_sizes)  # as the probed model's (ProbeableModel.group_slices)
        self.n_units = sum(self.group_sizes)
        self.grid = {k: np.asarray(v) for k, v in self.metadata["grid"].items()}

    @classmethod
    def load(cls, path) -> "VirtualPhysiology":
        if not Path(path).exists():
            raise ArtefactError(f"artefact {path} does not exist: run `bash run.bash MODEL_CHECKPOINT` first")
        return cls(path)

    def close(self) -> None:
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def ablation(self) -> str:
        """The ablation of the model the artefact probed (``none``: as trained)."""
        return self.metadata.get("ablation", "none")

    @property
    def stages(self) -> list[str]:
        """The completed stages."""
        return [s for s, v in self.metadata["stages"].items() if v["complete"]]

    def fields(self) -> list[str]:
        return [f"{s}/{name}" for s in self.stages for name in self._file[s].keys()]

    def _path_of(self, name: str) -> str:
        if "/" in name:
            if name not in self._file:
                raise KeyError(f"{name} is not in {self.path}")
            return name
        # a stage with a data prefix measures another stage's fields again: it is asked for as "stage/name"
        found = [f"{s}/{name}" for s in self.stages if not _data_prefix(s) and name in self._file[s]]
        if len(found) != 1:
            raise KeyError(f"{name} is not in {self.path}" if not found else f"{name} is ambiguous: {found}")
        return found[0]

    def array(self, name: str, group: int | None = None, kept_only: bool = False) -> np.ndarray:
        """A field as an array; ``group`` selects that group's units (per-unit
        fields only), ``kept_only`` the units the RWA kept. ``grating_responses``
        comes whole (4.1 GB at paper size): ``grating_responses(unit)`` reads one unit."""
        dataset = self._file[self._path_of(name)]
        if not dataset.attrs.get("per_unit", False):
            if group is not None or kept_only:
                raise KeyError(f"{name} is not a per-unit field: pass no group or kept_only")
            return read_field(dataset)
        rows = np.zeros(self.n_units, bool)
        rows[self.group_slices[group] if group is not None else slice(None)] = True
        if kept_only:
            rows &= self._kept
        return read_field(dataset, np.flatnonzero(rows) if not rows.all() else ())

    @cached_property
    def _kept(self) -> np.ndarray:
        return read_field(self._file["rwa/kept"])

    def grating_responses(self, unit: int) -> np.ndarray:
        """Time courses of one unit (global index): (n_sf, n_dir, n_tf, 50)."""
        return read_field(self._file[f"gratings/{GRATING_RESPONSES}"], unit)

    @cached_property
    def data(self) -> list[list[UnitData]]:
        if "rwa" not in self.stages:
            raise KeyError(f"{self.path} has no rwa stage, which decides the units in data: rerun the pipeline")
        columns = {}
        for stage in self.stages:
            prefix = _data_prefix(stage)
            if prefix is None:
                continue
            for name, dataset in self._file[stage].items():
                if dataset.attrs.get("per_unit", False) and name not in (GRATING_RESPONSES, "kept"):
                    columns[prefix + name] = read_field(dataset)
        has_time_courses = "gratings" in self.stages
        out = []
        for g, units in enumerate(self.group_slices):
            group = []
            for unit in np.flatnonzero(self._kept[units]) + units.start:
                fields = {"hidden_unit_index": int(unit), "group_unit_index": int(unit - units.start)}
                fields.update((k, v[unit]) for k, v in columns.items())
                if "modulation_ratio" in fields and not np.isfinite(fields["modulation_ratio"]):
                    fields["modulation_ratio"] = False
                if has_time_courses:
                    fields[GRATING_RESPONSES] = _OnDisk(unit)
                group.append(UnitData(fields, self.grating_responses))
            out.append(group)
        return out

    def connectivity(self) -> dict[str, np.ndarray]:
        """What the connectivity analyses need: ``weights`` (E, E) [post, pre]
        among group 1's excitatory ``units`` (E,) and, for those units, the
        Gabor centre and fit and the grating preferences and indices."""
        out = {name: read_field(self._file[f"connectivity/{name}"]) for name in ("weights", "units")}
        for name in ("gabor_x", "gabor_y", "gabor_r", "gabor_params", "preferred_orientation", "OSI", "DSI"):
            with contextlib.suppress(KeyError):
                out[name] = self.array(name)[out["units"]]
        return out
