"""Kong's ``proxy_access_log`` in Kong's ``kong_log_format``, written by a real
``fastkong start`` with two workers into one file."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import Echo, Gateway

pytestmark = pytest.mark.integration

CONFIG = """
_format_version: "3.0"
services:
- name: echo
  url: http://127.0.0.1:{echo}
  routes: [{{name: echo, paths: ["/echo"]}}]
"""

#: Kong's kong_log_format (kong/templates/nginx_kong.lua).
LINE = re.compile(
    r"^(?P<addr>\S+) - (?P<user>\S+) \[(?P<time>\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})\] "
    r'"(?P<request>[^"]*)" (?P<status>\d{3}) (?P<bytes>\d+) '
    r'"(?P<referer>[^"]*)" "(?P<agent>[^"]*)" kong_request_id: "(?P<rid>[0-9a-f]{32})"$'
)


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[tuple[Gateway, Path]]:
    workdir = tmp_path_factory.mktemp("access-log")
    log = workdir / "access.log"
    gw = Gateway(
        workdir,
        CONFIG.format(echo=echo.port),
        2,
        "--proxy-access-log",
        str(log),
        "--trusted-ips",
        "127.0.0.1",
        "--real-ip-header",
        "X-Forwarded-For",
    ).start()
    yield gw, log
    assert gw.stop() == 0


def lines_of(log: Path, count: int, timeout: float = 5.0) -> list[re.Match[str]]:
    deadline = time.monotonic() + timeout
    while True:
        text = log.read_text() if log.exists() else ""
        found = text.splitlines()
        if len(found) >= count or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    matches = [LINE.match(line) for line in found]
    assert all(matches), found
    return [m for m in matches if m is not None]


def test_one_line_per_request_in_kongs_format(logged: tuple[Gateway, Path]) -> None:
    gw, log = logged
    before = len(lines_of(log, 0, 0))
    credentials = base64.b64encode(b"alice:pw").decode()
    ok = httpx.get(
        gw.url("/echo/x?a=1&b=%22"),
        headers={
            "Referer": "https://ref.example/",
            "User-Agent": 'agent "quoted"',
            "Authorization": f"Basic {credentials}",
            "X-Forwarded-For": "203.0.113.9",
        },
    )
    missing = httpx.get(gw.url("/nowhere"), headers={"User-Agent": "probe"})
    found = lines_of(log, before + 2)[before:]
    by_status = {m["status"]: m for m in found}
    line = by_status["200"]
    assert line["addr"] == "203.0.113.9"  # the client address after the real-IP rules
    assert line["user"] == "alice"
    assert line["request"] == "GET /echo/x?a=1&b=%22 HTTP/1.1"
    assert int(line["bytes"]) == len(ok.content)
    assert line["referer"] == "https://ref.example/"
    assert line["agent"] == r"agent \x22quoted\x22"
    assert line["rid"] == ok.headers["x-kong-request-id"]
    miss = by_status["404"]
    assert miss["user"] == "-" and miss["referer"] == "-" and miss["agent"] == "probe"
    assert miss["rid"] == missing.headers["x-kong-request-id"]
    assert int(miss["bytes"]) == len(missing.content)


def test_workers_never_interleave_lines(logged: tuple[Gateway, Path]) -> None:
    gw, log = logged
    before = len(lines_of(log, 0, 0))
    with httpx.Client() as a, httpx.Client() as b:
        for i in range(100):
            (a if i % 2 else b).get(gw.url(f"/echo/{i}"), headers={"User-Agent": "x" * 300})
    found = lines_of(log, before + 100)
    assert len(found) == before + 100  # every line whole: the pattern matched each of them
