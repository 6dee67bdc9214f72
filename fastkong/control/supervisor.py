"""The supervisor: the process ``fastkong start`` runs.

It owns everything that must exist once per node rather than once per worker:

* the **config**: loaded and validated here, once; published to the workers through the state
  file (:mod:`fastkong.control.state`). The config file is watched (its identity every half
  second, following the ``..data`` symlink swap kubelet does for a ConfigMap volume, and its
  content hash every ten seconds as a safety net); a changed, valid config is published again,
  an invalid one is logged, counted and changes nothing. ``POST /config`` on the admin listener
  publishes too, and is persisted in the prefix so a restarted node comes back configured;
* the **Granian children**, one per ``proxy_listen`` entry (Granian serves one address), each a
  master and N workers started with the state file's path: Kong's default ``proxy_listen`` is two
  of them, 8000 and 8443 with TLS (the configured certificate, else Kong's generated default);
* the **status listener** (``/status``, ``/status/ready``), answered from here so probes do not
  depend on a worker;
* **signals** (fastkong.control.node_signals): SIGTERM/SIGINT/SIGQUIT drain (readiness turns
  503, Granian stops accepting and finishes in-flight requests, then the supervisor exits 0);
  SIGHUP re-reads the config now; SIGUSR1 has the access logs reopened; SIGUSR2 and SIGWINCH
  are ignored;
* the **pid and node files** in the prefix (fastkong.control.node_files), which the ``fastkong
  stop|quit|reload|health|drain`` commands read.

Config loads (the watched file, SIGHUP, ``POST /config``) run one at a time on a background
thread at a lower CPU priority: parsing and validating a 10,000-route config is seconds of CPU,
and on a node whose cores also serve traffic that time must come second to the workers'.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import hmac
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from fastkong import __version__
from fastkong._core._router_py import gc_paused
from fastkong.acme.admin import AcmeAdmin
from fastkong.background import background_executor
from fastkong.config import Config, ConfigError, LoadedConfig, load_config
from fastkong.config.flavor import set_router_flavor
from fastkong.control import httpserver
from fastkong.control.admin import AdminApi
from fastkong.control.default_cert import default_certificates
from fastkong.control.httpserver import Request, Response
from fastkong.control.lifeline import PARENT_ENV
from fastkong.control.node_files import NodeFiles
from fastkong.control.node_info import node_info
from fastkong.control.node_signals import NodeSignals, log_writers
from fastkong.control.server_cert import ServedCertificate
from fastkong.control.state import file_identity, read_reports, write_state
from fastkong.control.status_api import memory_query, memory_stats, ready_status
from fastkong.kong_conf import Listener
from fastkong.metrics import render_node_metrics, reset_node_metrics, target_health_rows
from fastkong.proxy.edge import EdgeTable, edge_setting, free_loopback_port
from fastkong.proxy.kong_headers import (
    DEFAULT_HEADERS,
    DEFAULT_HEADERS_UPSTREAM,
    HeaderSettings,
)
from fastkong.proxy.limits import DEFAULT_HEADER_BUFFERS, DEFAULT_MAX_BODY, RequestLimits
from fastkong.proxy.request_debug import TOKEN_ENV, write_token
from fastkong.runtime import DEFAULT_ROUTER_FLAVOR
from fastkong.upstreams.checker import ActiveChecker
from fastkong.upstreams.dns import Resolver, dns_settings
from fastkong.upstreams.health import HealthTable

log = logging.getLogger("fastkong")
T = TypeVar("T")

WATCH_INTERVAL = 0.5
FULL_CHECK_EVERY = 20  # watch ticks between two content hashes of an unchanged-looking file
POSTED_CONFIG = "posted-config"
NO_CONFIG = "no configuration available (configuration hash is not initialized)"
#: ``server`` of Kong's ``GET /status`` (kong.nginx.get_statistics()).
SERVER_COUNTERS = (
    "connections_active",
    "connections_reading",
    "connections_writing",
    "connections_waiting",
    "connections_accepted",
    "connections_handled",
    "total_requests",
)
# Net new objects after which a config job's results are frozen (a 10,000-route config: ~1.5M).
FREEZE_AFTER = 100_000


def _load_job(fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    """Run a config job with the cyclic GC held off.

    A loaded config is millions of objects that live until the next one. Collected as young
    objects they would cost a full scan (hundreds of ms of CPU, at normal priority if the event
    loop's thread triggers it); moved to the permanent generation they are never scanned.
    """
    with gc_paused():
        result = fn(*args)
        if gc.get_count()[0] > FREEZE_AFTER:
            gc.freeze()
    return result


@dataclass
class Options:
    config_path: Path | None
    proxy: tuple[Listener, ...] = (Listener("0.0.0.0", 8000),)
    #: ``stream_listen``: the stream proxy's listeners (none: no stream process).
    stream: tuple[Listener, ...] = ()
    status: tuple[str, int] | None = ("127.0.0.1", 8100)
    admin: tuple[str, int] | None = ("127.0.0.1", 8001)
    workers: int = 1
    trusted_ips: str = ""
    router_flavor: str = DEFAULT_ROUTER_FLAVOR
    headers: str = DEFAULT_HEADERS
    headers_upstream: str = DEFAULT_HEADERS_UPSTREAM
    error_default_type: str = "text/plain"
    allow_debug_header: bool = False
    proxy_access_log: str = "off"
    #: ``proxy_stream_access_log``: the stream proxy's session log (fastkong.stream.access_log).
    proxy_stream_access_log: str = "off"
    real_ip_header: str = "X-Real-IP"
    real_ip_recursive: str = "off"
    #: nginx's request-size settings, as text (fastkong/proxy/limits.py parses them).
    large_client_header_buffers: str = DEFAULT_HEADER_BUFFERS
    client_max_body_size: str = DEFAULT_MAX_BODY
    ssl_cert: str | None = None
    ssl_key: str | None = None
    #: The oldest TLS version the ssl listeners accept (``kong_conf.tls_minimum``): Kong's
    #: default suite, ``intermediate``, accepts TLS 1.2, which Granian alone would refuse.
    ssl_protocol_min: str = "tls1.2"
    #: nginx's ``keepalive_timeout`` in seconds (0: no keep-alive).
    keepalive_timeout: float = 75.0
    #: ``--http``: one HTTP mode for every listener; None follows each listener's ``http2``
    #: flag, as Kong does (HTTP/2 and HTTP/1.1 with it, HTTP/1.1 alone without).
    http: str | None = None
    prefix: Path | None = None
    drain_timeout: float = 30.0
    log_level: str = "warning"
    admin_token: str | None = None
    #: Who terminates the ``ssl`` proxy listeners' TLS: ``fastkong`` (the edge, which serves
    #: the config's certificates by SNI) or ``granian`` (one certificate, no edge hop).
    ssl_termination: str = "fastkong"

    @property
    def stream_process(self) -> bool:
        """Whether the node runs a stream process: for ``stream_listen``, or for the edge."""
        return bool(self.stream) or any(self.edged(x) for x in self.proxy)

    def edged(self, listener: Listener) -> bool:
        """Whether the edge serves ``listener`` (fastkong/stream/edge.py): it reads the PROXY
        protocol, or it is ``ssl`` and fastkong terminates TLS."""
        return "proxy_protocol" in listener.flags or (
            listener.ssl and self.ssl_termination == "fastkong"
        )


@dataclass
class ConfigState:
    """What the node serves and what happened to the last attempts to change it."""

    hash: str | None = None
    loaded_at: float | None = None
    source_md5: str | None = None
    source: str | None = None
    last_error: list[str] | None = None
    raw: bytes = b""
    loaded: LoadedConfig | None = None
    reloads: dict[str, int] = field(default_factory=lambda: {"success": 0, "failure": 0})


class Supervisor:
    """One node's control process (see the module docstring)."""

    def __init__(self, options: Options) -> None:
        # Kong's route schema depends on the node's router flavor (config/flavor.py).
        set_router_flavor(options.router_flavor)
        self.options = options
        self.config = ConfigState()
        self.draining = False
        #: ``POST /status/ready`` ``status=draining``: readiness fails, nothing stops.
        self.ready_draining = False
        self.children: list[asyncio.subprocess.Process] = []
        if options.prefix is not None:
            options.prefix.mkdir(parents=True, exist_ok=True)
        self.state_dir = options.prefix or Path(tempfile.mkdtemp(prefix="fastkong-"))
        self.state_file = self.state_dir / "state"
        #: The pid and node files ``fastkong stop`` and the others read (claimed by the CLI).
        self.node_files = NodeFiles(self.state_dir)
        #: The given ``ssl_cert``/``ssl_cert_key`` pair the ssl listeners serve, followed as its
        #: files change (``certificate()``); None with Kong's generated default.
        self.served: ServedCertificate | None = None
        #: The Granian processes of ssl listeners (replaced worker by worker on a new pair).
        self.ssl_children: list[asyncio.subprocess.Process] = []
        self.started = time.time()
        self.loader = background_executor("fastkong-config")
        shown = HeaderSettings.parse(options.headers, options.headers_upstream)
        #: Kong's `headers`: the admin and status listeners' Server and X-Kong-Admin-Latency.
        self.server_header = httpserver.SERVER if "server" in shown.names else None
        self.admin_latency = "x-kong-admin-latency" in shown.names
        self.admin = AdminApi(self)
        #: The acme plugin's Admin API endpoints and daily renewal (fastkong.acme.admin).
        self.acme = AcmeAdmin(self.current_config, self.state_dir)
        # The node's shared rate-limit counters (fastkong._core.ratelimit): in /dev/shm when the
        # system has it, so every worker maps the same pages; removed when the node stops.
        shm = Path("/dev/shm")
        tag = hashlib.md5(str(self.state_dir.resolve()).encode()).hexdigest()[:12]
        self.counters_file = (
            shm / f"fastkong-{tag}.counters" if shm.is_dir() else self.state_dir / "counters"
        )
        # The node's target health (fastkong.upstreams.health): probed from here once per node,
        # counted into by every worker's traffic, followed by every worker.
        self.health_file = (
            shm / f"fastkong-{tag}.health" if shm.is_dir() else self.state_dir / "health"
        )
        # What the edge knows of each connection it relays to a Granian (fastkong.proxy.edge).
        self.edge_file = shm / f"fastkong-{tag}.edge" if shm.is_dir() else self.state_dir / "edge"
        #: The stream processes (stream listeners, and the edge's), if the node runs them.
        self.stream_children: list[asyncio.subprocess.Process] = []
        self.checker = ActiveChecker(
            HealthTable.create(self.health_file), Resolver(settings=dns_settings(os.environ))
        )
        self._file_identity: tuple[int, int, int] | None = None
        self._ticks = 0
        #: Kong's request_debug_token, written in the prefix (None: request_debug is off).
        self.request_debug_token = write_token(self.state_dir, os.environ)

    def __repr__(self) -> str:
        return (
            f"<Supervisor hash={self.config.hash} workers={self.options.workers} "
            f"draining={self.draining} children={[child.pid for child in self.children]}>"
        )

    # -- config ------------------------------------------------------------------------------

    def load_initial(self) -> LoadedConfig | None:
        """Load the config at start: the config file, else the last config posted to the admin
        API (persisted in the prefix). Raises :class:`ConfigError` when the file is invalid."""
        path = self.options.config_path
        if path is None:
            posted = self.state_dir / POSTED_CONFIG
            if not posted.exists():
                return None
            data = posted.read_bytes()
            loaded = load_config(data)
            self.publish(loaded, data, source="admin API (persisted)")
            return loaded
        self._file_identity = file_identity(path)
        data = path.read_bytes()
        loaded = load_config(data)
        self.publish(loaded, data, source=str(path))
        self.config.source_md5 = hashlib.md5(data).hexdigest()
        return loaded

    def publish(self, loaded: LoadedConfig, raw: bytes, source: str) -> None:
        write_state(self.state_file, loaded.hash, loaded.config)
        self.checker.update(loaded.config)
        self.config.hash = loaded.hash
        self.config.loaded_at = time.time()
        self.config.last_error = None
        self.config.raw = raw
        self.config.loaded = loaded
        self.config.source = source

    def accept_posted(self, loaded: LoadedConfig, raw: bytes) -> None:
        """Publish a config from ``POST /config`` and persist it for the next start."""
        self.publish(loaded, raw, source="admin API")
        self.config.reloads["success"] += 1
        tmp = self.state_dir / f".{POSTED_CONFIG}.tmp"
        tmp.write_bytes(raw)
        os.replace(tmp, self.state_dir / POSTED_CONFIG)
        log.warning("config loaded from the admin API: hash %s", loaded.hash)

    def current_config(self) -> Config | None:
        return self.config.loaded.config if self.config.loaded is not None else None

    def upstream_health(
        self,
        upstream: dict[str, Any],
        targets: list[dict[str, Any]],
        balancer: bool = False,
        links: dict[str, Any] | None = None,
    ) -> Response:
        """``GET /upstreams/{u}/health`` in Kong's shape, from the node's health table
        (``?balancer_health=1``: the balancer's health instead of each target's); ``links``:
        the page's ``next`` (and ``offset``) when ``targets`` is one page of them."""
        if balancer:
            data = self.checker.balancer_health(upstream["id"])
            return Response.json(200, {"data": data, "next": None, "node_id": self.node_id})
        rows = self.checker.upstream_health(upstream["id"], targets)
        page = {"next": None, **(links or {})}
        return Response.json(200, {"data": rows, **page, "node_id": self.node_id})

    def set_target_health(
        self, upstream: str, target: str, address: str | None, healthy: bool
    ) -> Response:
        """``POST /upstreams/{u}/targets/{t}[/{address}]/healthy|unhealthy`` (DB-less too)."""
        status, body = self.checker.set_health(upstream, target, address, healthy)
        return Response.json(status, body) if body is not None else Response(status)

    @property
    def node_id(self) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{socket.gethostname()}:{self.state_dir}"))

    def reload(self, force: bool = False) -> bool:
        """Re-read the config file; publish it if it changed and is valid."""
        path = self.options.config_path
        if path is None:
            return False
        identity = file_identity(path)
        self._ticks += 1
        if not force and identity == self._file_identity and self._ticks % FULL_CHECK_EVERY:
            return False
        self._file_identity = identity
        try:
            raw = path.read_bytes()
        except OSError as exc:
            self._reload_failed([f"{path}: {exc.strerror or exc}"])
            return False
        unchanged = hashlib.md5(raw).hexdigest() == self.config.source_md5
        if unchanged and not (force and self.config.source != str(path)):
            # (a forced reload, SIGHUP, is Kong's `kong reload`: the declarative file is loaded
            # again even when a config posted since is being served)
            return False
        try:
            loaded = load_config(raw)
        except ConfigError as exc:
            self._reload_failed([f"{e.path}: {e.message}" for e in exc.errors])
            self.config.source_md5 = hashlib.md5(raw).hexdigest()  # don't re-log the same error
            return False
        self.publish(loaded, raw, source=str(path))
        self.config.source_md5 = hashlib.md5(raw).hexdigest()
        self.config.reloads["success"] += 1
        log.warning("config reloaded from %s: hash %s", path, loaded.hash)
        return True

    def _reload_failed(self, errors: list[str]) -> None:
        self.config.last_error = errors
        self.config.reloads["failure"] += 1
        log.error(
            "config reload rejected, still serving hash %s: %s", self.config.hash, "; ".join(errors)
        )

    async def in_loader(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the config loader thread (one load at a time, low CPU priority)."""
        return await asyncio.get_running_loop().run_in_executor(self.loader, _load_job, fn, args)

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            await self.in_loader(self.reload)
            if self.served is not None and await self.in_loader(self.served.refresh):
                self.replace_ssl_workers()

    def replace_ssl_workers(self) -> None:
        """Have the ssl listeners serve the new pair. The stream process (the edge's and the
        stream's ssl listeners) builds its contexts again on SIGHUP: new handshakes get the new
        pair, open connections go on. A Granian that terminates TLS itself replaces its workers
        one by one on SIGHUP (a new worker, then the old one drained: its requests finish; as
        on an nginx reload, a connection it accepted just before stopping and whose request it
        had not read yet is closed unanswered)."""
        log.warning("ssl certificate changed: replacing the ssl listeners' workers")
        for child in self.ssl_children:
            if child.returncode is None:
                child.send_signal(signal.SIGHUP)

    # -- status ------------------------------------------------------------------------------

    @property
    def worker_total(self) -> int:
        """Every listener's Granian process runs ``workers`` workers; so many stream processes
        (which serve the edge's listeners too) report as well."""
        per_listener = len(self.options.proxy) + int(self.options.stream_process)
        return self.options.workers * per_listener

    def workers_in_step(self) -> bool:
        """Every worker serves the current config: as many live workers have reported as were
        started (one report alone is not enough: the others may still be loading)."""
        reports = read_reports(self.state_dir)
        return len(reports) >= self.worker_total and all(
            h == self.config.hash for h in reports.values()
        )

    async def handle_status(self, request: Request) -> Response:
        path = request.path.rstrip("/") or "/"
        if path.startswith("/upstreams"):
            # Kong's status API serves the upstreams' GET routes in DB-less mode
            # (kong/status/init.lua): monitoring reads target health from here.
            return await self.admin.status_upstreams(request)
        if path == "/status/dns" and request.method in ("GET", "HEAD"):
            # Kong's answer without its new DNS client (its default): names are resolved by
            # the system resolver here, which keeps no statistics (kong/api/routes/dns.lua)
            return Response.json(501, {"message": "not implemented with the legacy DNS client"})
        if path not in ("/", "/status", "/status/ready", "/metrics"):
            return Response.json(404, {"message": "Not found"})
        if path == "/status/ready" and request.method == "POST":
            return self.post_ready(request)
        if request.method == "OPTIONS":  # Kong's attach_routes adds OPTIONS to every route
            allow = "GET, HEAD, OPTIONS, POST" if path == "/status/ready" else "GET, HEAD, OPTIONS"
            return Response(
                204,
                headers={
                    "allow": allow,
                    "access-control-allow-methods": allow,
                    "access-control-allow-headers": "Content-Type",
                },
            )
        if request.method not in ("GET", "HEAD"):
            return Response.json(405, {"message": "Method not allowed"})
        if path == "/status/ready":
            if self.draining or self.ready_draining:
                return Response.json(503, {"message": "draining"})
            if self.config.hash is None:
                return Response.json(503, {"message": NO_CONFIG})
            if not self.workers_in_step():
                reports = read_reports(self.state_dir).values()
                done = sum(h == self.config.hash for h in reports)
                message = (
                    "router builds not yet complete, router ready"
                    f" in {done} of {self.worker_total} workers"
                )
                return Response.json(503, {"message": message})
            return Response.json(200, {"message": "ready"})
        if path == "/status":
            try:
                memory = memory_stats(read_reports(self.state_dir), *memory_query(request.query))
            except ValueError as exc:
                return Response.json(400, {"message": str(exc)})
            return Response.json(200, {**self.status_body(), "memory": memory})
        if path == "/metrics":
            await self.checker.warm_all()  # the targets' health rows read their addresses
            return Response(
                200, self.node_metrics().encode(), {"content-type": "text/plain; version=0.0.4"}
            )
        return Response.json(200, node_info(self))

    def post_ready(self, request: Request) -> Response:
        """Kong's ``POST /status/ready`` with ``status=draining`` (what ``kong drain`` sends):
        readiness answers 503 ``draining`` from now on; traffic is still served."""
        status, error = ready_status(
            request.query, request.headers.get("content-type", ""), request.body
        )
        if error is not None:
            return Response.json(400, {"message": error})
        if status != "draining":
            return Response(400)  # ready.lua: kong.response.exit(400), no body
        self.ready_draining = True
        log.warning("readiness set to draining by POST /status/ready")
        return Response(204)

    async def handle_admin(self, request: Request) -> Response:
        token = self.options.admin_token
        if token and not hmac.compare_digest(
            request.headers.get("kong-admin-token", "").encode(), token.encode()
        ):
            return Response.json(
                401, {"message": "Invalid credentials. Token or User credentials required"}
            )
        return await self.admin.handle(request)

    def status_body(self) -> dict[str, Any]:
        return {
            "configuration_hash": self.config.hash or "0" * 32,
            # Kong's nginx counters: not counted here (the proxy runs in Granian)
            "server": dict.fromkeys(SERVER_COUNTERS),
            "memory": memory_stats(()),
            "fastkong": {
                "version": __version__,
                "workers": {str(pid): h for pid, h in read_reports(self.state_dir).items()},
                "draining": self.draining,
                "config_loaded_at": self.config.loaded_at,
                "config_source": self.config.source,
                "last_error": self.config.last_error,
                "reloads": self.config.reloads,
                "certificate": self.served.status() if self.served is not None else None,
            },
        }

    def node_metrics(self) -> str:
        """The node's ``/metrics``: the workers' plugin metrics merged, then the supervisor's."""
        config = self.current_config()
        health = target_health_rows(self.checker, config) if config is not None else None
        merged = render_node_metrics(
            self.state_dir, config=config, node_id=self.node_id, target_health=health
        )
        return merged + self.metrics_text()

    def metrics_text(self) -> str:
        """Node-level metrics in Prometheus' text format."""
        lines = [
            "# HELP fastkong_config_reloads_total Config loads after start, by result.",
            "# TYPE fastkong_config_reloads_total counter",
        ]
        for result, n in sorted(self.config.reloads.items()):
            lines.append(f'fastkong_config_reloads_total{{result="{result}"}} {n}')
        if self.served is not None:
            lines += [
                "# HELP fastkong_certificate_reloads_total Changes of the given ssl_cert files "
                "after start, by result.",
                "# TYPE fastkong_certificate_reloads_total counter",
            ]
            for result, n in sorted(self.served.reloads.items()):
                lines.append(f'fastkong_certificate_reloads_total{{result="{result}"}} {n}')
        lines += [
            "# HELP fastkong_config_loaded 1 when a configuration is loaded.",
            "# TYPE fastkong_config_loaded gauge",
            f"fastkong_config_loaded {int(self.config.hash is not None)}",
            "# HELP fastkong_workers_in_step Workers serving the current configuration hash.",
            "# TYPE fastkong_workers_in_step gauge",
            "fastkong_workers_in_step "
            + str(sum(h == self.config.hash for h in read_reports(self.state_dir).values())),
        ]
        return "\n".join(lines) + "\n"

    # -- process management ------------------------------------------------------------------

    async def start_children(self) -> None:
        """One Granian process per proxy listener, all on the same state, counters and health
        tables (so one node's workers share limits and health whichever listener they serve)."""
        env = dict(os.environ)
        env["FASTKONG_STATE_FILE"] = str(self.state_file)
        env["FASTKONG_TRUSTED_IPS"] = self.options.trusted_ips
        env["FASTKONG_ROUTER_FLAVOR"] = self.options.router_flavor
        env["FASTKONG_HEADERS"] = self.options.headers
        env["FASTKONG_ERROR_DEFAULT_TYPE"] = self.options.error_default_type
        env["FASTKONG_PROXY_ACCESS_LOG"] = self.options.proxy_access_log
        env["FASTKONG_ALLOW_DEBUG_HEADER"] = "on" if self.options.allow_debug_header else "off"
        env["FASTKONG_HEADERS_UPSTREAM"] = self.options.headers_upstream
        env["FASTKONG_REAL_IP_HEADER"] = self.options.real_ip_header
        env["FASTKONG_REAL_IP_RECURSIVE"] = self.options.real_ip_recursive
        env["FASTKONG_LARGE_CLIENT_HEADER_BUFFERS"] = self.options.large_client_header_buffers
        env["FASTKONG_CLIENT_MAX_BODY_SIZE"] = self.options.client_max_body_size
        env["FASTKONG_COUNTERS"] = str(self.counters_file)
        env["FASTKONG_HEALTH"] = str(self.health_file)
        if self.request_debug_token is not None:
            env[TOKEN_ENV] = self.request_debug_token
        env[PARENT_ENV] = str(os.getpid())
        head_capacity = RequestLimits.parse(
            self.options.large_client_header_buffers, self.options.client_max_body_size
        ).capacity
        edged = [x for x in self.options.proxy if self.options.edged(x)]
        edge: list[tuple[str, int, bool, bool, bool, int, int]] = []
        if edged:
            EdgeTable(self.edge_file, len(edged), create=True).close()
        for listener in self.options.proxy:
            host, port = listener.host, listener.port
            child_env = env
            cert, key = self.certificates()[0] if listener.ssl else (None, None)
            if self.options.edged(listener):
                # The edge takes the public address; this Granian serves its relay on loopback.
                slot = len(edge)
                host, port = "127.0.0.1", free_loopback_port()
                edge.append((listener.host, listener.port, listener.ssl,
                             "proxy_protocol" in listener.flags, "http2" in listener.flags,
                             port, slot))  # fmt: skip
                child_env = dict(env)
                child_env["FASTKONG_EDGE"] = edge_setting(
                    self.edge_file, len(edged), slot, listener.host, listener.port
                )
                cert, key = None, None
            opts = {
                "host": host,
                "port": port,
                "workers": self.options.workers,
                "ssl_cert": cert,
                "ssl_key": key,
                "ssl_protocol_min": self.options.ssl_protocol_min,
                "keepalive_timeout_ms": int(self.options.keepalive_timeout * 1000),
                "http": self.options.http or ("auto" if "http2" in listener.flags else "1"),
                "backlog": listener.backlog or 16384,
                "log_level": self.options.log_level,
                "kill_timeout": int(self.options.drain_timeout),
                "head_capacity": head_capacity,
            }
            child = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "fastkong.control.granian_main",
                json.dumps(opts),
                env=child_env,
            )
            self.children.append(child)
            if cert is not None:
                self.ssl_children.append(child)
        if self.options.stream or edge:
            await self.start_stream(env, edge)

    async def start_stream(
        self, env: dict[str, str], edge: list[tuple[str, int, bool, bool, bool, int, int]]
    ) -> None:
        """The stream processes (fastkong/stream), one per worker as each of Kong's nginx
        workers serves the stream subsystem too: every ``stream_listen`` entry and the edge's
        listeners on one event loop each, the same state file and health table as the HTTP
        workers. With more than one, each binds its own socket with ``SO_REUSEPORT`` and the
        kernel spreads new connections over them (the edge's TLS scales with ``--workers``)."""
        tls = any(x.ssl for x in self.options.stream) or any(x[2] for x in edge)
        pairs = self.certificates() if tls else []
        backlogs = [x.backlog for x in self.options.stream if x.backlog]
        backlogs += [x.backlog for x in self.options.proxy if x.backlog and self.options.edged(x)]
        opts = {
            "listen": [
                (x.host, x.port, x.ssl, "proxy_protocol" in x.flags)
                for x in self.options.stream
                if "udp" not in x.flags
            ],
            "udp": [(x.host, x.port) for x in self.options.stream if "udp" in x.flags],
            "edge": edge,
            "edge_table": str(self.edge_file),
            "edge_slots": len(edge),
            "server": self.server_header,
            "trusted_ips": self.options.trusted_ips,
            "access_log": self.options.proxy_stream_access_log,
            "ssl_pairs": pairs,
            "ssl_protocol_min": self.options.ssl_protocol_min,
            "backlog": max(backlogs, default=16384),
            "drain_timeout": self.options.drain_timeout,
            "log_level": self.options.log_level,
            "reuseport": self.options.workers > 1,
        }
        for _ in range(self.options.workers):
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "fastkong.stream.main", json.dumps(opts), env=env
            )
            self.children.append(child)
            self.stream_children.append(child)
            if tls:
                self.ssl_children.append(child)  # a new pair: SIGHUP, it builds its contexts

    def certificates(self) -> list[tuple[str, str]]:
        """The ssl listeners' (certificate, key) pairs: ``ssl_cert``/``ssl_cert_key``, else
        Kong's generated defaults (ECDSA, RSA) under the state directory. Given pairs are
        checked (ValueError, one line per problem) and served from fastkong's copies
        (server_cert.py); Granian's own TLS serves the first."""
        if self.options.ssl_cert and self.options.ssl_key:
            if self.served is None:
                served = ServedCertificate(
                    self.options.ssl_cert, self.options.ssl_key, self.state_dir
                )
                served.load()
                self.served = served
            return self.served.pairs
        return [(str(cert), str(key)) for cert, key in default_certificates(self.state_dir)]

    async def stop_children(self) -> int:
        """SIGTERM every Granian process (each drains), then wait for all; the worst exit code."""
        running = [child for child in self.children if child.returncode is None]
        for child in running:
            child.send_signal(signal.SIGTERM)
        codes = await asyncio.gather(*(self._reap(child) for child in running))
        return max(codes, default=0, key=abs)

    async def _reap(self, child: asyncio.subprocess.Process) -> int:
        try:
            return await asyncio.wait_for(child.wait(), self.options.drain_timeout + 5)
        except TimeoutError:
            child.kill()
            return await child.wait()

    async def run(self) -> int:
        """Serve until a signal or the death of the Granian child; returns the exit code."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        signals = NodeSignals(
            loop,
            stop.set,
            lambda: self.in_loader(self.reload, True),
            lambda: log_writers((c.pid for c in self.children), read_reports(self.state_dir)),
        )
        signals.install()

        servers = []
        listeners = (
            ("status_listen", self.options.status, self.handle_status),
            ("admin_listen", self.options.admin, self.handle_admin),
        )
        for setting, address, handler in listeners:
            if address is None:
                continue
            try:
                servers.append(await httpserver.serve(*address, handler, self.server_header))
            except OSError as exc:
                # Free when `fastkong start` checked it, taken since: one line, as for the others.
                print(
                    f"fastkong: {setting}: cannot listen on {address[0]}:{address[1]}: "
                    f"{os.strerror(exc.errno) if exc.errno else exc}",
                    file=sys.stderr,
                )
                for server in servers:
                    server.close()
                self.close()
                return 1
        reset_node_metrics(self.state_dir)
        await self.start_children()
        watcher = loop.create_task(self.watch())
        self.checker.start(loop)
        self.acme.start()
        exits = [loop.create_task(child.wait()) for child in self.children]
        stopping = loop.create_task(stop.wait())
        await asyncio.wait({*exits, stopping}, return_when=asyncio.FIRST_COMPLETED)
        code = 0
        died = [task.result() for task in exits if task.done()]
        if died and not stopping.done():
            # A Granian process ended (its master gave up, e.g. its port was taken): the node
            # no longer serves every listener it was asked to, so it stops as a whole.
            code = died[0] if died[0] > 0 else 1  # a signal's negative code is no exit status
            log.error("a proxy process exited with %s", died[0])
        # Drain: fail readiness first so load balancers stop sending, then stop Granian, which
        # stops accepting and lets in-flight requests finish. Later stop signals are ignored.
        signals.draining()
        self.draining = True
        await self.stop_children()
        for task in exits:
            task.cancel()
        watcher.cancel()
        self.checker.stop()
        self.acme.stop()
        stopping.cancel()
        for server in servers:
            server.close()
        for entry in self.state_dir.glob("worker-*"):
            entry.unlink(missing_ok=True)
        reset_node_metrics(self.state_dir)
        self.close()
        return code

    def close(self) -> None:
        """Release what the node holds outside its processes: the shared counter and health
        tables (in /dev/shm: they outlive a process that forgets them), the loader thread, its
        pid file, and a state directory of its own making (a prefix stays, with what it
        persists)."""
        for table in (self.counters_file, self.health_file, self.edge_file):
            table.unlink(missing_ok=True)
        self.loader.shutdown(wait=False, cancel_futures=True)
        self.node_files.release()
        if self.options.prefix is None:
            shutil.rmtree(self.state_dir, ignore_errors=True)
