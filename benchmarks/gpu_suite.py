"""Everything a GPU machine should measure, in one command (about 6-8 minutes):

    python benchmarks/gpu_suite.py                 # on a machine with a CUDA GPU
    python benchmarks/gpu_suite.py --smoke         # the same code on the CPU at tiny sizes (< 2 minutes)

1. tests: tests/test_core_cuda.py (backends and precisions on the GPU against the
   fp32 CPU model; they skip without CUDA), tests/test_core_tf32.py (--tf32's
   split, with its GPU check) and tests/test_core_cuda_graph.py (--cuda-graph's
   steps against eager ones, and train.py with it);
2. train step: benchmarks/bench_train.py at the paper's size (B=100, T=50, 20x20,
   3x800) for each recurrence backend (block, dense) x precision (fp32, tf32, bf16)
   x CUDA graph (off, on; off only on a CPU), with the dense fp32 masked reference
   in the same run;
3. virtual physiology: benchmarks/bench_vphys.py --quick (3x100, 1,000 RWA clips);
4. training: 2 minutes of train.py on the embedded natural-movie dataset (paper
   size, bf16, recurrence auto), then virtual_physiology.rf_summary on the run
   (1,000 RWA clips, on the CPU as rf_summary does);
5. sweep: benchmarks/bench_sweep.py at the paper's size: model-steps per second of
   K = 1, 4, 16 models trained as one stack (--batched) against K sequential steps.

Prints one table and writes every figure to one JSON file (--json). A section that
fails is reported as failed with its error, and the others still run.
"""
from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import bench_sweep  # noqa: E402
import bench_train  # noqa: E402

# Sizes per mode. The smoke sizes only check that every section runs.
FULL = {"bench": ["--hidden-units", "800,800,800", "--steps", "10", "--warmup-steps", "3"],
        "vphys": ["--quick"],
        "train": ["--hidden-units", "800,800,800", "--max-minutes", "2", "--epochs", "2000"],
        "rf_clips": 1000,
        "sweep": ["--sizes", "3x800@20x20", "--models", "1", "4", "16", "--steps", "3"]}
SMOKE = {"bench": ["--batch", "4", "--frames", "8", "--frame-shape", "4", "4", "--hidden-units", "6,5,4",
                   "--steps", "1", "--warmup-steps", "1"],
         "vphys": ["--units", "4", "--rwa-clips", "20"],
         "train": ["--hidden-units", "6,5,4", "--epochs", "1", "--batch-size", "400"],
         "rf_clips": 20,
         "sweep": ["--smoke"]}


GPU_TESTS = ("tests/test_core_cuda.py", "tests/test_core_tf32.py", "tests/test_core_cuda_graph.py")


def section_tests(device, sizes):
    """pytest on the GPU test files; rows: passed / skipped / failed counts."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *GPU_TESTS],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|skipped|failed|error)", proc.stdout)}
    if proc.returncode not in (0, 5) or counts.get("failed") or counts.get("error"):
        raise RuntimeError(f"CUDA tests failed:\n{proc.stdout[-2000:]}")
    return [{"name": " ".join(GPU_TESTS), **counts}]


def section_bench_train(device, sizes):
    """bench_train per backend x precision x CUDA graph (on a GPU); rows: one per
    variant plus the reference."""
    graph = ["--graph", "off", "on"] if device.type == "cuda" else []
    args = bench_train.build_parser().parse_args(
        sizes["bench"] + ["--device", str(device), "--recurrence", "block", "dense",
                          "--precision", "fp32", "tf32", "bf16", *graph])
    result = bench_train.run(args)
    bench_train.print_results(result)
    ref = result["reference"]
    rows = [{"name": "dense fp32 reference", "min_s": ref["min_s"], "median_s": ref["median_s"]}]
    for v in result["variants"]:
        name = f"{v['recurrence']} {v['precision']}" + (" graph" if v["graph"] == "on" else "")
        rows.append({"name": name, "min_s": v["min_s"], "median_s": v["median_s"],
                     "vs_reference": ref["median_s"] / v["median_s"], "gflop_per_s": v["gflops"] / v["min_s"]})
    return rows


def section_vphys(device, sizes):
    """bench_vphys in a subprocess (it patches the model class); rows: per-stage wall s."""
    proc = subprocess.run([sys.executable, "benchmarks/bench_vphys.py", *sizes["vphys"], "--device", str(device)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"bench_vphys failed:\n{proc.stderr[-2000:]}")
    print(proc.stdout)
    rows = []
    for line in proc.stdout.splitlines():
        parts = line.split()
        numbers = len(parts) >= 3 and all(re.fullmatch(r"[\d.]+", p) for p in parts[1:3])
        if numbers and re.fullmatch(r"[a-z]+", parts[0]):
            rows.append({"name": parts[0], "wall_s": float(parts[1]), "bare_s": float(parts[2])})
    if not any(r["name"] == "total" for r in rows):
        raise RuntimeError(f"bench_vphys printed no total:\n{proc.stdout[-2000:]}")
    return rows


def section_training(device, sizes):
    """train.py on the embedded dataset, then the RF summary; rows: steps/s and RF figures."""
    import train
    from models.checkpoint import HISTORY_FILE
    from virtual_physiology.rf_summary import summarise

    with tempfile.TemporaryDirectory(prefix="gpu-suite-") as tmp:
        flags = sizes["train"] + ["--name", "gpu-suite", "--precision", "bf16", "--recurrence", "auto",
                                  "--device", str(device), "--save-dir", tmp, "--validate-every", "1000000",
                                  "--checkpoint-every", "1000000"]
        cfg, _ = train.config_for(train.build_parser().parse_args(flags))
        started = time.perf_counter()
        run = train.train(cfg, progress=False)
        seconds = time.perf_counter() - started
        config = json.loads((run / "config.json").read_text())
        history = json.loads((run / HISTORY_FILE).read_text())
        epochs = history["train"]["epoch"][-1]
        steps = epochs * -(-config["n_train"] // cfg.batch_size)
        summary = summarise(run, sizes["rf_clips"])
    errors = summary["clean_validation_next_frame_mse"]["trained"]
    rf = summary["group1_receptive_fields"]["trained"]
    return [{"name": "train", "epochs": epochs, "steps": steps, "seconds": seconds, "steps_per_s": steps / seconds,
             "recurrence_backend": config["recurrence_backend"], "precision": config["precision"]},
            {"name": "rf_summary", "clean_mse": errors["model"], "copy_last_frame_mse": errors["copy_last_frame"],
             "fraction_original_gabor": rf["fraction_original_gabor"], "fraction_strict_gabor": rf["fraction_strict_gabor"],
             "median_orientation_index": rf["median_orientation_index"], "median_gabor_r": rf["median_gabor_r"]}]


def section_sweep(device, sizes):
    """bench_sweep: K models batched against K sequential steps; rows: one per size and K."""
    rows = bench_sweep.run(bench_sweep.parse_args(sizes["sweep"] + ["--device", str(device)]))
    return [{"name": f"{row['size']} K={row['K']}", **{k: v for k, v in row.items() if k not in ("size", "K")}}
            for row in rows]


SECTIONS = {"tests": section_tests, "bench_train": section_bench_train, "vphys": section_vphys,
            "training": section_training, "sweep": section_sweep}


def machine(device) -> dict:
    info = {"device": str(device), "torch": torch.__version__, "python": platform.python_version(),
            "cpu_threads": torch.get_num_threads()}
    if device.type == "cuda":
        info |= {"gpu": torch.cuda.get_device_name(device), "cuda": torch.version.cuda,
                 "cudnn": torch.backends.cudnn.version()}
    return info


def print_table(results):
    print("\n=== gpu_suite ===")
    print(json.dumps(results["machine"]))
    print(f"{'section':12} {'item':26} figures")
    for name, section in results["sections"].items():
        if section["status"] != "ok":
            print(f"{name:12} {'FAILED':26} {section['error'].splitlines()[0]}")
            continue
        for row in section["rows"]:
            figures = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                for k, v in row.items() if k != "name")
            print(f"{name:12} {row['name']:26} {figures}")
        print(f"{'':12} {'(section wall time)':26} {section['seconds']:.1f} s")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU: checks that every section runs")
    ap.add_argument("--json", type=Path, default=Path("gpu_suite.json"), help="where to write the figures")
    ap.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    args = ap.parse_args(argv)
    if not args.smoke and not torch.cuda.is_available():
        ap.error("no CUDA GPU is visible: run this on a GPU machine, or use --smoke to check it on the CPU")
    device = torch.device("cpu" if args.smoke else "cuda")
    sizes = SMOKE if args.smoke else FULL
    results = {"mode": "smoke" if args.smoke else "full", "machine": machine(device), "sections": {}}
    started = time.perf_counter()
    for name in args.sections:
        t0 = time.perf_counter()
        print(f"--- {name}", flush=True)
        try:
            results["sections"][name] = {"status": "ok", "rows": SECTIONS[name](device, sizes)}
        except Exception as err:  # report and carry on: one broken section must not hide the others
            traceback.print_exc()
            results["sections"][name] = {"status": "failed", "error": f"{type(err).__name__}: {err}", "rows": []}
        results["sections"][name]["seconds"] = time.perf_counter() - t0
    results["total_seconds"] = time.perf_counter() - started
    print_table(results)
    print(f"total {results['total_seconds']:.1f} s; figures in {args.json}")
    args.json.write_text(json.dumps(results, indent=1))
    return 0 if all(s["status"] == "ok" for s in results["sections"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
