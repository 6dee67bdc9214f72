"""Processes that end with their parent.

A node is three generations: the supervisor (``fastkong start``), one Granian master per
listener, and the master's workers. Granian's workers are plain child processes: when their
master dies without stopping them (killed, out of memory), they go on serving its port, an
orphan no probe watches, and a supervisor killed the same way leaves its masters behind. Linux
can tell a child when its parent dies (``prctl(PR_SET_PDEATHSIG)``): each generation asks for
SIGTERM, which Granian answers by draining and exiting. Elsewhere this does nothing.

The kernel sends that signal each time the child's parent *thread* goes: a multi-threaded
supervisor killed outright hands its children from thread to thread as they exit, so a master
can get the signal several times in a row. Granian's master handles SIGTERM in Python with a
``threading.Event.set`` that a second signal, arriving inside the first handler, deadlocks on
(seen once in CI: a master stuck in its shutdown for good). The master therefore asks for a
relay signal instead (:func:`relay_once`), whose handler sends it SIGTERM the first time only.
Workers keep SIGTERM itself: Granian handles it in Rust, where repeats are harmless, and a
Python handler would not run while the worker's main thread serves. The relay acts only when the
parent is really gone (the kernel names the new parent before it signals): an operator's
SIGUSR2 (nginx's binary upgrade, sent to a node's process group) does not stop a master.

A worker is forked from its master with the master's Python handlers for SIGTERM and SIGINT,
which only set the master's own stop flag, a copy in the worker. Until Granian installs the
worker's handlers (after the app is imported and built), a stop was therefore lost, and a node
stopped while its workers started waited out Granian's kill timeout (30 s).
:func:`stop_plainly_after_fork` gives each forked worker the default action back: a worker that
has not started serving has nothing to drain, and ends at once. It gives them SIGUSR2's
default back too, ignored: the master's relay, inherited, would stop a worker.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal

_PR_SET_PDEATHSIG = 1
#: The environment variable through which a parent names itself to the children it starts.
PARENT_ENV = "FASTKONG_PARENT_PID"


def die_with_parent(expected_parent: int | None, sig: int = signal.SIGTERM) -> bool:
    """Ask for ``sig`` when the parent process dies; True if the kernel took the request.

    ``expected_parent`` closes the race with a parent that died before the request was made:
    if the process already has another parent, it sends itself ``sig`` at once.
    """
    if not hasattr(os, "getppid") or not os.uname().sysname == "Linux":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if expected_parent is not None and os.getppid() != expected_parent:
        os.kill(os.getpid(), sig)
    return True


#: What a master asks for when its parent goes, relayed once as SIGTERM (:func:`relay_once`).
RELAY_SIGNAL = signal.SIGUSR2


def relay_once(sig: int = signal.SIGTERM, parent: int | None = None) -> None:
    """Turn every :data:`RELAY_SIGNAL` into one ``sig`` sent to this process, the first time;
    with ``parent``, only once this process's parent is another one (``parent`` died)."""
    sent = False

    def relay(signum: int, frame: object) -> None:
        nonlocal sent
        if parent is not None and os.getppid() == parent:
            return  # not the parent's death: an operator's signal, or a parent thread's exit
        if not sent:
            sent = True
            os.kill(os.getpid(), sig)

    signal.signal(RELAY_SIGNAL, relay)


def stop_plainly_after_fork() -> None:
    """In every child this process forks from now on, SIGTERM and SIGINT end the child (the
    default action) until the child installs handlers of its own."""
    os.register_at_fork(after_in_child=_default_stop_signals)


def _default_stop_signals() -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(RELAY_SIGNAL, signal.SIG_IGN)


def expected_parent() -> int | None:
    """The parent this process was started by, as that parent said (``PARENT_ENV``)."""
    value = os.environ.get(PARENT_ENV)
    return int(value) if value and value.isdigit() else None
