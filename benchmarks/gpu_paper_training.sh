#!/usr/bin/env bash
# The paper-size model (3 x 800 units, 20x20 frames) with the best recipe the CPU
# search found (model_checkpoints/pretrained/SEARCH.md: every second frame, the four
# extra photographs, L1 -5.5, lr halving every 10k steps, input noise std 1.0), with
# the lr halved for twice the width: at 3 x 800 the 3 x 400 recipe's 2e-3 blew up in the
# first epoch (mean loss 3e15 on the CPU), 1e-3 gave the 3 x 400 run's first-epoch loss
# (1.75 against 1.74). Trained on a GPU for a fixed time, then its RF summary. One command for a GPU
# machine's spare minutes, after benchmarks/gpu_suite.py:
#
#   bash benchmarks/gpu_paper_training.sh [MINUTES] [SAVE_DIR]      # defaults: 8, gpu_runs
#
# The run stops at the end of the epoch that passes MINUTES (a resumable state is
# saved); continue it with `python train.py --path RUN_FOLDER --max-minutes M`.
# Prints the run folder, its steps and the RF summary (rf_summary.json in the run).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="$ROOT/.venv/bin/python"
[ -x "$PYTHON" ] || PYTHON=python3
MINUTES="${1:-8}"
DEVICE="${DEVICE:-cuda}"   # DEVICE=cpu checks the script on a machine without a GPU
SAVE_DIR="${2:-gpu_runs}"
cd "$ROOT"
DATASET="$("$PYTHON" -m data.default_dataset --frame-shape 20 20 --frame-step 2 --more-photos | awk '/^dataset/ {print $2}')"
"$PYTHON" submit_training_job.py --name paper_size_gpu --L1 -5.5 --dataset "$DATASET" --frame-shape 20 20 \
    --hidden-units 800 800 800 --precision bf16 --lr 1e-3 --lr-half-life 10000 --noise-std 1.0 \
    --epochs 100000 --validate-every 10 --checkpoint-every 40 --rf-monitor-every 40 --rf-monitor-clips 1000 \
    --device "$DEVICE" --save-dir "$SAVE_DIR" --max-minutes "$MINUTES"
RUN="$(ls -td "$SAVE_DIR"/paper_size_gpu_* | head -n 1)"
echo "run folder: $RUN"
tail -n 3 "$RUN/logs/train.log"
"$PYTHON" -m virtual_physiology.rf_summary "$RUN" --clips 1000
