"""The stream process: ``python -m fastkong.stream.main '<options as JSON>'``.

The supervisor starts one per worker (``--workers``, as each of Kong's nginx workers serves the
stream subsystem too) when ``stream_listen`` names listeners, or when a ``proxy_listen`` entry is
served by the edge (fastkong/stream/edge.py: ``ssl`` and ``proxy_protocol`` ones), with the same
environment as its Granian children (the state file, the node's health table, its own pid).
Several bind their listeners with ``SO_REUSEPORT``, and the kernel spreads connections over
them; per-process state (round-robin positions, connection counts) is per process, as it is per
nginx worker. Each serves every stream and edge listener on one event loop, follows the state
file as the HTTP workers do (a file that fails to load changes nothing; SIGHUP builds again, for
a renewed default certificate), and on SIGTERM stops accepting and gives open connections up to
the drain timeout before closing them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import ssl
import sys
from pathlib import Path
from typing import Any

import uvloop

from fastkong import metrics
from fastkong.acme.certs import AcmeCache, AcmeSource
from fastkong.control.lifeline import die_with_parent, expected_parent
from fastkong.control.logs import configure as configure_logging
from fastkong.control.node_signals import ignore_operator_signals
from fastkong.control.state import file_identity, read_state, write_report
from fastkong.plugins.bundled import _queue as http_queue
from fastkong.plugins.bundled import file_log
from fastkong.proxy.access_log import reopen_on_signal
from fastkong.proxy.edge import EdgeTable
from fastkong.proxy.trust import TrustedIps
from fastkong.stream.access_log import StreamAccessLog
from fastkong.stream.edge import Edge, EdgeListener
from fastkong.stream.server import StreamListener, StreamProxy
from fastkong.stream.snapshot import DefaultCertificate, StreamSnapshot, build_snapshot
from fastkong.stream.udp import UdpListener, UdpProxy
from fastkong.upstreams.dns import Resolver, dns_settings
from fastkong.upstreams.registry import Registry, open_table

log = logging.getLogger("fastkong.stream")

POLL_INTERVAL = 0.25
_TLS_VERSIONS = {"tls1.2": ssl.TLSVersion.TLSv1_2, "tls1.3": ssl.TLSVersion.TLSv1_3,
                 "tls1.1": ssl.TLSVersion.TLSv1_1}  # fmt: skip


class Follower:
    """Keeps the stream proxy's snapshot in step with the state file."""

    def __init__(
        self,
        proxy: StreamProxy,
        path: Path,
        default_cert: DefaultCertificate | None,
        edge: Edge | None = None,
        udp: UdpProxy | None = None,
    ) -> None:
        self.proxy = proxy
        self.edge = edge
        self.udp = udp
        self.path = path
        self.default_cert = default_cert
        self.identity: tuple[int, int, int] | None = None
        self.stream_tls = any(x.ssl for x in proxy.listeners)
        edged = edge.edge_listeners if edge is not None else []
        self.edge_alpns = {x.alpn for x in edged if x.ssl}
        #: The acme plugin's certificates this process has read (kept across configs).
        self.acme_cache = AcmeCache() if self.edge_alpns else None

    def __repr__(self) -> str:
        return f"<Follower {self.path} {self.proxy.snapshot!r}>"

    def build(self) -> StreamSnapshot:
        config_hash, config, _ = read_state(self.path)
        return build_snapshot(
            config,
            config_hash,
            self.default_cert,
            self.edge_alpns,
            self.stream_tls,
            self.acme_cache,
        )

    def install(self, snapshot: StreamSnapshot) -> None:
        self.proxy.snapshot = snapshot
        if self.udp is not None:
            self.udp.snapshot = snapshot
        if self.edge is not None:
            self.edge.snapshot = snapshot
        if snapshot.acme is not None and self.acme_cache is not None:
            self.acme_cache.start(_warm(snapshot.acme))
        # Reported as the HTTP workers do: the node is ready once this process serves too.
        write_report(self.path.parent, os.getpid(), snapshot.hash)

    def rebuild(self) -> None:
        """Build again at the next poll, the config unchanged: the default certificate's files
        changed (the supervisor's SIGHUP after an ``ssl_cert`` renewal)."""
        self.identity = None

    async def follow(self, registry: Registry) -> None:
        loop = asyncio.get_running_loop()
        while True:
            identity = file_identity(self.path)
            if identity is not None and identity != self.identity:
                self.identity = identity
                try:
                    snapshot = await loop.run_in_executor(None, self.build)
                except Exception:
                    log.exception("stream: cannot load %s; keeping the current config", self.path)
                else:
                    await registry.prefetch(snapshot)
                    self.install(snapshot)
                    registry.adopt(snapshot)
            await asyncio.sleep(POLL_INTERVAL)


async def _warm(acme: AcmeSource) -> None:
    try:
        await acme.warm()
    except Exception as exc:  # noqa: BLE001 - handshakes read what they miss themselves
        log.warning("acme: cannot read the stored certificates: %s", exc)


async def serve(options: dict[str, Any]) -> int:
    loop = asyncio.get_running_loop()
    listeners = [StreamListener(*entry) for entry in options["listen"]]
    resolver = Resolver(loop, dns_settings(os.environ))
    access_path = options.get("access_log", "off")
    access_log = StreamAccessLog(access_path) if access_path != "off" else None
    trusted = TrustedIps.parse(options.get("trusted_ips", ""))
    proxy = StreamProxy(listeners, resolver, trusted, access_log)
    udp = UdpProxy([UdpListener(*entry) for entry in options.get("udp", ())], resolver, access_log)
    edge = None
    if options.get("edge"):
        table = EdgeTable(options["edge_table"], int(options["edge_slots"]))
        edge = Edge(
            [EdgeListener(*entry) for entry in options["edge"]], table, options.get("server")
        )
    default_cert = None
    if any(x.ssl for x in listeners) or (edge is not None and any(x.ssl for x in edge.listeners)):
        default_cert = DefaultCertificate(
            options["ssl_pairs"],
            _TLS_VERSIONS.get(options.get("ssl_protocol_min", "tls1.2"), ssl.TLSVersion.TLSv1_2),
        )
    registry = Registry(open_table(os.environ.get("FASTKONG_HEALTH")), resolver)
    follower = Follower(proxy, Path(os.environ["FASTKONG_STATE_FILE"]), default_cert, edge, udp)
    bound: list[tuple[str, list[StreamListener] | list[UdpListener]]] = [
        ("stream_listen", list(listeners)),
        ("stream_listen", udp.listeners),
    ]
    if edge is not None:
        bound.append(("proxy_listen", list(edge.listeners)))
    for setting, group in bound:
        try:
            for listener in group:
                listener.bind(options.get("backlog", 16384), bool(options.get("reuseport")))
        except OSError as exc:
            print(f"fastkong: {setting}: cannot listen: {exc}", file=sys.stderr)
            return 1
    if access_log is not None:
        try:
            access_log.open()
        except OSError as exc:
            print(f"fastkong: proxy_stream_access_log: cannot open {access_path}: {exc}",
                  file=sys.stderr)  # fmt: skip
            return 1
        reopen_on_signal(loop)  # nginx's SIGUSR1, which the supervisor forwards
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, follower.rebuild)
    # The first snapshot before the first connection: a new node serves its config at once.
    if follower.path.exists():
        follower.identity = file_identity(follower.path)
        try:
            follower.install(await loop.run_in_executor(None, follower.build))
            registry.adopt(proxy.snapshot)
        except Exception:
            log.exception("stream: cannot load %s", follower.path)
    registry.start(loop)
    # The prometheus plugin's stream counts, beside the HTTP workers' (fastkong.metrics).
    metrics.WORKER.subsystem = "stream"
    # Kong adds the stream subsystem's target health rows when stream listeners exist.
    metrics.WORKER.stream_listeners = len(listeners) + len(udp.listeners)
    metrics.WORKER.start(requests=lambda: 0)
    proxy.start(loop)
    if edge is not None:
        edge.start(loop)
    await udp.start(loop)
    following = loop.create_task(follower.follow(registry))
    await stop.wait()
    following.cancel()
    udp.stop()
    drain_timeout = float(options.get("drain_timeout", 30.0))
    drains = [proxy.drain(drain_timeout)]
    if edge is not None:
        drains.append(edge.drain(drain_timeout))
    await asyncio.gather(*drains)
    registry.stop()
    await asyncio.sleep(0)  # the sessions' done callbacks (log lines, counts) are queued
    if access_log is not None:
        access_log.close()
    # What the log plugins hold for the sessions that ended, before exiting.
    await http_queue.drain(5.0)
    file_log.close_all()
    metrics.WORKER.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    options = json.loads(args[0])
    die_with_parent(expected_parent())
    ignore_operator_signals()  # nginx's USR1/USR2/WINCH must not end it (control/node_signals)
    configure_logging(str(options.get("log_level", "warning")))
    return int(uvloop.run(serve(options)))


if __name__ == "__main__":
    sys.exit(main())
