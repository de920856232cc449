"""Assemble TP_FF for the analyses: chain stacks trained one at a time into
one checkpoint of kind ``network_feedforward_stacked``, as the original's
stacked model chains its stacks (the model is in models/network_feedforward.py).

    python -m models.network_feedforward_stacked RUN0 RUN1 RUN2 --out TP_FF_RUN

writes a normal checkpoint (config.json + weights) that ``models.io.load_model``,
the virtual physiology and the notebooks load like any other. The runs are
listed bottom-up; each must have been trained on the stacks of the runs before
it (checked: its frozen stacks equal theirs, bit for bit). The checkpoint is
self-contained: loading it reads no other run.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from models.base import SettingError, flag_wording
from models.checkpoint import Checkpoint
from models.io import save_model
from models.network_feedforward import stack_runs
from utils import UserInputError, run_cli


def save_stacked(runs, out) -> Path:
    """Stack ``runs`` and save the result as a checkpoint in folder ``out``;
    returns the weights file. The config is the top run's, re-labelled, with each
    run's optimizer steps (``stack_steps``: the budget of the whole model). A
    non-empty ``out`` (or a file there) is a ``SettingError``, runs that do not
    stack a ValueError (``stack_runs``)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SettingError(f"{{out}} {out} is not empty: give a new folder for the stacked checkpoint", "out")
    stacked, top_config = stack_runs(runs)
    config = {k: v for k, v in top_config.items() if k != "checkpoint_epoch"}
    config.update(model="network_feedforward_stacked", hidden_units=list(stacked.group_sizes),
                  beta=[1.0] * len(stacked.group_sizes), lower_stacks="",
                  stacked_from=[str(Path(run).resolve()) for run in runs],
                  stack_steps=[Checkpoint(run).optimizer_steps for run in runs])  # each stack's own run
    return save_model(out, stacked, config, epoch=max(0, top_config["checkpoint_epoch"]))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m models.network_feedforward_stacked", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run folders (or weights files) of the stacks, bottom-up")
    parser.add_argument("--out", required=True, help="folder for the stacked checkpoint")
    args = parser.parse_args(argv)
    try:
        weights = save_stacked(args.runs, args.out)
    except ValueError as err:  # the library's wording, in this command's flags
        raise UserInputError(flag_wording(err)) from err
    print(f"stacked checkpoint: {weights}")


if __name__ == "__main__":
    run_cli(main)
