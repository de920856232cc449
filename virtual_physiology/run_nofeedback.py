"""``python -m virtual_physiology.run_nofeedback``: the nofeedback stage and the missing ones it needs (--help)."""
import sys

if __package__ in (None, ""):  # run as a file, the repository's packages are not importable
    print("error: run it as a module from the repository root: "
          "python -m virtual_physiology.run_nofeedback MODEL_CHECKPOINT [ARTEFACT_PATH]", file=sys.stderr)
    sys.exit(2)

from utils import run_cli
from virtual_physiology.pipeline import main

if __name__ == "__main__":
    run_cli(lambda: main(stage="nofeedback"))
