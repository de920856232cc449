"""The packages import only downwards (docs/architecture.md, "Layers"): every import
of every .py file, those inside functions included, read with ast, never run."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Lower numbers sit lower. The commands (train.py, submit_training_job.py) compose the
# layers under them: they hand the probes' monitor to the training loop in training/.
LAYERS = {"utils": 0, "models": 1, "losses": 1, "data": 1, "training": 2, "virtual_physiology": 3,
          "train": 4, "submit_training_job": 4, "analysis": 4, "neural_fitting": 4}


def imports_between_packages(root: Path, layers: dict[str, int]) -> list[tuple[str, str, str]]:
    """(importing package, imported package, "file:line") for every import from one
    package of ``layers`` into another, anywhere in a file (function bodies too).
    A package is a folder or a top-level module of ``root``; relative imports stay
    inside their package."""
    found = []
    for name in layers:
        files = sorted((root / name).rglob("*.py")) if (root / name).is_dir() else [root / f"{name}.py"]
        for path in files:
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    target = module.split(".")[0]
                    if target in layers and target != name:
                        found.append((name, target, f"{path.relative_to(root)}:{node.lineno}"))
    return found


def layer_violations(edges, layers: dict[str, int]) -> list[str]:
    """Every upward import (into a higher layer) and every cycle between packages."""
    problems = [f"{where}: {src} imports {dst}, a layer above it"
                for src, dst, where in edges if layers[dst] > layers[src]]
    graph = {}
    for src, dst, _ in edges:
        graph.setdefault(src, set()).add(dst)

    def reaches(start, goal, seen):
        return any(nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt}))
                   for nxt in graph.get(start, ()))

    problems += [f"import cycle between packages: {src} -> {dst} -> ... -> {src}"
                 for src in sorted(graph) for dst in sorted(graph[src]) if reaches(dst, src, {dst})]
    return problems


def test_no_package_imports_upwards_or_in_a_cycle():
    edges = imports_between_packages(ROOT, LAYERS)
    assert edges, "the import walk found nothing: is ROOT the repository?"
    assert layer_violations(edges, LAYERS) == []


def test_every_package_has_a_layer():
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} | {p.stem for p in ROOT.glob("*.py")}
    assert packages - {"tests", "benchmarks"} <= set(LAYERS)


def test_the_walk_catches_an_import_inside_a_function_and_a_cycle(tmp_path):
    layers = {"low": 0, "mid": 1, "high": 2, "peer": 1}
    for name in layers:
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("")
    (tmp_path / "mid" / "a.py").write_text("import low.x\n\ndef f():\n    from high.y import z\n    return z\n")
    (tmp_path / "mid" / "b.py").write_text("from . import a\nimport peer\n")
    (tmp_path / "peer" / "c.py").write_text("import mid.a as m\n")
    problems = layer_violations(imports_between_packages(tmp_path, layers), layers)
    assert problems == ["mid/a.py:4: mid imports high, a layer above it",
                        "import cycle between packages: mid -> peer -> ... -> mid",
                        "import cycle between packages: peer -> mid -> ... -> peer"]
