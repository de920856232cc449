"""benchmarks/gpu_suite.py --smoke: every section of the GPU suite runs on the CPU at
tiny sizes, so the suite works the first time a GPU machine is available."""
import json
import subprocess
import sys
from pathlib import Path

import torch

from training.config import auto_recurrence

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_suite_smoke_runs_every_section(tmp_path):
    out = tmp_path / "suite.json"
    proc = subprocess.run([sys.executable, "benchmarks/gpu_suite.py", "--smoke", "--json", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["mode"] == "smoke"
    sections = results["sections"]
    assert {name: s["status"] for name, s in sections.items()} == dict.fromkeys(
        ["tests", "bench_train", "vphys", "training", "sweep"], "ok")
    assert sections["tests"]["rows"][0].get("skipped", 0) > 0  # no CUDA here: the GPU tests skip, not fail
    names = [row["name"] for row in sections["bench_train"]["rows"]]
    variants = [f"{r} {p}" for r in ("block", "dense") for p in ("fp32", "tf32", "bf16")]
    assert names == ["dense fp32 reference"] + variants
    assert all(row["median_s"] > 0 for row in sections["bench_train"]["rows"])
    assert "total" in [row["name"] for row in sections["vphys"]["rows"]]
    train_row, rf_row = sections["training"]["rows"]
    auto_on_this_cpu = auto_recurrence(torch.device("cpu"), "bf16", 6 + 5 + 4)  # the smoke training: 6,5,4 units
    assert (train_row["precision"], train_row["recurrence_backend"]) == ("bf16", auto_on_this_cpu)
    assert train_row["steps"] > 0 and rf_row["clean_mse"] > 0
    sweep = sections["sweep"]["rows"]
    assert [row["name"] for row in sweep] == ["3x6@4x4 K=1", "3x6@4x4 K=2"]
    assert all(row["batched_model_steps_per_s"] > 0 and row["sequential_model_steps_per_s"] > 0 for row in sweep)
    assert "=== gpu_suite ===" in proc.stdout
