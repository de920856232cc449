"""The registry of virtual-physiology probes ("stages"): what each measures,
the stages it reads, the options it takes, how it runs and what it writes.

``STAGES`` maps each name to its ``Stage`` in registration order, which is
the order the pipeline runs them in (a stage is registered after the stages
it needs). Everything else reads this registry: the pipeline
(``virtual_physiology/pipeline.py``: run order, records, ``Options`` and the
command line, ``--stage``), the artefact (``virtual_physiology/artefact.py``:
its HDF5 groups and the ``data`` view), the ``run_<stage>.py`` entry points,
``run.bash`` and ``benchmarks/bench_vphys.py``.

Adding a probe is one ``register(Stage(...))`` call here (see ``Stage``;
tests/test_vphys_registry.py registers an example in a few lines); then a
``virtual_physiology/run_<name>.py`` copied from ``run_rwa.py`` with the name
changed gives it its own command, and its name goes into run.bash's stage
line (tests/test_vphys_registry.py checks that the three agree).
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import h5py
import numpy as np

from models.ablation import ABLATION_SPECS, without_feedback
from utils import MAX_SEED
from virtual_physiology import ProbeError, gabor, modulation, plaid, rwa, surround, tuning
from virtual_physiology.connectivity import excitatory_weights, has_recurrent_weights
from virtual_physiology.fields import PROBED, GratingResponseWriter, check_free_space, create_field, write_per_unit

if TYPE_CHECKING:
    from virtual_physiology.pipeline import Pipeline


@dataclass(frozen=True)
class Setting:
    """One option: ``Options.<name>`` in Python, ``--<name with dashes>`` on
    the command line, with ``reason`` as its help.

    ``default`` decides the kind: an int or str takes a value (``choices``
    limit it, ``minimum`` and ``maximum`` bound an int, ``metavar`` names it in
    the help; the pipeline checks every value before any stage runs); a
    bool is a switch (``--no-<name>`` turns a True default off, ``--<name>``
    turns a False one on); a None default is an optional str whose
    command-line word ``none`` means None.
    """
    name: str
    default: object
    reason: str
    choices: tuple = ()
    minimum: int | None = None
    maximum: int | None = None
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class Stage:
    """One probe of a model.

    - ``name``: the HDF5 group, the part file and the ``run_<name>.py`` name
      (lower case letters, digits, ``_``);
    - ``summary``: what it measures, one line (``--help`` lists it);
    - ``run(pipeline, out, notes)``: probes ``pipeline.model`` with
      ``pipeline.options``, reads earlier stages with
      ``pipeline.store.load(stage, *fields)`` and writes its fields into the
      open HDF5 group ``out`` (``write_per_unit`` for per-unit arrays);
      ``notes`` (a list of str) go into its record. Writing nothing is a
      skip (a model without what it probes), to be said in ``notes``;
    - ``writes``: every field it writes -> its shape, e.g.
      ``"(n_hidden, n_pixels)"`` (first axis ``n_hidden``: per unit, the
      global hidden-unit index); the pipeline refuses a result whose fields
      or numbers of axes differ;
    - ``needs``: the stages it reads (each registered before it); they run
      first when missing, and a rerun of any of them makes this one stale;
    - ``settings``: the options (``Setting`` objects) it reads; a setting
      shared by stages is the same object in each;
    - ``recorded(pipeline) -> dict``: what its result depends on, stored in
      its record; a stored result whose record differs is stale and reruns.
      None records the value of each of its ``settings`` under its name;
    - ``quirks``: behaviour of the original reproduced on purpose (written
      into the artefact's metadata);
    - ``measured``: the fields that hold the model's own responses (or
      weights), not statistics computed from them. Before a stage is stored,
      every value of these fields in the rows of the units it probed must be
      finite (``check_written``): NaN or inf there means the weights are
      corrupt or the model diverged. The rule for the rest: rows of units a
      stage did not probe hold the fill value (NaN), and statistics may be NaN
      or inf where their formula is undefined (the OSI of a silent unit is
      0/0, a partial correlation of 1 has Fisher z = inf, the RWA of a unit
      with no response is 0/0), so they are not judged; their inputs are;
    - ``data_prefix``: its per-unit fields appear in
      ``VirtualPhysiology.data`` under this prefix; None keeps them out. A
      stage with a prefix measures another stage's fields again, so
      ``array(name)`` finds them only as ``"<stage>/<name>"``.
    """
    name: str
    summary: str
    run: Callable[["Pipeline", h5py.Group, list], None]
    writes: dict[str, str]
    needs: tuple[str, ...] = ()
    settings: tuple[Setting, ...] = ()
    recorded: Callable[["Pipeline"], dict] | None = None
    quirks: tuple[str, ...] = ()
    data_prefix: str | None = ""
    measured: tuple[str, ...] = ()

    def record_of(self, pipeline: "Pipeline") -> dict:
        """The values stored in this stage's record (``recorded``)."""
        if self.recorded is not None:
            return self.recorded(pipeline)
        return {s.name: getattr(pipeline.options, s.name) for s in self.settings}

    def check_written(self, group: h5py.Group) -> None:
        """ValueError unless ``group`` holds exactly the declared fields, each
        with the declared number of axes (or nothing: a skipped stage)."""
        written = {name: group[name].ndim for name in group.keys()}
        if not written:
            return
        declared = {name: _axes(shape) for name, shape in self.writes.items()}
        problems = [f"{what} {names}" for what, names in (
            ("wrote undeclared fields", sorted(set(written) - set(declared))),
            ("left out the declared fields", sorted(set(declared) - set(written))),
            ("gave another number of axes than declared to",
             sorted(n for n in set(written) & set(declared) if written[n] != declared[n]))) if names]
        unchecked = sorted(n for n in group if group[n].ndim and group[n].size and not group[n].fletcher32)
        if unchecked:
            problems.append(f"wrote without a checksum {unchecked}")
        if problems:
            raise ValueError(f"stage {self.name} {'; '.join(problems)}: make its Stage.writes match what it writes, "
                             "and write with fields.write_per_unit or fields.create_field")
        for name in self.measured:
            if name in group:
                self._check_finite(group[name])

    def _check_finite(self, dataset: h5py.Dataset) -> None:
        """NonFiniteResults unless every value in the probed rows (``fields.PROBED``) is finite."""
        probed = dataset.attrs.get(PROBED)
        units = np.flatnonzero(probed) if probed is not None else np.arange(dataset.shape[0] if dataset.ndim else 1)
        values = dataset[()] if dataset.ndim else np.asarray([dataset[()]])
        bad = ~np.isfinite(values[units].astype(np.float64))
        if bad.any():
            per_unit = bad.reshape(len(units), -1).any(axis=1)
            n_bad = int(bad.sum())
            raise NonFiniteResults(
                f"stage {self.name}: {dataset.name.rsplit('/', 1)[-1]} holds {n_bad} non-finite value"
                f"{'s' * (n_bad > 1)} for the {len(units)} units it probed (first: unit {units[per_unit][0]}): the "
                "model's responses are NaN or infinite, so its weights are corrupt or it diverged")


class NonFiniteResults(ProbeError):
    """A stage's measured responses hold NaN or inf for a unit it probed (``Stage.measured``)."""


def _axes(shape: str) -> int:
    """The number of axes of a shape written ``"(n_hidden, 8)"``, ``"(n_hidden,)"`` or ``"()"``."""
    return len([axis for axis in shape.strip().strip("()").split(",") if axis.strip()])


STAGES: dict[str, Stage] = {}
_NAME = re.compile(r"[a-z][a-z0-9_]*")

# Settings of the pipeline as a whole, read by every stage.
ABLATION = Setting("ablation", "none", f"probe an ablated copy of the model: {ABLATION_SPECS}", metavar="SPEC")
PROGRESS = Setting("progress", True, "show progress bars")
PIPELINE_SETTINGS = (ABLATION, PROGRESS)


def all_settings() -> dict[str, Setting]:
    """Every setting by name: the pipeline's, then each registered stage's, in order."""
    out = {s.name: s for s in PIPELINE_SETTINGS}
    for stage in STAGES.values():
        out.update((s.name, s) for s in stage.settings if s.name not in out)
    return out


def register(stage: Stage) -> Stage:
    """Add ``stage`` to ``STAGES`` after the stages registered so far (the run
    order). ValueError for a bad or taken name, a need that is not yet
    registered, a setting whose name another setting already has, or no
    declared fields."""
    if not _NAME.fullmatch(stage.name):
        raise ValueError(f"stage name {stage.name!r} must be lower case letters, digits and _, starting with a letter")
    if stage.name in STAGES:
        raise ValueError(f"a stage named {stage.name} is already registered: choose another name")
    unknown = [need for need in stage.needs if need not in STAGES]
    if unknown:
        raise ValueError(f"stage {stage.name} needs {unknown}, which are not registered: register them first")
    known = all_settings()
    for setting in stage.settings:
        if known.get(setting.name, setting) != setting:
            raise ValueError(f"stage {stage.name}'s setting {setting.name} differs from the registered one of that "
                             "name: reuse that Setting object or choose another name")
    if not stage.writes:
        raise ValueError(f"stage {stage.name} declares no fields: list what it writes in Stage.writes")
    STAGES[stage.name] = stage
    return stage


def with_needs(names) -> list[str]:
    """``names`` and every stage they need, directly or not, in run order."""
    wanted, pending = set(), list(names)
    while pending:
        name = pending.pop()
        if name not in wanted:
            wanted.add(name)
            pending.extend(STAGES[name].needs)
    return [name for name in STAGES if name in wanted]


def kept_units(pipeline: "Pipeline", groups=None) -> np.ndarray:
    """Global indices of the units the RWA kept, optionally in some groups
    only (indices into ``model.group_slices``); reads the ``rwa`` stage."""
    kept = pipeline.store.load("rwa", "kept")["kept"].copy()
    if groups is not None:
        in_groups = np.zeros_like(kept)
        for g in groups:
            in_groups[pipeline.model.group_slices[g]] = True
        kept &= in_groups
    return np.flatnonzero(kept)


# ----- the built-in stages ----------------------------------------------------------
RWA_FRAMES = 54
GRATING_FRAMES = 50
SEED = Setting("seed", 0, "seed of the noise and of the fits", minimum=0, maximum=MAX_SEED)
BATCH_SIZE = Setting("batch_size", 256, "grating and plaid clips per forward pass", minimum=1)
SURROUND_BATCH = Setting("surround_batch", 250, "(unit, radius) aperture clips per forward pass", minimum=1)


def _run_rwa(pipeline: "Pipeline", out, notes) -> None:
    o = pipeline.options
    result = rwa.response_weighted_average(pipeline.model, n_clips=o.rwa_clips, n_frames=RWA_FRAMES,
                                           chunk_clips=o.rwa_chunk, seed=o.seed, progress=o.progress)
    write_per_unit(out, dict(response_weighted_average=result["rwa"], rwa_total_response=result["total_response"],
                             kept=result["kept"]), pipeline.n_units)
    notes.append(f"kept per group: {[int(result['kept'][s].sum()) for s in pipeline.model.group_slices]}")


# The lags (rwa) and the fitter's shortest wavelength (gabor) in the records mark results
# from before the RWA lagged every kind's group g by g frames and the Gabor fitter reached
# 2 px: records without them differ, so those results rerun.
register(Stage(
    name="rwa", summary="response-weighted averages from white noise; decides the units kept",
    run=_run_rwa,
    writes=dict(response_weighted_average="(n_hidden, n_pixels)", rwa_total_response="(n_hidden,)",
                kept="(n_hidden,)"),
    settings=(Setting("rwa_clips", 20000, "white-noise clips for the RWA", minimum=1),
              Setting("rwa_chunk", 250, "RWA clips per forward pass", minimum=1), SEED),
    recorded=lambda p: dict(n_clips=p.options.rwa_clips, n_frames=RWA_FRAMES, seed=p.options.seed,
                            lags=list(p.model.group_lags)),
    measured=("rwa_total_response",),  # the RWA itself is NaN (0/0) for a unit with no response
    quirks=("RWA: lag = group index, lagged pairs cross clip boundaries, warm-up frames included; units with zero "
            "summed response are dropped from data",)))


def _run_gabor(pipeline: "Pipeline", out, notes) -> None:
    o = pipeline.options
    units = kept_units(pipeline, groups=[0])
    fields = pipeline.store.load("rwa", "response_weighted_average")["response_weighted_average"][units]
    fits = gabor.fit_gabors(fields, pipeline.model.frame_shape, n_starts=o.gabor_starts, steps=o.gabor_steps,
                            seed=o.seed, device=pipeline.model.device, progress=o.progress)
    write_per_unit(out, fits, pipeline.n_units, units)


register(Stage(
    name="gabor", summary="Gabor fits of group 1's kept RWAs (the original fits group 1 only)",
    run=_run_gabor, needs=("rwa",),
    writes=dict(gabor_params="(n_hidden, 8)", gabor_loss="(n_hidden,)", gabor_r="(n_hidden,)",
                gabor_x="(n_hidden,)", gabor_y="(n_hidden,)", frequency="(n_hidden,)", sigma_x="(n_hidden,)",
                sigma_y="(n_hidden,)", strict_gabor="(n_hidden,)"),
    settings=(Setting("gabor_starts", 4, "Gabor fit starts per unit", minimum=1),
              Setting("gabor_steps", 300, "Gabor fit Adam steps", minimum=1), SEED),
    recorded=lambda p: dict(groups=[0], n_starts=p.options.gabor_starts, steps=p.options.gabor_steps,
                            seed=p.options.seed, min_wavelength=gabor.MIN_WAVELENGTH)))


def _preferred_index(preferred: dict) -> np.ndarray:
    """(n, 3) grid indices (sf, direction, tf) from ``tuning.preferred_parameters``."""
    return np.stack([preferred["sf_index"], preferred["direction_index"], preferred["tf_index"]], axis=1)


def _run_gratings(pipeline: "Pipeline", out, notes) -> None:
    o, grid = pipeline.options, pipeline.grid
    grid_shape = tuple(len(grid[k]) for k in ("sf", "directions", "tf"))
    check_free_space(Path(out.file.filename).parent,
                     4 * pipeline.n_units * int(np.prod(grid_shape)) * GRATING_FRAMES, "the grating time courses")
    writer = GratingResponseWriter(out, pipeline.n_units, grid_shape, GRATING_FRAMES, o.compression)
    sweep = tuning.grating_sweep(pipeline.model, grid, warmup=plaid.WARMUP, n_frames=GRATING_FRAMES,
                                 batch_size=o.batch_size, sink=writer, progress=o.progress)
    writer.close()
    mean = sweep["mean_responses"]
    preferred = tuning.preferred_parameters(mean, grid)
    index = _preferred_index(preferred)
    fields = dict(mean_grating_responses=mean, preferred_index=index,
                  preferred_orientation=preferred["preferred_direction"],  # the original's name
                  **preferred, **tuning.orientation_direction_indices(mean, preferred),
                  **tuning.global_orientation_direction_indices(mean, preferred))
    fields["optimum_grating_response"] = np.stack([writer.dataset[u, s, d, t] for u, (s, d, t) in enumerate(index)])
    write_per_unit(out, fields, pipeline.n_units)


register(Stage(
    name="gratings",
    summary="the full grating sweep (time courses kept), preferred sf/direction/tf, OSI, DSI (peak-based and "
            "vector-sum), optimum time course",
    run=_run_gratings,
    writes=dict(grating_responses=f"(n_hidden, n_sf, n_dir, n_tf, {GRATING_FRAMES})",
                mean_grating_responses="(n_hidden, n_sf, n_dir, n_tf)", max_mean_grating_response="(n_hidden,)",
                optimum_grating_response=f"(n_hidden, {GRATING_FRAMES})", preferred_index="(n_hidden, 3)",
                preferred_sf="(n_hidden,)", preferred_direction="(n_hidden,)", preferred_tf="(n_hidden,)",
                preferred_orientation="(n_hidden,)", sf_index="(n_hidden,)", direction_index="(n_hidden,)",
                tf_index="(n_hidden,)", OSI="(n_hidden,)", DSI="(n_hidden,)", global_OSI="(n_hidden,)",
                global_DSI="(n_hidden,)"),
    settings=(BATCH_SIZE, Setting("compression", None, "compression of the grating time courses; none is fastest",
                                  choices=("none", "lzf", "gzip"))),
    recorded=lambda p: dict(n_frames=GRATING_FRAMES, warmup=plaid.WARMUP, compression=p.options.compression),
    # the time courses are judged by their means (any NaN or inf in them makes its mean non-finite),
    # which costs no second pass over 4 GB
    measured=("mean_grating_responses", "optimum_grating_response", "max_mean_grating_response"),
    quirks=("OSI/DSI/preferred parameters use the first argmax",)))

# modulation.modulation_ratio_vphys's fields under the original's names
_VPHYS_MODULATION_NAMES = dict(modulation_ratio="modulation_ratio", MR_all="modulation_ratio_all",
                               cc="modulation_ratio_cc", R2="modulation_ratio_rsq", loss="modulation_ratio_loss",
                               params="modulation_ratio_params")


def _run_modulation(pipeline: "Pipeline", out, notes) -> None:
    o = pipeline.options
    units = kept_units(pipeline)
    optimum = pipeline.store.load("gratings", "optimum_grating_response")["optimum_grating_response"][units]
    vphys = modulation.modulation_ratio_vphys(optimum, seed=o.seed, progress=o.progress)
    fields = {_VPHYS_MODULATION_NAMES.get(k, f"modulation_ratio_{k}"): v for k, v in vphys.items()}
    a, b, c, d = vphys["params"].T[..., None]
    fields["modulation_ratio_y"] = a * np.sin(b * np.arange(4.0, 50.0) + c) + d  # the fitted sine, as stored
    fields.update({"modulation_ratio_curve_fit" if k == "F1F0" else f"modulation_ratio_curve_fit_{k}": v
                   for k, v in modulation.modulation_ratio_curve_fit(optimum, o.progress).items()})
    write_per_unit(out, fields, pipeline.n_units, units)


register(Stage(
    name="modulation", summary="modulation ratio, the vphys variant and the notebook's",
    run=_run_modulation, needs=("rwa", "gratings"),
    writes=dict(modulation_ratio="(n_hidden,)", modulation_ratio_all="(n_hidden,)", modulation_ratio_F0="(n_hidden,)",
                modulation_ratio_F1="(n_hidden,)", modulation_ratio_accepted="(n_hidden,)",
                modulation_ratio_cc="(n_hidden,)", modulation_ratio_rsq="(n_hidden,)",
                modulation_ratio_loss="(n_hidden,)", modulation_ratio_params="(n_hidden, 4)",
                modulation_ratio_y="(n_hidden, 46)", modulation_ratio_curve_fit="(n_hidden,)",
                modulation_ratio_curve_fit_cc="(n_hidden,)", modulation_ratio_curve_fit_keep="(n_hidden,)",
                modulation_ratio_curve_fit_params="(n_hidden, 4)"),
    settings=(SEED,), recorded=lambda p: dict(seed=p.options.seed),
    quirks=("modulation ratio: both the vphys random-search variant and the notebook curve_fit variant, seeded",)))

_PLAID_FIELDS = dict(plaid_pattern_index="(n_hidden,)", plaid_zp="(n_hidden,)", plaid_zc="(n_hidden,)",
                     plaid_rp="(n_hidden,)", plaid_rc="(n_hidden,)", plaid_response="(n_hidden, 12)",
                     pattern_prediction="(n_hidden, 12)", response_by_angle="(n_hidden, n_angles, 12)",
                     rp_by_angle="(n_hidden, n_angles)", rc_by_angle="(n_hidden, n_angles)",
                     zp_by_angle="(n_hidden, n_angles)", zc_by_angle="(n_hidden, n_angles)")
_SURROUND_FIELDS = dict(size_tuning_curve="(n_hidden, n_radii)", surround_suppression_index="(n_hidden,)",
                        preferred_size="(n_hidden,)")
_PLAID_RESPONSES = ("plaid_response", "response_by_angle")
_SURROUND_RESPONSES = ("size_tuning_curve",)


def _plaid_fields(pipeline: "Pipeline", model, tuning_fields: dict) -> tuple[np.ndarray, dict]:
    """Pattern index of every kept unit of ``model`` from ``tuning_fields``
    (``mean_grating_responses``, ``preferred_index`` over all units)."""
    units = kept_units(pipeline)
    return units, plaid.plaid_pattern_index(
        model, units, tuning_fields["mean_grating_responses"][units], tuning_fields["preferred_index"][units],
        pipeline.grid, batch_size=pipeline.options.batch_size, progress=pipeline.options.progress)


def _run_plaid(pipeline: "Pipeline", out, notes) -> None:
    tuning_fields = pipeline.store.load("gratings", "mean_grating_responses", "preferred_index")
    units, fields = _plaid_fields(pipeline, pipeline.model, tuning_fields)
    write_per_unit(out, fields, pipeline.n_units, units)


register(Stage(
    name="plaid", summary="plaid pattern index of every kept unit",
    run=_run_plaid, needs=("rwa", "gratings"), writes=_PLAID_FIELDS, settings=(BATCH_SIZE,),
    measured=_PLAID_RESPONSES,
    recorded=lambda p: dict(angles=list(plaid.PLAID_ANGLES), n_frames=plaid.PLAID_FRAMES),
    quirks=("plaid: shift int((A/2)/30), components z-scored separately and summed without renormalising, 50 frames; "
            "plaid_rp, plaid_rc and plaid_response are for A = 150 only, every angle is in *_by_angle",)))


def _surround_fields(pipeline: "Pipeline", model) -> tuple[np.ndarray, dict]:
    """Size tuning of group 1's kept units of ``model``, probed at the full
    model's preferences and Gabor centres."""
    grid = pipeline.grid
    units = kept_units(pipeline, groups=[0])
    index = pipeline.store.load("gratings", "preferred_index")["preferred_index"][units]
    centres = pipeline.store.load("gabor", "gabor_x", "gabor_y")
    curves = surround.size_tuning_curves(
        model, units, grid["sf"][index[:, 0]], grid["directions"][index[:, 1]], grid["tf"][index[:, 2]],
        centres["gabor_x"][units], centres["gabor_y"][units], batch_size=pipeline.options.surround_batch,
        progress=pipeline.options.progress)
    return units, dict(size_tuning_curve=curves, **surround.suppression_index(curves))


def _run_surround(pipeline: "Pipeline", out, notes) -> None:
    units, fields = _surround_fields(pipeline, pipeline.model)
    write_per_unit(out, fields, pipeline.n_units, units)


register(Stage(
    name="surround", summary="size tuning and surround suppression of group 1's kept units",
    run=_run_surround, needs=("rwa", "gabor", "gratings"), writes=_SURROUND_FIELDS, settings=(SURROUND_BATCH,),
    measured=_SURROUND_RESPONSES,
    recorded=lambda p: dict(groups=[0], radii=surround.APERTURE_RADII.tolist(), n_frames=surround.SURROUND_FRAMES,
                            amplitude=surround.GRATING_AMPLITUDE),
    quirks=("surround: aperture RADIUS 2..38 px centred at (gabor_x - 0.5, gabor_y - 0.5), un-normalised grating of "
            "amplitude 2, mean of the last 4 of 100 frames, group 1 only",)))


def _run_nofeedback(pipeline: "Pipeline", out, notes) -> None:
    model, o = pipeline.model, pipeline.options
    if not model.supports_feedback_ablation:
        notes.append(f"skipped: {type(model).__name__} has no feedback connections to remove")
        print(f"[nofeedback] skipped: {type(model).__name__} has no feedback connections", file=sys.stderr)
        return
    ablated = without_feedback(model)
    if o.nofeedback_tuning == "full":
        notes.append("plaid predictions and preferences are the FULL model's tuning, as the original")
        tuning_fields = pipeline.store.load("gratings", "mean_grating_responses", "preferred_index")
    else:
        notes.append("plaid predictions and preferences come from a grating sweep of the ablated model")
        mean = tuning.grating_sweep(ablated, pipeline.grid, warmup=plaid.WARMUP, n_frames=GRATING_FRAMES,
                                   batch_size=o.batch_size, progress=o.progress)["mean_responses"]
        tuning_fields = dict(mean_grating_responses=mean,
                             preferred_index=_preferred_index(tuning.preferred_parameters(mean, pipeline.grid)))
    notes.append("surround stimuli use the full model's preferences and Gabor centres (as the notebook)")
    for units, fields in (_plaid_fields(pipeline, ablated, tuning_fields), _surround_fields(pipeline, ablated)):
        write_per_unit(out, fields, pipeline.n_units, units)


register(Stage(
    name="nofeedback",
    summary="plaid and surround again on the model without feedback, from the full model's tuning and RF centres "
            "(docs/faithfulness.md, \"No-feedback plaids use the full model's tuning\"); skipped, and recorded so, "
            "for a model without feedback",
    run=_run_nofeedback, needs=("rwa", "gabor", "gratings"), writes=dict(_PLAID_FIELDS, **_SURROUND_FIELDS),
    measured=_PLAID_RESPONSES + _SURROUND_RESPONSES,
    settings=(Setting("nofeedback_tuning", "full", "tuning for the no-feedback plaids: the full model's (the "
                      "original) or a new sweep", choices=("full", "ablated")), BATCH_SIZE, SURROUND_BATCH),
    recorded=lambda p: dict(tuning_from=p.options.nofeedback_tuning, angles=list(plaid.PLAID_ANGLES),
                            radii=surround.APERTURE_RADII.tolist()),
    data_prefix="nofeedback_"))


def _run_connectivity(pipeline: "Pipeline", out, notes) -> None:
    if not has_recurrent_weights(pipeline.model):
        notes.append(f"skipped: {type(pipeline.model).__name__} has no recurrent weight matrix")
        return
    for name, values in excitatory_weights(pipeline.model, group=0).items():
        create_field(out, name, data=values)


register(Stage(
    name="connectivity", summary="group 1's excitatory recurrent weights",
    run=_run_connectivity,
    writes=dict(weights="(n_excitatory, n_excitatory)", units="(n_excitatory,)"), measured=("weights",),
    recorded=lambda p: dict(groups=[0]), data_prefix=None))
