"""Every virtual-physiology stage on one checkpoint, into one artefact.

    bash run.bash MODEL_CHECKPOINT [ARTEFACT_PATH] [--force] [--device cpu] [--rwa-clips 20000] ...
    python -m virtual_physiology.pipeline MODEL_CHECKPOINT [ARTEFACT_PATH] ...   # the same
    python virtual_physiology/run_<stage>.py MODEL_CHECKPOINT [ARTEFACT_PATH]     # one stage

Stages, in order:
- ``rwa``: response-weighted averages from white noise; decides the units kept;
- ``gabor``: Gabor fits of group 1's kept RWAs (the original fits group 1 only);
- ``gratings``: the full grating sweep (time courses streamed to the artefact),
  preferred sf/direction/tf, OSI, DSI, optimum time course;
- ``modulation``: modulation ratio, the vphys variant and the notebook's;
- ``plaid``: plaid pattern index of every kept unit;
- ``surround``: size tuning and surround suppression of group 1's kept units;
- ``nofeedback``: plaid and surround again on the model without feedback,
  from the full model's tuning and RF centres (docs/faithfulness.md,
  "No-feedback plaids use the full model's tuning"; flagged in the metadata); skipped, and recorded so, for a model without feedback;
- ``connectivity``: group 1's excitatory recurrent weights.

``--ablation SPEC`` (``models.ablation.ABLATION_SPECS``) probes an ablated
copy of the model in every stage: ``no-feedback`` zeroes the feedback blocks,
``shuffle-feedback:FRACTION[:SEED]`` shuffles that fraction (0-1) of each
feedback block's weights. A feedback ablation of a model without feedback is
a one-line error. The spec is recorded in the artefact's metadata and in
every stage's record, and is part of the default artefact name; the analysis
notebooks read it from there and probe the same ablated model.

The artefact defaults to ``<checkpoint folder>/<weights file stem>.vphys.h5``,
``<stem>.vphys.<ablation>.h5`` for an ablated model (``:`` written ``_``). A
stage whose result exists for the same checkpoint, ablation and settings is
reused (``--force`` recomputes); a single-stage script also runs the stages
it needs that are missing. Bad input (missing or corrupt checkpoint, an artefact made
from another checkpoint or with another ablation, a bad or unsupported
``--ablation``) is a one-line error with exit status 2 and writes nothing.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import fcntl
import hashlib
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np
import scipy
import torch

from models.ablation import ABLATION_SPECS, apply_ablation, without_feedback
from models.io import latest_weights, load_model
from utils import UserInputError, os_error_reason, resolve_device, run_cli
from virtual_physiology import gabor, modulation, plaid, rwa, stimuli, surround, tuning
from virtual_physiology.artefact import (FORMAT, FORMAT_VERSION, STAGES, GratingResponseWriter, StageStore,
                                         write_per_unit)
from virtual_physiology.connectivity import excitatory_weights, has_recurrent_weights

DEPENDS = {"rwa": (), "gabor": ("rwa",), "gratings": (), "modulation": ("rwa", "gratings"),
           "plaid": ("rwa", "gratings"), "surround": ("rwa", "gabor", "gratings"),
           "nofeedback": ("rwa", "gabor", "gratings"), "connectivity": ()}
# modulation.modulation_ratio_vphys's fields under the original's names
_VPHYS_MODULATION_NAMES = dict(modulation_ratio="modulation_ratio", MR_all="modulation_ratio_all",
                               cc="modulation_ratio_cc", R2="modulation_ratio_rsq", loss="modulation_ratio_loss",
                               params="modulation_ratio_params")
RWA_FRAMES = 54
GRATING_FRAMES = 50
QUIRKS = [
    "RWA: lag = group index, lagged pairs cross clip boundaries, warm-up frames included; units with zero "
    "summed response are dropped from data",
    "plaid: shift int((A/2)/30), components z-scored separately and summed without renormalising, 50 frames; "
    "plaid_rp, plaid_rc and plaid_response are for A = 150 only, every angle is in *_by_angle",
    "surround: aperture RADIUS 2..38 px centred at (gabor_x - 0.5, gabor_y - 0.5), un-normalised grating of "
    "amplitude 2, mean of the last 4 of 100 frames, group 1 only",
    "OSI/DSI/preferred parameters use the first argmax",
    "modulation ratio: both the vphys random-search variant and the notebook curve_fit variant, seeded",
]


@dataclass
class Options:
    """What the command line sets; only some of it changes results (see ``settings``)."""
    rwa_clips: int = 20000
    rwa_chunk: int = 250
    batch_size: int = 256  # clips per forward pass: gratings and plaids
    surround_batch: int = 250  # (unit, radius) clips per forward pass
    gabor_starts: int = 4
    gabor_steps: int = 300
    seed: int = 0
    nofeedback_tuning: str = "full"
    ablation: str = "none"  # models.ablation.apply_ablation spec of the probed model
    compression: str | None = None
    progress: bool = True


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2 ** 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _preferred_index(preferred: dict) -> np.ndarray:
    """(n, 3) grid indices (sf, direction, tf) from ``tuning.preferred_parameters``."""
    return np.stack([preferred["sf_index"], preferred["direction_index"], preferred["tf_index"]], axis=1)


def canonical_ablation(spec: str) -> str:
    """One spelling per ablation, so that equal ablations share stage records
    and artefact names: ``shuffle-feedback:.50`` -> ``shuffle-feedback:0.5:0``.
    ``spec`` must already be accepted by ``apply_ablation``."""
    name, *args = spec.strip().split(":")
    if name == "shuffle-feedback":
        return f"{name}:{float(args[0])!r}:{int(args[1]) if len(args) == 2 else 0}"
    return name


def _check_free_space(folder: Path, needed: int, what: str) -> None:
    """Refuse to start writing ``needed`` bytes into ``folder`` when they will not fit:
    HDF5 may crash (segfault) when the disk fills midway through a file."""
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise UserInputError(f"{what} need {needed / 2**20:.1f} MiB but {folder} has {free / 2**20:.1f} MiB free: "
                             "free space or choose another ARTEFACT_PATH, then rerun (finished stages are kept)")


def lock_path(artefact: Path) -> Path:
    """The lock file beside an artefact: ``.<name>.lock``."""
    return artefact.with_name(f".{artefact.name}.lock")


@contextlib.contextmanager
def artefact_lock(artefact: Path, wait: bool = False) -> Iterator[None]:
    """Hold the artefact's lock (an advisory ``flock`` on ``.<name>.lock``) for the
    block, so two pipelines never write the same artefact at once.

    The holder writes its pid, host and start time into the lock file; a second
    pipeline names them in a one-line error, or with ``wait`` blocks until the
    first finishes. The kernel drops the lock when its process dies (even on
    ``kill -9``), so a lock is never stale; the small file itself stays.
    """
    path = lock_path(artefact)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")
    except OSError as err:
        raise UserInputError(f"cannot create the lock {path} ({err.strerror}): choose another ARTEFACT_PATH") from err
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError as err:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise UserInputError(f"{artefact} is being written by {holder}: wait for it to finish, or pass --wait "
                                 "to start when it has") from err
        started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {platform.node()}, started {started}")
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)


def default_artefact(weights: Path, ablation: str = "none") -> Path:
    """``<stem>.vphys.h5``, or ``<stem>.vphys.<ablation>.h5`` (``:`` -> ``_``)."""
    label = "" if ablation == "none" else "." + ablation.replace(":", "_")
    return weights.with_name(f"{weights.stem}.vphys{label}.h5")


class Pipeline:
    """Load the checkpoint, check the artefact path, then run stages."""

    def __init__(self, checkpoint, artefact=None, device="cpu", force: bool = False, options: Options | None = None,
                 wait: bool = False):
        self.options, self.force, self.wait = options or Options(), force, wait
        self.kept_previous = False  # set when assemble() refused to drop stages of the existing artefact
        checkpoint = Path(checkpoint)
        model, self.config, _ = load_model(checkpoint, resolve_device(device))
        self.model = apply_ablation(model, self.options.ablation)
        self.ablation = canonical_ablation(self.options.ablation)
        self.weights = latest_weights(checkpoint) if checkpoint.is_dir() else checkpoint
        self.checkpoint = checkpoint
        self.sha256 = sha256_of(self.weights)
        self.artefact = Path(artefact) if artefact else default_artefact(self.weights, self.ablation)
        writable = next(p for p in self.artefact.resolve().parents if p.exists())
        if not writable.is_dir():
            raise UserInputError(f"{writable} is a file, so the artefact cannot go under it: choose another ARTEFACT_PATH")
        if not os.access(writable, os.W_OK):
            raise UserInputError(f"cannot write the artefact into {writable}: choose another ARTEFACT_PATH")
        self.store = StageStore(self.artefact, self.sha256, force=force, ablation=self.ablation)
        self.grid = stimuli.grating_grid(self.model.frame_shape)
        self.n_units = self.model.n_hidden

    # ----- orchestration -----------------------------------------------------------
    def settings(self, stage: str) -> dict:
        """The options that change a stage's result; a change reruns it."""
        o = self.options
        settings = {
            # the lags and the fitter's shortest wavelength mark results from before the RWA lagged
            # every kind's group g by g frames and the Gabor fitter reached 2 px: those rerun
            "rwa": dict(n_clips=o.rwa_clips, n_frames=RWA_FRAMES, seed=o.seed, lags=list(self.model.group_lags)),
            "gabor": dict(groups=[0], n_starts=o.gabor_starts, steps=o.gabor_steps, seed=o.seed,
                          min_wavelength=gabor.MIN_WAVELENGTH),
            "gratings": dict(n_frames=GRATING_FRAMES, warmup=plaid.WARMUP, compression=o.compression),
            "modulation": dict(seed=o.seed),
            "plaid": dict(angles=list(plaid.PLAID_ANGLES), n_frames=plaid.PLAID_FRAMES),
            "surround": dict(groups=[0], radii=surround.APERTURE_RADII.tolist(), n_frames=surround.SURROUND_FRAMES,
                             amplitude=surround.GRATING_AMPLITUDE),
            "nofeedback": dict(tuning_from=o.nofeedback_tuning, angles=list(plaid.PLAID_ANGLES),
                               radii=surround.APERTURE_RADII.tolist()),
            "connectivity": dict(groups=[0]),
        }[stage]
        if self.ablation.startswith("shuffle-feedback"):
            # the shuffle draws from whole feedback blocks (docs/faithfulness.md, "Shuffled feedback"):
            # stages probed with the earlier allowed-entries-only shuffle rerun
            settings["feedback_shuffle"] = "whole blocks"
        return settings

    def run(self, stages=STAGES, force_stages=(), log=print) -> bool:
        """Run ``stages`` (and the missing stages they need) in pipeline order,
        reusing current results except for ``force_stages``; then assemble.
        Holds the artefact's lock throughout (``artefact_lock``; with ``wait``
        it queues behind another pipeline, then reuses what that one stored).
        Returns whether the artefact is complete."""
        with artefact_lock(self.artefact, wait=self.wait):
            # re-read under the lock: another pipeline may have assembled since __init__
            self.store = StageStore(self.artefact, self.sha256, force=self.force, ablation=self.ablation)
            return self._run_locked(stages, force_stages, log)

    def _run_locked(self, stages, force_stages, log) -> bool:
        wanted = set()
        for stage in stages:
            wanted |= {stage, *DEPENDS[stage]}
        if self.ablation != "none":
            log(f"probing {type(self.model).__name__} with ablation {self.ablation}")
        ran = False
        for stage in [s for s in STAGES if s in wanted]:
            if stage in force_stages or not self.store.current(stage, self.settings(stage)):
                start = time.perf_counter()
                self.run_stage(stage)
                ran = True
                log(f"[{stage}] done in {time.perf_counter() - start:.1f} s")
            else:
                log(f"[{stage}] up to date, skipped (--force reruns it)")
        if not ran and self.artefact.exists() and not self.store.parts.exists():
            log(f"artefact: {self.artefact} (unchanged)")
            return all(self.store.consistent(s) for s in STAGES)
        return self.assemble(log)

    def run_stage(self, stage: str) -> None:
        notes = []
        with self.store.write(stage, self.settings(stage), DEPENDS[stage], notes) as out:
            getattr(self, f"_{stage}")(out, notes)

    def assemble(self, log=print) -> bool:
        missing = [s for s in STAGES if not self.store.consistent(s)]
        lost = sorted(set(self.store.assembled) & set(missing))
        self.kept_previous = bool(lost)
        if lost:  # never replace an artefact with one that has fewer stages; the new parts are kept
            log(f"artefact: {self.artefact} kept as it was: the new results would drop {', '.join(lost)} "
                f"(rerun them: bash run.bash {self.checkpoint} {self.artefact})")
            return False
        sources = [p for p in self.store.parts.glob("*.h5")] + [self.artefact] * self.artefact.exists()
        _check_free_space(self.artefact.parent, sum(p.stat().st_size for p in sources), "the artefact")
        complete = self.store.assemble(self.metadata())
        log(f"artefact: {self.artefact}" + (f" (incomplete: {', '.join(missing)})" if missing else ""))
        return complete

    def metadata(self) -> dict:
        model = self.model
        return dict(
            format=FORMAT, format_version=FORMAT_VERSION,
            created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            ablation=self.ablation,
            checkpoint=dict(path=str(self.checkpoint.resolve()), weights_file=str(self.weights.resolve()),
                            sha256=self.sha256, epoch=self.config.get("checkpoint_epoch")),
            model=dict(kind=type(model).__name__, config=self.config, frame_shape=list(model.frame_shape),
                       group_sizes=list(model.group_sizes), group_lags=list(model.group_lags),
                       supports_feedback_ablation=bool(model.supports_feedback_ablation)),
            grid={k: np.asarray(v).tolist() for k, v in self.grid.items()},
            quirks=QUIRKS,
            versions=dict(python=platform.python_version(), torch=torch.__version__, numpy=np.__version__,
                          scipy=scipy.__version__, h5py=h5py.__version__),
        )

    # ----- helpers -------------------------------------------------------------------
    def _kept(self, groups=None) -> np.ndarray:
        """Global indices of the units the RWA kept, optionally in some groups only."""
        kept = self.store.load("rwa", "kept")["kept"].copy()
        if groups is not None:
            in_groups = np.zeros_like(kept)
            for g in groups:
                in_groups[self.model.group_slices[g]] = True
            kept &= in_groups
        return np.flatnonzero(kept)

    def _plaid_fields(self, model, tuning_fields: dict) -> tuple[np.ndarray, dict]:
        """Pattern index of every kept unit of ``model`` from ``tuning_fields``
        (``mean_grating_responses``, ``preferred_index`` over all units)."""
        units = self._kept()
        return units, plaid.plaid_pattern_index(
            model, units, tuning_fields["mean_grating_responses"][units], tuning_fields["preferred_index"][units],
            self.grid, batch_size=self.options.batch_size, progress=self.options.progress)

    def _surround_fields(self, model) -> tuple[np.ndarray, dict]:
        """Size tuning of group 1's kept units of ``model``, probed at the full
        model's preferences and Gabor centres."""
        units = self._kept(groups=[0])
        index = self.store.load("gratings", "preferred_index")["preferred_index"][units]
        centres = self.store.load("gabor", "gabor_x", "gabor_y")
        curves = surround.size_tuning_curves(
            model, units, self.grid["sf"][index[:, 0]], self.grid["directions"][index[:, 1]],
            self.grid["tf"][index[:, 2]], centres["gabor_x"][units], centres["gabor_y"][units],
            batch_size=self.options.surround_batch, progress=self.options.progress)
        return units, dict(size_tuning_curve=curves, **surround.suppression_index(curves))

    # ----- stages ----------------------------------------------------------------------
    def _rwa(self, out, notes):
        o = self.options
        result = rwa.response_weighted_average(self.model, n_clips=o.rwa_clips, n_frames=RWA_FRAMES,
                                               chunk_clips=o.rwa_chunk, seed=o.seed, progress=o.progress)
        write_per_unit(out, dict(response_weighted_average=result["rwa"], rwa_total_response=result["total_response"],
                                 kept=result["kept"]), self.n_units)
        notes.append(f"kept per group: {[int(result['kept'][s].sum()) for s in self.model.group_slices]}")

    def _gabor(self, out, notes):
        units = self._kept(groups=[0])
        fields = self.store.load("rwa", "response_weighted_average")["response_weighted_average"][units]
        fits = gabor.fit_gabors(fields, self.model.frame_shape, n_starts=self.options.gabor_starts,
                                steps=self.options.gabor_steps, seed=self.options.seed, device=self.model.device,
                                progress=self.options.progress)
        write_per_unit(out, fits, self.n_units, units)

    def _gratings(self, out, notes):
        o = self.options
        grid_shape = tuple(len(self.grid[k]) for k in ("sf", "directions", "tf"))
        _check_free_space(Path(out.filename).parent, 4 * self.n_units * int(np.prod(grid_shape)) * GRATING_FRAMES,
                          "the grating time courses")
        writer = GratingResponseWriter(out, self.n_units, grid_shape, GRATING_FRAMES, o.compression)
        sweep = tuning.grating_sweep(self.model, self.grid, warmup=plaid.WARMUP, n_frames=GRATING_FRAMES,
                                     batch_size=o.batch_size, sink=writer, progress=o.progress)
        writer.close()
        mean = sweep["mean_responses"]
        preferred = tuning.preferred_parameters(mean, self.grid)
        index = _preferred_index(preferred)
        fields = dict(mean_grating_responses=mean, preferred_index=index,
                      preferred_orientation=preferred["preferred_direction"],  # the original's name
                      **preferred, **tuning.orientation_direction_indices(mean, preferred))
        fields["optimum_grating_response"] = np.stack([writer.dataset[u, s, d, t] for u, (s, d, t) in enumerate(index)])
        write_per_unit(out, fields, self.n_units)

    def _modulation(self, out, notes):
        units = self._kept()
        optimum = self.store.load("gratings", "optimum_grating_response")["optimum_grating_response"][units]
        vphys = modulation.modulation_ratio_vphys(optimum, seed=self.options.seed, progress=self.options.progress)
        fields = {_VPHYS_MODULATION_NAMES.get(k, f"modulation_ratio_{k}"): v for k, v in vphys.items()}
        a, b, c, d = vphys["params"].T[..., None]
        fields["modulation_ratio_y"] = a * np.sin(b * np.arange(4.0, 50.0) + c) + d  # the fitted sine, as stored
        fields.update({"modulation_ratio_curve_fit" if k == "F1F0" else f"modulation_ratio_curve_fit_{k}": v
                       for k, v in modulation.modulation_ratio_curve_fit(optimum, self.options.progress).items()})
        write_per_unit(out, fields, self.n_units, units)

    def _plaid(self, out, notes):
        tuning_fields = self.store.load("gratings", "mean_grating_responses", "preferred_index")
        units, fields = self._plaid_fields(self.model, tuning_fields)
        write_per_unit(out, fields, self.n_units, units)

    def _surround(self, out, notes):
        units, fields = self._surround_fields(self.model)
        write_per_unit(out, fields, self.n_units, units)

    def _nofeedback(self, out, notes):
        if not self.model.supports_feedback_ablation:
            notes.append(f"skipped: {type(self.model).__name__} has no feedback connections to remove")
            print(f"[nofeedback] skipped: {type(self.model).__name__} has no feedback connections", file=sys.stderr)
            return
        ablated = without_feedback(self.model)
        if self.options.nofeedback_tuning == "full":
            notes.append("plaid predictions and preferences are the FULL model's tuning, as the original")
            tuning_fields = self.store.load("gratings", "mean_grating_responses", "preferred_index")
        else:
            notes.append("plaid predictions and preferences come from a grating sweep of the ablated model")
            mean = tuning.grating_sweep(ablated, self.grid, warmup=plaid.WARMUP, n_frames=GRATING_FRAMES,
                                       batch_size=self.options.batch_size, progress=self.options.progress)[
                "mean_responses"]
            tuning_fields = dict(mean_grating_responses=mean,
                                 preferred_index=_preferred_index(tuning.preferred_parameters(mean, self.grid)))
        notes.append("surround stimuli use the full model's preferences and Gabor centres (as the notebook)")
        for units, fields in (self._plaid_fields(ablated, tuning_fields), self._surround_fields(ablated)):
            write_per_unit(out, fields, self.n_units, units)

    def _connectivity(self, out, notes):
        if not has_recurrent_weights(self.model):
            notes.append(f"skipped: {type(self.model).__name__} has no recurrent weight matrix")
            return
        for name, values in excitatory_weights(self.model, group=0).items():
            out.create_dataset(name, data=values)


def parse_args(argv=None, stage: str | None = None) -> argparse.Namespace:
    what = f"the {stage} stage (and the stages it needs that are missing)" if stage else "every stage"
    parser = argparse.ArgumentParser(
        prog=f"run_{stage}.py" if stage else "run.bash",
        description=f"Virtual physiology of a trained model: runs {what} and writes one HDF5 artefact.")
    parser.add_argument("checkpoint", metavar="MODEL_CHECKPOINT", help="run folder or weights file")
    parser.add_argument("artefact", metavar="ARTEFACT_PATH", nargs="?",
                        help="output .h5 (default: <checkpoint folder>/<weights stem>.vphys[.<ablation>].h5)")
    parser.add_argument("--force", action="store_true", help=f"recompute {what.split(' (')[0]} even if up to date")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    defaults = Options()
    parser.add_argument("--rwa-clips", type=int, default=defaults.rwa_clips, help="white-noise clips for the RWA")
    parser.add_argument("--rwa-chunk", type=int, default=defaults.rwa_chunk, help="RWA clips per forward pass")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size,
                        help="grating and plaid clips per forward pass")
    parser.add_argument("--surround-batch", type=int, default=defaults.surround_batch,
                        help="aperture clips per forward pass")
    parser.add_argument("--gabor-starts", type=int, default=defaults.gabor_starts, help="Gabor fit starts per unit")
    parser.add_argument("--gabor-steps", type=int, default=defaults.gabor_steps, help="Gabor fit Adam steps")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of the noise and of the fits")
    parser.add_argument("--nofeedback-tuning", choices=("full", "ablated"), default=defaults.nofeedback_tuning,
                        help="tuning for the no-feedback plaids: the full model's (the original) or a new sweep")
    parser.add_argument("--ablation", metavar="SPEC", default=defaults.ablation,
                        help=f"probe an ablated copy of the model: {ABLATION_SPECS} (default none)")
    parser.add_argument("--compression", choices=("none", "lzf", "gzip"), default="none",
                        help="compression of the grating time courses (default none: fastest)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--wait", action="store_true",
                        help="if another pipeline is writing the same artefact, wait for it instead of stopping")
    return parser.parse_args(argv)


def main(argv=None, stage: str | None = None) -> None:
    args = parse_args(argv, stage)
    for name in ("rwa_clips", "rwa_chunk", "batch_size", "surround_batch", "gabor_starts", "gabor_steps"):
        if getattr(args, name) < 1:
            raise UserInputError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    options = Options(rwa_clips=args.rwa_clips, rwa_chunk=args.rwa_chunk, batch_size=args.batch_size,
                      surround_batch=args.surround_batch, gabor_starts=args.gabor_starts,
                      gabor_steps=args.gabor_steps, seed=args.seed, nofeedback_tuning=args.nofeedback_tuning,
                      ablation=args.ablation,
                      compression=None if args.compression == "none" else args.compression,
                      progress=not args.no_progress)
    stages = (stage,) if stage else STAGES
    pipeline = Pipeline(args.checkpoint, args.artefact, device=args.device, force=args.force, options=options,
                        wait=args.wait)
    try:
        complete = pipeline.run(stages, force_stages=stages if args.force else ())
    except OSError as err:  # the folder went away, or the disk filled after the free-space checks
        raise UserInputError(f"cannot write {pipeline.artefact} or its parts ({os_error_reason(err)}): free space "
                             "or choose another ARTEFACT_PATH, then rerun (finished stages are kept)") from err
    needed = STAGES if stage is None else [stage, *DEPENDS[stage]]
    missing = [s for s in needed if not pipeline.store.consistent(s)]
    if missing or (stage is None and not complete) or pipeline.kept_previous:
        raise UserInputError(f"{pipeline.artefact} is not complete (missing: {', '.join(missing) or 'see above'}): "
                             f"rerun bash run.bash {args.checkpoint} {pipeline.artefact}")


if __name__ == "__main__":
    run_cli(main)
