"""What promotion reads from a notebook file: its ``%%workflow`` cells and its ``parameters``
cell (papermill's convention: the code cell tagged ``parameters``), nothing else."""

from __future__ import annotations

import ast
import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class PromotionError(Exception):
    """Promotion cannot go on; the message says why and what to do. Nothing was written."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class WorkflowCell:
    """One ``%%workflow`` cell: its body (without the magic line) and its options."""

    index: int
    """Position of the cell in the notebook, counting from 1 (as Jupyter shows it)."""
    source: str
    task_queue: str | None


@dataclass
class NotebookSource:
    """The parts of a notebook that promotion uses."""

    path: Path
    cells: list[WorkflowCell] = field(default_factory=list)
    parameters: dict[str, Any] | None = None
    """The ``parameters`` cell's values (in the order it assigns them), or None without one."""


def _text(source: Any) -> str:
    return "".join(source) if isinstance(source, list) else str(source or "")


def _header(line: str, index: int) -> str | None:
    """The task queue of a ``%%workflow [--task-queue Q]`` line (the magic's only option)."""
    try:
        words = shlex.split(line)[1:]
    except ValueError as err:
        raise PromotionError(f"cell {index}: cannot read {line!r}: {err}") from None
    queue: str | None = None
    while words:
        word = words.pop(0)
        if word == "--task-queue" and words:
            queue = words.pop(0)
        elif word.startswith("--task-queue="):
            queue = word.split("=", 1)[1]
        else:
            raise PromotionError(f"cell {index}: unknown option {word!r} in {line!r} "
                                 "(%%workflow takes only --task-queue Q)")
    return queue


def read_notebook(path: Path) -> NotebookSource:
    """The ``%%workflow`` cells and the ``parameters`` cell of a ``.ipynb`` file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PromotionError(f"no such notebook: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PromotionError(f"{path} is not a readable .ipynb notebook: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise PromotionError(f"{path} is not a Jupyter notebook (no 'cells' list)")
    found = NotebookSource(path)
    for number, cell in enumerate(data["cells"], start=1):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        text = _text(cell.get("source"))
        tags = (cell.get("metadata") or {}).get("tags") or []
        stripped = text.lstrip("\n")
        first, _, body = stripped.partition("\n")
        if first.split(maxsplit=1)[:1] == ["%%workflow"]:
            found.cells.append(WorkflowCell(number, body.strip("\n") + "\n",
                                            _header(first, number)))
        elif "parameters" in tags and found.parameters is None:
            found.parameters = _parameters(text, number)
    if not found.cells:
        raise PromotionError(
            f"{path} has no %%workflow cell: promotion takes the workflows and activities "
            "defined in cells that start with %%workflow")
    return found


def _parameters(source: str, index: int) -> dict[str, Any]:
    """The values a ``parameters`` cell assigns, as JSON values (fixed at promotion)."""
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        raise PromotionError(f"parameters cell (cell {index}) is not valid Python: {err}") \
            from None
    names: list[str] = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, ast.AnnAssign) and node.value else []
        for target in targets:
            if isinstance(target, ast.Name) and not target.id.startswith("_") \
                    and target.id not in names:
                names.append(target.id)
    namespace: dict[str, Any] = {}
    try:
        exec(compile(tree, f"<parameters cell {index}>", "exec"), namespace)
    except Exception as err:
        raise PromotionError(f"parameters cell (cell {index}) raised "
                             f"{type(err).__name__}: {err}") from None
    values = {}
    for name in names:
        value = namespace[name]
        try:
            if json.loads(json.dumps(value)) != value:
                raise TypeError(type(value).__name__)
        except (TypeError, ValueError):
            raise PromotionError(
                f"parameter {name!r} (cell {index}) is a {type(value).__name__}, which a "
                "schedule cannot carry: make it a string, number, bool, list or dict") from None
        values[name] = value
    return values
