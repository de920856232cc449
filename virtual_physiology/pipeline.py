"""Every virtual-physiology stage on one checkpoint, into one artefact.

    bash run.bash MODEL_CHECKPOINT [ARTEFACT_PATH] [--force] [--device cpu] [--rwa-clips 20000] ...
    bash run.bash MODEL_CHECKPOINT [ARTEFACT_PATH] --stage plaid [--stage ...]   # some stages
    python -m virtual_physiology.pipeline MODEL_CHECKPOINT [ARTEFACT_PATH] ...    # the same as run.bash
    python -m virtual_physiology.run_<stage> MODEL_CHECKPOINT [ARTEFACT_PATH]     # one stage

(``python -m`` runs from the repository root; ``run.bash`` from anywhere.)
The stages, their order, the stages each needs, its options and the fields
it writes are the registry ``virtual_physiology.stages.STAGES``; ``--help``
lists them with what each measures. The command-line options are the
registry's settings (``Setting``; ``Options`` in Python) plus ``--force``,
``--device``, ``--wait`` and ``--stage``.

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
reused (``--force`` recomputes); ``--stage`` and a single-stage command also
run the stages they need that are missing. Bad input (missing or corrupt
checkpoint, an artefact made from another checkpoint or with another
ablation, a bad or unsupported ``--ablation``) is a one-line error with exit
status 2 and writes nothing.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import textwrap
import time
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np
import scipy
import torch

from models.ablation import apply_ablation
from models.checkpoint import Checkpoint, CheckpointError
from utils import (FileLock, LockHeld, UserInputError, longest_atomic_name, os_error_reason, resolve_device, run_cli,
                   user_errors_from)
from virtual_physiology import ArtefactError, stimuli
from virtual_physiology.artefact import FORMAT, FORMAT_VERSION, StageStore
from virtual_physiology.fields import check_free_space
from virtual_physiology.stages import STAGES, NonFiniteResults, Setting, all_settings, with_needs


class Options:
    """Every setting of the pipeline and of the registered stages
    (``virtual_physiology.stages.all_settings``) as an attribute, e.g.
    ``Options(rwa_clips=40).rwa_clips``; those not given take their defaults.
    Only what a stage records (``Stage.recorded``) changes its result. A
    stage registered later brings its settings to the Options made after it.
    An unknown name is a TypeError, as for a dataclass."""

    def __init__(self, **values):
        settings = all_settings()
        unknown = sorted(set(values) - set(settings))
        if unknown:
            raise TypeError(f"Options got unknown settings {unknown}: the settings are {sorted(settings)}")
        for name, setting in settings.items():
            setattr(self, name, values.get(name, setting.default))

    def __repr__(self) -> str:
        return f"Options({', '.join(f'{name}={value!r}' for name, value in vars(self).items())})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Options) and vars(self) == vars(other)


def canonical_ablation(spec: str) -> str:
    """One spelling per ablation, so that equal ablations share stage records
    and artefact names: ``shuffle-feedback:.50`` -> ``shuffle-feedback:0.5:0``.
    ``spec`` must already be accepted by ``apply_ablation``."""
    name, *args = spec.strip().split(":")
    if name == "shuffle-feedback":
        return f"{name}:{float(args[0])!r}:{int(args[1]) if len(args) == 2 else 0}"
    return name


def lock_path(artefact: Path) -> Path:
    """The lock file beside an artefact: ``.<name>.lock``."""
    return artefact.with_name(f".{artefact.name}.lock")


@contextlib.contextmanager
def artefact_lock(artefact: Path, wait: bool = False) -> Iterator[None]:
    """Hold the artefact's lock (``utils.FileLock`` on ``.<name>.lock``) for the
    block, so two pipelines never write the same artefact at once.

    A second pipeline names the holder (pid, host, start time) in a one-line
    error, or with ``wait`` blocks until the first finishes. The kernel drops the
    lock when its process dies (even on ``kill -9``), so a lock is never stale;
    the file is removed on release (a killed holder's file is taken over).
    """
    path = lock_path(artefact)
    lock = FileLock(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire(wait)
    except LockHeld as err:
        raise ArtefactError(f"{artefact} is being written by {err.holder}: wait for it to finish, or pass --wait "
                            "to start when it has") from err
    except OSError as err:
        raise ArtefactError(f"cannot create the lock {path} ({os_error_reason(err)}): choose another "
                            "ARTEFACT_PATH") from err
    try:
        yield
    finally:
        lock.release()



def default_artefact(weights: Path, ablation: str = "none") -> Path:
    """``<stem>.vphys.h5``, or ``<stem>.vphys.<ablation>.h5`` (``:`` -> ``_``)."""
    label = "" if ablation == "none" else "." + ablation.replace(":", "_")
    return weights.with_name(f"{weights.stem}.vphys{label}.h5")


class Pipeline:
    """Load the checkpoint, check the artefact path, then run stages.

    ``checkpoint`` is a ``models.checkpoint.Checkpoint`` or the path to make one
    of (a bad path is then a ``CheckpointError``).
    A stage's run function (``Stage.run``) reads from it ``model`` (the
    probed model, ablated if ``options.ablation`` says so), ``options``
    (``Options``), ``grid`` (``stimuli.grating_grid`` of the frame shape),
    ``n_units`` (n_hidden) and ``store`` (``StageStore``: earlier stages'
    fields by ``store.load(stage, *fields)``).
    """

    def __init__(self, checkpoint, artefact=None, device="cpu", force: bool = False, options: Options | None = None,
                 wait: bool = False):
        self.options, self.force, self.wait = options or Options(), force, wait
        self.kept_previous = False  # set when assemble() refused to drop stages of the existing artefact
        self.checkpoint = checkpoint if isinstance(checkpoint, Checkpoint) else Checkpoint(checkpoint)
        self.model = apply_ablation(self.checkpoint.load(resolve_device(device)), self.options.ablation)
        self.ablation = canonical_ablation(self.options.ablation)
        self.artefact = Path(artefact) if artefact else default_artefact(self.checkpoint.weights, self.ablation)
        writable = next(p for p in self.artefact.resolve().parents if p.exists())
        if not writable.is_dir():
            raise ArtefactError(f"{writable} is a file, so the artefact cannot go under it: choose another ARTEFACT_PATH")
        if not os.access(writable, os.W_OK):
            raise ArtefactError(f"cannot write the artefact into {writable}: choose another ARTEFACT_PATH")
        room = longest_atomic_name(writable)
        if len(self.artefact.name) > room:  # else it would fail at the end, when the stages are assembled
            raise ArtefactError(f"artefact name {self.artefact.name} is too long: {len(self.artefact.name)} "
                                f"characters, and at most {room} characters fit beside the decorations of its "
                                "temporary files: choose a shorter ARTEFACT_PATH")
        self.store = StageStore(self.artefact, self.checkpoint.sha256, force=force, ablation=self.ablation)
        self.grid = stimuli.grating_grid(self.model.frame_shape)
        self.n_units = self.model.n_hidden

    # ----- orchestration -----------------------------------------------------------
    def settings(self, stage: str) -> dict:
        """What a stage's result depends on (``Stage.recorded``), as stored in
        its record; a change reruns it."""
        settings = STAGES[stage].record_of(self)
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
            self.store = StageStore(self.artefact, self.checkpoint.sha256, force=self.force, ablation=self.ablation)
            return self._run_locked(stages, force_stages, log)

    def _run_locked(self, stages, force_stages, log) -> bool:
        if self.ablation != "none":
            log(f"probing {type(self.model).__name__} with ablation {self.ablation}")
        to_run = []  # a stage reruns when forced, stale, or when a stage it needs reruns (its inputs change)
        for stage in with_needs(stages):
            if (stage in force_stages or not self.store.current(stage, self.settings(stage))
                    or any(need in to_run for need in STAGES[stage].needs)):
                to_run.append(stage)
        if to_run:
            log(expected_cost(self.n_units, len(to_run)))
        ran = False
        for stage in with_needs(stages):
            if stage in to_run:
                log(f"[{stage}] running ({to_run.index(stage) + 1} of {len(to_run)})")
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
        """Run one stage (``Stage.run``) into its part, whatever is stored;
        the stages it needs must be there."""
        notes = []
        with self.store.write(stage, self.settings(stage), STAGES[stage].needs, notes) as out:
            STAGES[stage].run(self, out, notes)
            STAGES[stage].check_written(out)

    def assemble(self, log=print) -> bool:
        missing = [s for s in STAGES if not self.store.consistent(s)]
        lost = sorted(set(self.store.assembled) & set(missing))
        self.kept_previous = bool(lost)
        if lost:  # never replace an artefact with one that has fewer stages; the new parts are kept
            log(f"artefact: {self.artefact} kept as it was: the new results would drop {', '.join(lost)} "
                f"(rerun them: bash run.bash {self.checkpoint.path} {self.artefact})")
            return False
        sources = [p for p in self.store.parts.glob("*.h5")] + [self.artefact] * self.artefact.exists()
        check_free_space(self.artefact.parent, sum(p.stat().st_size for p in sources), "the artefact")
        complete = self.store.assemble(self.metadata())
        log(f"artefact: {self.artefact}" + (f" (incomplete: {', '.join(missing)})" if missing else ""))
        return complete

    def metadata(self) -> dict:
        model, checkpoint = self.model, self.checkpoint
        return dict(
            format=FORMAT, format_version=FORMAT_VERSION,
            created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            ablation=self.ablation,
            checkpoint=dict(path=str(checkpoint.path.resolve()), weights_file=str(checkpoint.weights.resolve()),
                            sha256=checkpoint.sha256, epoch=checkpoint.epoch),
            model=dict(kind=type(model).__name__, config=checkpoint.config, frame_shape=list(model.frame_shape),
                       group_sizes=list(model.group_sizes), group_lags=list(model.group_lags),
                       supports_feedback_ablation=bool(model.supports_feedback_ablation)),
            grid={k: np.asarray(v).tolist() for k, v in self.grid.items()},
            quirks=[quirk for stage in STAGES.values() for quirk in stage.quirks],
            versions=dict(python=platform.python_version(), torch=torch.__version__, numpy=np.__version__,
                          scipy=scipy.__version__, h5py=h5py.__version__),
        )


# The whole pipeline at the paper's size (3 x 800 units, 20,000 RWA clips) on the project's
# 2-core CPU, quiet (benchmarks/bench_vphys.py; docs/benchmarks.md, "Virtual physiology"): its
# time and its artefact grow about in proportion to the hidden units.
REFERENCE_UNITS, REFERENCE_MINUTES, REFERENCE_GB = 2400, 5.4, 4.2


def expected_cost(n_units: int, n_stages: int) -> str:
    """One line, before the stages run: the whole pipeline's expected time and disk at
    the default settings, scaled from the paper's size by hidden units."""
    scale = n_units / REFERENCE_UNITS
    stages = f"{n_stages} of {len(STAGES)} stages" if n_stages < len(STAGES) else f"all {n_stages} stages"
    return (f"{stages} to run for {n_units:,} hidden units; at the default settings the whole pipeline takes about "
            f"{max(REFERENCE_MINUTES * scale, 0.1):.1f} min on 2 quiet cores (several times longer under load) and "
            f"writes about {max(REFERENCE_GB * scale, 0.01):.2g} GB (scaled from {REFERENCE_MINUTES} min and "
            f"{REFERENCE_GB} GB at {REFERENCE_UNITS:,} units)")


def _add_setting(parser: argparse.ArgumentParser, setting: Setting) -> None:
    """``setting`` as a command-line option, by the kinds ``Setting`` describes."""
    if isinstance(setting.default, bool):
        flag = f"--no-{setting.flag[2:]}" if setting.default else setting.flag
        parser.add_argument(flag, dest=setting.name, action="store_false" if setting.default else "store_true",
                            help=f"do not {setting.reason}" if setting.default else setting.reason)
        return
    default = "none" if setting.default is None else setting.default
    number = isinstance(setting.default, int)
    parser.add_argument(setting.flag, dest=setting.name, default=default, choices=setting.choices or None,
                        type=int if number else str, metavar=setting.metavar or ("N" if number else None),
                        help=f"{setting.reason} (default {default})")


def _stage_list() -> str:
    """Every registered stage, one line each, for the help."""
    lines = ["stages, in order (virtual_physiology/stages.py):"]
    for stage in STAGES.values():
        needs = f" [needs {', '.join(stage.needs)}]" if stage.needs else ""
        lines.append(textwrap.fill(f"{stage.name:<13}{stage.summary}{needs}", width=100, initial_indent="  ",
                                   subsequent_indent=" " * 15))
    return "\n".join(lines)


def parse_args(argv=None, stage: str | None = None) -> argparse.Namespace:
    """The command line of ``run.bash`` (``stage`` None: every stage, or
    those ``--stage`` names) or of ``python -m virtual_physiology.run_<stage>``.
    ``args.stage`` is the list of stages asked for, None for every stage."""
    what = f"the {stage} stage (and the stages it needs that are missing)" if stage else \
        "every stage, or the --stage ones (and the stages they need that are missing),"
    parser = argparse.ArgumentParser(
        prog=f"python -m virtual_physiology.run_{stage}" if stage else "run.bash",
        description=textwrap.fill(f"Virtual physiology of a trained model: runs {what} and writes one HDF5 "
                                  "artefact.", width=100),
        epilog=_stage_list(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", metavar="MODEL_CHECKPOINT", help="run folder or weights file")
    parser.add_argument("artefact", metavar="ARTEFACT_PATH", nargs="?",
                        help="output .h5 (default: <checkpoint folder>/<weights stem>.vphys[.<ablation>].h5)")
    if stage is None:
        parser.add_argument("--stage", action="append", choices=list(STAGES), metavar="STAGE",
                            help="run this stage (and the missing ones it needs) instead of every stage; "
                                 "repeatable; the stages are listed below")
    else:
        parser.set_defaults(stage=[stage])
    parser.add_argument("--force", action="store_true",
                        help=f"recompute {'the ' + stage + ' stage' if stage else 'every stage (or the --stage ones)'}"
                             " even if up to date")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    for setting in all_settings().values():
        _add_setting(parser, setting)
    parser.add_argument("--wait", action="store_true",
                        help="if another pipeline is writing the same artefact, wait for it instead of stopping")
    return parser.parse_args(argv)


def options_from(args: argparse.Namespace) -> Options:
    """The ``Options`` of parsed arguments: each setting's value, ``none``
    as None where the default is None; a one-line error for a value outside
    its setting's bounds (every stage's, before any runs)."""
    values = {}
    for name, setting in all_settings().items():
        value = getattr(args, name)
        low, high = setting.minimum, setting.maximum
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"at least {low}" if high is None else f"between {low} and {high}"
            raise UserInputError(f"{setting.flag} must be {bounds}, got {value}")
        values[name] = None if setting.default is None and value == "none" else value
    return Options(**values)


def main(argv=None, stage: str | None = None) -> None:
    """``run.bash`` (``stage`` None) or one stage's command; a one-line
    error, exit 2, when the artefact does not end up holding what was asked."""
    args = parse_args(argv, stage)
    options = options_from(args)
    asked = list(dict.fromkeys(args.stage)) if args.stage else list(STAGES)
    with user_errors_from(CheckpointError):  # a missing or unusable checkpoint: one line naming the fix
        checkpoint = Checkpoint(args.checkpoint)
        pipeline = Pipeline(checkpoint, args.artefact, device=args.device, force=args.force, options=options,
                            wait=args.wait)
    try:
        complete = pipeline.run(asked, force_stages=asked if args.force else ())
    except NonFiniteResults as err:
        raise UserInputError(f"{err}; nothing of the stage was stored: check the checkpoint "
                             f"{pipeline.checkpoint.weights} (an earlier epoch, or the original file)") from err
    except OSError as err:  # the folder went away, or the disk filled after the free-space checks
        raise UserInputError(f"cannot write {pipeline.artefact} or its parts ({os_error_reason(err)}): free space "
                             "or choose another ARTEFACT_PATH, then rerun (finished stages are kept)") from err
    missing = [s for s in with_needs(asked) if not pipeline.store.consistent(s)]
    if missing or (args.stage is None and not complete) or pipeline.kept_previous:
        raise UserInputError(f"{pipeline.artefact} is not complete (missing: {', '.join(missing) or 'see above'}): "
                             f"rerun bash run.bash {args.checkpoint} {pipeline.artefact}")


if __name__ == "__main__":
    run_cli(main)
