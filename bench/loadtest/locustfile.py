"""Locust load test for any fastkong (or Kong) deployment.

Point it at the proxy listener and say what to send with environment variables; everything is
optional, and without any of them every simulated user sends ``GET /`` as fast as it can:

``FK_PATHS``        comma-separated paths to cycle through (``/users,/orders?page=2``)
``FK_PATHS_FILE``   a file with one path per line (adds to ``FK_PATHS``)
``FK_HOSTS``        comma-separated Host header values to cycle through (host-based routes)
``FK_HEADERS``      static headers, ``Name: value`` separated by ``;`` (one API key, a token)
``FK_KEYS_FILE``    one credential per line, sent in ``FK_KEY_HEADER`` and cycled over users,
                    so each simulated user is one consumer (key-auth keys, ``Bearer <jwt>``, ...)
``FK_KEY_HEADER``   the header for ``FK_KEYS_FILE``; default ``apikey`` (key-auth's default)
``FK_RATE``         requests/s per user (``constant_throughput``): users x rate is the offered
                    load, which keeps latency figures honest; default: no wait (closed loop)
``FK_OK_STATUSES``  statuses that count as success; default ``200-399``; add ``429`` when a
                    rate limit is the point of the test (429s are still named apart)

Examples (docs/load-testing.md has more)::

    locust -f bench/loadtest/locustfile.py --host http://gateway:8000 --headless \\
        -u 50 -r 10 -t 60s --csv out
    FK_PATHS=/static FK_HEADERS='apikey: my-key' FK_RATE=20 \\
        locust -f bench/loadtest/locustfile.py --host http://127.0.0.1:8000 --headless \\
        -u 100 -r 20 -t 2m

``FastHttpUser`` (geventhttpclient) keeps one keep-alive connection per user and is several
times cheaper per request than ``HttpUser``; one locust process still tops out at a few thousand
requests/s per core, so run ``--processes N`` (or wrk, ``bench/loadtest/wrk/gateway.lua``) to
find a gateway's peak, and locust for realistic, paced, mixed traffic.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

from locust import FastHttpUser, constant_throughput, task


def _split(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def _lines(path: str | None) -> list[str]:
    if not path:
        return []
    lines = (line.strip() for line in Path(path).read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _statuses(spec: str) -> set[int]:
    out: set[int] = set()
    for part in _split(spec):
        low, _, high = part.partition("-")
        out.update(range(int(low), int(high or low) + 1))
    return out


PATHS = _split(os.environ.get("FK_PATHS")) + _lines(os.environ.get("FK_PATHS_FILE")) or ["/"]
HOSTS = _split(os.environ.get("FK_HOSTS"))
HEADERS = dict(
    (name.strip(), value.strip())
    for name, _, value in (
        item.partition(":") for item in (os.environ.get("FK_HEADERS") or "").split(";")
    )
    if name.strip()
)
KEYS = _lines(os.environ.get("FK_KEYS_FILE"))
KEY_HEADER = os.environ.get("FK_KEY_HEADER", "apikey")
RATE = float(os.environ.get("FK_RATE") or 0)
OK = _statuses(os.environ.get("FK_OK_STATUSES", "200-399"))
_user_numbers = itertools.count()


class GatewayUser(FastHttpUser):
    """One client: its own keep-alive connection, its own credential when FK_KEYS_FILE is set,
    walking the paths (and hosts) from a different starting point than the other users."""

    if RATE > 0:
        wait_time = constant_throughput(RATE)

    def on_start(self) -> None:
        number = next(_user_numbers)
        self.headers = dict(HEADERS)
        if KEYS:
            self.headers[KEY_HEADER] = KEYS[number % len(KEYS)]
        self.paths = itertools.cycle(PATHS[number % len(PATHS) :] + PATHS[: number % len(PATHS)])
        self.hosts = itertools.cycle(HOSTS) if HOSTS else None

    @task
    def request(self) -> None:
        path = next(self.paths)
        headers = self.headers
        if self.hosts is not None:
            headers = {**headers, "Host": next(self.hosts)}
        with self.client.get(path, headers=headers, name=path, catch_response=True) as response:
            if response.status_code in OK:
                response.success()
            elif response.status_code == 429:
                response.failure("429 rate limited")
            else:
                response.failure(f"HTTP {response.status_code}")
