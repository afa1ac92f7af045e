"""What an activation prints or logs waits until its records are committed (issue 10)."""

from __future__ import annotations

import logging
import threading

import pytest

from dbosify._runtime._held_output import HeldOutput


def test_print_and_workflow_log_wait_for_release(capsys: pytest.CaptureFixture[str],
                                                 caplog: pytest.LogCaptureFixture) -> None:
    held = HeldOutput()
    others: list[str] = []

    def activation() -> str:
        print("from the workflow")
        logging.getLogger("temporalio.workflow").warning("logged by the workflow")
        # Another thread (an activity) prints at once, even meanwhile.
        other = threading.Thread(target=lambda: print("from an activity"))
        other.start()
        other.join()
        others.append("done")
        return "completion"

    with caplog.at_level(logging.INFO, logger="temporalio.workflow"):
        box: list[str] = []
        thread = threading.Thread(target=lambda: box.append(held.call(activation)))
        thread.start()
        thread.join()
        assert box == ["completion"]
        before = capsys.readouterr().out
        assert "from an activity" in before
        assert "from the workflow" not in before
        assert "logged by the workflow" not in caplog.text
        held.release()
        assert "from the workflow" in capsys.readouterr().out
        assert "logged by the workflow" in caplog.text


def test_discarded_output_is_never_written(capsys: pytest.CaptureFixture[str]) -> None:
    held = HeldOutput()
    thread = threading.Thread(target=lambda: held.call(print, "lost with the activation"))
    thread.start()
    thread.join()
    held.discard()
    held.release()
    assert "lost with the activation" not in capsys.readouterr().out
