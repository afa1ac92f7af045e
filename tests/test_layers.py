"""The house's layers (docs/design.md §1): every import between dbosify's rooms points down.

A room is a top-level module or package of dbosify. An arrow up (the engine importing the
notebook layer, the history importing the engine) fails here, naming the file and the import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import dbosify

_RANKS = {
    # The records of a run and dbosify's own errors: below everything that reads or writes them.
    "_exceptions": 0, "_records": 0,
    "history": 1,
    "_store": 2,
    "_runtime": 3,
    "_service": 4,
    # The Temporal surface.
    "": 5, "_aliases": 5, "_cells": 5, "activity": 5, "client": 5, "common": 5, "converter": 5,
    "exceptions": 5, "service": 5, "testing": 5, "worker": 5, "workflow": 5,
    # The pipeline layer, then the notebook layer on top.
    "pipelines": 6, "promote": 6, "cli": 6,
    "notebook": 7, "magics": 7, "widgets": 7,
}
_ROOT = Path(dbosify.__file__).parent


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return [(line, name) for line, name in found if name.startswith("dbosify.")]


def test_every_room_has_a_rank() -> None:
    rooms = {p.stem if p.is_file() else p.name for p in _ROOT.iterdir()
             if (p.suffix == ".py" or (p / "__init__.py").exists()) and p.name != "__init__.py"}
    assert rooms - set(_RANKS) == set(), "give each new room a rank in _RANKS"


def test_imports_point_down() -> None:
    upward = []
    for path in sorted(_ROOT.rglob("*.py")):
        relative = path.relative_to(_ROOT.parent).with_suffix("")
        module = ".".join(relative.parts).removesuffix(".__init__")
        mine = _RANKS[_room(module)]
        for line, name in _imports(path):
            if _RANKS.get(_room(name), 0) > mine:
                upward.append(f"{relative}.py:{line} imports {name}")
    assert upward == []
