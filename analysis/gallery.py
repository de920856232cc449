"""One self-contained HTML page per report: the report's figure and tables,
every figure the six notebooks made for the same artefact (or, for the
notebooks that read a checkpoint, for its checkpoint), and the model card if
the run folder has one.

The page needs nothing but itself: images are embedded as base64 data URIs,
the style is inline, there is no script and no link to load. Notebook figures
are read from FIGURES/<notebook>/*.png (``python -m analysis.run_notebooks``
writes them there); a folder whose summary.json names another artefact or
checkpoint is left out with a note saying so, so the page cannot mix models.
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np

from analysis.build_notebooks import NOTEBOOKS
from models.checkpoint import MODEL_CARD_FILE
from utils import portable_path
from virtual_physiology import ArtefactError

STYLE = """body{font-family:sans-serif;max-width:1400px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.85em}td,th{border:1px solid #ccc;padding:3px 6px}
th{background:#f0f0f0}img{max-width:100%;border:1px solid #eee;margin:0.5em 0}figure{margin:1em 0}
figcaption{font-family:monospace;color:#555}.note{color:#a40;font-style:italic}pre{background:#f7f7f7;padding:1em;
white-space:pre-wrap}"""


def report_dir(artefact) -> Path:
    """``<ARTEFACT>.report`` beside the artefact: where its report goes without --out
    (``analysis.report``), with the notebooks' figures in its ``figures`` folder
    (``analysis.run_notebooks``)."""
    artefact = Path(artefact)
    return artefact.with_name(artefact.name + ".report")


def png_data_uri(path: str | Path) -> str:
    """The PNG file at ``path`` as a data:image/png;base64 URI."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _cell(value) -> str:
    if isinstance(value, (float, np.floating)):
        return "n/a" if not np.isfinite(value) else f"{value:.3g}"
    return html.escape(str(value))


def html_table(rows: list[dict], columns: list[str]) -> str:
    """An HTML table of ``rows`` (dicts) with one column per name in ``columns``
    (numbers to 3 significant digits, nan as n/a)."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(r.get(c, ''))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _same_path(a, b) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def checkpoint_of(vp) -> Path:
    """The weights file of an artefact (``VirtualPhysiology``) as the
    notebooks that read a checkpoint got it from ``analysis.run_notebooks``:
    where ``vp.weights_file()`` finds it, else its recorded path (the report
    needs no weights, only this name to match figures and find the model card)."""
    try:
        return vp.weights_file()
    except ArtefactError:
        return Path(vp.checkpoint["weights_file"])


def _same_checkpoint(given, weights: Path) -> bool:
    """``given`` (a summary's checkpoint) is the weights file, or the run folder holding it."""
    return _same_path(given, weights) or (Path(given).is_dir() and _same_path(given, Path(weights).parent))


def provenance_problem(summary_path: Path, checkpoint, artefact) -> str | None:
    """Why the figures beside ``summary_path`` are not of this artefact and
    its checkpoint ``checkpoint`` (``checkpoint_of``) (None if they are).
    Notebooks that read the artefact are matched on it; those that read no
    artefact (mse, nback) on the checkpoint: its weights file or the run
    folder holding it."""
    if not summary_path.is_file():
        return "the notebook did not finish (no summary.json), so its figures cannot be matched to this checkpoint"
    summary = json.loads(summary_path.read_text())
    if "artefact" in summary:
        if not _same_path(summary["artefact"], artefact):
            return f"made from the artefact {summary['artefact']}, not {artefact}"
        return None
    checkpoints = [path for _, path in summary.get("checkpoints", [])] or [summary.get("checkpoint")]
    if not any(c is not None and _same_checkpoint(c, checkpoint) for c in checkpoints):
        return f"made from {', '.join(map(str, checkpoints))}, not from {checkpoint}"
    return None


def notebook_section(figures_dir: Path, name: str, checkpoint, artefact) -> str:
    """The HTML of one notebook's figures, or a note saying why there are none."""
    folder = figures_dir / name
    heading = f"<h2>{html.escape(name)}</h2>"
    pngs = sorted(folder.glob("*.png"))
    if not pngs:
        return heading + (f'<p class="note">no figures in {html.escape(str(folder))}: run '
                          f"<code>python -m analysis.run_notebooks ARTEFACT --only {name}</code></p>")
    problem = provenance_problem(folder / "summary.json", checkpoint, artefact)
    if problem:
        return heading + f'<p class="note">figures in {html.escape(str(folder))} not shown: {html.escape(problem)}</p>'
    figures = "".join(f'<figure><img src="{png_data_uri(p)}" alt="{html.escape(p.stem)}">'
                      f"<figcaption>{html.escape(p.stem)}</figcaption></figure>" for p in pngs)
    return heading + figures


def model_card(weights) -> str | None:
    """The text of MODEL_CARD.md in the run folder of the weights file ``weights``
    (``checkpoint_of``), if there is one."""
    card = Path(weights).parent / MODEL_CARD_FILE
    return card.read_text() if card.is_file() else None


def render_gallery(checkpoint, artefact, report_png, tables: list[tuple[str, list[dict], list[str]]],
                   figures_dir) -> str:
    """The whole page: title and paths, the report figure, ``tables`` as
    (heading, rows, columns), the notebooks' figures and the model card."""
    shown = {name: html.escape(portable_path(path)) for name, path in  # a shipped page names no folder of this machine
             (("checkpoint", checkpoint), ("artefact", artefact), ("figures", figures_dir))}
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Report: {shown['checkpoint']}</title>"
             f"<style>{STYLE}</style></head><body>",
             "<h1>Virtual-physiology report</h1>",
             f"<p>Checkpoint <code>{shown['checkpoint']}</code>; artefact "
             f"<code>{shown['artefact']}</code>; notebook figures from "
             f"<code>{shown['figures']}</code>.</p>",
             f'<figure><img src="{png_data_uri(report_png)}" alt="report"><figcaption>report</figcaption></figure>']
    for heading, rows, columns in tables:
        parts.append(f"<h2>{html.escape(heading)}</h2>" + html_table(rows, columns))
    parts += [notebook_section(Path(figures_dir), name, checkpoint, artefact) for name in NOTEBOOKS]
    card = model_card(checkpoint)
    parts.append("<h2>Model card</h2>" + (f"<pre>{html.escape(card)}</pre>" if card is not None
                                          else '<p class="note">the run folder has no MODEL_CARD.md</p>'))
    return "\n".join(parts) + "\n</body></html>\n"
