"""Readiness: a node is ready only once every worker it started serves the current config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fastkong.control.state import write_report
from fastkong.control.supervisor import Options, Supervisor


def test_ready_waits_for_every_worker(tmp_path: Path) -> None:
    supervisor = Supervisor(Options(config_path=None, workers=2, prefix=tmp_path))
    supervisor.config.hash = "a" * 32
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert not supervisor.workers_in_step()  # no worker has reported
        write_report(tmp_path, os.getpid(), "a" * 32)
        assert not supervisor.workers_in_step()  # one of two: the other may still be loading
        write_report(tmp_path, other.pid, "b" * 32)
        assert not supervisor.workers_in_step()  # both, but one serves an older config
        write_report(tmp_path, other.pid, "a" * 32)
        assert supervisor.workers_in_step()
    finally:
        other.kill()
        other.wait()
    assert not supervisor.workers_in_step()  # a dead worker's report does not count
    supervisor.loader.shutdown()
    supervisor.counters_file.unlink(missing_ok=True)
    supervisor.health_file.unlink(missing_ok=True)
