"""Readiness: a node is ready only once every worker it started serves the current config."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fastkong.control.httpserver import Request
from fastkong.control.state import write_report
from fastkong.control.supervisor import Options, Supervisor
from fastkong.kong_conf import Listener


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


def test_an_empty_config_that_was_loaded_is_ready(tmp_path: Path) -> None:
    """Kong answers 503 "empty configuration present" for the all-zero hash; fastkong answers
    200 once every worker serves it: the operator gave that config (the shipped ConfigMap is
    one, as is what the controller writes for a cluster without Ingresses), and a DaemonSet
    whose pods never turn ready blocks every rollout. No config at all is still 503."""
    supervisor = Supervisor(Options(config_path=None, workers=1, prefix=tmp_path))
    try:
        request = Request("GET", "/status/ready", {}, {})
        response = asyncio.run(supervisor.handle_status(request))
        assert response.status == 503
        assert json.loads(response.body) == {
            "message": "no configuration available (configuration hash is not initialized)"
        }
        write_report(tmp_path, os.getpid(), "0" * 32)
        supervisor.config.hash = "0" * 32
        assert asyncio.run(supervisor.handle_status(request)).status == 200
    finally:
        supervisor.loader.shutdown()
        supervisor.counters_file.unlink(missing_ok=True)
        supervisor.health_file.unlink(missing_ok=True)


def test_not_ready_says_how_many_workers_are_in_step(tmp_path: Path) -> None:
    supervisor = Supervisor(Options(config_path=None, workers=2, prefix=tmp_path))
    supervisor.config.hash = "a" * 32
    write_report(tmp_path, os.getpid(), "a" * 32)
    try:
        response = asyncio.run(supervisor.handle_status(Request("GET", "/status/ready", {}, {})))
        assert response.status == 503
        assert json.loads(response.body) == {
            "message": "router builds not yet complete, router ready in 1 of 2 workers"
        }
    finally:
        supervisor.loader.shutdown()
        supervisor.counters_file.unlink(missing_ok=True)
        supervisor.health_file.unlink(missing_ok=True)


@pytest.mark.parametrize(
    ("termination", "total"),
    [("granian", 2), ("fastkong", 3)],
)
def test_every_listener_counts_its_workers(tmp_path: Path, termination: str, total: int) -> None:
    """Two proxy listeners are two Granian processes of ``workers`` each; when the edge serves
    the ssl one (fastkong's TLS), the stream process that runs it is one more to report."""
    listeners = (Listener("127.0.0.1", 8000), Listener("127.0.0.1", 8443, ("ssl",)))
    supervisor = Supervisor(
        Options(
            config_path=None,
            workers=1,
            proxy=listeners,
            prefix=tmp_path,
            ssl_termination=termination,
        )
    )
    supervisor.config.hash = "a" * 32
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        write_report(tmp_path, os.getpid(), "a" * 32)
        assert not supervisor.workers_in_step()
        response = asyncio.run(supervisor.handle_status(Request("GET", "/status/ready", {}, {})))
        assert json.loads(response.body)["message"].endswith(
            f"router ready in 1 of {total} workers"
        )
        write_report(tmp_path, other.pid, "a" * 32)
        assert supervisor.workers_in_step() == (total == 2)
        third = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            write_report(tmp_path, third.pid, "a" * 32)
            assert supervisor.workers_in_step()
        finally:
            third.kill()
            third.wait()
    finally:
        other.kill()
        other.wait()
        supervisor.loader.shutdown()
        supervisor.counters_file.unlink(missing_ok=True)
        supervisor.health_file.unlink(missing_ok=True)


@pytest.mark.parametrize(("termination", "total"), [("granian", 4), ("fastkong", 6)])
def test_each_worker_has_its_stream_process(tmp_path: Path, termination: str, total: int) -> None:
    """With two workers, two Granian workers per listener and, when the edge runs, two stream
    processes (one per worker, as each nginx worker serves the stream subsystem): six reports."""
    listeners = (Listener("127.0.0.1", 8000), Listener("127.0.0.1", 8443, ("ssl",)))
    options = Options(
        config_path=None, workers=2, proxy=listeners, prefix=tmp_path, ssl_termination=termination
    )
    supervisor = Supervisor(options)
    try:
        assert supervisor.worker_total == total
    finally:
        supervisor.loader.shutdown()
        supervisor.counters_file.unlink(missing_ok=True)
        supervisor.health_file.unlink(missing_ok=True)


def test_a_status_port_taken_after_the_start_check_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`fastkong start` checks its addresses first; one taken between that check and the bind
    (another process got there) stops the node with a line, not a traceback, before any
    Granian process starts."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        supervisor = Supervisor(
            Options(config_path=None, status=("127.0.0.1", port), admin=None, prefix=tmp_path)
        )
        assert asyncio.run(supervisor.run()) == 1
    assert supervisor.children == []
    assert capsys.readouterr().err.strip() == (
        f"fastkong: status_listen: cannot listen on 127.0.0.1:{port}: Address already in use"
    )
    assert not supervisor.health_file.exists()
