"""Write the analysis notebooks (``analysis/<name>.ipynb``, which papermill
runs) from their sources ``analysis/notebooks/<name>.py``.

    python -m analysis.build_notebooks [NAME ...]     # all notebooks when no NAME is given

A source is a Python file in jupytext's percent format, so linters, IDEs and
the import graph see the notebooks' code:

- ``# %%`` starts a code cell; ``# %% tags=["parameters"]`` the cell papermill
  fills (tagged ``parameters``); ``# %% [markdown]`` a Markdown cell whose lines
  are comments (``# text``; a bare ``#`` is an empty line);
- lines before the first marker are a header for readers of the source, not a cell;
- blank lines that end a cell separate it from the next and are dropped.

Each notebook opens with its ``parameters`` cell (papermill fills it:
``papermill analysis/plaid_motion.ipynb out.ipynb -p artefact A -p output_dir F``).
The four that read an artefact take nothing else: their next cell loads it
with the stages it declares (``needs``) and stops with one line if one is
missing; the two that probe the model again (plaid_motion; surround_suppression
when the artefact has no no-feedback rerun) take it from
``VirtualPhysiology.probed_model()``, the recorded checkpoint (hash checked)
with the recorded ablation, so they cannot probe another model. ``mse`` and
``nback`` read checkpoints. The logic lives in the ``analysis`` modules; the
notebooks load, call, plot and save (PNG + PDF and a ``summary.json`` of the
key numbers in ``output_dir``).

Cell ids are ``<name>-<index>``, so rebuilding an unchanged source rewrites
the same file (``tests/test_analysis_notebooks.py`` checks every committed
notebook against its source). The notebooks import ``analysis``: their kernel
starts in the repository root (``analysis.run_notebooks`` and papermill's
``cwd`` see to that; for Jupyter, start it from the root with
``PYTHONPATH=$PWD``).
"""
from __future__ import annotations

import sys

if __package__ in (None, ""):  # run as a file, the repository's packages are not importable
    print("error: run it as a module from the repository root: "
          "python -m analysis.build_notebooks", file=sys.stderr)
    sys.exit(2)

import argparse
import re
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from utils import UserInputError, run_cli

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "notebooks"
# in the order analysis.run_notebooks runs them and the report's gallery shows them
NOTEBOOKS = ("response_parameters", "plaid_motion", "surround_suppression", "connectivity_ori_dir", "mse", "nback")
_MARKER = re.compile(r"^# %%(?P<rest>.*)$")
_MARKER_KINDS = {"": "code", ' tags=["parameters"]': "parameters", " [markdown]": "markdown"}


def parse_cells(text: str, source: str = "<text>") -> list[tuple[str, str]]:
    """The cells of a percent-format source as (kind, source) pairs, kind one
    of ``code``, ``parameters``, ``markdown``; Markdown loses its comment
    prefix. An unknown ``# %%`` marker, or a Markdown line that is not a
    comment, is a ValueError naming ``source`` and the line."""
    cells: list[tuple[str, list[tuple[int, str]]]] = []  # (kind, [(line number, line), ...])
    for number, line in enumerate(text.splitlines(), start=1):
        marker = _MARKER.match(line)
        if marker:
            kind = _MARKER_KINDS.get(marker["rest"])
            if kind is None:
                raise ValueError(f"{source}:{number}: unknown cell marker {line!r}: use one of "
                                 + ", ".join(repr("# %%" + m) for m in _MARKER_KINDS))
            cells.append((kind, []))
        elif cells:
            cells[-1][1].append((number, line))
    out = []
    for kind, lines in cells:
        while lines and not lines[-1][1].strip():
            lines.pop()
        if kind == "markdown":
            for number, line in lines:
                if line != "#" and not line.startswith("# "):
                    raise ValueError(f"{source}:{number}: Markdown line {line!r} is not a '# ' comment")
            lines = [(number, line[2:]) for number, line in lines]
        out.append((kind, "\n".join(line for _, line in lines)))
    return out


def build(name: str, cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    """The notebook of ``cells`` (``parse_cells``), with stable cell ids."""
    out = []
    for i, (kind, source) in enumerate(cells):
        if kind == "markdown":
            out.append(new_markdown_cell(source))
        else:
            cell = new_code_cell(source)
            if kind == "parameters":
                cell.metadata["tags"] = ["parameters"]
            out.append(cell)
        out[-1].id = f"{name}-{i}"  # stable ids: regenerating gives the same file
    notebook = new_notebook(cells=out)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata["language_info"] = {"name": "python"}
    return notebook


def notebook_from_source(name: str) -> nbformat.NotebookNode:
    """The notebook ``analysis/notebooks/<name>.py`` describes."""
    path = SOURCES / f"{name}.py"
    return build(name, parse_cells(path.read_text(), str(path)))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"notebooks to write (default all: {', '.join(NOTEBOOKS)})")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in NOTEBOOKS]
    if unknown:
        raise UserInputError(f"no notebook named {', '.join(unknown)}: choose from {', '.join(NOTEBOOKS)}")
    for name in args.names or NOTEBOOKS:
        try:
            notebook = notebook_from_source(name)
        except ValueError as err:
            raise UserInputError(f"{err}: fix the source and rerun") from err
        path = HERE / f"{name}.ipynb"
        nbformat.write(notebook, str(path))
        print(path)


if __name__ == "__main__":
    run_cli(main)
