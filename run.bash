#!/usr/bin/env bash
# Virtual physiology of a trained model: every stage (RWA, Gabor fits, grating
# sweep, modulation ratio, plaids, surround suppression, no-feedback rerun,
# connectivity) into one HDF5 artefact. Works from any directory.
#
#   bash run.bash MODEL_CHECKPOINT [ARTEFACT_PATH] [--force] [--ablation no-feedback] [--device cpu] ...
#   bash run.bash --help
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="$ROOT/.venv/bin/python"
[ -x "$PYTHON" ] || PYTHON=python3
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" exec "$PYTHON" -m virtual_physiology.pipeline "$@"
