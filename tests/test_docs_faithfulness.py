"""docs/faithfulness.md stays true to the code: every test it names exists,
every row a comment cites exists, and the project's files refer to no
description readers do not have."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "faithfulness.md"
SOURCES = [p for pattern in ("*.py", "*.md", "*.bash", "*.ipynb") for p in ROOT.rglob(pattern)
           if not {".venv", "model_checkpoints", "figures", ".git"} & set(p.relative_to(ROOT).parts)]


def _rows() -> set[str]:
    return set(re.findall(r"^\| \*\*(.+?)\*\* \|", DOC.read_text(), flags=re.M))


def test_every_test_the_document_names_exists():
    named = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", DOC.read_text())
    assert len(named) > 40
    missing = [f"{path}::{name}" for path, name in named
               if not re.search(rf"^def {name}\(", (ROOT / path).read_text(), flags=re.M)]
    assert not missing, f"docs/faithfulness.md names tests that do not exist: {missing}"


def test_every_cited_row_exists():
    rows = _rows()
    cited = {(path.relative_to(ROOT), row) for path in SOURCES if path != DOC
             for row in re.findall(r'docs/faithfulness\.md,\s+"([^"]+)"', " ".join(path.read_text().split()))}
    assert cited, "no file cites a row"
    unknown = sorted(f"{path}: {row}" for path, row in cited if row not in rows)
    assert not unknown, f"citations of rows docs/faithfulness.md does not have: {unknown}"


def test_no_file_refers_to_a_description_readers_do_not_have():
    pattern = re.compile(r"spec §|§\s?9 row|shared/spec|\.\./shared|paper\.md|ecosystem\.md", re.IGNORECASE)
    offenders = sorted(str(path.relative_to(ROOT)) for path in SOURCES
                       if path.name != Path(__file__).name and pattern.search(path.read_text()))
    assert not offenders, f"these files cite a document users do not have: {offenders}"


def test_the_architecture_page_names_only_tests_and_files_that_exist():
    text = (ROOT / "docs" / "architecture.md").read_text()
    tests = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", text)
    files = set(re.findall(r"`((?:tests|models|losses|data|training|virtual_physiology|analysis|neural_fitting|benchmarks)/[\w/]+\.py)", text))
    assert len(tests) >= 2 and len(files) >= 8
    missing = [f"{path}::{name}" for path, name in tests
               if not re.search(rf"^def {name}\(", (ROOT / path).read_text(), flags=re.M)]
    missing += [path for path in files if not (ROOT / path).exists()]
    assert not missing, f"docs/architecture.md names what does not exist: {missing}"


def test_the_architecture_picture_puts_every_package_on_its_import_layer():
    from tests.test_import_layers import LAYERS

    text = (ROOT / "docs" / "architecture.md").read_text()
    picture = re.search(r"^## Layers\n.*?^```\n(.*?)^```", text, flags=re.M | re.S).group(1)
    drawn = {name.removesuffix("/").removesuffix(".py"): int(layer)
             for layer, row in re.findall(r"^ ?(\d)  (.*)$", picture, flags=re.M)
             for name in re.findall(r"([\w]+(?:/|\.py))(?=\s|$)", row)}
    assert drawn == LAYERS, f"docs/architecture.md's picture of the layers differs from tests/test_import_layers.py: {drawn}"
