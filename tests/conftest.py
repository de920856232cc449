"""Shared test setup: import paths, headless plotting, temporary Jupyter dirs."""
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (str(ROOT), str(ROOT / "tests")):
    if p not in sys.path:
        sys.path.insert(0, p)

os.environ.setdefault("MPLBACKEND", "Agg")

# Notebooks run by papermill must not write into the user's ~/.local/share/jupyter.
_jupyter_tmp = tempfile.mkdtemp(prefix="htp-jupyter-")
os.environ.setdefault("JUPYTER_DATA_DIR", os.path.join(_jupyter_tmp, "data"))
os.environ.setdefault("JUPYTER_CONFIG_DIR", os.path.join(_jupyter_tmp, "config"))
os.environ.setdefault("JUPYTER_RUNTIME_DIR", os.path.join(_jupyter_tmp, "runtime"))
