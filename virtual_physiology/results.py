"""A virtual-physiology artefact as an analysis reads it: the arrays of each
stage, the settings and metadata the pipeline recorded, and the model it
probed, all from the artefact path alone.

    vp = VirtualPhysiology.load("RUN/2000-epochs_model.vphys.h5", needs=("rwa", "gratings"))
    vp.arrays("gratings")["OSI"]      # (n_hidden,) read from the file on first access
    vp.settings("rwa")                # {"n_clips": 20000, ...} as the pipeline ran it
    model = vp.probed_model()         # the recorded checkpoint, hash checked, recorded ablation applied

The artefact records the checkpoint it was made from (path, weights file,
SHA-256 of the weights file) and the ablation of the probed model, so an
analysis never asks for them: ``checked_checkpoint`` finds the weights file
and checks it against the recorded hash (once per file), ``probed_model``
loads it and applies the ablation
(``models.ablation.apply_ablation``). Nothing else loads the model or torch.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import h5py
import numpy as np

from virtual_physiology import ArtefactError, artefact


class StageArrays(Mapping):
    """One stage's fields by name, each read from the file on first access
    and kept. Per-unit fields have the global hidden unit as first axis
    (``VirtualPhysiology.group_slices``); ``grating_responses`` is 4.1 GB at
    paper size: read one unit with ``VirtualPhysiology.grating_responses``."""

    def __init__(self, group: h5py.Group):
        self._group = group
        self._read: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._read:
            self._read[name] = artefact.read_field(self._group[name])
        return self._read[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._group.keys())

    def __len__(self) -> int:
        return len(self._group)

    def per_unit(self, name: str) -> bool:
        """Whether field ``name`` has one row per hidden unit (known without reading it)."""
        return bool(self._group[name].attrs.get("per_unit", False))


class VirtualPhysiology(artefact.VirtualPhysiology):
    """A loaded artefact (``virtual_physiology.artefact.VirtualPhysiology``:
    ``array``, ``data``, ``connectivity``, ...) plus what an analysis needs
    besides: ``arrays(stage)``, ``settings(stage)``, ``checkpoint`` (the record),
    ``checked_checkpoint()`` (the ``models.checkpoint.Checkpoint``) and ``probed_model()``. Keeps the file open: use as a context manager or call
    ``close``."""

    def __init__(self, path):
        super().__init__(path)
        self._stage_arrays: dict[str, StageArrays] = {}
        self._verified: dict[Path, object] = {}  # weights file -> its Checkpoint, once its SHA-256 matched

    @classmethod
    def load(cls, path, needs=()) -> "VirtualPhysiology":
        """Open the artefact at ``path``; every stage in ``needs`` must be
        complete. A missing file, a file that is no artefact or a missing
        stage is a one-line ``ArtefactError`` with the command that fixes it."""
        if not Path(path).exists():
            raise ArtefactError(f"artefact {path} does not exist: make it with bash run.bash MODEL_CHECKPOINT {path}, "
                                "or fix the path")
        vp = cls(path)
        missing = [stage for stage in needs if stage not in vp.stages]
        if missing:
            vp.close()
            raise ArtefactError(f"artefact {path} lacks the stage(s) {', '.join(missing)}: add them with "
                                f"bash run.bash {vp.checkpoint['path']} {path}")
        return vp

    @property
    def checkpoint(self) -> dict:
        """The checkpoint the artefact was made from: ``path`` (as given to the
        pipeline, resolved), ``weights_file``, ``sha256`` of the weights file,
        ``epoch``."""
        return self.metadata["checkpoint"]

    def settings(self, stage: str) -> dict:
        """The settings a completed stage ran with (those that change its result)."""
        if stage not in self.stages:
            raise KeyError(f"{self.path} has no completed {stage} stage (it has {', '.join(self.stages) or 'none'})")
        return self.metadata["stages"][stage]["settings"]

    def arrays(self, stage: str) -> StageArrays:
        """The fields of a completed stage, read lazily (``StageArrays``)."""
        if stage not in self.stages:
            raise KeyError(f"{self.path} has no completed {stage} stage (it has {', '.join(self.stages) or 'none'})")
        if stage not in self._stage_arrays:
            self._stage_arrays[stage] = StageArrays(self._file[stage])
        return self._stage_arrays[stage]

    def weights_file(self) -> Path:
        """Where the recorded weights file is now: beside the artefact (where
        the pipeline puts it by default, so a run folder moved with its
        artefact is found), else at its recorded path; a one-line error when
        neither exists. Not checked against the hash (``checked_checkpoint`` does)."""
        recorded = Path(self.checkpoint["weights_file"])
        for candidate in (self.path.resolve().parent / recorded.name, recorded):
            if candidate.is_file():
                return candidate
        raise ArtefactError(f"the weights file {recorded} that artefact {self.path} was made from is not there: put "
                            f"{recorded.name} beside the artefact, or pass its new path as probed_model(checkpoint=...)")

    def checked_checkpoint(self, checkpoint=None):
        """The checkpoint the artefact was made from (``models.checkpoint.Checkpoint``):
        the recorded weights file (``weights_file``), or ``checkpoint`` (a Checkpoint,
        or a run folder or weights file, when it has moved), checked against the
        recorded SHA-256 once per file. A checkpoint other than the artefact's is a
        one-line ``ArtefactError``; one that cannot be loaded a ``CheckpointError``."""
        from models.checkpoint import Checkpoint  # late import: reading arrays needs no models

        if not isinstance(checkpoint, Checkpoint):
            checkpoint = Checkpoint(self.weights_file() if checkpoint is None else checkpoint,
                                    frame_shape=self.frame_shape)
        weights = checkpoint.weights.resolve()
        if weights not in self._verified:
            if checkpoint.sha256 != self.checkpoint["sha256"]:
                raise ArtefactError(f"artefact {self.path} was made from {self.checkpoint['path']}, not from {weights} "
                                    "(its SHA-256 differs): pass the matching checkpoint or rerun the pipeline")
            self._verified[weights] = checkpoint
        return self._verified[weights]

    def probed_model(self, device="cpu", checkpoint=None):
        """The model the artefact probed: ``checked_checkpoint(checkpoint)``
        loaded on ``device``, with the recorded ablation applied."""
        # late imports: a model needs torch and the model classes, which reading arrays does not
        from models.ablation import apply_ablation

        model = self.checked_checkpoint(checkpoint).load(device)  # a CheckpointError is one line as it is
        return apply_ablation(model, self.ablation)
