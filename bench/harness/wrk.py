"""wrk: one run, and the numbers in its output.

Every run uses ``bench/loadtest/wrk/gateway.lua`` (the same script users get): its ``done()``
prints p50/p90/p99/p99.9/p99.99 in microseconds, which ``wrk --latency`` alone does not (no
p99.9). Environment variables select its other features per leg: many paths (the route-table
scenarios), and a fixed rate (the latency runs). Without them the script defines no
``request()``, so wrk sends its pre-built request with no Lua per request.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.procs import BenchError

SCRIPT = Path(__file__).resolve().parent.parent / "loadtest" / "wrk" / "gateway.lua"

_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_NUM_UNIT = r"([\d.]+)(us|ms|s|m|h)"


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    non_2xx: int = 0  # wrk counts status >= 400 here ("Non-2xx or 3xx responses")
    socket_errors: dict[str, int] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return self.non_2xx + sum(self.socket_errors.values())

    def describe_errors(self) -> str:
        parts = [f"non-2xx/3xx {self.non_2xx}"] if self.non_2xx else []
        parts += [f"{k} {v}" for k, v in self.socket_errors.items() if v]
        return ", ".join(parts)


def parse_wrk(text: str) -> WrkResult:
    """Numbers from wrk's output and the script's summary line; BenchError if one is missing."""

    def need(pattern: str) -> re.Match[str]:
        m = re.search(pattern, text, re.MULTILINE)
        if m is None:
            raise BenchError(f"wrk output has no match for {pattern!r}:\n{text}")
        return m

    total = need(rf"^\s*(\d+) requests in {_NUM_UNIT}")
    line = need(r"^fastkong-wrk: (.*)$").group(1)
    us = {k: int(v) for k, v in re.findall(r"(\S+)=(\d+)", line)}
    result = WrkResult(
        requests=int(total.group(1)),
        seconds=float(total.group(2)) * _UNIT_MS[total.group(3)] / 1000.0,
        rps=float(need(r"^Requests/sec:\s+([\d.]+)").group(1)),
        p50_ms=us["p50"] / 1000,
        p99_ms=us["p99"] / 1000,
        p999_ms=us["p99.9"] / 1000,
    )
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", text):
        result.non_2xx = int(m.group(1))
    if m := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    ):
        result.socket_errors = dict(
            zip(("connect", "read", "write", "timeout"), map(int, m.groups()), strict=True)
        )
    return result


@dataclass(frozen=True)
class Load:
    """What wrk sends to a leg: extra headers, and the script's environment (paths, rate)."""

    headers: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()

    def with_env(self, **values: str) -> Load:
        return Load(self.headers, (*self.env, *values.items()))


def run_wrk(
    wrk: str,
    url: str,
    duration: int,
    connections: int,
    threads: int,
    load: Load = Load(),
    env: Mapping[str, str] | None = None,
) -> str:
    cmd: Sequence[str] = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        "--latency",
        "-s",
        str(SCRIPT),
        *(arg for header in load.headers for arg in ("-H", header)),
        url,
    ]
    script_env = {"WRK_THREADS": str(threads), **dict(load.env), **(env or {})}
    try:
        done = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=duration + 60,
            env={**os.environ, **script_env},
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"wrk did not finish: {shlex.join(cmd)}") from exc
    shown = " ".join(f"{k}={shlex.quote(v)}" for k, v in script_env.items())
    if done.returncode != 0:
        raise BenchError(
            f"wrk exited with {done.returncode}: {shown} {shlex.join(cmd)}\n{done.stderr}"
        )
    return f"$ {shown} {shlex.join(cmd)}\n{done.stdout}{done.stderr}"
