"""Errors by layer (docs/architecture.md, "Errors"): library code raises its package's
domain error (a ``utils.InputError``); only the commands raise ``UserInputError``, and
``run_cli`` prints either as one line with exit status 2. The walk reads every .py
file with ast, never runs it."""
import ast
from pathlib import Path

import pytest

from analysis import AnalysisError
from analysis.reference import AllenMetricsError
from data import DatasetError
from data.default_dataset import TrainingDataError
from models.base import SettingError
from models.checkpoint import CheckpointError
from neural_fitting import RecordingError
from neural_fitting.nwb import MalformedTable
from training import ResumeError, TrainingSetupError
from training.run_dir import NotAResumeState
from training.loop import TrainingDiverged
from training.step import NoiseStateOnOtherDevice, StateDoesNotFitModel
from utils import InputError, UserInputError, run_cli
from virtual_physiology import ArtefactError, ProbeError
from virtual_physiology.stages import NonFiniteResults

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ("utils.py", "analysis", "data", "losses", "models", "neural_fitting", "training", "virtual_physiology")
# Command code that is not a module's main(): the helpers that check a command's own
# arguments (argv words, or the options dataclass its parser filled).
COMMAND_HELPERS = {
    ("analysis/run_notebooks.py", "split_only"),  # the words of --only
    ("neural_fitting/download_dandi.py", "fetch_sessions"),  # the command's body, on its DandiOptions
    ("neural_fitting/model_responses.py", "write_model_responses"),  # the same, on its ResponseOptions
    ("virtual_physiology/pipeline.py", "options_from"),  # parsed flags -> Options
    ("utils.py", "user_errors_from"),  # the conversion commands wrap their calls in
}


def user_input_errors(root: Path, parts=LIBRARY, allowed=frozenset(COMMAND_HELPERS)) -> list[str]:
    """"file:line in FUNCTION" for every use of the name UserInputError (raised, built,
    caught or subclassed) in the files of ``parts`` under ``root``, except inside a
    module's top-level ``main`` and the (file, top-level function) pairs of ``allowed``.
    Methods count as their class's name; the class ``UserInputError`` itself is utils'."""
    found = []
    for part in parts:
        files = sorted((root / part).rglob("*.py")) if (root / part).is_dir() else [root / part]
        for path in files:
            name = path.relative_to(root).as_posix()
            for top in ast.parse(path.read_text(), filename=str(path)).body:
                owner = getattr(top, "name", None)
                if owner == "main" or (name, owner) in allowed or (name, owner) == ("utils.py", "UserInputError"):
                    continue
                found += [f"{name}:{node.lineno} in {owner or 'module level'}" for node in ast.walk(top)
                          if isinstance(node, ast.Name) and node.id == "UserInputError"
                          and isinstance(node.ctx, ast.Load)]
    return found


def test_library_code_raises_no_user_input_error():
    assert user_input_errors(ROOT) == []


def test_the_walk_finds_raises_catches_and_subclasses_outside_main(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "lib.py").write_text(
        "from utils import UserInputError\n\n"
        "def check(x):\n    if x:\n        raise UserInputError('no')\n\n"
        "class Loader:\n    def load(self):\n        try:\n            pass\n"
        "        except UserInputError:\n            pass\n\n"
        "class Odd(UserInputError):\n    pass\n\n"
        "def main():\n    raise UserInputError('fine: the command')\n\n"
        "def parse(words):\n    raise UserInputError('fine: allowed')\n")
    assert user_input_errors(tmp_path, ("pkg",), {("pkg/lib.py", "parse")}) == [
        "pkg/lib.py:5 in check", "pkg/lib.py:11 in Loader", "pkg/lib.py:14 in Odd"]


@pytest.mark.parametrize("error, package_error", [
    (DatasetError, InputError), (TrainingDataError, DatasetError), (CheckpointError, InputError),
    (SettingError, InputError), (TrainingSetupError, InputError), (ResumeError, TrainingSetupError),
    (NotAResumeState, ResumeError), (StateDoesNotFitModel, ResumeError), (NoiseStateOnOtherDevice, ResumeError),
    (TrainingDiverged, TrainingSetupError), (ProbeError, InputError), (NonFiniteResults, ProbeError),
    (ArtefactError, InputError), (AnalysisError, InputError), (AllenMetricsError, AnalysisError),
    (RecordingError, InputError), (MalformedTable, RecordingError), (UserInputError, InputError),
])
def test_each_domain_error_derives_from_its_package_error_and_is_a_value_error(error, package_error):
    assert issubclass(error, package_error) and issubclass(error, ValueError)


def test_training_diverged_is_not_a_command_line_error():
    assert not issubclass(TrainingDiverged, UserInputError)


def test_run_cli_prints_a_domain_error_as_one_line_and_exits_2(capsys):
    def main():
        raise DatasetError("clips.npy holds no clips (shape (0, 50, 400)):\n  give a file with at least one clip")

    with pytest.raises(SystemExit) as code:
        run_cli(main)
    assert code.value.code == 2
    assert capsys.readouterr().err == ("error: clips.npy holds no clips (shape (0, 50, 400)): give a file with at "
                                       "least one clip\n")


def test_run_cli_leaves_other_value_errors_to_their_traceback():
    def main():
        raise ValueError("a bug, not the user's input")

    with pytest.raises(ValueError, match="a bug"):
        run_cli(main)
