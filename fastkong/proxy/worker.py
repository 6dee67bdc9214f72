"""The Granian worker entry point: ``fastkong.proxy.worker:create_app``.

The supervisor passes the state file's path in ``FASTKONG_STATE_FILE``. At lifespan startup the
worker loads the current config and starts polling the file; a changed file is decoded,
compiled into a new :class:`~fastkong.runtime.Runtime` and swapped in. A state file that fails
to load changes nothing: the worker keeps serving what it has.

Without a supervisor (the app under another ASGI server, e.g.
``uvicorn --factory fastkong.proxy.worker:create_app``), ``KONG_DECLARATIVE_CONFIG`` names a
config file that is loaded once at startup.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fastkong import metrics
from fastkong._core._router_py import gc_paused
from fastkong.background import paced
from fastkong.config import load_config
from fastkong.config.schema import ENTITY_STRUCTS
from fastkong.control.lifeline import die_with_parent, expected_parent
from fastkong.control.logs import configure as configure_logging
from fastkong.control.state import file_identity, read_state, write_report
from fastkong.kong_conf import log_level, port_maps
from fastkong.plugins.bundled import _queue as http_queue
from fastkong.plugins.bundled import file_log
from fastkong.plugins.bundled import syslog as syslog_plugin
from fastkong.proxy.app import Gateway
from fastkong.proxy.edge import EdgeView
from fastkong.proxy.kong_headers import (
    DEFAULT_HEADERS,
    DEFAULT_HEADERS_UPSTREAM,
    HeaderSettings,
)
from fastkong.proxy.limits import DEFAULT_HEADER_BUFFERS, DEFAULT_MAX_BODY, RequestLimits
from fastkong.proxy.request_debug import RequestDebug
from fastkong.proxy.trust import RealIp, TrustedIps
from fastkong.proxy.upstream import keepalive_settings, max_response_head
from fastkong.runtime import (
    DEFAULT_ROUTER_FLAVOR,
    Runtime,
    check_router_flavor,
    compile_runtime,
)
from fastkong.store import redis as redis_store
from fastkong.upstreams.dns import dns_settings

log = logging.getLogger("fastkong.worker")

POLL_INTERVAL = 0.25
BUILD_SWITCH_INTERVAL = 0.0005
# A build works this long, then rests this long with the GIL free (fastkong.background.paced).
BUILD_WORK = 0.004
BUILD_REST = 0.001
TEARDOWN_SLICE = 256


class StateFollower:
    """Keeps one worker's runtime in step with the state file."""

    def __init__(
        self, gateway: Gateway, path: Path, router_flavor: str = DEFAULT_ROUTER_FLAVOR
    ) -> None:
        self.gateway = gateway
        self.path = path
        self.router_flavor = router_flavor
        self.identity: tuple[int, int, int] | None = None
        self.version = 0
        self.task: asyncio.Task[None] | None = None
        #: Snapshots swapped out, torn down in slices once no request uses them any more.
        self.retired: list[Runtime] = []
        self.teardown: asyncio.Task[None] | None = None
        #: Builds run here, one at a time. Not at a lower CPU priority, unlike the supervisor's
        #: config loads: a build holds this process's GIL, and a niced holder that the kernel
        #: preempts under load keeps the event loop waiting (seen: stalls of seconds at 200
        #: req/s). The build paces itself instead (``paced``).
        self.builder = ThreadPoolExecutor(1, "fastkong-build")

    def __repr__(self) -> str:
        return f"<StateFollower {self.path} v{self.version} {self.gateway.runtime!r}>"

    def build(self) -> Runtime:
        """Decode the state file and compile it (thread-safe: touches no shared state)."""
        # The collector stays off for the whole build: a collection triggered by the decode's
        # allocations would scan every live object while holding the interpreter (~100 ms with
        # two 10,000-route snapshots alive), and would find nothing, as all of it is acyclic.
        with gc_paused(), paced(BUILD_WORK, BUILD_REST):
            config_hash, config, digests = read_state(self.path)
            router_key = digests["services"] + digests["routes"]
            runtime = compile_runtime(
                config,
                config_hash,
                self.version + 1,
                previous=self.gateway.runtime,
                router_key=router_key,
                router_flavor=self.router_flavor,
            )
            # Everything just built is long-lived: move it out of the young generations before
            # the collector is back on, or its first collection would scan all of it at once.
            gc.freeze()
        return runtime

    def changed(self) -> bool:
        identity = file_identity(self.path)
        if identity is None or identity == self.identity:
            return False
        self.identity = identity
        return True

    def refresh(self) -> bool:
        """Load the state file now if it changed (blocking; used at startup)."""
        if not self.changed():
            return False
        try:
            runtime = self.build()
        except Exception:
            log.exception(
                "worker %d: cannot load %s; keeping the current config", os.getpid(), self.path
            )
            return False
        self.install(runtime)
        return True

    def install(self, runtime: Runtime) -> None:
        self.version = runtime.version
        retired = self.gateway.runtime
        self.gateway.swap(runtime)
        if retired is not runtime and retired.config is not None:
            self.retired.append(retired)
        # The snapshot is long-lived: keep the cyclic GC from re-scanning its objects at every
        # full collection (each such scan of a 10,000-route snapshot stalls the event loop).
        gc.freeze()
        write_report(self.path.parent, os.getpid(), runtime.hash)

    async def tear_down(self) -> None:
        """Free retired snapshots a slice at a time between requests.

        Dropping a 10,000-route snapshot in one go is one long deallocation on the event loop
        (tens of ms). Once no request holds a retired snapshot (only this list does), its big
        lists are emptied a few hundred entries per loop turn, so each turn stays short.
        """
        while self.retired:
            old = self.retired[0]
            # References: this list, the local name, getrefcount's argument.
            if sys.getrefcount(old) > 3:
                await asyncio.sleep(0.1)
                continue
            self.retired.pop(0)
            containers: list[list[Any]] = [old.routes]
            # The router may live on in a newer snapshot (reused when no route changed).
            if all(old.router is not r.router for r in (self.gateway.runtime, *self.retired)):
                containers.append(old.router.release())
            if old.config is not None:
                containers += [getattr(old.config, name) for name in ENTITY_STRUCTS]
            for items in containers:
                while items:
                    del items[-TEARDOWN_SLICE:]
                    await asyncio.sleep(0)
            del old

    async def follow(self) -> None:
        """Poll the state file; build a changed config in a thread so requests keep flowing
        while it decodes and compiles, then swap it in on the event loop."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            if not self.changed():
                continue
            # While the build thread holds the interpreter, the event loop waits up to one switch
            # interval for each turn; a short interval keeps request latency low meanwhile.
            interval = sys.getswitchinterval()
            sys.setswitchinterval(BUILD_SWITCH_INTERVAL)
            try:
                runtime = await loop.run_in_executor(self.builder, self.build)
            except Exception:
                log.exception(
                    "worker %d: cannot load %s; keeping the current config", os.getpid(), self.path
                )
                continue
            finally:
                sys.setswitchinterval(interval)
            if self.gateway.upstreams is not None:
                await self.gateway.upstreams.prefetch(runtime)
            self.install(runtime)
            del runtime
            if self.retired and (self.teardown is None or self.teardown.done()):
                self.teardown = loop.create_task(self.tear_down())


def create_app() -> Gateway:
    """Build one worker's ASGI app (Granian calls this in each worker process)."""
    die_with_parent(expected_parent())  # an orphaned worker would go on serving the port
    # Under the supervisor, Granian has set this process's logging up already (see
    # fastkong.control.logs); a server that left it bare gets Kong's log_level here.
    configure_logging(
        log_level(
            os.environ.get("FASTKONG_LOG_LEVEL") or os.environ.get("KONG_LOG_LEVEL") or "warn"
        )
    )
    state = os.environ.get("FASTKONG_STATE_FILE")
    trusted = TrustedIps.parse(os.environ.get("FASTKONG_TRUSTED_IPS", ""))
    flavor = check_router_flavor(
        os.environ.get("FASTKONG_ROUTER_FLAVOR")
        or os.environ.get("KONG_ROUTER_FLAVOR")
        or DEFAULT_ROUTER_FLAVOR
    )
    limits = RequestLimits.parse(
        os.environ.get("FASTKONG_LARGE_CLIENT_HEADER_BUFFERS") or DEFAULT_HEADER_BUFFERS,
        os.environ.get("FASTKONG_CLIENT_MAX_BODY_SIZE") or DEFAULT_MAX_BODY,
    )
    real_ip = RealIp.parse(
        os.environ.get("FASTKONG_REAL_IP_HEADER") or "X-Real-IP",
        os.environ.get("FASTKONG_REAL_IP_RECURSIVE") or "off",
    )
    shown = HeaderSettings.parse(
        os.environ.get("FASTKONG_HEADERS") or DEFAULT_HEADERS,
        os.environ.get("FASTKONG_HEADERS_UPSTREAM") or DEFAULT_HEADERS_UPSTREAM,
    )
    follower: StateFollower | None = None

    async def startup(gateway: Gateway) -> None:
        metrics.WORKER.start(requests=lambda: gateway.requests)
        if follower is not None:
            if not follower.refresh():
                # Up, with no config yet: reported as serving none, so the node lists this
                # worker (Kong's `GET /` pids) while readiness waits for a config.
                write_report(follower.path.parent, os.getpid(), "")
            follower.task = asyncio.get_running_loop().create_task(follower.follow())

    async def shutdown(gateway: Gateway) -> None:
        if follower is not None and follower.task is not None:
            follower.task.cancel()
            follower.builder.shutdown(wait=False, cancel_futures=True)
        # Flush what the log plugins queued and the last second of metrics before exiting.
        await http_queue.drain(5.0)
        await redis_store.close_all()  # flushes batched rate-limit counts not yet sent
        file_log.close_all()
        syslog_plugin.close_all()
        metrics.WORKER.close()

    runtime = None
    declarative = os.environ.get("FASTKONG_DECLARATIVE_CONFIG") or os.environ.get(
        "KONG_DECLARATIVE_CONFIG"
    )
    if not state and declarative:
        loaded = load_config(Path(declarative).read_bytes())
        runtime = compile_runtime(loaded.config, loaded.hash, router_flavor=flavor)
    gateway = Gateway(
        runtime,
        trusted_ips=trusted,
        real_ip=real_ip,
        headers=shown,
        error_default_type=os.environ.get("FASTKONG_ERROR_DEFAULT_TYPE") or "text/plain",
        keepalive=keepalive_settings(os.environ),
        allow_debug_header=os.environ.get("FASTKONG_ALLOW_DEBUG_HEADER") == "on",
        request_debug=RequestDebug.from_environ(os.environ),
        access_log=os.environ.get("FASTKONG_PROXY_ACCESS_LOG") or "off",
        host_ports=port_maps(os.environ),
        limits=limits,
        dns=dns_settings(os.environ),
        max_response_head=max_response_head(os.environ),
        edge=EdgeView.from_setting(edge) if (edge := os.environ.get("FASTKONG_EDGE")) else None,
        on_startup=startup,
        on_shutdown=shutdown,
    )
    if state:
        follower = StateFollower(gateway, Path(state), flavor)
    return gateway
