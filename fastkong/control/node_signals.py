"""The signals a node answers, as nginx's master answers them (what operators' scripts send).

The supervisor is the process an operator signals (its pid is ``<prefix>/pids/fastkong.pid``):

==================  ===========================================================================
SIGTERM, SIGINT,    stop gracefully: readiness turns 503 ``draining``, Granian stops accepting
SIGQUIT             and finishes in-flight requests, the node exits 0 (nginx's QUIT; its TERM
                    is a fast stop, but here TERM is what Kubernetes and systemd send first)
SIGHUP              read the declarative config again now (``kong reload``)
SIGUSR1             reopen the log files (logrotate's ``postrotate``): forwarded to the
                    processes that write the access logs
SIGUSR2, SIGWINCH   nginx's binary upgrade: nothing to do here, logged and ignored
==================  ===========================================================================

No process of a node dies of SIGUSR1, SIGUSR2 or SIGWINCH, whoever gets them (a signal sent to
the whole process group reaches every one): the Granian masters ignore SIGUSR1 (and their forked
workers inherit that until the access log installs its reopen handler), relay SIGUSR2 only once
their parent is gone (fastkong.control.lifeline); the stream processes reopen on SIGUSR1 and
ignore the other two. SIGWINCH's default action is to do nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

log = logging.getLogger("fastkong")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
#: nginx's binary-upgrade signals: no meaning for a node, and no reason to die of them.
IGNORED_SIGNALS = (signal.SIGUSR2, signal.SIGWINCH)
REOPEN_SIGNAL = signal.SIGUSR1


def parent_of(pid: int) -> int | None:
    """The parent pid of a process (``/proc/<pid>/stat``), None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None


def log_writers(children: Iterable[int], reporting: Iterable[int]) -> list[int]:
    """The node's processes that may write access logs: the reporting processes (HTTP workers,
    stream processes) that are the supervisor's children or its children's children. (A report
    outlives a worker killed outright, and its pid may be another process's since.)"""
    mine = set(children)
    return sorted(pid for pid in reporting if pid in mine or parent_of(pid) in mine)


class NodeSignals:
    """The supervisor's signal handlers on its event loop (see the module docstring)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        stop: Callable[[], None],
        reload: Callable[[], Awaitable[object]],
        writers: Callable[[], Iterable[int]],
    ) -> None:
        self.loop = loop
        self.stop = stop
        self.reload = reload
        #: The pids to forward SIGUSR1 to, asked for when it comes.
        self.writers = writers
        self.received: dict[str, int] = {}
        self._reloads: set[asyncio.Future[object]] = set()

    def __repr__(self) -> str:
        return f"<NodeSignals received={self.received}>"

    def install(self) -> None:
        for sig in STOP_SIGNALS:
            self.loop.add_signal_handler(sig, self._on_stop, sig)
        self.loop.add_signal_handler(signal.SIGHUP, self._on_reload)
        self.loop.add_signal_handler(REOPEN_SIGNAL, self._on_reopen)
        for sig in IGNORED_SIGNALS:
            self.loop.add_signal_handler(sig, self._on_ignored, sig)

    def draining(self) -> None:
        """Ignore the stop signals from now on: a drain is under way, a second one changes
        nothing (and the loop's handlers go with the loop, before the process exits)."""
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)

    def _count(self, sig: int) -> None:
        name = signal.Signals(sig).name
        self.received[name] = self.received.get(name, 0) + 1

    def _on_stop(self, sig: int) -> None:
        self._count(sig)
        self.stop()

    def _on_reload(self) -> None:
        self._count(signal.SIGHUP)
        task = asyncio.ensure_future(self.reload(), loop=self.loop)
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    def _on_reopen(self) -> None:
        self._count(REOPEN_SIGNAL)
        pids = list(self.writers())
        log.warning("SIGUSR1 received: reopening the access logs (%d processes)", len(pids))
        for pid in pids:
            try:
                os.kill(pid, REOPEN_SIGNAL)
            except OSError:
                pass  # ended meanwhile

    def _on_ignored(self, sig: int) -> None:
        self._count(sig)
        log.warning("%s received: ignored (nginx's binary upgrade has no meaning here)",
                    signal.Signals(sig).name)  # fmt: skip


def ignore_operator_signals() -> None:
    """SIGUSR1, SIGUSR2 and SIGWINCH do nothing in this process from now on, until it installs
    handlers of its own: the supervisor while it starts (its pid file is written before its
    loop runs), a Granian master for good (it writes no log; its forked workers inherit this
    until their access log installs its reopen handler; its SIGUSR2 is the lifeline's relay)."""
    for sig in (REOPEN_SIGNAL, *IGNORED_SIGNALS):
        signal.signal(sig, signal.SIG_IGN)
