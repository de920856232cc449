"""Run the six analysis notebooks on a model's virtual-physiology artefact.

    python -m analysis.run_notebooks ARTEFACT [--figures DIR] [--quick] [--only NAME ...]
    python -m analysis.run_notebooks --quick --only nback,mse ARTEFACT   # the artefact may also come last

Each notebook runs through papermill with output_dir DIR/<notebook> (default
DIR: ``<artefact name>.report/figures``, where ``python -m analysis.report``
looks for them to build its gallery); the executed notebook is saved beside
its figures. Four notebooks read the artefact; ``mse`` and ``nback`` read the
checkpoint it was made from (found and checked against its recorded SHA-256
by ``VirtualPhysiology.checked_checkpoint``), and ``mse`` scores the model on the
training dataset of its recorded config: the recorded file, or the embedded
dataset rebuilt in the cache from the config's recipe and checked against its
fingerprint (``data.default_dataset.training_data``). ``--quick`` uses small settings (few shuffles, short
n-back readout training, bundled digits) to check that every figure is drawn
in minutes; its numbers are not the analysis's.
"""
from __future__ import annotations

import sys

if __package__ in (None, ""):  # run as a file, the repository's packages are not importable
    print("error: run it as a module from the repository root: "
          "python -m analysis.run_notebooks ARTEFACT", file=sys.stderr)
    sys.exit(2)

import argparse
import os
from pathlib import Path

from analysis import AnalysisError
from analysis.build_notebooks import NOTEBOOKS
from analysis.gallery import report_dir
from data.default_dataset import training_data
from utils import UserInputError, os_error_reason, run_cli
from virtual_physiology.results import VirtualPhysiology

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT_NOTEBOOKS = ("mse", "nback")  # they read the checkpoint, not the artefact
QUICK = {"plaid_motion": dict(contour_step=45, n_plaid_directions=12),
         "connectivity_ori_dir": dict(n_shuffles=200),
         "mse": dict(max_clips=200, n_angles=4),
         "nback": dict(mnist_path=None, max_digits=500, n_back_values=[0, 2, 5], shuffle_fractions=[0.0, 0.5, 1.0],
                       epochs=20, lr=1e-2)}


def default_figures_dir(artefact) -> Path:
    """Where the report looks for the notebooks' figures of ``artefact``."""
    return report_dir(artefact) / "figures"


def parameters(name: str, vp: VirtualPhysiology, out: Path, quick: bool) -> dict:
    """papermill parameters of notebook ``name`` on the artefact ``vp``."""
    if name == "mse":
        dataset = training_data(vp.metadata["model"]["config"])  # TrainingDataError: one line naming the command
        params = dict(checkpoints=[["this model", str(vp.checked_checkpoint().weights)]], dataset=str(dataset))
    elif name == "nback":
        params = dict(checkpoint=str(vp.checked_checkpoint().weights))
    else:
        params = dict(artefact=str(vp.path))
    return dict(params, output_dir=str(out), **(QUICK.get(name, {}) if quick else {}))


def run_notebooks(artefact, figures_dir=None, quick=False, only=None, log=print) -> Path:
    """Execute the notebooks (all, or those in ``only``) on ``artefact`` into
    figures_dir/<name>; returns figures_dir."""
    import papermill

    artefact = Path(artefact).resolve()
    figures_dir = Path(figures_dir) if figures_dir else default_figures_dir(artefact)
    os.environ.setdefault("MPLBACKEND", "Agg")
    with VirtualPhysiology.load(artefact) as vp:
        # every parameter first: a checkpoint that does not match stops the run before any notebook
        names = only or NOTEBOOKS
        params = {name: parameters(name, vp, figures_dir / name, quick) for name in names}
    for name in names:
        out = figures_dir / name
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise AnalysisError(f"cannot create the figures folder {out} ({os_error_reason(err)}): give a writable "
                                "--figures folder") from err
        log(f"{name} -> {out}")
        try:
            papermill.execute_notebook(str(ROOT / "analysis" / f"{name}.ipynb"), str(out / f"{name}.ipynb"),
                                       parameters=params[name],
                                       kernel_name="python3", progress_bar=False, cwd=str(ROOT))
        except papermill.PapermillExecutionError as error:  # the executed notebook shows the whole traceback
            raise AnalysisError(f"notebook {name} stopped: {error.ename}: {error.evalue} "
                                f"(see {out / f'{name}.ipynb'})") from None
    return figures_dir


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("artefact", nargs="?", help="the virtual-physiology artefact (.vphys.h5) of a model")
    parser.add_argument("--figures", default=None, help="output folder [default: <ARTEFACT>.report/figures]")
    parser.add_argument("--quick", action="store_true", help="small settings: every figure, not the real numbers")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help=f"run only these notebooks (space- or comma-separated: {', '.join(NOTEBOOKS)})")
    args = parser.parse_args(argv)
    artefact, only = split_only(args.artefact, args.only)
    print(run_notebooks(artefact, args.figures, args.quick, only))


def split_only(artefact: str | None, only: list[str] | None) -> tuple[str, list[str] | None]:
    """The artefact and the notebooks of ``--only``. ``--only`` takes every word
    after it, so in ``--only nback ARTEFACT`` the artefact is its last word: a word
    that names no notebook, given when the artefact is missing, is taken back."""
    names = [name for word in only or [] for name in word.split(",") if name]
    if artefact is None and names and names[-1] not in NOTEBOOKS:
        artefact = names.pop()
    if artefact is None:
        raise UserInputError("no ARTEFACT given: python -m analysis.run_notebooks ARTEFACT [--only NAME ...]")
    unknown = [name for name in names if name not in NOTEBOOKS]
    if unknown:
        raise UserInputError(f"--only {unknown[0]!r} is not a notebook: choose from {', '.join(NOTEBOOKS)}")
    if only is not None and not names:
        raise UserInputError(f"--only needs at least one notebook: {', '.join(NOTEBOOKS)}")
    return artefact, names or None


if __name__ == "__main__":
    run_cli(main)
