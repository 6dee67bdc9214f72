"""UDP side by side: a udp route through fastkong, nginx's stream proxy, and none.

Starts, on loopback, a UDP echo upstream (uvloop, one process), nginx with a ``stream`` server
``listen ... udp`` proxying to it (``worker_processes 1``, ``proxy_timeout 1s``; needs Debian's
``libnginx-mod-stream``), and ``fastkong start --stream-listen '... udp'`` with one udp route to
it (``read_timeout: 1000``, the same idle end). Then, for each target in turn, interleaved over
``--rounds``:

* **datagrams/s**: ``--clients`` sockets, each its own session, each in a closed loop: send 64
  bytes, wait for them back;
* **sessions/s**: ``--clients`` loops, each sending one datagram from a new socket (a new
  session: routing, a peer, an upstream socket) and waiting for the answer.

    python bench/udp.py [--rounds 3] [--seconds 3] [--clients 20] [--wildcard]

``--wildcard``: nginx and fastkong listen on ``0.0.0.0`` (nginx's ``listen PORT udp``), where
each reads every datagram's destination (``IP_PKTINFO``) to answer from it. The run then
happens in a network namespace of its own (``unshare -n``, loopback only), so the wildcard
sockets take nothing but the benchmark's datagrams.

Prints one line per target and round, then the medians and the ratios to nginx.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stream import MODULE, free_port, launch, print_medians, stop  # noqa: E402

ECHO = """
import asyncio, sys, uvloop
class Echo(asyncio.DatagramProtocol):
    def connection_made(self, t): self.t = t
    def datagram_received(self, d, a): self.t.sendto(d, a)
async def main():
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", int(sys.argv[1])))
    await asyncio.Event().wait()
uvloop.run(main())
"""
PAYLOAD = b"d" * 64
IN_NETNS = "FASTKONG_BENCH_NETNS"


class Asker(asyncio.DatagramProtocol):
    """One client socket: :meth:`ask` sends and waits for one answer (None on timeout)."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.waiter: asyncio.Future[bytes] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: object) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(data)

    async def ask(self) -> bytes | None:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.sendto(PAYLOAD)
        try:
            return await asyncio.wait_for(self.waiter, 1.0)
        except TimeoutError:
            return None


async def _asker(port: int) -> Asker:
    loop = asyncio.get_running_loop()
    _, asker = await loop.create_datagram_endpoint(Asker, remote_addr=("127.0.0.1", port))
    return asker


async def datagrams_per_second(port: int, clients: int, seconds: float) -> tuple[float, int]:
    askers = [await _asker(port) for _ in range(clients)]
    done = lost = 0
    stop = time.monotonic() + seconds

    async def loop(asker: Asker) -> None:
        nonlocal done, lost
        while time.monotonic() < stop:
            if await asker.ask() is None:
                lost += 1
            else:
                done += 1

    started = time.monotonic()
    await asyncio.gather(*(loop(a) for a in askers))
    elapsed = time.monotonic() - started
    for asker in askers:
        assert asker.transport is not None
        asker.transport.close()
    return done / elapsed, lost


async def sessions_per_second(port: int, clients: int, seconds: float) -> tuple[float, int]:
    done = lost = 0
    stop = time.monotonic() + seconds

    async def loop() -> None:
        nonlocal done, lost
        while time.monotonic() < stop:
            asker = await _asker(port)
            if await asker.ask() is None:
                lost += 1
            else:
                done += 1
            assert asker.transport is not None
            asker.transport.close()

    started = time.monotonic()
    await asyncio.gather(*(loop() for _ in range(clients)))
    return done / (time.monotonic() - started), lost


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--wildcard", action="store_true")
    args = parser.parse_args()
    if not MODULE.exists() or shutil.which("nginx") is None:
        print("needs nginx and its stream module: apt-get install nginx libnginx-mod-stream")
        return 1
    if args.wildcard and os.environ.get(IN_NETNS) != "1":
        # Root's nginx must keep its worker's user: a network namespace only (-n), not -r.
        own = "-n" if os.geteuid() == 0 else "-rn"
        os.environ[IN_NETNS] = "1"
        os.execvp("unshare", ["unshare", own, "sh", "-c", 'ip link set lo up && exec "$0" "$@"',
                              sys.executable, *sys.argv])  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="fastkong-bench-udp-"))
    up, via_nginx, via_fastkong = free_port(), free_port(), free_port()
    host = "0.0.0.0" if args.wildcard else "127.0.0.1"
    procs = launch(
        work,
        ECHO,
        up,
        f"listen {host}:{via_nginx} udp; proxy_timeout 1s; proxy_pass 127.0.0.1:{up};",
        '_format_version: "3.0"\nservices:\n- name: echo\n  protocol: udp\n'
        f"  host: 127.0.0.1\n  port: {up}\n  read_timeout: 1000\n  routes:\n  - name: echo\n"
        f"    protocols: [udp]\n    destinations: [{{port: {via_fastkong}}}]\n",
        f"{host}:{via_fastkong} udp",
    )
    targets = {"direct": up, "nginx": via_nginx, "fastkong": via_fastkong}
    results: dict[str, dict[str, list[float]]] = {t: {"dgram": [], "sess": []} for t in targets}
    try:
        time.sleep(3)  # no port to probe for UDP: give the three time to bind
        for r in range(args.rounds):
            for name, port in targets.items():
                dgram, lost_d = uvloop.run(datagrams_per_second(port, args.clients, args.seconds))
                sess, lost_s = uvloop.run(sessions_per_second(port, args.clients, args.seconds))
                results[name]["dgram"].append(dgram)
                results[name]["sess"].append(sess)
                print(
                    f"round {r + 1} {name:9} {dgram:9.0f} datagrams/s {sess:8.0f} sessions/s "
                    f"(unanswered: {lost_d}, {lost_s})",
                    flush=True,
                )
                time.sleep(1.5)  # the sessions of this leg time out before the next
    finally:
        stop(procs, work)
    print_medians(results, (("dgram", "datagrams/s", 9), ("sess", "sessions/s", 8)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
