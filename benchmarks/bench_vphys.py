"""Time the whole virtual-physiology pipeline on a randomly initialised
paper-size model, against the bare forward passes it needs, in the same run.

    python benchmarks/bench_vphys.py            # 3 x 800 units, 20 x 20 frames, 20,000 RWA clips
    python benchmarks/bench_vphys.py --quick    # 3 x 100 units, 1,000 RWA clips: a smoke test

The model is saved with ``models.io.save_model`` and the pipeline runs stage
by stage on that checkpoint exactly as ``run.bash`` would: every stage of
the registry ``virtual_physiology.stages.STAGES``, in its order. Every call of
``hidden_activity`` is recorded (the model it ran on, batch, frames);
afterwards the same calls are replayed on the same model objects with
random input of the same shapes ("bare"), so the no-feedback stage's
calls replay on its ablated copy, not on the full model. Printed per
stage: wall time, bare forward time, their ratio, peak RSS during the stage
(Linux: VmHWM after resetting it through /proc/self/clear_refs), the frames
pushed through the models and which models those were; then the totals and
the process's peak RSS.
"""
from __future__ import annotations

import argparse
import collections
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.network_hierarchical_recurrent import NetworkHierarchicalRecurrent  # noqa: E402
from models.io import save_model  # noqa: E402
from virtual_physiology.pipeline import Options, Pipeline  # noqa: E402
from virtual_physiology.stages import STAGES  # noqa: E402

CALLS: dict[str, list] = collections.defaultdict(list)  # stage -> [(model, batch, frames), ...]
_current = ["setup"]


def _recording(function):
    def hidden_activity(self, x):
        if _current[0] is not None:
            CALLS[_current[0]].append((self, *x.shape[:2]))
        return function(self, x)
    return hidden_activity


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_gb() -> float:
    """VmHWM (since the last reset) in GB, else the process's ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2 ** 20
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


@torch.no_grad()
def _bare_seconds(calls) -> float:
    """Replay recorded (model, batch, frames) calls on random input: forward time only."""
    inputs = {}
    total = 0.0
    for model, batch, frames in calls:
        if (batch, frames) not in inputs:
            inputs[(batch, frames)] = torch.randn(batch, frames, model.n_pixels, device=model.device)
        start = time.perf_counter()
        model.hidden_activity(inputs[(batch, frames)])
        total += time.perf_counter() - start
    return total


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 x 100 units and 1,000 RWA clips")
    parser.add_argument("--units", type=int, default=None, help="units per group (default 800, quick 100)")
    parser.add_argument("--rwa-clips", type=int, default=None, help="default 20000, quick 1000")
    defaults = Options()
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--surround-batch", type=int, default=defaults.surround_batch)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workdir", default=None, help="where to write the checkpoint and artefact (default: a temp dir)")
    args = parser.parse_args()
    units = args.units or (100 if args.quick else 800)
    rwa_clips = args.rwa_clips or (1000 if args.quick else 20000)

    torch.manual_seed(0)
    model = NetworkHierarchicalRecurrent(frame_shape=(20, 20), hidden_units=(units,) * 3)
    config = dict(model="network_hierarchical_recurrent", frame_shape=[20, 20], hidden_units=[units] * 3,
                  beta=[0.9, 0.1, 0.1], warmup=4, local_inhibitory_prop=0.2, L1=-6.0,
                  loss="loss_hierarchical_temporal_prediction", detach_targets=False, noise_std=0.5011)
    NetworkHierarchicalRecurrent.hidden_activity = _recording(NetworkHierarchicalRecurrent.hidden_activity)

    with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
        weights = save_model(Path(workdir) / "run", model, config, epoch=0)
        options = Options(rwa_clips=rwa_clips, batch_size=args.batch_size, surround_batch=args.surround_batch,
                          progress=False)
        start_all = time.perf_counter()
        pipeline = Pipeline(weights, device=args.device, options=options)
        rows = []
        for stage in STAGES:
            _current[0] = stage
            reset = _reset_peak_rss()
            start = time.perf_counter()
            pipeline.run_stage(stage)
            rows.append([stage, time.perf_counter() - start, _peak_rss_gb() if reset else float("nan")])
            print(f"[{stage}] {rows[-1][1]:.1f} s", file=sys.stderr, flush=True)
        _current[0] = "assemble"
        reset = _reset_peak_rss()
        start = time.perf_counter()
        pipeline.assemble(log=lambda *a: None)
        rows.append(["assemble", time.perf_counter() - start, _peak_rss_gb() if reset else float("nan")])
        total = time.perf_counter() - start_all
        _current[0] = None  # the bare replay is not recorded
        size_gb = pipeline.artefact.stat().st_size / 1e9

        print(f"model 3 x {units} units, 20 x 20 frames, {rwa_clips} RWA clips, {torch.get_num_threads()} threads, "
              f"device {args.device}")
        print(f"{'stage':<13}{'wall s':>9}{'bare s':>9}{'ratio':>7}{'peak GB':>9}{'frames':>12}  models")
        bare_total = 0.0
        for stage, seconds, peak in rows:
            calls = CALLS.get(stage, [])
            bare = _bare_seconds(calls)
            bare_total += bare
            frames = sum(b * t for _, b, t in calls)
            ratio = f"{seconds / bare:7.2f}" if bare else " " * 7
            models = ", ".join({id(m): "full" if m is pipeline.model else "ablated copy" for m, _, _ in calls}.values())
            print(f"{stage:<13}{seconds:9.1f}{bare:9.1f}{ratio}{peak:9.2f}{frames:12d}  {models or '-'}")
        # Resetting VmHWM also resets ru_maxrss on Linux, so the pipeline's peak is the
        # largest stage peak (the bare replay afterwards would otherwise count too).
        stage_peaks = [peak for _, _, peak in rows if peak == peak]
        pipeline_peak = max(stage_peaks) if stage_peaks else _peak_rss_gb()
        print(f"{'total':<13}{total:9.1f}{bare_total:9.1f}{total / bare_total:7.2f}{pipeline_peak:9.2f}"
              f"{sum(b * t for c in CALLS.values() for _, b, t in c):12d}")
        print(f"(total includes loading the checkpoint; peak of the total = the largest stage peak; "
              f"artefact {size_gb:.2f} GB)")


if __name__ == "__main__":
    main()
