"""Train one model, or sweep --L1 and --seed, here or as cluster jobs.

Runs in this process by default, on the GPU when there is one. Every flag is
described by ``--help`` with the paper's value; the maths lives in train.py,
models/ and losses/.

    python submit_training_job.py --preset demo          # 6 min 49 s on a quiet 2-core CPU, 17 min 11 s under heavy load, then an RF summary
    python submit_training_job.py --name htp --L1 -6     # the paper's configuration
    python submit_training_job.py --path model_checkpoints/RUN   # resume
    python submit_training_job.py --name htp --L1 -6 -5.5 -5 --seed 0 1 \\
        --cluster slurm --partition gpu --gpus 1 --time 12:00:00 --dry-run
    torchrun --nproc-per-node 4 train.py --name htp --L1 -6      # one run on 4 GPUs

Sweeps: --L1 and --seed take several space-separated values; every combination
is one job with its own run folder, NAME_<L1>L1_seed<S>_<date-time>, created
before submission, and its own log in RUN/logs/. --cluster local runs the jobs
as subprocesses (submitit's LocalExecutor) and waits for them; --cluster slurm
submits them with sbatch (one process per GPU, DistributedDataParallel when
--gpus > 1). --dry-run prints the jobs and submits nothing. A job that SLURM
pre-empts or stops at its time limit saves a resumable state on SLURM's warning
signal, is requeued, and resumes from its latest state. --batched trains the
sweep's runs (recurrent models) as one stacked computation in this process
instead (training/batched.py), each still with its own folder and log; --batched
--path RUN resumes all of them.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import os
import re
import shlex
import shutil
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: as train.py, and for the jobs it starts

import submitit  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist

from training.run_dir import RunDir
from training.loop import EXIT_CUT_SHORT, StoppedBySignal
from training.config import (TrainConfig, add_config_arguments, config_for, create_run_dir, cut_short_note,
                                    find_resume_state, preflight, run_name,
                                    tell_deprecations)
from train import confirm_long_cpu_run, receptive_field_monitor, train
from utils import UserInputError, run_cli

ROOT = Path(__file__).resolve().parent
MAX_REQUEUES = 20  # time-limit requeues per job: a run longer than --time continues in up to 20 more jobs
_SLURM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_SLURM_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")
_SLURM_MEM = re.compile(r"^[1-9][0-9]*[KMGT]?B?$", re.IGNORECASE)


class TrainingJob(submitit.helpers.Checkpointable):
    """One training run in a run folder fixed before submission.

    Calling it starts the run or, when the folder already holds a resumable state,
    resumes from the latest one (find_resume_state + train.train, as --path
    RUN does). So the inherited ``checkpoint()``, which submitit calls on SLURM's
    time-limit or pre-emption signal and which resubmits this same call, continues
    where the run stopped, and so does SLURM re-running a pre-empted job.
    """

    def __init__(self, cfg: TrainConfig, run_dir: Path):
        self.cfg, self.run_dir = cfg, Path(run_dir)

    def __call__(self) -> str:
        try:
            tasks = submitit.JobEnvironment().num_tasks
        except RuntimeError:  # called directly, not as a submitted job
            tasks = 1
        if tasks > 1:  # one process per GPU: RANK, WORLD_SIZE, MASTER_ADDR ... for training.loop.init_distributed
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
        resume = find_resume_state(self.run_dir) if RunDir(self.run_dir).state_files() else None
        run_dir = train(self.cfg, resume, progress=False, run_dir=self.run_dir)
        if dist.is_initialized():
            dist.destroy_process_group()
        return str(run_dir)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     conflict_handler="resolve")  # --L1 and --seed are redefined as lists
    add_config_arguments(parser)
    parser.add_argument("--L1", type=float, nargs="+", default=None, metavar="LOG10_LAMBDA",
                        help="log10 of the L1 weight-penalty strength; several values make a sweep "
                             "(paper README example: -6) [default: -6.0]")
    parser.add_argument("--seed", type=int, nargs="+", default=None,
                        help="seed for initialisation, shuffling and noise; several values make a sweep [default: 0]")
    jobs = parser.add_argument_group("jobs")
    jobs.add_argument("--cluster", choices=("local", "slurm"), default=None,
                      help="run every job as a subprocess (local) or a SLURM job [default: in this process]")
    jobs.add_argument("--partition", help="SLURM partition (or comma-separated partitions)")
    jobs.add_argument("--account", help="SLURM account to charge")
    jobs.add_argument("--time", help="time limit per job: minutes, HH:MM:SS or D-HH:MM:SS; a run that needs "
                                     f"longer is requeued up to {MAX_REQUEUES} times [default: 24:00:00]")
    jobs.add_argument("--gpus", help="GPUs per node, one training process each [default: 1 on slurm; "
                                     "local: 1 if a GPU is visible, else 0]")
    jobs.add_argument("--nodes", help="SLURM nodes per job [default: 1]")
    jobs.add_argument("--cpus", help="CPU cores per training process")
    jobs.add_argument("--mem", help="memory per node, in SLURM's format, e.g. 64G")
    jobs.add_argument("--dry-run", action="store_true", help="print the jobs and submit nothing")
    jobs.add_argument("--batched", action="store_true",
                      help="train every run of the --L1/--seed sweep as one batched computation in this process "
                           "(recurrent models; training/batched.py); with --path RUN, resume all runs of RUN's sweep")
    return parser


# -------------------------------------------------------------------------------------------
# Checking the request: every error comes before any folder is created or job submitted
# -------------------------------------------------------------------------------------------
def parse_slurm_time(text: str) -> int:
    """A SLURM time limit (M, M:S, H:M:S, D-H, D-H:M, D-H:M:S) in whole minutes, rounded up."""
    match = _SLURM_TIME.match(text.strip())
    if match is None:
        raise UserInputError(f"--time {text!r} is not a positive SLURM time: use minutes, HH:MM:SS or D-HH:MM:SS")
    days, *parts = match.groups()
    numbers = [int(p) for p in parts if p is not None]
    if days is None:  # M, M:S or H:M:S
        units = {1: (60,), 2: (60, 1), 3: (3600, 60, 1)}[len(numbers)]
    else:  # D-H, D-H:M or D-H:M:S
        units = {1: (3600,), 2: (3600, 60), 3: (3600, 60, 1)}[len(numbers)]
    total = 86400 * int(days or 0) + sum(n * u for n, u in zip(numbers, units))
    if total <= 0:
        raise UserInputError(f"--time {text!r} is zero: give a positive time limit, e.g. 12:00:00")
    return math.ceil(total / 60)


def _whole(flag: str, text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise UserInputError(f"{flag} {text!r} is not a whole number >= {minimum}")
    return value


def cluster_options(args: argparse.Namespace) -> dict:
    """The validated job resources for --cluster local or slurm ({} in this process)."""
    slurm_only = [f"--{n}" for n in ("partition", "account", "nodes", "cpus", "mem") if getattr(args, n) is not None]
    given = [f"--{n}" for n in ("time", "gpus") if getattr(args, n) is not None] + slurm_only
    if args.cluster is None:
        if given:
            raise UserInputError(f"{given[0]} applies to submitted jobs: add --cluster slurm (or local)")
        return {}
    if args.cluster == "local" and slurm_only:
        raise UserInputError(f"{slurm_only[0]} applies to SLURM jobs only: use --cluster slurm or drop it")
    for flag, value in (("--partition", args.partition), ("--account", args.account)):
        if value is not None and not all(_SLURM_NAME.match(v) for v in value.split(",")):
            raise UserInputError(f"{flag} {value!r} is not a SLURM name: letters, digits, '_', '-', '.'")
    if args.mem is not None and not _SLURM_MEM.match(args.mem):
        raise UserInputError(f"--mem {args.mem!r} is not a SLURM memory size: use e.g. 64G or 16000M")
    default_gpus = "1" if args.cluster == "slurm" or torch.cuda.is_available() else "0"
    options = {"time_min": parse_slurm_time(args.time or "24:00:00"),
               "gpus": _whole("--gpus", args.gpus or default_gpus, 0),
               "nodes": _whole("--nodes", args.nodes or "1", 1),
               "cpus": None if args.cpus is None else _whole("--cpus", args.cpus, 1),
               "mem": args.mem, "partition": args.partition, "account": args.account}
    if args.cluster == "slurm" and not args.dry_run and not (shutil.which("sbatch") and shutil.which("srun")):
        raise UserInputError("sbatch/srun are not on PATH: submit from a SLURM login node, or use --cluster local")
    return options


def plan_jobs(args: argparse.Namespace) -> list[tuple[TrainConfig, Path | None]]:
    """One (config, state file to resume or None) per combination of --L1 and --seed."""
    for flag, values in (("--L1", args.L1), ("--seed", args.seed)):
        if values and len(set(values)) < len(values):
            raise UserInputError(f"{flag} lists a value twice: give each value once")
        if values and len(values) > 1 and args.path is not None:
            raise UserInputError(f"a {flag} sweep starts new runs: drop --path, or resume one run at a time")
    jobs = []
    for L1, seed in itertools.product(args.L1 or [None], args.seed or [None]):
        cfg, resume = config_for(argparse.Namespace(**{**vars(args), "L1": L1, "seed": seed}))
        if args.cluster is not None or args.dry_run:  # the checks a local run makes, before anything is queued
            preflight(cfg, resume)
        if args.cluster is not None:  # jobs may start in another folder (the dataset path is already absolute)
            cfg = dataclasses.replace(cfg, save_dir=str(Path(cfg.save_dir).resolve()))
        jobs.append((cfg, resume))
    return jobs


# -------------------------------------------------------------------------------------------
# Running and submitting
# -------------------------------------------------------------------------------------------
def slurm_parameters(options: dict, job_name: str) -> dict:
    """submitit.SlurmExecutor parameters (sbatch options) for one job: one task per GPU,
    the USR2 warning 90 s before the time limit, the repository on PYTHONPATH."""
    params = {"job_name": job_name, "time": options["time_min"], "nodes": options["nodes"],
              "ntasks_per_node": max(1, options["gpus"]), "signal_delay_s": 90,
              "setup": [f"export PYTHONPATH={shlex.quote(str(ROOT))}${{PYTHONPATH:+:$PYTHONPATH}}"]}
    optional = {"gpus_per_node": options["gpus"] or None, "cpus_per_task": options["cpus"], "mem": options["mem"],
                "partition": options["partition"], "account": options["account"]}
    return params | {k: v for k, v in optional.items() if v is not None}


def make_executor(cluster: str, folder: Path, options: dict, job_name: str):
    if cluster == "slurm":
        executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=MAX_REQUEUES)
        executor.update_parameters(**slurm_parameters(options, job_name))
    else:
        executor = submitit.LocalExecutor(folder=folder, max_num_timeout=MAX_REQUEUES)
        executor.update_parameters(timeout_min=options["time_min"], gpus_per_node=options["gpus"],
                                   tasks_per_node=max(1, options["gpus"]),
                                   setup=[f"export PYTHONPATH={shlex.quote(str(ROOT))}${{PYTHONPATH:+:$PYTHONPATH}}"])
    return executor


def job_table(rows: list[tuple]) -> str:
    """rows of (job id, run folder, L1, seed) as an aligned text table."""
    lines = [("job", "run folder", "L1", "seed")] + [(str(j), str(r), f"{l1:g}", str(s)) for j, r, l1, s in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)


def run_here(jobs) -> list[Path]:
    """Each job in this process, one after the other (the default)."""
    run_dirs = []
    for cfg, resume in jobs:
        run_dir = train(cfg, resume)
        print(f"run folder: {run_dir}")
        if cfg.preset == "demo" and RunDir(run_dir).weights_by_epoch():
            from virtual_physiology.rf_summary import summarise

            summarise(run_dir)
        note = cut_short_note(run_dir)
        if note:  # the last line says that the run is not finished, and how to continue it
            print(note, file=sys.stderr)
        run_dirs.append(run_dir)
    return run_dirs


def run_batched(jobs, args) -> list[Path]:
    """Every job as one batched computation in this process (training.batched)."""
    from training.batched import sweep_jobs, train_batched

    sweep = sweep_jobs(jobs, args)
    run_dirs = train_batched(sweep, monitor=receptive_field_monitor(sweep[0][0]))
    for run_dir in run_dirs:
        print(f"run folder: {run_dir}")
    return run_dirs


def submit(jobs, cluster: str, options: dict) -> list:
    """Create each run folder, then submit its job; returns the submitit jobs."""
    submitted = []
    for cfg, resume in jobs:
        run_dir = resume.parent if resume is not None else create_run_dir(cfg)
        executor = make_executor(cluster, run_dir / "logs", options, run_dir.name)
        submitted.append((executor.submit(TrainingJob(cfg, run_dir)), run_dir, cfg))
    print(job_table([(job.job_id, run_dir, cfg.L1, cfg.seed) for job, run_dir, cfg in submitted]))
    return submitted


def main(argv=None):
    args = build_parser().parse_args(argv)
    tell_deprecations(args)
    if args.batched and args.cluster is not None:
        raise UserInputError("--batched trains the whole sweep in this process: drop --cluster (or --batched)")
    options = cluster_options(args)
    jobs = plan_jobs(args)
    if args.dry_run:
        where = {"slurm": "SLURM jobs", "local": "local subprocesses"}.get(args.cluster, "this process")
        resources = ", ".join(f"{k}={v}" for k, v in options.items() if v is not None)
        print(f"dry run: {len(jobs)} job(s) as {where}{' (' + resources + ')' if resources else ''}; nothing submitted")
        planned = [resume.parent if resume is not None else Path(cfg.save_dir) / f"{run_name(cfg)}_<date-time>"
                   for cfg, resume in jobs]
        print(job_table([("-", path, cfg.L1, cfg.seed) for path, (cfg, _) in zip(planned, jobs)]))
    elif args.cluster is None:
        for cfg, resume in jobs:
            if resume is None and not args.batched:
                confirm_long_cpu_run(args, cfg)
        try:
            run_dirs = run_batched(jobs, args) if args.batched else run_here(jobs)
        except StoppedBySignal as stop:  # saved and stopped: no summary, and a status a shell sees as a stop
            sys.exit(128 + stop.signum)
        if len(jobs) > 1:
            print(job_table([("-", d, cfg.L1, cfg.seed) for d, (cfg, _) in zip(run_dirs, jobs)]))
        if any(cut_short_note(d) for d in run_dirs):  # each said so in its last line
            sys.exit(EXIT_CUT_SHORT)
    else:
        submitted = submit(jobs, args.cluster, options)
        if args.cluster == "local":  # the subprocesses end with this command: wait for them
            failed = [job for job, _, _ in submitted if job.exception() is not None]
            for job in failed:
                print(f"job {job.job_id} failed: see {job.paths.stderr}", file=sys.stderr)
            if failed:
                sys.exit(1)


if __name__ == "__main__":
    run_cli(main)
