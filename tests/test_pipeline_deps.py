"""dvc.yaml must declare every library module a stage runs (directly or through other modules):
an undeclared module changes outputs without `dvc repro` noticing."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from helpers import PROJECT

SRC = PROJECT / "src"
PIPELINE = yaml.safe_load((PROJECT / "dvc.yaml").read_text())["stages"]


def _module_file(name: str) -> Path | None:
    """The source of a tripleforge module: its .py, or the .c of a compiled one."""
    base = SRC / Path(*name.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py", base.with_suffix(".c")):
        if cand.is_file():
            return cand
    return None


def _imports(path: Path) -> set[str]:
    """Every tripleforge module named in an import statement of `path` (lazy imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.startswith("tripleforge")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tripleforge"):
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names if _module_file(f"{node.module}.{a.name}")}
    return names


def _closure(script: Path) -> set[str]:
    seen: set[str] = set()
    todo = [script]
    while todo:
        for name in _imports(todo.pop()):
            f = _module_file(name)
            if f is None:
                continue
            rel = str(f.relative_to(PROJECT))
            if rel not in seen:
                seen.add(rel)
                if f.suffix == ".py":
                    todo.append(f)
    return seen


@pytest.mark.parametrize("stage", sorted(PIPELINE))
def test_stage_declares_every_module_it_runs(stage: str) -> None:
    spec = PIPELINE[stage]
    script = PROJECT / spec["cmd"].split()[1]
    needed = _closure(script) - {"src/tripleforge/__init__.py", "src/tripleforge/progress.py",
                                 "src/tripleforge/paths.py"}
    assert not needed - set(spec["deps"]), f"{stage}: add to deps in dvc.yaml"
    assert str(script.relative_to(PROJECT)) in spec["deps"]
