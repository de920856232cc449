"""Shared test setup: import paths, headless plotting, temporary Jupyter dirs, tmpfs mounts."""
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

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


@pytest.fixture
def tmpfs(tmp_path):
    """mount(options) -> a fresh tmpfs folder, e.g. mount("size=64k") for a full disk or
    mount("size=1m,ro") for a read-only one (root only; skipped elsewhere). Unmounted
    lazily afterwards: a failed write may still hold a file open."""
    mounted = []

    def mount(options):
        folder = tmp_path / f"tmpfs{len(mounted)}"
        folder.mkdir()
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("mounting a tmpfs needs root")
        made = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
        if made.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], check=True)
