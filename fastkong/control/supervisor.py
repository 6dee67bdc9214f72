"""The supervisor: the process ``fastkong start`` runs.

It owns everything that must exist once per node rather than once per worker:

* the **config**: loaded and validated here, once; published to the workers through the state
  file (:mod:`fastkong.control.state`); the file is re-checked every second and a changed,
  valid config is published again (an invalid one is logged and changes nothing);
* the **Granian child** (master + N workers), started with the state file's path;
* the **status listener** (``/status``, ``/status/ready``), answered from here so probes do not
  depend on a worker;
* **signals**: SIGTERM/SIGINT drain (readiness turns 503, Granian stops accepting and finishes
  in-flight requests, then the supervisor exits 0); SIGHUP re-reads the config now.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastkong import __version__
from fastkong.config import ConfigError, LoadedConfig, load_config
from fastkong.control import httpserver
from fastkong.control.httpserver import Request, Response
from fastkong.control.state import read_reports, write_state

log = logging.getLogger("fastkong")

WATCH_INTERVAL = 1.0
NO_CONFIG = "no configuration available (configuration hash is not initialized)"


@dataclass
class Options:
    config_path: Path | None
    proxy: tuple[str, int] = ("0.0.0.0", 8000)
    status: tuple[str, int] | None = ("127.0.0.1", 8100)
    admin: tuple[str, int] | None = ("127.0.0.1", 8001)
    workers: int = 1
    trusted_ips: str = ""
    ssl_cert: str | None = None
    ssl_key: str | None = None
    http: str = "auto"
    state_dir: Path | None = None
    drain_timeout: float = 30.0
    log_level: str = "warning"


@dataclass
class ConfigState:
    """What the node serves and what happened to the last attempts to change it."""

    hash: str | None = None
    loaded_at: float | None = None
    source_md5: str | None = None
    last_error: list[str] | None = None
    reloads: dict[str, int] = field(default_factory=lambda: {"success": 0, "failure": 0})


class Supervisor:
    """One node's control process (see the module docstring)."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.config = ConfigState()
        self.draining = False
        self.child: asyncio.subprocess.Process | None = None
        self.state_dir = options.state_dir or Path(tempfile.mkdtemp(prefix="fastkong-"))
        self.state_file = self.state_dir / "state"
        self.started = time.time()

    def __repr__(self) -> str:
        return (
            f"<Supervisor hash={self.config.hash} workers={self.options.workers} "
            f"draining={self.draining} child={self.child.pid if self.child else None}>"
        )

    # -- config ------------------------------------------------------------------------------

    def load_initial(self) -> LoadedConfig | None:
        """Load the config file once at start; raises :class:`ConfigError` when it is invalid."""
        path = self.options.config_path
        if path is None:
            return None
        data = path.read_bytes()
        loaded = load_config(data)
        self.publish(loaded, data)
        return loaded

    def publish(self, loaded: LoadedConfig, raw: bytes) -> None:
        write_state(self.state_file, loaded.hash, loaded.config)
        self.config.hash = loaded.hash
        self.config.loaded_at = time.time()
        self.config.source_md5 = hashlib.md5(raw).hexdigest()
        self.config.last_error = None

    def reload(self) -> bool:
        """Re-read the config file; publish it if it changed and is valid."""
        path = self.options.config_path
        if path is None:
            return False
        try:
            raw = path.read_bytes()
        except OSError as exc:
            self._reload_failed([f"{path}: {exc.strerror or exc}"])
            return False
        if hashlib.md5(raw).hexdigest() == self.config.source_md5:
            return False
        try:
            loaded = load_config(raw)
        except ConfigError as exc:
            self._reload_failed([f"{e.path}: {e.message}" for e in exc.errors])
            self.config.source_md5 = hashlib.md5(raw).hexdigest()  # don't re-log the same error
            return False
        self.publish(loaded, raw)
        self.config.reloads["success"] += 1
        log.warning("config reloaded from %s: hash %s", path, loaded.hash)
        return True

    def _reload_failed(self, errors: list[str]) -> None:
        self.config.last_error = errors
        self.config.reloads["failure"] += 1
        log.error(
            "config reload rejected, still serving hash %s: %s", self.config.hash, "; ".join(errors)
        )

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            self.reload()

    # -- status ------------------------------------------------------------------------------

    def workers_in_step(self) -> bool:
        reports = read_reports(self.state_dir)
        return bool(reports) and all(h == self.config.hash for h in reports.values())

    async def handle_status(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return Response.json(405, {"message": "Method not allowed"})
        if request.path == "/status/ready":
            if self.draining:
                return Response.json(503, {"message": "draining"})
            if self.config.hash is None:
                return Response.json(503, {"message": NO_CONFIG})
            if not self.workers_in_step():
                return Response.json(503, {"message": "workers are loading the configuration"})
            return Response.json(200, {"message": "ready"})
        if request.path == "/status":
            return Response.json(200, self.status_body())
        if request.path == "/":
            return Response.json(200, self.node_info())
        return Response.json(404, {"message": "Not found"})

    def status_body(self) -> dict[str, Any]:
        return {
            "configuration_hash": self.config.hash or "0" * 32,
            "server": {"connections_active": None, "total_requests": None},
            "memory": {"workers_lua_vms": [], "lua_shared_dicts": {}},
            "fastkong": {
                "version": __version__,
                "workers": {str(pid): h for pid, h in read_reports(self.state_dir).items()},
                "draining": self.draining,
                "config_loaded_at": self.config.loaded_at,
                "last_error": self.config.last_error,
                "reloads": self.config.reloads,
            },
        }

    def node_info(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "tagline": "Welcome to fastkong",
            "configuration": {
                "database": "off",
                "router_flavor": "traditional_compatible",
                "proxy_listeners": [{"ip": self.options.proxy[0], "port": self.options.proxy[1]}],
            },
        }

    # -- process management ------------------------------------------------------------------

    async def start_child(self) -> None:
        host, port = self.options.proxy
        opts = {
            "host": host,
            "port": port,
            "workers": self.options.workers,
            "ssl_cert": self.options.ssl_cert,
            "ssl_key": self.options.ssl_key,
            "http": self.options.http,
            "log_level": self.options.log_level,
            "kill_timeout": int(self.options.drain_timeout),
        }
        env = dict(os.environ)
        env["FASTKONG_STATE_FILE"] = str(self.state_file)
        env["FASTKONG_TRUSTED_IPS"] = self.options.trusted_ips
        self.child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "fastkong.control.granian_main", json.dumps(opts), env=env
        )

    async def stop_child(self) -> int:
        child = self.child
        if child is None or child.returncode is not None:
            return 0
        child.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(child.wait(), self.options.drain_timeout + 5)
        except TimeoutError:
            child.kill()
            return await child.wait()

    async def run(self) -> int:
        """Serve until a signal or the death of the Granian child; returns the exit code."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)

        servers = []
        for listen in (self.options.status, self.options.admin):
            if listen is not None:
                servers.append(await httpserver.serve(listen[0], listen[1], self.handle_status))
        await self.start_child()
        assert self.child is not None
        watcher = loop.create_task(self.watch())
        child_exit = loop.create_task(self.child.wait())
        stopping = loop.create_task(stop.wait())
        done, _ = await asyncio.wait({child_exit, stopping}, return_when=asyncio.FIRST_COMPLETED)
        code = 0
        if child_exit in done:
            code = child_exit.result() or 1
            log.error("the proxy process exited with %s", child_exit.result())
        else:
            # Drain: fail readiness first so load balancers stop sending, then stop Granian,
            # which stops accepting and lets in-flight requests finish.
            self.draining = True
            await self.stop_child()
        watcher.cancel()
        stopping.cancel()
        for server in servers:
            server.close()
        for entry in self.state_dir.glob("worker-*"):
            entry.unlink(missing_ok=True)
        return code
