"""``fastkong config explain`` agrees with the proxy: same route, upstream path and Host, under
each router flavor (``--router-flavor``)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import ROOT, Echo, Gateway, cli_json, explain, fastkong_cli

pytestmark = pytest.mark.integration

CONFIG = """
_format_version: "3.0"
services:
- name: plain
  url: http://127.0.0.1:{port}
  routes:
  - {{name: prefix, paths: ["/api"]}}
  - {{name: keep, paths: ["/keep"], strip_path: false}}
  - {{name: longer, paths: ["/api/v2"]}}
  - {{name: regex, paths: ["~/items/(?<id>\\\\d+)$"], regex_priority: 5}}
  - {{name: host, hosts: ["*.example.com"], paths: ["/api"]}}
  - {{name: header, paths: ["/api"], headers: {{x-env: ["canary"]}}}}
  - {{name: method, paths: ["/api"], methods: ["DELETE"]}}
  - {{name: preserve, hosts: ["keep.example.org"], preserve_host: true}}
- name: based
  url: http://127.0.0.1:{port}/base/
  routes:
  - {{name: v0, paths: ["/fit"]}}
  - {{name: v1, paths: ["/v1fit"], path_handling: v1}}
  - {{name: v1-keep, paths: ["/v1keep"], path_handling: v1, strip_path: false}}
  - {{name: tie-a, paths: ["/tie"]}}
- name: unslashed
  url: http://127.0.0.1:{port}/s
  routes:
  - {{name: v1-unslashed, paths: ["/v1s"], path_handling: v1}}
  - {{name: v1-unslashed-keep, paths: ["/v1k"], path_handling: v1, strip_path: false}}
  - {{name: tie-b, paths: ["/tie"]}}
"""
FLAVORS = ("traditional_compatible", "traditional")

REQUESTS = [
    ("GET", "/api/x?q=1", {}),
    ("GET", "/apix", {}),
    ("GET", "/api/v2/y", {}),
    ("GET", "/keep/a/b", {}),
    ("GET", "/items/42", {}),
    ("GET", "/items/42/more", {}),
    ("GET", "/api/h", {"Host": "a.b.example.com"}),
    ("GET", "/api/h", {"X-Env": "Canary"}),
    ("DELETE", "/api/d", {}),
    ("GET", "/anything", {"Host": "keep.example.org"}),
    # preserve_host sends the Host as the client wrote it.
    ("GET", "/anything", {"Host": "Keep.Example.ORG"}),
    # A path typed as text goes on the wire as UTF-8 (httpx sends /api/%C3%A9).
    ("GET", "/api/é", {}),
    ("GET", "/fit", {}),
    ("GET", "/fit/", {}),
    ("GET", "/fitfoo", {}),
    ("GET", "/v1fitfoo", {}),
    ("GET", "/v1keep/z", {}),
    ("GET", "/v1sfoo", {}),
    ("GET", "/v1s", {}),
    ("GET", "/v1k/foo", {}),
    ("GET", "/tie/x", {}),
    ("GET", "/nowhere", {}),
]


@pytest.fixture(scope="module", params=FLAVORS)
def setup(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, echo: Echo
) -> Iterator[tuple[Gateway, Path, str]]:
    flavor = request.param
    config = CONFIG.format(port=echo.port)
    gw = Gateway(tmp_path_factory.mktemp("explain"), config, 1, "--router-flavor", flavor).start()
    yield gw, gw.config_path, flavor
    gw.stop()


@pytest.mark.parametrize(("method", "target", "headers"), REQUESTS)
def test_explain_matches_the_proxy(
    setup: tuple[Gateway, Path, str], method: str, target: str, headers: dict[str, str]
) -> None:
    gw, config, flavor = setup
    url = gw.url(target)
    predicted = explain(config, method, url, headers, flavor)
    r = httpx.request(method, url, headers=headers)
    if predicted["route"] is None:
        assert r.status_code == 404
        return
    assert r.status_code == 200, r.text
    seen = r.json()
    assert seen["url"] == predicted["upstream_path"]
    host = dict(seen["headers"])["host"]
    assert host == predicted["host_header"]


# Where the flavors differ: v1 joins (the traditional router's; Kong's default flavor joins every
# route by v0) and the winner of a priority tie (the larger route id; the traditional router's
# order, the config's).
V1_PATHS = {
    "/v1sfoo": ("/s/foo", "/sfoo"),
    "/v1s": ("/s", "/s"),
    "/v1k/foo": ("/s/v1k/foo", "/sv1k/foo"),
}


@pytest.mark.parametrize("target", sorted(V1_PATHS))
def test_path_handling_v1_follows_the_flavor(setup: tuple[Gateway, Path, str], target: str) -> None:
    gw, config, flavor = setup
    compatible, traditional = V1_PATHS[target]
    expected = traditional if flavor == "traditional" else compatible
    assert explain(config, "GET", gw.url(target), {}, flavor)["upstream_path"] == expected
    assert httpx.get(gw.url(target)).json()["url"] == expected


def test_priority_tie_follows_the_flavor(setup: tuple[Gateway, Path, str]) -> None:
    gw, config, flavor = setup
    from fastkong.config import load_config

    ids = {r.name: r.id for r in load_config(config.read_bytes()).config.routes}
    larger = max(("tie-a", "tie-b"), key=lambda name: ids[name])
    assert larger == "tie-b"  # so that the flavors disagree: tie-a comes first in the file
    expected = larger if flavor == "traditional_compatible" else "tie-a"
    assert explain(config, "GET", gw.url("/tie/x"), {}, flavor)["route"] == expected
    upstream = {"tie-a": "/base/x", "tie-b": "/s/x"}[expected]
    assert httpx.get(gw.url("/tie/x")).json()["url"] == upstream
    info = httpx.get(f"http://127.0.0.1:{gw.admin_port}/").json()
    assert info["configuration"]["router_flavor"] == flavor


def test_unsupported_flavor_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "kong.yml"
    config.write_text('_format_version: "3.0"\n')
    for args, env in (
        (
            ["config", "explain", str(config), "--url", "http://x/"],
            {"KONG_ROUTER_FLAVOR": "atc"},
        ),
        (["start", "-c", str(config), "--router-flavor", "atc"], {}),
        (["config", "validate", str(config), "--router-flavor", "atc"], {}),
    ):
        done = fastkong_cli(*args, env=env)
        assert done.returncode == 1
        assert "router_flavor 'atc' is not supported" in done.stderr


def test_explain_command_line(setup: tuple[Gateway, Path, str]) -> None:
    _, config, _ = setup
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "fastkong",
            "config",
            "explain",
            str(config),
            "--url",
            "http://x.example.com/items/7",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = json.loads(out)
    assert result["route"] == "regex"
    assert result["service"] == "plain"
    assert result["upstream_path"] == "/"
    assert result["uri_captures"] == {"0": "/items/7", "1": "7", "id": "7"}


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--url", "notaurl"], 2, "--url 'notaurl': expected http://host/path"),
        (["--url", "http://[::1/x"], 2, "--url 'http://[::1/x': Invalid IPv6 URL"),
        (["--url", "http://a:99999/"], 2, "Port out of range"),
        (["--url", "http://a/", "--header", "nocolon"], 2, "--header 'nocolon': expected"),
        (["--url", "http://a/", "--missing-file"], 1, "cannot read"),
    ],
)
def test_bad_explain_input_is_an_error_not_a_traceback(
    tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    config = tmp_path / "kong.yml"
    config.write_text('_format_version: "3.0"\n')
    path = str(tmp_path / "nope.yml") if "--missing-file" in args else str(config)
    args = [a for a in args if a != "--missing-file"]
    done = fastkong_cli("config", "explain", path, *args)
    assert done.returncode == code
    assert message in done.stderr and "Traceback" not in done.stderr


def test_explain_sni_picks_routes_by_the_tls_server_name(tmp_path: Path) -> None:
    # `--sni` is the name the client sends in its TLS handshake; routes' `snis` match it, not
    # the Host (Kong's router reads the SNI). Without it, the URL's host stands in.
    config = tmp_path / "kong.yml"
    config.write_text(
        '_format_version: "3.0"\n'
        "services:\n- name: s\n  url: http://127.0.0.1:9\n  routes:\n"
        "  - {name: by-sni, protocols: [https], snis: ['*.tls.test'], paths: ['/x']}\n"
        "  - {name: fallback, paths: ['/x']}\n"
    )
    base = ["config", "explain", str(config), "--method", "GET"]
    found = cli_json([*base, "--url", "https://127.0.0.1:8443/x", "--sni", "a.tls.test"])
    assert found["route"] == "by-sni"
    assert cli_json([*base, "--url", "https://127.0.0.1:8443/x"])["route"] == "fallback"
    assert cli_json([*base, "--url", "https://a.tls.test/x"])["route"] == "by-sni"
    found = cli_json([*base, "--url", "https://a.tls.test/x", "--sni", "other.test"])
    assert found["route"] == "fallback"
