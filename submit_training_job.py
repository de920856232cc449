"""Submit a training job: ``python submit_training_job.py --name NAME --L1 LOG10_LAMBDA``.

Runs locally by default, on the GPU when there is one. Every flag is described
by ``--help`` with the paper's value; the maths lives in train.py, models/ and
losses/.

    python submit_training_job.py --preset demo          # ~10 min on a 2-core CPU, then an RF summary
    python submit_training_job.py --name htp --L1 -6     # the paper's configuration
    python submit_training_job.py --path model_checkpoints/RUN   # resume
"""
from __future__ import annotations

from train import build_parser, config_for, train
from utils import run_cli


def main(argv=None):
    args = build_parser(__doc__).parse_args(argv)
    cfg, resume = config_for(args)
    run_dir = train(cfg, resume)
    print(f"run folder: {run_dir}")
    if cfg.preset == "demo" and (run_dir / "config.json").exists() and any(run_dir.glob("*-epochs_model.safetensors")):
        from virtual_physiology.rf_summary import summarise

        summarise(run_dir)


if __name__ == "__main__":
    run_cli(main)
