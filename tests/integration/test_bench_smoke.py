"""``bench/run --smoke``: the benchmark harness starts every leg it can (the peers that are not
installed are left out with a message), drives it with wrk, and prints its tables with numbers.
A missing wrk fails this test (CI installs it); it is never skipped."""

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


def tables(output: str) -> list[list[dict[str, str]]]:
    """Every Markdown table in ``output``, each as a list of {column: cell}."""
    found: list[list[dict[str, str]]] = []
    header: list[str] | None = None
    for line in [*output.splitlines(), ""]:
        if not line.startswith("|"):
            header = None
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if header is None:
            header = cells
            found.append([])
        elif not set(line) <= set("|-: "):
            found[-1].append(dict(zip(header, cells, strict=True)))
    return found


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

    peak, fixed, goals = tables(done.stdout)
    rows = {(row["scenario"], row["target"]): row for row in peak}
    assert ("plain", "fastkong") in rows, output
    assert ("plain", "direct") in rows, output
    assert float(rows["plain", "fastkong"]["req/s"]) > 0, output
    for key, row in rows.items():
        assert row["errors"] == "0", f"{key}: {output}"
    fastkong = [row for row in fixed if row["target"] == "fastkong"]
    assert fastkong and float(fastkong[0]["req/s"]) > 0, output
    assert all(row["errors"] == "0" for row in fixed), output
    assert "plain route, 1 worker: fastkong / nginx" in goals[0]["ratio"] or not shutil.which(
        "nginx", path="/usr/sbin:/usr/bin"
    ), output
