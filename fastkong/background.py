"""Background threads that must come second to serving requests.

Config work (the supervisor validating a new config, a worker compiling its runtime snapshot)
is seconds of CPU for a 10,000-route config, and it happens on nodes whose cores also serve
traffic. Its threads run at a lower CPU priority, so the kernel gives requests the cores first.
Linux keeps a nice value per thread; where that is not so (or not permitted), the thread simply
keeps its priority.
"""

from __future__ import annotations

import os
import threading
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
