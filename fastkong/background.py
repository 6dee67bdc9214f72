"""Background threads that must come second to serving requests.

Config work (the supervisor validating a new config, a worker compiling its runtime snapshot)
is seconds of CPU for a 10,000-route config, and it happens on nodes whose cores also serve
traffic. Two tools keep it second:

* :func:`background_executor`: a thread at a lower CPU priority, so the kernel gives requests
  the cores first (the supervisor's config loads). Linux keeps a nice value per thread; where
  that is not so (or not permitted), the thread keeps its priority. Not for work that holds the
  GIL of a process serving requests: a niced holder, preempted, keeps the serving thread waiting.
* :func:`paced`: work that shares the GIL with a serving event loop (a worker's build) rests
  now and then with the GIL released.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

#: How much nicer a background thread is than the thread that started it.
NICENESS = 10


def lower_priority(niceness: int = NICENESS) -> None:
    """Lower the calling thread's CPU priority by ``niceness``."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + niceness)
    except (OSError, AttributeError):
        pass


def background_executor(name: str) -> ThreadPoolExecutor:
    """One low-priority thread: jobs run one at a time, in order."""
    return ThreadPoolExecutor(1, name, initializer=lower_priority)


class _Pace:
    """Work slices of ``work`` seconds, each followed by ``rest`` seconds of sleep."""

    __slots__ = ("work", "rest", "since")

    def __init__(self, work: float, rest: float) -> None:
        self.work = work
        self.rest = rest
        self.since = time.perf_counter()

    def tick(self) -> None:
        now = time.perf_counter()
        if now - self.since >= self.work:
            time.sleep(self.rest)
            self.since = time.perf_counter()


_local = threading.local()


def pace() -> None:
    """Called from long build loops: in a paced thread, rest now and then (see :func:`paced`)."""
    current = getattr(_local, "pace", None)
    if current is not None:
        current.tick()


@contextlib.contextmanager
def paced(work: float, rest: float) -> Iterator[None]:
    """Make the calling thread rest ``rest`` s after every ``work`` s spent in :func:`pace`-ing
    loops.

    A worker builds its next snapshot in a thread of the process that serves requests. Each
    time the event loop (or Granian's thread) wants the interpreter while the build holds it,
    it waits up to a switch interval; over a build of seconds those waits add up on every
    request. Resting with the GIL released leaves whole windows in which requests wait for
    nothing, for a longer build.
    """
    _local.pace = _Pace(work, rest)
    try:
        yield
    finally:
        _local.pace = None
