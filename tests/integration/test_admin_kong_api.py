"""The DB-less Admin API against Kong's own (``kong/api/*.lua``, ``kong/db/errors.lua``,
``kong/db/strategies/off``) and its spec (``spec/02-integration/04-admin_api``): what decK, KIC
and monitoring read, on a real ``fastkong start``."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.helpers import Echo, Gateway

pytestmark = pytest.mark.integration

ROUTES = 5
#: RFC 7517 appendix A.2's EC private key, with the kid Kong's keys entity requires it to repeat.
EC_JWK = (
    '{"kty":"EC","crv":"P-256","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4",'
    '"y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM",'
    '"d":"870MB6gfuTJ4HtUnUvYMyJpr5eUZNP4Bk43bVdj3eAE","use":"enc","kid":"1"}'
)


def config(echo: Echo) -> str:
    routes = "".join(
        f"  - name: r{i}\n    paths: [/r{i}]\n    tags: [{'even' if i % 2 == 0 else 'odd'}, all]\n"
        for i in range(ROUTES)
    )
    return (
        '_format_version: "3.0"\n'
        "services:\n"
        f"- name: echo\n  url: http://127.0.0.1:{echo.port}\n  tags: [svc]\n"
        f"  routes:\n{routes}"
        "  plugins:\n  - name: key-auth\n"
        "consumers:\n"
        "- username: alice\n  custom_id: c-alice\n  keyauth_credentials:\n  - key: alice-key\n"
        "  basicauth_credentials:\n  - username: alice-ba\n    password: s3cret\n"
        "- username: bob\n"
        "plugins:\n- name: cors\n  instance_name: cors-all\n"
        "upstreams:\n- name: up\n  targets:\n  - target: 127.0.0.1:1\n  - target: 127.0.0.1:2\n"
        f"key_sets:\n- name: signing\n  keys:\n  - name: ec-1\n    kid: '1'\n    jwk: '{EC_JWK}'\n"
    )


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[Gateway]:
    gateway = Gateway(tmp_path_factory.mktemp("admin-kong"), config(echo)).start()
    yield gateway
    assert gateway.stop() == 0


def admin(gw: Gateway, path: str) -> str:
    return f"http://127.0.0.1:{gw.admin_port}{path}"


def get(gw: Gateway, path: str, **params: Any) -> httpx.Response:
    return httpx.get(admin(gw, path), params=params)


def test_root_has_what_deck_and_kic_read(gw: Gateway) -> None:
    body = get(gw, "/").json()
    # KIC and decK parse a Kong semver and gate on it (KIC refuses a Kong older than 3.4.1)
    major, minor, _patch = (int(x) for x in body["version"].split("."))
    assert (major, minor) >= (3, 4)
    assert body["tagline"] == "Welcome to kong"
    assert body["configuration"]["database"] == "off"
    assert body["configuration"]["router_flavor"] == "traditional_compatible"
    plugins = body["plugins"]
    assert plugins["available_on_server"]["key-auth"]["priority"] == 1250
    assert sorted(plugins["enabled_in_cluster"]) == ["cors", "key-auth"]
    assert uuid.UUID(body["node_id"])
    assert body["node_id"] == get(gw, "/upstreams/up/health").json()["node_id"]
    assert isinstance(body["hostname"], str) and body["hostname"]
    assert body["pids"]["workers"] == gw.worker_pids()


def test_size_errors_are_kongs_invalid_size(gw: Gateway) -> None:
    for size in ("abc", ""):
        r = get(gw, "/routes", size=size)
        assert r.status_code == 400
        assert r.json() == {"code": 9, "name": "invalid size", "message": "size must be a number"}
    for size in ("0", "1001", "1.5", "-1"):
        r = get(gw, "/routes", size=size)
        assert r.status_code == 400, size
        assert r.json() == {
            "code": 9,
            "name": "invalid size",
            "message": "size must be an integer between 1 and 1000",
        }
    assert len(get(gw, "/routes", size="1000").json()["data"]) == ROUTES


def test_invalid_offset_is_kongs_invalid_offset(gw: Gateway) -> None:
    r = get(gw, "/routes", offset="x")
    assert r.status_code == 400
    assert r.json() == {
        "code": 7,
        "name": "invalid offset",
        "message": "'x' is not a valid offset: bad base64 encoding",
    }
    r = get(gw, "/routes", offset="|potato|")
    assert r.status_code == 400
    assert r.json()["code"] == 7
    assert r.json()["name"] == "invalid offset"


def walk(gw: Gateway, first: str) -> tuple[list[str], list[str]]:
    """Follow ``next`` from ``first``: the names seen and each ``next`` followed."""
    names: list[str] = []
    links: list[str] = []
    url: str | None = first
    while url is not None:
        body = httpx.get(admin(gw, url)).json()
        names += [row["name"] for row in body["data"]]
        url = body["next"]
        if url is None:
            assert "offset" not in body  # Kong's offset is nil on the last page: absent
        else:
            assert body["offset"] and url.startswith(first.split("?")[0] + "?offset=")
            links.append(url)
    return names, links


def test_next_pages_through_every_row_once_in_kongs_url_form(gw: Gateway) -> None:
    names, links = walk(gw, "/routes?size=2")
    assert sorted(names) == [f"r{i}" for i in range(ROUTES)]
    assert len(links) == 2
    assert all(link.endswith("&size=2") for link in links)
    # without ?size the link carries none (Kong adds size and tags only when given)
    assert "size=" not in get(gw, "/routes").text
    names, links = walk(gw, "/routes?tags=all&size=2")
    assert len(names) == ROUTES
    assert all(re.search(r"\?offset=[^&]+&tags=all&size=2$", link) for link in links)
    # a nested collection's next is /{parent}/{key}/{child}?offset=... only
    names, links = walk(gw, "/services/echo/routes?size=3")
    assert len(names) == ROUTES
    assert links and re.fullmatch(r"/services/echo/routes\?offset=[^&]+", links[0])


def test_tags_filter_and_or_and_errors(gw: Gateway) -> None:
    def names(tags: str) -> list[str]:
        return sorted(r["name"] for r in get(gw, "/routes", tags=tags).json()["data"])

    assert names("even") == ["r0", "r2", "r4"]
    assert names("even,all") == ["r0", "r2", "r4"]
    assert names("even,odd") == []
    assert names("even/odd") == [f"r{i}" for i in range(ROUTES)]
    assert names("nope/odd") == ["r1", "r3"]
    for tags, message in (
        ("", "cannot be null"),
        ("a,b/c", "invalid filter syntax"),
        ("a,b,c,d,e,f", "cannot query more than 5 tags"),
    ):
        r = get(gw, "/routes", tags=tags)
        assert r.status_code == 400, tags
        assert r.json() == {
            "code": 11,
            "name": "invalid options",
            "message": f"invalid option (tags: {message})",
            "options": {"tags": message},
        }


def test_lookups_by_id_and_endpoint_key_only(gw: Gateway) -> None:
    alice = get(gw, "/consumers/alice").json()
    assert get(gw, f"/consumers/{alice['id']}").json() == alice
    # Kong looks a non-UUID segment up by the endpoint key (username), not by custom_id
    assert get(gw, "/consumers/c-alice").status_code == 404
    assert get(gw, "/consumers/c-alice").json() == {"message": "Not found"}
    assert get(gw, "/routes/r0%2F").status_code == 404
    # a plugin's endpoint key is its instance_name (plugins.lua), not its plugin name
    cors = get(gw, "/plugins/cors-all")
    assert cors.status_code == 200 and cors.json()["name"] == "cors"
    assert get(gw, "/plugins/cors").status_code == 404


def test_nested_and_foreign_entity_endpoints(gw: Gateway) -> None:
    service = get(gw, "/services/echo").json()
    assert get(gw, "/routes/r1/service").json() == service
    route = get(gw, "/routes/r1").json()
    assert get(gw, f"/services/echo/routes/{route['id']}").json() == route
    assert get(gw, "/services/echo/routes/r1").json() == route
    plugin = get(gw, "/services/echo/plugins").json()["data"][0]
    assert get(gw, f"/plugins/{plugin['id']}/service").json() == service
    global_plugin = next(p for p in get(gw, "/plugins").json()["data"] if p["name"] == "cors")
    assert get(gw, f"/plugins/{global_plugin['id']}/service").status_code == 404
    keys = get(gw, "/consumers/alice/key-auth").json()["data"]
    assert [k["key"] for k in keys] == ["alice-key"]
    assert get(gw, "/key-auths").json()["data"] == keys
    alice = get(gw, "/consumers/alice").json()
    assert get(gw, f"/key-auths/{keys[0]['id']}/consumer").json() == alice
    assert get(gw, "/consumers/bob/key-auth").json()["data"] == []
    # basic-auth passwords are shown as Kong stores them: sha1(password .. consumer id)
    (basic,) = get(gw, "/consumers/alice/basic-auth").json()["data"]
    assert basic["password"] == hashlib.sha1(("s3cret" + alice["id"]).encode()).hexdigest()
    assert get(gw, "/basic-auths/alice-ba").json() == basic
    targets = get(gw, "/upstreams/up/targets/all").json()
    assert sorted(t["target"] for t in targets["data"]) == ["127.0.0.1:1", "127.0.0.1:2"]
    assert targets["next"] is None
    assert get(gw, "/upstreams/up/targets/127.0.0.1:2").json()["target"] == "127.0.0.1:2"


def test_keys_and_key_sets(gw: Gateway) -> None:
    (key_set,) = get(gw, "/key-sets").json()["data"]
    assert key_set["name"] == "signing"
    (key,) = get(gw, "/keys").json()["data"]
    assert (key["name"], key["kid"], key["jwk"]) == ("ec-1", "1", EC_JWK)
    assert key["set"] == {"id": key_set["id"]} and key["pem"] is None
    assert get(gw, "/key-sets/signing/keys").json()["data"] == [key]
    assert get(gw, "/keys/ec-1").json() == key
    assert get(gw, f"/keys/{key['id']}/set").json() == key_set


def test_writes_answer_as_kongs_off_strategy(gw: Gateway) -> None:
    def send(method: str, path: str) -> httpx.Response:
        return httpx.request(method, admin(gw, path), json={"name": "x"})

    def unsupported(message: str) -> dict[str, Any]:
        return {"code": 12, "name": "operation unsupported", "message": message}

    route_id = get(gw, "/routes/r0").json()["id"]
    for method in ("DELETE", "PUT", "PATCH"):
        r = send(method, "/routes")
        assert (r.status_code, r.json()) == (405, {"message": "Method not allowed"}), method
    r = send("POST", f"/routes/{route_id}")
    assert (r.status_code, r.json()) == (405, {"message": "Method not allowed"})
    cases = {
        ("PUT", "/routes/r0"): "cannot create or update 'routes' entities by 'name'",
        ("PUT", f"/routes/{route_id}"): "cannot create or update 'routes' entities",
        ("PATCH", "/routes/r0"): "cannot update 'routes' entities by 'name'",
        ("DELETE", "/routes/r0"): "cannot remove 'routes' entities by 'name'",
        ("DELETE", f"/routes/{route_id}"): "cannot remove 'routes' entities",
        ("POST", "/services/echo/routes"): "cannot create 'routes' entities",
        ("POST", "/consumers/alice/key-auth"): "cannot create 'keyauth_credentials' entities",
        ("DELETE", "/upstreams/up/targets/127.0.0.1:1"): "cannot remove 'targets' entities",
        ("PATCH", "/upstreams/up/targets/127.0.0.1:1"): "cannot update 'targets' entities",
        ("POST", "/upstreams/up/targets"): "cannot create 'targets' entities",
    }
    for (method, path), message in cases.items():
        r = send(method, path)
        assert r.status_code == 405, (method, path)
        assert r.json() == unsupported(message + " when not using a database")
    # deleting nothing succeeds; updating nothing is Kong's not-found error
    assert send("DELETE", "/routes/nope").status_code == 204
    r = send("PATCH", "/routes/nope")
    assert r.status_code == 404
    assert r.json() == {
        "code": 6,
        "name": "not found",
        "message": "could not find the entity with '{name=\"nope\"}'",
        "fields": {"name": "nope"},
    }
    r = send("DELETE", "/upstreams/up/targets/127.0.0.1:9")
    assert (r.status_code, r.json()) == (404, {"message": "Not found"})
    r = send("DELETE", "/routes/r0/service")
    assert (r.status_code, r.json()) == (405, {"message": "Method not allowed"})
    r = httpx.post(admin(gw, "/routes"), content=b"x", headers={"content-type": "text/plain"})
    assert r.status_code == 415


def test_options_cors_and_admin_latency(gw: Gateway) -> None:
    for path, allow in (
        ("/", "GET, HEAD, OPTIONS"),
        ("/routes", "GET, HEAD, OPTIONS, POST"),
        ("/routes/r0", "DELETE, GET, HEAD, OPTIONS, PATCH, PUT"),
        ("/config", "GET, HEAD, OPTIONS, POST"),
    ):
        r = httpx.options(admin(gw, path))
        assert r.status_code == 204, path
        assert r.headers["allow"] == allow
        assert r.headers["access-control-allow-methods"] == allow
        assert r.headers["access-control-allow-headers"] == "Content-Type"
        assert r.headers["access-control-allow-origin"] == "*"
    r = httpx.options(
        admin(gw, "/routes"),
        headers={"Origin": "http://ui.test", "Access-Control-Request-Headers": "X-A,X-B"},
    )
    assert r.headers["access-control-allow-headers"] == "X-A,X-B"
    assert r.headers["access-control-allow-origin"] == "http://ui.test"
    assert r.headers["access-control-allow-credentials"] == "true"
    r = get(gw, "/services")
    assert int(r.headers["x-kong-admin-latency"]) >= 0


def test_head_answers_headers_only_and_keeps_the_connection(gw: Gateway) -> None:
    with httpx.Client() as client:
        head = client.head(admin(gw, "/services"))
        assert head.status_code == 200 and head.content == b""
        after = client.get(admin(gw, "/services"))
        assert after.status_code == 200
        assert after.json()["data"][0]["name"] == "echo"


def test_post_config_answers_entities_by_id_and_kongs_flags(tmp_path: Path, echo: Echo) -> None:
    gw = Gateway(tmp_path, None, 1, "--prefix", str(tmp_path / "prefix")).start(wait_ready=False)
    try:
        text = config(echo)
        r = httpx.post(admin(gw, "/config"), content=text, headers={"content-type": "text/yaml"})
        assert r.status_code == 201
        entities = r.json()
        service = get(gw, "/services/echo").json()
        assert entities["services"] == {service["id"]: service}
        route = get(gw, "/routes/r3").json()
        assert entities["routes"][route["id"]] == route
        assert len(entities["keyauth_credentials"]) == 1
        assert "s3cret" not in r.text
        (basic,) = entities["basicauth_credentials"].values()
        assert basic == get(gw, "/basic-auths/alice-ba").json()
        # check_hash is honoured only as "1" (config.lua), flatten_errors only when truthy
        again = httpx.post(admin(gw, "/config?check_hash=true"), content=text)
        assert again.status_code == 201
        assert httpx.post(admin(gw, "/config?check_hash=1"), content=text).status_code == 304
        bad = '_format_version: "3.0"\nservices:\n- name: s\n'
        r = httpx.post(admin(gw, "/config?flatten_errors=maybe"), content=bad)
        assert r.status_code == 400 and "flattened_errors" not in r.json()
        r = httpx.post(admin(gw, "/config?flatten_errors=ON"), content=bad)
        assert r.status_code == 400 and "flattened_errors" in r.json()
        r = httpx.post(admin(gw, "/config"), content=text, headers={"content-type": "text/plain"})
        assert r.status_code == 415
        # a body that is the config object has no text to hash: never 304 (config.lua)
        document = {"_format_version": "3.0", "consumers": [{"username": "carol"}]}
        for _ in range(2):
            r = httpx.post(admin(gw, "/config?check_hash=1"), json=document)
            assert r.status_code == 201
        # the all-zero hash of an empty config is not the md5 of its text: loaded again
        empty = '_format_version: "3.0"\n'
        for _ in range(2):
            assert httpx.post(admin(gw, "/config?check_hash=1"), content=empty).status_code == 201
    finally:
        assert gw.stop() == 0


def test_get_config_exports_what_loads_back(tmp_path: Path, echo: Echo) -> None:
    # Kong's GET /config (export.lua): the loaded config, every entity with its id, foreign
    # keys as ids, basic-auth passwords as stored (hashed, `_transform: false`).
    text = config(echo).replace(
        "plugins:\n  - name: key-auth\n", "plugins:\n  - name: basic-auth\n"
    )
    gw = Gateway(tmp_path, text).start()
    try:
        exported = httpx.get(admin(gw, "/config")).json()["config"]
        assert "s3cret" not in exported
        document = yaml.safe_load(exported)
        assert document["_format_version"] == "3.0" and document["_transform"] is False
        service = get(gw, "/services/echo").json()
        assert document["services"][0]["id"] == service["id"]
        assert {r["service"] for r in document["routes"]} == {service["id"]}
        before = {kind: get(gw, f"/{kind}").json()["data"] for kind in ("routes", "consumers")}
        # Posted back, it is the same config; the hashed password still authenticates.
        r = httpx.post(
            admin(gw, "/config"), content=exported, headers={"content-type": "text/yaml"}
        )
        assert r.status_code == 201, r.text
        after = {kind: get(gw, f"/{kind}").json()["data"] for kind in ("routes", "consumers")}
        assert after == before
        gw.wait_ready()
        assert httpx.get(gw.url("/r0"), auth=("alice-ba", "s3cret")).status_code == 200
        assert httpx.get(gw.url("/r0"), auth=("alice-ba", "wrong")).status_code == 401
    finally:
        assert gw.stop() == 0


def test_target_health_is_set_with_put(gw: Gateway) -> None:
    r = httpx.put(admin(gw, "/upstreams/up/targets/127.0.0.1:1/unhealthy"))
    assert r.status_code == 204
    r = httpx.get(admin(gw, "/upstreams/up/targets/127.0.0.1:1/unhealthy"))
    assert (r.status_code, r.json()) == (405, {"message": "Method not allowed"})


def test_tags_endpoints(gw: Gateway) -> None:
    """``/tags`` and ``/tags/{tag}`` (kong/api/routes/tags.lua, off strategy page_for_tags)."""
    routes = {r["name"]: r["id"] for r in get(gw, "/routes").json()["data"]}
    even = get(gw, "/tags/even").json()
    assert even["next"] is None
    assert sorted(even["data"], key=lambda row: row["entity_id"]) == sorted(
        (
            {"entity_name": "routes", "entity_id": routes[name], "tag": "even"}
            for name in ("r0", "r2", "r4")
        ),
        key=lambda row: row["entity_id"],
    )
    service = get(gw, "/services/echo").json()
    assert get(gw, "/tags/svc").json()["data"] == [
        {"entity_name": "services", "entity_id": service["id"], "tag": "svc"}
    ]
    names, links = [], []
    url: str | None = "/tags?size=4"
    while url is not None:
        body = httpx.get(admin(gw, url)).json()
        names += [row["tag"] for row in body["data"]]
        url = body["next"]
        links.append(url)
    # every route has two tags (parity and "all"), the service one
    assert len(names) == 2 * ROUTES + 1
    assert links[0] is not None and links[0].startswith("/tags?offset=")
    assert get(gw, "/tags/nope").json() == {"data": [], "next": None}
