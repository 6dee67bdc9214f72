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
import logging
import os
from pathlib import Path

from fastkong.config import load_config
from fastkong.control.state import file_identity, read_state, write_report
from fastkong.proxy.app import Gateway
from fastkong.proxy.trust import TrustedIps
from fastkong.runtime import compile_runtime

log = logging.getLogger("fastkong.worker")

POLL_INTERVAL = 0.25


class StateFollower:
    """Keeps one worker's runtime in step with the state file."""

    def __init__(self, gateway: Gateway, path: Path) -> None:
        self.gateway = gateway
        self.path = path
        self.identity: tuple[int, int, int] | None = None
        self.version = 0
        self.task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<StateFollower {self.path} v{self.version} {self.gateway.runtime!r}>"

    def refresh(self) -> bool:
        """Load the state file if it changed; True when a new runtime was swapped in."""
        identity = file_identity(self.path)
        if identity is None or identity == self.identity:
            return False
        self.identity = identity
        try:
            config_hash, config = read_state(self.path)
            runtime = compile_runtime(config, config_hash, self.version + 1)
        except Exception:
            log.exception(
                "worker %d: cannot load %s; keeping the current config", os.getpid(), self.path
            )
            return False
        self.version += 1
        self.gateway.swap(runtime)
        write_report(self.path.parent, os.getpid(), config_hash)
        return True

    async def follow(self) -> None:
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            self.refresh()


def create_app() -> Gateway:
    """Build one worker's ASGI app (Granian calls this in each worker process)."""
    state = os.environ.get("FASTKONG_STATE_FILE")
    trusted = TrustedIps.parse(os.environ.get("FASTKONG_TRUSTED_IPS", ""))
    follower: StateFollower | None = None

    async def startup(gateway: Gateway) -> None:
        if follower is not None:
            follower.refresh()
            follower.task = asyncio.get_running_loop().create_task(follower.follow())

    async def shutdown(gateway: Gateway) -> None:
        if follower is not None and follower.task is not None:
            follower.task.cancel()

    runtime = None
    declarative = os.environ.get("FASTKONG_DECLARATIVE_CONFIG") or os.environ.get(
        "KONG_DECLARATIVE_CONFIG"
    )
    if not state and declarative:
        loaded = load_config(Path(declarative).read_bytes())
        runtime = compile_runtime(loaded.config, loaded.hash)
    gateway = Gateway(runtime, trusted_ips=trusted, on_startup=startup, on_shutdown=shutdown)
    if state:
        follower = StateFollower(gateway, Path(state))
    return gateway
