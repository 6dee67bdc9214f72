"""The relay of the parent-death signal (fastkong/control/lifeline.py), in a real process;
the processes ending with their parents are tests/integration/test_proxy_listeners.py."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.helpers import ROOT

CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    from fastkong.control.lifeline import RELAY_SIGNAL, relay_once

    terms = []
    signal.signal(signal.SIGTERM, lambda signum, frame: terms.append(signum))
    relay_once()
    for _ in range(5):  # as the kernel does when a parent's threads exit one after the other
        os.kill(os.getpid(), RELAY_SIGNAL)
    time.sleep(0.2)
    print(len(terms))
    """
)


def test_the_relay_sends_sigterm_once() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1"]
