"""``fastkong demo``: the gateway on the bundled ``configs/kong.yml`` and a bundled echo upstream.

Needs nothing else: no Redis, no Kubernetes. Both processes are children of this one and are
stopped by pid when it ends (Ctrl-C).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

CURLS = """
fastkong demo is up: the gateway on http://127.0.0.1:{port}, an echo upstream on 127.0.0.1:{up}.
Try:
  curl -i http://127.0.0.1:{port}/echo/hello?x=1          # prefix route, strip_path
  curl -i http://127.0.0.1:{port}/v2/orders/42            # regex route, named capture
  curl -i -H 'Host: api.example.com' http://127.0.0.1:{port}/anything   # host route
  curl -i http://127.0.0.1:{port}/balanced/a              # round-robin over two targets
  curl -i http://127.0.0.1:{port}/nothing-here            # Kong's 404 body
  curl -s http://127.0.0.1:8100/status                    # configuration_hash
Ctrl-C stops both.
"""


def _wait_port(port: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.1)
    return False


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_demo(config: Path, port: int = 8000, upstream_port: int = 9001) -> int:
    """Run the demo; ``upstream_port`` (and the next one) must match the bundled config."""
    procs: list[subprocess.Popen[bytes]] = []
    # SIGTERM (and SIGINT even when a shell started us in the background, where it is ignored)
    # stop the demo the same way as Ctrl-C: children are stopped by pid in the finally block.
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    signal.signal(signal.SIGINT, _stop_on_sigterm)
    try:
        for name, p in (("echo-a", upstream_port), ("echo-b", upstream_port + 1)):
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "fastkong.echo", "--port", str(p), "--name", name],
                    stdout=subprocess.DEVNULL,
                )
            )
        gateway = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fastkong",
                "start",
                "-c",
                str(config),
                "--proxy-listen",
                f"127.0.0.1:{port}",
            ]
        )
        procs.append(gateway)
        if not _wait_port(port, time.monotonic() + 20):
            print("fastkong demo: the gateway did not start", file=sys.stderr)
            return 1
        print(CURLS.format(port=port, up=upstream_port), flush=True)
        return gateway.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
