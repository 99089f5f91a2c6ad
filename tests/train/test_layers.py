"""The training layer stands on its own: no import cycle inside it, and the demo package reached from
one function, for demo runs only."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

TRAIN = Path(__file__).resolve().parents[2] / "sonar_ray" / "train"


def _imports(path: Path) -> list[tuple[str, str]]:
    """(imported module, enclosing function or "") of every import in a file, at any depth."""
    found = []

    def visit(node: ast.AST, where: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else where
            if isinstance(child, ast.Import):
                found.extend((a.name, where) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module:
                found.extend([(child.module, where)] + [(f"{child.module}.{a.name}", where) for a in child.names])
            visit(child, inner)

    visit(ast.parse(path.read_text()), "")
    return found


def test_the_training_layer_has_no_import_cycle():
    modules = {p.stem for p in TRAIN.glob("*.py")}
    graph = {m: {i.rsplit(".", 1)[1] for i, _ in _imports(TRAIN / f"{m}.py")
                 if i.startswith("sonar_ray.train.") and i.count(".") == 2 and i.rsplit(".", 1)[1] in modules}
             for m in modules}
    done: set[str] = set()

    def walk(m: str, path: list[str]) -> None:
        assert m not in path, f"import cycle: {' -> '.join(path[path.index(m):] + [m])}"
        if m not in done:
            for dep in graph[m]:
                walk(dep, path + [m])
            done.add(m)

    for m in sorted(modules):
        walk(m, [])


def test_the_demo_package_is_reached_only_by_the_demo_branch_of_resolve():
    demo = [(p.stem, where) for p in TRAIN.glob("*.py") for mod, where in _imports(p)
            if mod == "sonar_ray.demo" or mod.startswith("sonar_ray.demo.")]
    assert set(demo) == {("inputs", "resolve")}, demo
    code = ("import importlib, pkgutil, sys, sonar_ray.train as t\n"
            "for m in pkgutil.iter_modules(t.__path__): importlib.import_module(f'sonar_ray.train.{m.name}')\n"
            "print(sorted(m for m in sys.modules if m.startswith('sonar_ray.demo')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip() == "[]", out.stdout
