"""The status listener and the admin API's edges against Kong's source
(``kong/status/init.lua``, ``kong/status/ready.lua``, ``kong/api/routes/health.lua``,
``kong/api/routes/plugins.lua``), on a real ``fastkong start``."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import Echo, Gateway
from tests.unit.test_config_nesting import CERT, KEY

pytestmark = pytest.mark.integration


def config(echo: Echo) -> str:
    return (
        '_format_version: "3.0"\n'
        f"services:\n- name: echo\n  url: http://127.0.0.1:{echo.port}\n"
        "  routes:\n  - name: r\n    paths: [/r]\n"
        "upstreams:\n- name: up\n  targets:\n  - target: 127.0.0.1:1\n"
    )


@pytest.fixture
def gw(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[Gateway]:
    gateway = Gateway(tmp_path_factory.mktemp("status-kong"), config(echo)).start()
    yield gateway
    assert gateway.stop() == 0


def admin(gw: Gateway, path: str) -> str:
    return f"http://127.0.0.1:{gw.admin_port}{path}"


def test_status_listener_serves_the_upstreams_reads(gw: Gateway) -> None:
    health = httpx.get(gw.status_url("/upstreams/up/health"))
    assert health.status_code == 200
    assert health.json() == httpx.get(admin(gw, "/upstreams/up/health")).json()
    assert [t["target"] for t in health.json()["data"]] == ["127.0.0.1:1"]
    assert httpx.get(gw.status_url("/upstreams")).json()["data"][0]["name"] == "up"
    assert httpx.get(gw.status_url("/upstreams/up/targets/all")).json()["data"]
    assert httpx.get(gw.status_url("/upstreams/nope/health")).status_code == 404
    # only reads: health writes and other entities are not on the status listener
    assert httpx.put(gw.status_url("/upstreams/up/targets/127.0.0.1:1/healthy")).status_code == 404
    assert httpx.get(gw.status_url("/services")).status_code == 404
    assert httpx.post(gw.status_url("/nope")).status_code == 404
    r = httpx.delete(gw.status_url("/upstreams/up"))
    assert (r.status_code, r.json()) == (405, {"message": "Method not allowed"})


def test_status_body_has_kongs_dbless_shape(gw: Gateway) -> None:
    body = gw.status()
    assert "database" not in body  # Kong drops it in DB-less mode
    assert set(body["server"]) == {
        "connections_active",
        "connections_reading",
        "connections_writing",
        "connections_waiting",
        "connections_accepted",
        "connections_handled",
        "total_requests",
    }
    assert set(body["memory"]) == {"workers_lua_vms", "lua_shared_dicts"}
    assert len(body["configuration_hash"]) == 32


def test_post_ready_draining_fails_readiness_only(gw: Gateway) -> None:
    r = httpx.post(gw.status_url("/status/ready"), data={"status": "nope"})
    assert (r.status_code, r.content) == (400, b"")
    assert httpx.get(gw.status_url("/status/ready")).status_code == 200
    r = httpx.post(gw.status_url("/status/ready"), json={"status": "draining"})
    assert r.status_code == 204
    ready = httpx.get(gw.status_url("/status/ready"))
    assert (ready.status_code, ready.json()) == (503, {"message": "draining"})
    assert httpx.get(gw.url("/r")).status_code == 200  # still serving traffic


def test_plugins_enabled_lists_the_plugins_on_the_node(gw: Gateway) -> None:
    body = httpx.get(admin(gw, "/plugins/enabled")).json()
    assert {"key-auth", "rate-limiting", "cors"} <= set(body["enabled_plugins"])
    assert body["enabled_plugins"] == sorted(
        httpx.get(admin(gw, "/")).json()["plugins"]["available_on_server"]
    )


def test_oversized_body_is_413(gw: Gateway) -> None:
    with socket.create_connection(("127.0.0.1", gw.admin_port)) as s:
        s.sendall(
            b"POST /config HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {64 * 1024 * 1024 + 1}\r\n\r\n".encode()
        )
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    assert raw.startswith(b"HTTP/1.1 413 ")
    assert b"connection: close" in raw.lower()


def test_kongs_custom_entity_routes(tmp_path: Path, echo: Echo) -> None:
    """consumers.lua (``?custom_id=``), certificates.lua (an SNI name stands for its
    certificate; ``snis`` listed), targets.lua and snis.lua (disabled endpoints)."""
    document = {
        "_format_version": "3.0",
        "consumers": [{"username": "alice", "custom_id": "c-1"}, {"username": "bob"}],
        "certificates": [{"cert": CERT, "key": KEY, "snis": [{"name": "a.test"}]}],
        "upstreams": [{"name": "up", "targets": [{"target": "127.0.0.1:1"}]}],
    }
    gw = Gateway(tmp_path, json.dumps(document)).start()
    try:
        alice = httpx.get(admin(gw, "/consumers/alice")).json()
        r = httpx.get(admin(gw, "/consumers"), params={"custom_id": "c-1"})
        assert r.json() == {"data": [alice], "next": None}
        r = httpx.get(admin(gw, "/consumers"), params={"custom_id": "nope"})
        assert r.json() == {"data": [], "next": None}
        r = httpx.get(admin(gw, "/consumers"), params={"custom_id": ""})
        assert r.status_code == 400
        assert r.json() == {"message": "custom_id must be an unempty string"}

        cert = httpx.get(admin(gw, "/certificates/a.test"))
        assert cert.status_code == 200 and cert.json()["snis"] == ["a.test"]
        assert httpx.get(admin(gw, f"/certificates/{cert.json()['id']}")).json() == cert.json()
        snis = httpx.get(admin(gw, "/certificates/a.test/snis")).json()["data"]
        assert [s["name"] for s in snis] == ["a.test"]
        r = httpx.get(admin(gw, "/certificates/b.test"))
        assert (r.status_code, r.json()) == (404, {"message": "SNI not found"})
        r = httpx.delete(admin(gw, "/certificates/b.test"))
        assert (r.status_code, r.json()) == (404, {"message": "SNI not found"})

        for path in ("/targets", "/snis/a.test/certificate"):
            r = httpx.get(admin(gw, path))
            assert (r.status_code, r.json()) == (404, {"message": "Not found"}), path
        assert httpx.get(admin(gw, "/upstreams/up/targets")).json()["data"]
    finally:
        assert gw.stop() == 0


def test_schema_validate_answers_as_kongs(gw: Gateway) -> None:
    """kong/api/routes/kong.lua ``validate_schema`` (KIC's admission webhook calls it)."""

    def validate(entity: str, body: dict[str, object]) -> httpx.Response:
        return httpx.post(admin(gw, f"/schemas/{entity}/validate"), json=body)

    ok = validate("plugins", {"name": "rate-limiting", "config": {"minute": 5}})
    assert (ok.status_code, ok.json()) == (200, {"message": "schema validation successful"})
    service = {"id": "6f1c6e0e-8d1f-4f55-9a51-8d3b1f1e2a11"}
    assert validate("plugins", {"name": "key-auth", "service": service}).status_code == 200
    r = validate("plugins", {"name": "rate-limiting", "config": {"minute": -1}})
    assert r.status_code == 400
    assert r.json() == {
        "code": 2,
        "name": "schema violation",
        "message": "schema violation (config.minute: value must be greater than 0)",
        "fields": {"config": {"minute": "value must be greater than 0"}},
    }
    r = validate("consumers", {"tags": "x"})
    assert r.status_code == 400
    assert r.json()["message"] == (
        "2 schema violations (at least one of these fields must be non-empty: 'custom_id',"
        " 'username'; tags: expected a set)"
    )
    consumer = {"id": "0c8e5f8e-4a7b-4f6f-9d39-3f1b2d1c7e22"}
    assert validate("keyauth_credentials", {"key": "k", "consumer": consumer}).status_code == 200
    r = validate("nope", {})
    assert (r.status_code, r.json()) == (404, {"message": "No entity named 'nope'"})
    r = httpx.get(admin(gw, "/schemas/plugins/validate"))
    assert (r.status_code, r.json()) == (405, {"message": "Method not allowed"})


def test_a_json_body_that_does_not_parse_is_400(gw: Gateway) -> None:
    """kong/api/api_helpers.lua ``parse_params``: before the endpoint runs."""
    for path in ("/config", "/routes", "/routes/r"):
        for body in (b"{nope", b""):
            r = httpx.post(
                admin(gw, path), content=body, headers={"content-type": "application/json"}
            )
            assert r.status_code == 400 if path != "/routes/r" else 405, (path, body)
            if path != "/routes/r":
                assert r.json() == {"message": "Cannot parse JSON body"}
    assert httpx.get(gw.url("/r")).status_code == 200  # the config is still the one loaded


def test_status_listener_answers_options(gw: Gateway) -> None:
    for path, allow in (
        ("/status", "GET, HEAD, OPTIONS"),
        ("/status/ready", "GET, HEAD, OPTIONS, POST"),
    ):
        r = httpx.options(gw.status_url(path))
        assert r.status_code == 204, path
        assert r.headers["allow"] == allow
        assert r.headers["access-control-allow-methods"] == allow
    assert httpx.options(gw.status_url("/nope")).status_code == 404


def test_upstream_health_is_paged_as_kongs(tmp_path: Path) -> None:
    """upstreams.lua ``/upstreams/{u}/health``: a page of targets with their health."""
    targets = [{"target": f"127.0.0.1:{port}"} for port in range(1, 6)]
    document = {"_format_version": "3.0", "upstreams": [{"name": "up", "targets": targets}]}
    gw = Gateway(tmp_path, json.dumps(document)).start()
    try:
        seen: list[str] = []
        url: str | None = "/upstreams/up/health?size=2"
        while url is not None:
            body = httpx.get(gw.status_url(url)).json()
            assert len(body["node_id"]) == 36
            seen += [row["target"] for row in body["data"]]
            assert all(row["health"] == "HEALTHCHECKS_OFF" for row in body["data"])
            url = body["next"]
            assert url is None or url.startswith("/upstreams/up/health?offset=")
        assert sorted(seen) == [t["target"] for t in targets]
        r = httpx.get(gw.status_url("/upstreams/up/health"), params={"size": "0"})
        assert r.status_code == 400 and r.json()["name"] == "invalid size"
    finally:
        assert gw.stop() == 0
