"""Load a checkpoint and its virtual-physiology artefact for an analysis, and
check that they belong together (the artefact records the SHA-256 of the
weights file it was made from)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.io import latest_weights, load_model
from utils import UserInputError
from virtual_physiology.artefact import GRATING_RESPONSES, STAGES, VirtualPhysiology


@dataclass
class Inputs:
    """A model with its artefact: ``units[g]`` maps field names to arrays over
    group g's units kept by the RWA (``hidden_unit_index`` = global column)."""

    model: object
    config: dict
    artefact: VirtualPhysiology | None
    units: list[dict[str, np.ndarray]]


def weights_file(checkpoint) -> Path:
    """The weights file a checkpoint path (run folder or file) refers to."""
    path = Path(checkpoint)
    if not path.exists():
        raise UserInputError(f"checkpoint {path} does not exist: pass a run folder or a weights file")
    return latest_weights(path) if path.is_dir() else path


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_artefact(artefact, checkpoint=None) -> VirtualPhysiology:
    """Open an artefact; with ``checkpoint``, refuse one made from other weights."""
    if artefact is None or not Path(artefact).exists():
        command = f"bash run.bash {checkpoint} {artefact}" if checkpoint is not None else "bash run.bash CHECKPOINT"
        raise UserInputError(f"artefact {artefact} does not exist: make it with {command}, or fix the path")
    vp = VirtualPhysiology.load(artefact)
    if checkpoint is not None:
        recorded = vp.metadata.get("checkpoint", {}).get("sha256")
        if recorded != file_sha256(weights_file(checkpoint)):
            source = vp.metadata.get("checkpoint", {}).get("path", "another checkpoint")
            vp.close()
            raise UserInputError(f"artefact {artefact} was made from {source}, not from {checkpoint}: "
                                 "pass the matching checkpoint or rerun the pipeline")
    return vp


def unit_table(vp: VirtualPhysiology, group: int) -> dict[str, np.ndarray]:
    """Every per-unit field of the artefact over group ``group``'s units kept by
    the RWA, under its own name (the no-feedback rerun's as
    ``nofeedback_<name>``), plus ``hidden_unit_index`` (global column) and,
    when the grating stage is there, ``preferred_index`` (n, 3) grid indices
    (sf, direction, tf) and ``preferred_direction`` in degrees."""
    kept = "rwa" in vp.stages
    columns = np.arange(vp.n_units)[vp.group_slices[group]]
    if kept:
        columns = columns[vp.array("rwa/kept", group=group).astype(bool)]
    table = {"hidden_unit_index": columns}
    for path in vp.fields():
        stage, name = path.split("/", 1)
        key = f"nofeedback_{name}" if stage == "nofeedback" else name
        if name in ("kept", GRATING_RESPONSES) or key in table:
            continue
        try:
            table[key] = vp.array(path, group=group, kept_only=kept)
        except KeyError:  # not a per-unit field (e.g. connectivity weights)
            pass
    if "preferred_direction" not in table and "preferred_orientation" in table:
        table["preferred_direction"] = table["preferred_orientation"]
    if "preferred_index" not in table and "preferred_sf" in table:
        table["preferred_index"] = preferred_index(table, vp.grid)
    return table


def load_inputs(checkpoint, artefact=None, device="cpu", needs=STAGES) -> Inputs:
    """Checkpoint (required) and artefact (optional), checked to match; the artefact
    must hold every stage in ``needs`` (default: all), else a one-line error names
    the missing stages and the command that adds them."""
    weights_file(checkpoint)
    vp = load_artefact(artefact, checkpoint) if artefact is not None else None
    missing = [s for s in needs if vp is not None and s not in vp.stages]
    if missing:
        vp.close()
        raise UserInputError(f"artefact {artefact} lacks the stage(s) {', '.join(missing)}: add them with "
                             f"bash run.bash {checkpoint} {artefact}")
    model, config, _ = load_model(checkpoint, device=device)
    units = [unit_table(vp, g) for g in range(len(vp.group_sizes))] if vp is not None else []
    return Inputs(model, config, vp, units)


def grid_index(values, grid_values) -> np.ndarray:
    """Index of the nearest grid value for each of ``values`` (-1 for nan)."""
    values = np.asarray(values, float)
    grid_values = np.asarray(grid_values, float)
    index = np.abs(values[..., None] - grid_values).argmin(-1)
    return np.where(np.isfinite(values), index, -1)


def preferred_index(table: dict, grid: dict) -> np.ndarray:
    """(n, 3) grid indices (sf, direction, tf) of each unit's preferred grating."""
    if all(k in table for k in ("sf_index", "direction_index", "tf_index")):
        return np.stack([table["sf_index"], table["direction_index"], table["tf_index"]], axis=1).astype(int)
    return np.stack([grid_index(table["preferred_sf"], grid["sf"]),
                     grid_index(table["preferred_direction"], grid["directions"]),
                     grid_index(table["preferred_tf"], grid["tf"])], axis=1)
