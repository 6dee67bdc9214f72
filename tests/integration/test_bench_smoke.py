"""``bench/run --smoke``: the benchmark harness starts every leg, drives it with wrk, and prints a
table with numbers. A missing wrk fails this test (CI installs it); it is never skipped."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 120


def table_rows(output: str) -> dict[str, dict[str, str]]:
    """The Markdown table in ``output``, as {target: {column: cell}}."""
    lines = [line for line in output.splitlines() if line.startswith("|")]
    assert lines, f"no table in the output:\n{output}"
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells, strict=True))
    return rows


def test_bench_smoke() -> None:
    if shutil.which("wrk") is None:
        pytest.fail("wrk is not installed: `apt-get install -y wrk` (bench/run needs it)")
    try:
        done = subprocess.run(
            [str(ROOT / "bench" / "run"), "--smoke"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHON": sys.executable},  # the interpreter running the tests
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"bench/run --smoke took more than {TIMEOUT}s:\n{exc.stdout}\n{exc.stderr}")
    output = f"{done.stdout}\n--- stderr ---\n{done.stderr}"
    assert done.returncode == 0, output

    rows = table_rows(done.stdout)
    assert "fastkong" in rows, output
    assert "direct" in rows, output
    assert float(rows["fastkong"]["req/s"]) > 0, output
    for target, row in rows.items():
        assert row["errors"] == "0", f"{target}: {output}"
