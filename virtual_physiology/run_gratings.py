"""``python -m virtual_physiology.run_gratings``: the gratings stage and the missing ones it needs (--help)."""
from utils import run_cli
from virtual_physiology.pipeline import main

if __name__ == "__main__":
    run_cli(lambda: main(stage="gratings"))
