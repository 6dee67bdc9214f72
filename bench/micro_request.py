"""fastkong's own per-request work, without sockets: ``python bench/micro_request.py``.

The throughput benchmark (``bench/run``) measures fastkong together with Granian, the kernel,
wrk and the upstream, on two shared cores, where a run varies by 10-30%. This one isolates the
part fastkong's code decides: one ``Gateway.http`` call per request, in one process, on uvloop,
with an upstream connection whose transport answers every request at once (the upstream's
response is fed to the real ``UpstreamConnection`` on the next loop iteration, as a socket
would). Routing, header handling, the pool, the response parser, the plugins all run as they
do under load; only the I/O is missing.

Two figures per scenario:

* **us per request**: the best of 25 timed slices (the minimum is the figure the machine's
  noise disturbs least);
* **bytecodes per request**: Python instructions executed (``sys.settrace`` opcode events over
  500 requests): deterministic, so a change that removes work shows up even on a noisy machine.
  ``--lines N`` lists the N busiest source lines.

Scenarios: ``plain`` (a prefix route, no plugins) and ``auth-rl`` (key-auth + rate-limiting,
policy local), the shapes of ``bench/run``'s scenarios of the same names.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastkong.config import load_config  # noqa: E402
from fastkong.proxy import upstream  # noqa: E402
from fastkong.proxy.app import Gateway  # noqa: E402
from fastkong.runtime import compile_runtime  # noqa: E402

API_KEY = "bench-key"
CONFIG = f"""
_format_version: "3.0"
services:
- name: bench-upstream
  url: http://127.0.0.1:8080
  routes:
  - {{name: plain, paths: [/static], strip_path: false}}
  - name: auth-rl
    paths: [/auth]
    strip_path: false
    plugins:
    - name: key-auth
    - name: rate-limiting
      config: {{minute: 1000000000, policy: local}}
consumers:
- username: bench
  keyauth_credentials: [{{key: {API_KEY}}}]
"""
#: What the benchmark's upstream (nginx) answers.
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Thu, 26 Nov 2026 01:00:00 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 13\r\nConnection: keep-alive\r\n\r\n"
    b"Hello, World!"
)
#: What wrk sends, plus the key for auth-rl.
SCENARIOS: dict[str, tuple[str, list[tuple[bytes, bytes]]]] = {
    "plain": ("/static", []),
    "auth-rl": ("/auth", [(b"apikey", API_KEY.encode())]),
}


class _AnsweringTransport:
    """A transport whose peer answers each request on the next loop iteration."""

    def __init__(self, conn: upstream.UpstreamConnection) -> None:
        self.conn = conn

    def write(self, data: bytes) -> None:
        self.conn.loop.call_soon(self.conn.data_received, RESPONSE)

    def set_write_buffer_limits(self, **_: int) -> None:
        pass

    def close(self) -> None:
        pass


Call = Callable[[], Awaitable[None]]


async def _gateway(scenario: str) -> tuple[Gateway, Call]:
    loaded = load_config(CONFIG)
    gateway = Gateway(compile_runtime(loaded.config, loaded.hash))
    await gateway.startup()
    pool = gateway.pool
    assert pool is not None

    async def connect(
        key: upstream.PoolKey, address: str, timeout: float, **_: Any
    ) -> upstream.UpstreamConnection:
        conn = upstream.UpstreamConnection(pool, key)
        conn.connection_made(_AnsweringTransport(conn))  # type: ignore[arg-type]
        return conn

    pool.connect = connect  # type: ignore[method-assign]
    path, extra = SCENARIOS[scenario]
    scope = {
        "type": "http",
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 40000),
        "scheme": "http",
        "method": "GET",
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:8000"), *extra],
    }
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def one() -> None:
        await gateway.http(dict(scope), receive, send)

    await one()
    if statuses != [200]:
        raise SystemExit(f"{scenario}: expected a 200, got {statuses}")
    return gateway, one


async def _time(one: Call, requests: int) -> float:
    for _ in range(2000):
        await one()
    best = float("inf")
    per_slice = max(1, requests // 25)
    for _ in range(25):
        started = time.perf_counter()
        for _ in range(per_slice):
            await one()
        best = min(best, (time.perf_counter() - started) / per_slice)
    return best * 1e6


async def _count(one: Call, lines: Counter[str]) -> float:
    counted = 0

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal counted
        frame.f_trace_opcodes = True
        if event == "opcode":
            counted += 1
            code = frame.f_code
            lines[f"{os.path.basename(code.co_filename)}:{frame.f_lineno} {code.co_name}"] += 1
        return trace

    n = 500
    sys.settrace(trace)
    try:
        for _ in range(n):
            await one()
    finally:
        sys.settrace(None)
    return counted / n


async def main(args: argparse.Namespace) -> None:
    print("| scenario | us per request (best of 25) | bytecodes per request |")
    print("|---|---:|---:|")
    busiest: dict[str, Counter[str]] = {}
    for scenario in args.scenarios.split(","):
        gateway, one = await _gateway(scenario)
        us = await _time(one, args.requests)
        lines: Counter[str] = Counter()
        codes = await _count(one, lines)
        busiest[scenario] = lines
        await gateway.shutdown()
        print(f"| {scenario} | {us:.1f} | {codes:.0f} |")
    for scenario, lines in busiest.items():
        if args.lines:
            print(f"\n{scenario}: busiest lines (bytecodes per request)")
            for line, count in lines.most_common(args.lines):
                print(f"  {count / 500:6.1f}  {line}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenarios", default="plain,auth-rl")
    parser.add_argument("--requests", type=int, default=100_000, help="timed requests (100000)")
    parser.add_argument("--lines", type=int, default=0, help="list the N busiest source lines")
    import uvloop

    uvloop.run(main(parser.parse_args()))
