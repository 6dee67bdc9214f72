"""Port of Kong's ``spec/02-integration/05-proxy/14-server_tokens_spec.lua`` (the whole file,
one DB-less run): the ``Server``, ``Via`` and ``X-Kong-*-Latency`` headers under each ``headers``
setting of the spec, on proxied responses, on the gateway's own (no route, short-circuit) and on
the Admin API. One ``fastkong start`` per setting, one at a time (the cases sorted by
setting), with ``--headers``; the upstream is the echo server, whose
``/named`` path answers with a ``Server`` header of its own (Kong's mock_upstream sends one).

Ported: lines 18-283 (Server/Via), 285-832 (latency headers), 834-909 (case insensitiveness),
911-1037 (Admin API).

Left out:
- "should be returned with 502 errors (error_page executing)" (l. 439): covered by
  test_proxy_kong_headers (``test_502_after_a_failed_proxy_attempt_has_proxied_latency_headers``).
- "should not be returned when plugin errors on rewrite phase" (l. 456): not run DB-less in Kong.
- "... plugin errors on access phase" (l. 496) and the pending header_filter one (l. 513): the
  ``error-generator`` custom Lua plugin.
- "can be specified via configuration file" (l. 770): fastkong reads no ``kong.conf`` file; its
  observable part (the Admin API's ``configuration.headers``) is asserted with the setting given
  as a flag.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import fastkong
from tests.helpers import Echo, Gateway, free_port

pytestmark = pytest.mark.integration

#: Kong's meta._SERVER_TOKENS and its Via value ("1.1 " .. server tokens).
SERVER_TOKENS = f"fastkong/{fastkong.__version__}"
VIA = f"1.1 {SERVER_TOKENS}"

UPSTREAM = "x-kong-upstream-latency"
PROXY = "x-kong-proxy-latency"
RESPONSE = "x-kong-response-latency"
ADMIN = "x-kong-admin-latency"

#: Expectation markers: the header is there (any value), absent, or not Kong's Server token.
PRESENT = "<present>"
ABSENT = "<absent>"
NOT_KONG = "<not the server tokens>"
#: Kong sends no Server when ``headers`` leaves it out (Kong patches its nginx to add none);
#: fastkong's documented difference (README, "Kong compatibility notes"): Granian adds its own
#: ``server: granian`` to a response that has none.
NO_SERVER = "<absent, or Granian's>"


def config(echo: Echo) -> str:
    """The spec's routes (l. 24-52, 292-343), each on the mock upstream (the echo)."""
    return f"""
_format_version: "3.0"
services:
- name: mock
  url: http://127.0.0.1:{echo.port}
  routes:
  - name: inspect
    hosts: [headers-inspect.test]
  - name: short-circuit
    hosts: [short-circuit.test]
    plugins:
    - name: request-termination
      config: {{status_code: 200, message: Terminated}}
    - name: response-transformer
      config: {{add: {{headers: ["Via:{SERVER_TOKENS}", "Server:Demo"]}}}}
  - name: request-termination
    hosts: [request-termination.test]
    plugins:
    - name: request-termination
- name: wrong-port
  url: http://127.0.0.1:{free_port()}
  routes:
  - name: bad-gateway
    hosts: [502.test]
"""


class OneAtATime:
    """The gateway of one ``headers`` setting at a time: asking for another setting stops the
    running one (the cases are sorted by setting, so each starts once)."""

    def __init__(self, workdir: Path, echo: Echo) -> None:
        self.workdir = workdir
        self.echo = echo
        self.setting: str | None = None
        self.gateway: Gateway | None = None

    def get(self, setting: str) -> Gateway:
        if setting != self.setting:
            self.stop()
            extra = () if setting == "default" else ("--headers", setting)
            workdir = self.workdir / str(len(list(self.workdir.iterdir())))
            workdir.mkdir()
            self.gateway = Gateway(workdir, config(self.echo), 1, *extra).start()
            self.setting = setting
        assert self.gateway is not None
        return self.gateway

    def stop(self) -> None:
        if self.gateway is not None:
            gateway, self.gateway, self.setting = self.gateway, None, None
            assert gateway.stop() == 0


@pytest.fixture(scope="module")
def gateways(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[OneAtATime]:
    switcher = OneAtATime(tmp_path_factory.mktemp("server-tokens"), echo)
    yield switcher
    switcher.stop()


#: What a request asks for: host, path, expected status. "proxied" goes to the mock's /named,
#: which sends its own Server header (as Kong's mock_upstream does).
REQUESTS = {
    "proxied": ("headers-inspect.test", "/named", 200),
    "no-route": ("404.test", "/get", 404),
    "short-circuit": ("short-circuit.test", "/get", 200),
    "terminated": ("request-termination.test", "/get", 503),
}

#: (setting, request, expected headers, spec line): each ``it`` of the spec.
CASES: list[tuple[str, str, dict[str, str], int]] = [
    # Server/Via (l. 81-282)
    ("default", "proxied", {"server": NOT_KONG, "via": VIA}, 87),
    ("default", "no-route", {"server": SERVER_TOKENS, "via": ABSENT}, 101),
    ("default", "short-circuit", {"via": SERVER_TOKENS, "server": "Demo"}, 115),
    ("Via", "proxied", {"via": VIA, "server": NOT_KONG}, 139),
    ("Via", "no-route", {"via": ABSENT, "server": NO_SERVER}, 153),
    ("Server", "proxied", {"server": NOT_KONG, "via": ABSENT}, 177),
    ("Server", "no-route", {"server": SERVER_TOKENS, "via": ABSENT}, 191),
    ("server_tokens", "proxied", {"server": NOT_KONG, "via": VIA}, 215),
    ("server_tokens", "no-route", {"server": SERVER_TOKENS, "via": ABSENT}, 229),
    ("off", "proxied", {"server": NOT_KONG, "via": ABSENT}, 253),
    ("off", "no-route", {"server": NO_SERVER, "via": ABSENT}, 268),
    # X-Kong-Proxy-Latency/X-Kong-Upstream-Latency (l. 372-829)
    ("default", "proxied", {UPSTREAM: PRESENT, PROXY: PRESENT, RESPONSE: ABSENT}, 377),
    ("default", "no-route", {UPSTREAM: ABSENT, PROXY: ABSENT, RESPONSE: PRESENT}, 392),
    ("default", "terminated", {UPSTREAM: ABSENT, PROXY: ABSENT, RESPONSE: PRESENT}, 407),
    ("latency_tokens", "proxied", {UPSTREAM: PRESENT, PROXY: PRESENT, RESPONSE: ABSENT}, 538),
    ("latency_tokens", "no-route", {UPSTREAM: ABSENT, PROXY: ABSENT, RESPONSE: PRESENT}, 553),
    (
        "X-Kong-Upstream-Latency",
        "proxied",
        {UPSTREAM: PRESENT, PROXY: ABSENT, RESPONSE: ABSENT},
        578,
    ),
    (
        "X-Kong-Upstream-Latency",
        "no-route",
        {UPSTREAM: ABSENT, PROXY: ABSENT, RESPONSE: ABSENT},
        593,
    ),
    ("X-Kong-Proxy-Latency", "proxied", {UPSTREAM: ABSENT, PROXY: PRESENT, RESPONSE: ABSENT}, 618),
    ("X-Kong-Proxy-Latency", "no-route", {UPSTREAM: ABSENT, PROXY: ABSENT, RESPONSE: ABSENT}, 633),
    (
        "X-Kong-Response-Latency",
        "proxied",
        {UPSTREAM: ABSENT, PROXY: ABSENT, RESPONSE: ABSENT},
        658,
    ),
    (
        "X-Kong-Response-Latency",
        "no-route",
        {UPSTREAM: ABSENT, PROXY: ABSENT, RESPONSE: PRESENT},
        673,
    ),
    ("off", "proxied", {UPSTREAM: ABSENT, PROXY: ABSENT, RESPONSE: ABSENT}, 698),
    ("off", "no-route", {UPSTREAM: ABSENT, PROXY: ABSENT, RESPONSE: ABSENT}, 713),
    (
        "server_tokens, X-Kong-Proxy-Latency",
        "proxied",
        {"server": NOT_KONG, "via": VIA, PROXY: PRESENT, RESPONSE: ABSENT},
        738,
    ),
    (
        "server_tokens, X-Kong-Proxy-Latency",
        "no-route",
        {"server": SERVER_TOKENS, "via": ABSENT, PROXY: ABSENT, RESPONSE: ABSENT},
        754,
    ),
    (
        "server_tokens, off, X-Kong-Proxy-Latency",
        "proxied",
        {"server": NOT_KONG, "via": VIA, PROXY: PRESENT, RESPONSE: ABSENT},
        799,
    ),
    (
        "server_tokens, off, X-Kong-Proxy-Latency",
        "no-route",
        {"server": SERVER_TOKENS, "via": ABSENT, PROXY: ABSENT, RESPONSE: ABSENT},
        815,
    ),
    # case insensitiveness (l. 869-908)
    (
        "serVer_TokEns, x-kOng-pRoXy-lAtency",
        "proxied",
        {"server": NOT_KONG, "via": VIA, PROXY: PRESENT, RESPONSE: ABSENT},
        877,
    ),
    (
        "serVer_TokEns, x-kOng-pRoXy-lAtency",
        "no-route",
        {"server": SERVER_TOKENS, "via": ABSENT, PROXY: ABSENT, RESPONSE: ABSENT},
        893,
    ),
]


def check(response: httpx.Response, expected: dict[str, str]) -> None:
    for name, want in expected.items():
        got = response.headers.get(name)
        if want == PRESENT:
            assert got is not None, name
        elif want == ABSENT:
            assert got is None, (name, got)
        elif want == NO_SERVER:
            assert got in (None, "granian"), (name, got)
        elif want == NOT_KONG:
            assert got is not None and got != SERVER_TOKENS, (name, got)
        else:
            assert got == want, name


#: l. 422: an upstream's own error status is a proxied response (error_page not executing).
ERROR_PAGE_CODES = [400, 404, 408, 411, 412, 413, 414, 417, 494, 500, 502, 503, 504]
CASES += [
    ("default", f"status-{code}", {UPSTREAM: PRESENT, PROXY: PRESENT, RESPONSE: ABSENT}, 422)
    for code in ERROR_PAGE_CODES
]
#: Admin API (l. 934-1035): Server and X-Kong-Admin-Latency on GET /.
CASES += [
    ("default", "admin", {"server": PRESENT, ADMIN: PRESENT}, 939),
    ("server_tokens", "admin", {"server": PRESENT}, 952),
    ("Server", "admin", {"server": PRESENT}, 965),
    ("off", "admin", {"server": ABSENT, ADMIN: ABSENT}, 978),
    ("latency_tokens", "admin", {ADMIN: PRESENT}, 1004),
]
#: Each setting's cases together: one gateway start per setting.
SETTINGS = list(dict.fromkeys(case[0] for case in CASES))
CASES.sort(key=lambda case: SETTINGS.index(case[0]))


def request(gw: Gateway, kind: str) -> httpx.Response:
    if kind == "admin":
        r = httpx.get(f"http://127.0.0.1:{gw.admin_port}/")
        assert r.status_code == 200
        return r
    if kind.startswith("status-"):
        code = int(kind.removeprefix("status-"))
        host, path, status = "headers-inspect.test", f"/status/{code}", code
    else:
        host, path, status = REQUESTS[kind]
    r = httpx.get(gw.url(path), headers={"Host": host})
    assert r.status_code == status
    return r


@pytest.mark.parametrize(
    ("setting", "kind", "expected", "line"),
    CASES,
    ids=[f"{c[0]}-{c[1]}-l{c[3]}" for c in CASES],
)
def test_headers_setting(
    gateways: OneAtATime, setting: str, kind: str, expected: dict[str, str], line: int
) -> None:
    check(request(gateways.get(setting), kind), expected)


def test_headers_setting_is_reported_by_the_admin_api(gateways: OneAtATime) -> None:
    # l. 770, with the setting given as a flag (fastkong reads no kong.conf); run on the last
    # gateway of the module, whose setting is the same but for the case of its letters (Kong
    # lower-cases nothing: the value is kept as given, read case-insensitively).
    gw = gateways.get("serVer_TokEns, x-kOng-pRoXy-lAtency")
    r = httpx.get(f"http://127.0.0.1:{gw.admin_port}/")
    assert r.status_code == 200
    headers: Any = r.json()["configuration"]["headers"]
    assert [h.lower() for h in headers] == ["server_tokens", "x-kong-proxy-latency"]
