#!/usr/bin/env bash
# Virtual physiology of a trained model: every stage into one HDF5 artefact
# (virtual_physiology/pipeline.py). Works from any directory.
#
#   bash run.bash MODEL_CHECKPOINT [ARTEFACT_PATH] [--force] [--ablation no-feedback] [--device cpu] ...
#   bash run.bash MODEL_CHECKPOINT [ARTEFACT_PATH] --stage plaid     # one stage (and the missing ones it needs)
#   bash run.bash --help                                            # every option, and the stages
#
# Stages, in the order they run (the registry virtual_physiology/stages.py; tests check this line):
#   rwa gabor gratings modulation plaid surround nofeedback connectivity
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="$ROOT/.venv/bin/python"
[ -x "$PYTHON" ] || PYTHON=python3
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" exec "$PYTHON" -m virtual_physiology.pipeline "$@"
