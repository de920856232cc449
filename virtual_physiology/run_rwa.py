"""Run the rwa stage of virtual physiology (and the earlier stages it needs
that are missing) and update the artefact; see virtual_physiology/pipeline.py.

    python virtual_physiology/run_rwa.py MODEL_CHECKPOINT [ARTEFACT_PATH] [--force] [--device cpu] ...
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils import run_cli  # noqa: E402
from virtual_physiology.pipeline import main  # noqa: E402

if __name__ == "__main__":
    run_cli(lambda: main(stage="rwa"))
