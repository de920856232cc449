"""Every entry point runs as ``python -m package.module`` from the repository root; run as a
file (where the packages are not importable) it says so in one line and exits 2."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULE_ONLY = sorted([*ROOT.glob("virtual_physiology/run_*.py"), ROOT / "data" / "prepare_dataset.py",
                      *(ROOT / "analysis" / f"{name}.py" for name in ("report", "compare", "run_notebooks",
                                                                       "build_notebooks")),
                      ROOT / "neural_fitting" / "allen_metrics.py", ROOT / "models" / "portable.py"])


@pytest.mark.parametrize("script", MODULE_ONLY, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_module_run_as_a_file_names_the_module_form_in_one_line(script, tmp_path):
    module = ".".join(script.relative_to(ROOT).with_suffix("").parts)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, str(script), "anything"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and f"python -m {module}" in proc.stderr, proc.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written
