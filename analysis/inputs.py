"""An analysis's inputs from the virtual-physiology artefact alone
(``virtual_physiology.results.VirtualPhysiology``): the per-unit tables of
each group, and, only for the analyses that probe the model again,
``VirtualPhysiology.probed_model()``."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from analysis.plotting import group_label
from virtual_physiology.artefact import GRATING_RESPONSES
from virtual_physiology.results import VirtualPhysiology
from virtual_physiology.tuning import global_orientation_direction_indices


@dataclass
class Inputs:
    """An artefact with its unit tables: ``units[g]`` maps field names to
    arrays over group g's units kept by the RWA (``hidden_unit_index`` =
    global column)."""

    artefact: VirtualPhysiology
    units: list[dict[str, np.ndarray]]
    source: str  # the artefact path as the caller gave it, for summaries

    @property
    def group_labels(self) -> list[str]:
        """"G1", "G2", ... (``plotting.group_label``), one per group."""
        return [group_label(g) for g in range(len(self.units))]

    def summary(self) -> dict:
        """The start of a notebook's JSON summary: which artefact, checkpoint and ablation."""
        vp = self.artefact
        return {"artefact": self.source, "checkpoint": vp.checkpoint["path"], "ablation": vp.ablation}

    def describe(self) -> str:
        """One line for a notebook's first output: what was probed and how many units each group keeps."""
        vp = self.artefact
        return (f"{self.source} of {vp.checkpoint['path']} (ablation: {vp.ablation}): frame {vp.frame_shape}, groups "
                f"{vp.group_sizes}, units kept by the RWA {[len(t['hidden_unit_index']) for t in self.units]}")


def figure_folder(output_dir) -> Path:
    """The notebook's output folder, created if needed."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    return out


def unit_table(vp: VirtualPhysiology, group: int) -> dict[str, np.ndarray]:
    """Every per-unit field of the artefact over group ``group``'s units kept by
    the RWA, under its own name (the no-feedback rerun's as
    ``nofeedback_<name>``), plus ``hidden_unit_index`` (global column) and,
    when the grating stage is there, ``preferred_index`` (n, 3) grid indices
    (sf, direction, tf), ``preferred_direction`` in degrees and the vector-sum
    ``global_OSI``/``global_DSI`` (derived from the stored tuning curves for
    artefacts that predate them). Without the
    rwa stage every unit of the group is in the table."""
    columns = np.arange(vp.n_units)[vp.group_slices[group]]
    if "rwa" in vp.stages:
        columns = columns[vp.arrays("rwa")["kept"][columns].astype(bool)]
    table = {"hidden_unit_index": columns}
    for stage in vp.stages:
        arrays = vp.arrays(stage)
        for name in arrays:
            key = f"nofeedback_{name}" if stage == "nofeedback" else name
            if name in ("kept", GRATING_RESPONSES) or key in table or not arrays.per_unit(name):
                continue
            table[key] = arrays[name][columns]
    if "preferred_direction" not in table and "preferred_orientation" in table:
        table["preferred_direction"] = table["preferred_orientation"]
    if "preferred_index" not in table and "preferred_sf" in table:
        table["preferred_index"] = preferred_index(table, vp.grid)
    if "global_OSI" not in table and "mean_grating_responses" in table:  # artefacts made before the gratings stage wrote them
        index = table["preferred_index"]
        table.update(global_orientation_direction_indices(
            table["mean_grating_responses"], dict(sf_index=index[:, 0], tf_index=index[:, 2])))
    return table


def load_inputs(artefact, needs) -> Inputs:
    """The artefact, which must hold every stage in ``needs`` (else a one-line
    error names the missing stages and the command that adds them:
    ``VirtualPhysiology.load``), and its unit tables. Loads no model."""
    vp = VirtualPhysiology.load(artefact, needs=needs)
    return Inputs(vp, [unit_table(vp, g) for g in range(len(vp.group_sizes))], str(artefact))


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
