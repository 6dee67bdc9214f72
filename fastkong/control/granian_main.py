"""The Granian process: ``python -m fastkong.control.granian_main '<json options>'``.

The supervisor runs Granian as a child process so that it keeps the signals, the probes and
the config to itself; Granian's master spawns the workers, each running
``fastkong.proxy.worker:create_app``.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from granian import Granian
from granian.constants import HTTPModes, Interfaces, Loops, SSLProtocols
from granian.http import HTTP1Settings
from granian.log import LOGGING_CONFIG, LogLevels

from fastkong.control.lifeline import (
    PARENT_ENV,
    RELAY_SIGNAL,
    die_with_parent,
    expected_parent,
    relay_once,
    stop_plainly_after_fork,
)
from fastkong.control.logs import root_config
from fastkong.control.node_signals import ignore_operator_signals


def logging_config(level: str) -> dict[str, Any]:
    """Granian's ``dictConfig`` with fastkong's root logger added (fastkong.control.logs):
    Granian applies it in this process and in each worker before loading the app, so the
    workers' own loggers log at ``log_level`` in the supervisor's format. Granian merges the
    top-level sections over its own, so its loggers and handlers are kept here."""
    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    ours = root_config(level)
    config["formatters"].update(ours["formatters"])
    config["handlers"].update(ours["handlers"])
    config["root"] = ours["root"]
    return config


#: How long a worker slot that keeps dying waits before its next start, at most (seconds).
MAX_RESPAWN_PAUSE = 5.0
#: A slot whose worker dies within this long of its last start is "dying again".
DYING_AGAIN = 10.0


def keep_respawning(server: Any) -> None:
    """Restart dead workers however soon they die again, as nginx's master does.

    Granian's master gives up when a worker it restarted dies within 5.5 s ("Worker crash loop
    detected, exiting"), and the node would stop with it: a worker killed twice in a row (an
    OOM killer, an operator) must not take the gateway down. Granian's record of restarts is
    cleared after each one; instead a slot that keeps dying waits before its next start, 0.5 s
    doubling to :data:`MAX_RESPAWN_PAUSE`, so a worker that cannot start does not spin.
    (Granian's ``_respawn_workers`` and ``respawned_wrks``: checked against 2.8.)"""
    respawn = server._respawn_workers
    last: dict[int, float] = {}
    pause: dict[int, float] = {}

    def paced(workers: list[int], spawn_target: Any, target_loader: Any, delay: float = 0) -> None:
        now = time.monotonic()
        for idx in workers:
            again = now - last.get(idx, -DYING_AGAIN) < DYING_AGAIN
            pause[idx] = min(max(pause.get(idx, 0.25) * 2, 0.5), MAX_RESPAWN_PAUSE) if again else 0
        wait = max((pause[idx] for idx in workers), default=0)
        if wait:
            time.sleep(wait)
        respawn(workers, spawn_target, target_loader, delay=delay)
        for idx in workers:
            last[idx] = time.monotonic()
        server.respawned_wrks.clear()

    server._respawn_workers = paced


def main() -> None:
    # This master ends with the supervisor, and its workers with it (fastkong.control.lifeline):
    # the kernel's signal comes as often as supervisor threads exit, so it is relayed once.
    ignore_operator_signals()  # (fastkong.control.node_signals; SIGUSR2 is the relay's, next)
    relay_once(parent=expected_parent())
    die_with_parent(expected_parent(), RELAY_SIGNAL)
    os.environ[PARENT_ENV] = str(os.getpid())
    stop_plainly_after_fork()
    opts = json.loads(sys.argv[1])
    ssl_cert = Path(opts["ssl_cert"]) if opts.get("ssl_cert") else None
    ssl_key = Path(opts["ssl_key"]) if opts.get("ssl_key") else None
    # Granian closes a connection that sends no request head for header_read_timeout, idle
    # keep-alive ones included: that is nginx's keepalive_timeout here (Granian's own 30 s is
    # shorter than the idle timeout of the load balancers in front, which then meet closed
    # connections).
    keepalive_ms = opts.get("keepalive_timeout_ms", 75_000)
    http1 = HTTP1Settings(
        header_read_timeout=keepalive_ms or HTTP1Settings().header_read_timeout,
        keep_alive=keepalive_ms > 0,
        # Granian's read buffer must hold any head nginx's buffers would (a raised
        # large_client_header_buffers), so that fastkong, not Granian, answers oversized ones.
        max_buffer_size=max(HTTP1Settings().max_buffer_size, opts.get("head_capacity", 0) + 4096),
    )
    server = Granian(
        "fastkong.proxy.worker:create_app",
        address=opts["host"],
        port=opts["port"],
        interface=Interfaces.ASGI,
        factory=True,
        workers=opts["workers"],
        loop=Loops.uvloop if sys.platform != "win32" else Loops.asyncio,
        http=HTTPModes(opts.get("http", "auto")),
        http1_settings=http1,
        backlog=opts.get("backlog", 16384),
        log_access=False,
        log_level=LogLevels(opts.get("log_level", "warning")),
        log_dictconfig=logging_config(opts.get("log_level", "warning")),
        ssl_cert=ssl_cert,
        ssl_key=ssl_key,
        # Granian's own floor is TLS 1.3; Kong's default suite accepts 1.2 as well.
        ssl_protocol_min=SSLProtocols(opts.get("ssl_protocol_min", "tls1.2")),
        respawn_failed_workers=True,
        workers_kill_timeout=opts.get("kill_timeout"),
    )
    keep_respawning(server)
    # The workers' code, imported here once: each worker forked from this master starts with it
    # (a restarted worker serves again sooner, and the workers share those pages).
    import fastkong.proxy.worker  # noqa: F401, PLC0415

    server.serve()


if __name__ == "__main__":
    main()
