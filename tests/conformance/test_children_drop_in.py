"""A Temporal program using child workflows, run with only its imports changed (issue 9 §3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .test_drop_in import run_swapped


@pytest.mark.slow
def test_hello_child_workflow(database: str, tmp_path: Path) -> None:
    out = run_swapped("hello_child_workflow.py", database, tmp_path)
    assert out.splitlines() == [
        "Result: Hello, World!",
        "Result: ApplicationError: no one to greet",
        "Result: Hi, later (signalled)!",
        "Result: cancelled: True",
    ], out
