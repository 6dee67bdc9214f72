"""Request latency while a 10,000-route config is reloaded again and again (issue: DB-less ops).

Starts an echo upstream and ``fastkong start`` (1 worker) on loopback, sends a fixed-rate
stream of requests (open loop: a late response does not delay the next send), and compares the
latency percentiles of a steady phase with a phase during which the admin API receives a new
10,000-route config every ``--every`` seconds. Also reports the worker's RSS before and after.

    python bench/reload_latency.py [--routes 10000] [--rate 200] [--seconds 10] [--every 2]

The target: p99 during reloads at most 2x the steady p99.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


POST = (
    "import sys, urllib.request as u; "
    "u.urlopen(u.Request(sys.argv[1], open(sys.argv[2], 'rb').read(), "
    "{'content-type': 'application/x-yaml'}), timeout=120)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(url)


def config(upstream: int, routes: int, variant: int) -> str:
    lines = [
        '_format_version: "3.0"',
        "services:",
        "- name: s",
        f"  url: http://127.0.0.1:{upstream}",
        "  routes:",
        "  - name: probe",
        '    paths: ["/probe"]',
    ]
    for i in range(routes):
        lines.append(f"  - name: r{variant}-{i}")
        lines.append(f'    paths: ["/v{variant}/svc{i}/api", "~/v{variant}/re{i}/(?<id>\\\\d+)$"]')
        if i % 4 == 0:
            lines.append(f'    hosts: ["h{i % 97}.example.com"]')
    return "\n".join(lines) + "\n"


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def fixed_rate(url: str, rate: float, seconds: float) -> list[float]:
    """Open-loop load: one request every 1/rate s; returns latencies in ms."""
    latencies: list[float] = []
    errors = 0
    async with httpx.AsyncClient(
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=64)
    ) as client:

        async def one() -> None:
            nonlocal errors
            start = time.perf_counter()
            r = await client.get(url)
            if r.status_code != 200:
                errors += 1
            latencies.append((time.perf_counter() - start) * 1000)

        tasks = []
        start = time.perf_counter()
        n = int(rate * seconds)
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    if errors:
        print(f"  {errors} non-200 responses", file=sys.stderr)
    return latencies


def summary(name: str, values: list[float]) -> tuple[float, float]:
    values = sorted(values)
    p50 = statistics.median(values)
    p99 = values[int(len(values) * 0.99) - 1]
    top = values[-1]
    print(f"{name:>16}: n={len(values)} p50 {p50:6.2f} ms  p99 {p99:7.2f} ms  max {top:7.2f} ms")
    return p50, p99


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", type=int, default=10000)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--every", type=float, default=2.0)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="fastkong-reload-bench-"))
    up, proxy, status, admin = free_port(), free_port(), free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "fastkong.echo", "--port", str(up)],
                stdout=subprocess.DEVNULL,
            )
        )
        cfg = workdir / "kong.yml"
        cfg.write_text(config(up, args.routes, 0))
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "fastkong",
                    "start",
                    "-c",
                    str(cfg),
                    "--proxy-listen",
                    f"127.0.0.1:{proxy}",
                    "--status-listen",
                    f"127.0.0.1:{status}",
                    "--admin-listen",
                    f"127.0.0.1:{admin}",
                    "--prefix",
                    str(workdir / "prefix"),
                ],
                cwd=ROOT,
            )
        )
        wait_http(f"http://127.0.0.1:{status}/status/ready")
        worker = int(
            next(iter(httpx.get(f"http://127.0.0.1:{status}/status").json()["fastkong"]["workers"]))
        )
        url = f"http://127.0.0.1:{proxy}/probe/static"
        asyncio.run(fixed_rate(url, args.rate, 2))  # warm up
        rss_before = rss_kb(worker)

        steady = asyncio.run(fixed_rate(url, args.rate, args.seconds))
        variants = []
        for v in (1, 2):
            variants.append(workdir / f"variant-{v}.yml")
            variants[-1].write_text(config(up, args.routes, v))
        stop = False
        reloads = 0

        def reloader() -> None:
            nonlocal reloads
            while not stop:
                # From another process: encoding and sending 2 MB here would hold this
                # process's GIL and delay the load generator's own requests.
                subprocess.run(
                    [sys.executable, "-c", POST, f"http://127.0.0.1:{admin}/config"]
                    + [str(variants[reloads % 2])],
                    check=True,
                )
                reloads += 1
                time.sleep(args.every)

        import threading

        thread = threading.Thread(target=reloader)
        thread.start()
        during = asyncio.run(fixed_rate(url, args.rate, args.seconds))
        stop = True
        thread.join()
        rss_after = rss_kb(worker)

        print(f"{args.routes} routes (+{args.routes} regex paths), {args.rate:.0f} req/s open loop")
        _, p99_steady = summary("steady", steady)
        _, p99_reload = summary(f"{reloads} reloads", during)
        print(f"p99 ratio reload/steady: {p99_reload / p99_steady:.2f} (target <= 2)")
        print(f"worker RSS: {rss_before // 1024} MB -> {rss_after // 1024} MB")
        return 0
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        os.environ.pop("_", None)


if __name__ == "__main__":
    sys.exit(main())
