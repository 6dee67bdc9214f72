"""The stream proxy side by side: a tcp route through fastkong, nginx's stream proxy, and none.

Starts, on loopback, an echo upstream (uvloop, one process), nginx with a one-line ``stream``
proxy to it (``worker_processes 1``; needs Debian's ``libnginx-mod-stream``), and ``fastkong
start --stream-listen`` with one tcp route to it. Then, for each target in turn, interleaved
over ``--rounds``:

* **connections/s**: ``--clients`` concurrent loops, each opening a connection, sending 64
  bytes, reading them back and closing (a new TCP connection and upstream connection each time);
* **bulk MB/s**: one connection echoing ``--megabytes`` MB through in 64 KiB writes.

    python bench/stream.py [--rounds 3] [--seconds 5] [--clients 20] [--megabytes 200] [--log]

``--log``: every session is logged to a file by both proxies, nginx with a stream
``access_log`` (Kong's ``basic`` format) and fastkong with a global ``file-log`` plugin for
``tcp`` (Kong's stream serializer, one JSON line per session).

Prints one line per target and round, then the medians and the ratios to nginx.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import uvloop

ROOT = Path(__file__).resolve().parent.parent
MODULE = Path("/usr/lib/nginx/modules/ngx_stream_module.so")

ECHO = """
import asyncio, sys, uvloop
class Echo(asyncio.Protocol):
    def connection_made(self, t): self.t = t
    def data_received(self, d): self.t.write(d)
async def main():
    server = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()
uvloop.run(main())
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(port)


async def _one(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"x" * 64)
    await reader.readexactly(64)
    writer.close()
    await writer.wait_closed()


async def connections_per_second(port: int, clients: int, seconds: float) -> float:
    done = 0
    stop = time.monotonic() + seconds

    async def loop() -> None:
        nonlocal done
        while time.monotonic() < stop:
            await _one(port)
            done += 1

    started = time.monotonic()
    await asyncio.gather(*(loop() for _ in range(clients)))
    return done / (time.monotonic() - started)


async def bulk(port: int, megabytes: int) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    chunk = b"y" * 65536
    total = megabytes * 1024 * 1024

    async def send() -> None:
        for _ in range(total // len(chunk)):
            writer.write(chunk)
            await writer.drain()

    started = time.monotonic()
    sender = asyncio.create_task(send())
    got = 0
    while got < total:
        got += len(await reader.read(1 << 20))
    await sender
    writer.close()
    return megabytes / (time.monotonic() - started)


def launch(
    work: Path,
    echo: str,
    up: int,
    nginx_server: str,
    kong_yml: str,
    stream_listen: str,
    nginx_stream: str = "",
) -> list[subprocess.Popen[bytes]]:
    """The three targets: the ``echo`` upstream program on ``up``, nginx with one stream
    ``server {nginx_server}`` block (after ``nginx_stream``, stream-level directives), and
    fastkong on ``kong_yml`` with ``stream_listen``."""
    (work / "nginx.conf").write_text(
        f"load_module {MODULE};\nworker_processes 1;\ndaemon off;\npid {work}/nginx.pid;\n"
        f"error_log {work}/error.log;\nevents {{ worker_connections 16384; }}\n"
        f"stream {{ {nginx_stream} server {{ {nginx_server} }} }}\n"
    )
    (work / "kong.yml").write_text(kong_yml)
    return [
        subprocess.Popen([sys.executable, "-c", echo, str(up)]),
        subprocess.Popen(["nginx", "-c", str(work / "nginx.conf"), "-p", str(work)]),
        subprocess.Popen(
            [sys.executable, "-m", "fastkong", "start", "-c", str(work / "kong.yml"),
             "--proxy-listen", f"127.0.0.1:{free_port()}", "--admin-listen", "off",
             "--status-listen", "off", "--stream-listen", stream_listen],
            cwd=ROOT,
        ),
    ]  # fmt: skip


def stop(procs: list[subprocess.Popen[bytes]], work: Path) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(30)
    shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--log", action="store_true")
    args = parser.parse_args()
    if not MODULE.exists() or shutil.which("nginx") is None:
        print("needs nginx and its stream module: apt-get install nginx libnginx-mod-stream")
        return 1
    work = Path(tempfile.mkdtemp(prefix="fastkong-bench-stream-"))
    up, via_nginx, via_fastkong = free_port(), free_port(), free_port()
    nginx_stream = plugins = ""
    if args.log:
        nginx_stream = (
            "log_format basic '$remote_addr [$time_local] $protocol $status $bytes_sent "
            f"$bytes_received $session_time'; access_log {work}/nginx-sessions.log basic;"
        )
        plugins = (
            "plugins:\n- name: file-log\n  protocols: [tcp]\n"
            f"  config: {{path: {work}/fastkong-sessions.log}}\n"
        )
    procs = launch(
        work,
        ECHO,
        up,
        f"listen 127.0.0.1:{via_nginx}; proxy_pass 127.0.0.1:{up};",
        '_format_version: "3.0"\n' + plugins + "services:\n- name: echo\n  protocol: tcp\n"
        f"  host: 127.0.0.1\n  port: {up}\n  routes:\n  - name: echo\n    protocols: [tcp]\n"
        f"    destinations: [{{port: {via_fastkong}}}]\n",
        f"127.0.0.1:{via_fastkong}",
        nginx_stream,
    )
    targets = {"direct": up, "nginx": via_nginx, "fastkong": via_fastkong}
    results: dict[str, dict[str, list[float]]] = {t: {"conn": [], "bulk": []} for t in targets}
    try:
        for port in targets.values():
            wait_port(port)
        time.sleep(1)
        for r in range(args.rounds):
            for name, port in targets.items():
                conn = uvloop.run(connections_per_second(port, args.clients, args.seconds))
                mbs = uvloop.run(bulk(port, args.megabytes))
                results[name]["conn"].append(conn)
                results[name]["bulk"].append(mbs)
                print(f"round {r + 1} {name:9} {conn:9.0f} conn/s {mbs:8.0f} MB/s", flush=True)
    finally:
        stop(procs, work)
    print_medians(results, (("conn", "conn/s", 9), ("bulk", "MB/s", 8)))
    return 0


def print_medians(
    results: dict[str, dict[str, list[float]]], columns: tuple[tuple[str, str, int], ...]
) -> None:
    """Each target's medians, and their ratios to nginx's: ``columns`` are (the metric's key in
    ``results``, its unit, its width)."""
    base = {k: statistics.median(v) for k, v in results["nginx"].items()}
    print("\nmedians:")
    for name, found in results.items():
        cells = []
        for key, unit, width in columns:
            value = statistics.median(found[key])
            cells.append(f"{value:{width}.0f} {unit} ({value / base[key]:.2f} of nginx)")
        print(f"{name:9} " + "  ".join(cells))


if __name__ == "__main__":
    sys.exit(main())
