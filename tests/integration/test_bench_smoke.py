"""``bench/run --smoke``: the benchmark harness starts every leg it can (the peers that are not
installed are left out with a message), drives it with wrk, and prints its tables with numbers.
A missing wrk fails this test (CI installs it); it is never skipped."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

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


def _harness() -> object:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import e2e
    finally:
        sys.path.remove(str(ROOT / "bench"))
    return e2e


def test_missing_peers_are_left_out_with_how_to_install_them() -> None:
    e2e: Any = _harness()
    args = e2e.parse_args(["--quick"])
    tools = {"wrk": "/usr/bin/wrk", "nginx": "/usr/sbin/nginx", "haproxy": None, "caddy": None}
    tools |= {"aiohttp": None, "redis-server": None, "matplotlib": None}
    scenarios, targets, left_out = e2e.choose(args, tools)
    assert targets == ["direct", "nginx", "floor", "floor-asgi", "fastkong", "fastkong-granian-tls"]
    notes = "\n".join(left_out)
    assert "haproxy is not installed (install: apt-get install -y haproxy)" in notes
    assert "caddy is not installed (install: apt-get install -y caddy)" in notes
    assert "aiohttp is not installed (install: pip install aiohttp)" in notes
    assert "scenario rl-redis: redis-server is not installed" in notes
    assert "rl-redis" not in [s.name for s in scenarios]
    assert "plain" in [s.name for s in scenarios]


def test_wrk_output_with_the_script_summary_is_parsed() -> None:
    _harness()
    from harness.wrk import parse_wrk

    text = (
        "Running 1s test @ http://127.0.0.1:1/static\n"
        "  12345 requests in 1.00s, 1.50MB read\n"
        "  Socket errors: connect 0, read 2, write 0, timeout 1\n"
        "  Non-2xx or 3xx responses: 4\n"
        "Requests/sec:  12345.67\n"
        "fastkong-wrk: requests=12345 errors=7 p50=810 p90=1500 p99=4100 p99.9=8200 "
        "p99.99=9000 max=9100\n"
    )
    result = parse_wrk(text)
    assert (result.requests, result.rps) == (12345, 12345.67)
    assert (result.p50_ms, result.p99_ms, result.p999_ms) == (0.81, 4.1, 8.2)
    assert result.errors == 7


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    """``python bench/<args>`` from the repository root; it must exit 0."""
    result = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert result.returncode == 0, result.stderr
    return result


def test_micro_request_runs_both_scenarios() -> None:
    """``bench/micro_request.py``: both scenarios answer 200 and give both figures."""
    result = run_script("bench/micro_request.py", "--requests", "2000", "--lines", "3")
    (rows,) = tables(result.stdout)
    assert [row["scenario"] for row in rows] == ["plain", "auth-rl"]
    for row in rows:
        assert float(row["us per request (best of 25)"]) > 0
        assert int(row["bytecodes per request"]) > 100
    assert "busiest lines" in result.stdout


def test_micro_router_runs_both_implementations() -> None:
    """``bench/micro_router.py``: both routers build and agree on every answer (it asserts
    that), and the table names both."""
    result = run_script("bench/micro_router.py", "--routes", "300", "--calls", "3000")
    rows = [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
    assert "compiled" in rows and "twin" in rows
    assert "speed-up" in result.stdout
