"""Every worked example under ``pipelines/`` runs, offline, as a user would run it (a
subprocess: DBOS is one object per process), and does what its README says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_postgres

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2] / "pipelines"


def run_example(name: str, *args: str, cwd: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DBOSIFY_DATABASE_URL", "DBOS_SYSTEM_DATABASE_URL")}
    done = subprocess.run([sys.executable, str(ROOT / name / "pipeline.py"), *args],
                          capture_output=True, text=True, timeout=180, cwd=cwd, env=env)
    assert done.returncode == 0, f"{name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, f"{name} printed no result:\n{done.stdout[-2000:]}"
    result: dict[str, Any] = json.loads(lines[-1])
    return result


@pytest.mark.parametrize("name", ["csv_to_sqlite", "http_to_postgres", "daily_backfill"])
def test_each_example_has_its_files(name: str) -> None:
    folder = ROOT / name
    assert (folder / "pipeline.py").is_file() and (folder / "README.md").is_file()
    assert "python pipelines/" + name in (folder / "README.md").read_text()


def test_csv_folder_to_sqlite(tmp_path: Path) -> None:
    result = run_example("csv_to_sqlite", "--workdir", str(tmp_path / "work"), cwd=tmp_path)
    assert result["first_run_rows"] == 24 and result["second_run_rows"] == 6
    assert result["rows"] == result["distinct_orders"] == 30
    assert result["per_day"] == {"2024-03-01": 12, "2024-03-02": 12, "2024-03-03": 6}


def test_http_api_to_postgres_with_merge(tmp_path: Path) -> None:
    postgres = require_postgres()
    table = f"products_{uuid.uuid4().hex[:8]}"
    result = run_example("http_to_postgres", "--postgres", postgres, "--table", table,
                         cwd=tmp_path)
    assert result["first_run"]["rows"] == 53 and result["second_run"]["rows"] == 58
    assert result["rows"] == result["distinct_skus"] == 58
    assert result["sku_0001_price"] == 1.99


def test_date_partitioned_backfill(tmp_path: Path) -> None:
    result = run_example("daily_backfill", "--workdir", str(tmp_path / "work"),
                         "--start", "2024-01-01", "--end", "2024-01-20", cwd=tmp_path)
    assert result["partitions"] == result["done"] == result["days_stored"] == 20
    assert result["failed"] == {} and result["retried"] == {"2024-01-13": 2}
    assert result["views"] == result["raw_rows"]
