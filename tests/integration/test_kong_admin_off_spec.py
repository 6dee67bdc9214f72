"""Kong's ``spec/02-integration/04-admin_api/15-off_spec.lua`` on a real ``fastkong start``
(admin listener, DB-less): the ``/routes`` and ``/config`` cases of "Admin API #off" (lines
49-1123), the concurrency test (3075-3195) and, for the HTTP layer of
``?flatten_errors=1``, two cases of "Admin API #off /config [flattened errors]" (1125-3073;
the rest of that section is in ``tests/unit/test_config_kong_spec_flatten_api.py``).

Covered elsewhere (not repeated): "handles invalid offsets" (133-153) and "returns HTTP 405 on
invalid method" (156-183, 187-215) by test_admin_kong_api.py::test_invalid_offset_is_kongs_
invalid_offset and ::test_writes_answer_as_kongs_off_strategy; the form-encoded ``config`` body
and "returns 400 when given no input" (828-839) by test_dbless.py::test_admin_api_post_config_
and_read_back.

Left out:
- "fails with 413 and preserves previous cache if config does not fit in cache" (300-390):
  Kong's 413 is LMDB's "map full" (``lmdb_map_size``); fastkong keeps the config in memory and
  has no such limit (its only 413 is the request-body cap, ``client_max_body_size``).
- "hides workspace related fields from /config response" (413-466): workspace fields
  (``ws_id``) are Kong Enterprise/LMDB internals fastkong never has.
- "unique foreign works with dbless" (3224-3364) and "prefers cache key rather than endpoint
  key from primary key uniqueness" (3392-3429): they need Kong's test-fixture plugins
  ``unique-foreign`` and ``cache-key-vs-endpoint-key``, which add custom DAO entities, and read
  LMDB keys (Kong internals); fastkong has no custom-entity plugins.
- "does not increase timer usage (regression)" (3460-3523): ``worker_consistency`` and nginx
  timers are Kong internals.
- "can load large declarative config (regression test)" (960-974) reads Kong's fixture
  ``spec/fixtures/burst.yml`` (236 KIC services, each with a route and an upstream with full
  health checks, 442 KB); the same shape is generated here.
- The concurrency test runs 100 rounds on 8 workers in Kong; here 5 rounds on 2 workers (a
  2-core machine).
"""

from __future__ import annotations

import json
import socket
import socketserver
import textwrap
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import yaml

from tests.helpers import Gateway, eventually, free_port
from tests.pki import Pki

pytestmark = pytest.mark.integration

UNSUPPORTED = {
    "code": 12,
    "name": "operation unsupported",
    "message": "cannot create 'routes' entities when not using a database",
}


class _EchoLine(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        for line in self.rfile:
            self.wfile.write(line)


@pytest.fixture(scope="module")
def tcp_echo() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _EchoLine)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def stream_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, stream_port: int) -> Iterator[Gateway]:
    workdir = tmp_path_factory.mktemp("admin-off")
    gateway = Gateway(
        workdir,
        None,
        2,
        "--prefix",
        str(workdir / "prefix"),
        "--stream-listen",
        f"127.0.0.1:{stream_port}",
    ).start(wait_ready=False)
    yield gateway
    assert gateway.stop() == 0


def admin(gw: Gateway, path: str) -> str:
    return f"http://127.0.0.1:{gw.admin_port}{path}"


def post(gw: Gateway, path: str = "/config", **kwargs: Any) -> httpx.Response:
    return httpx.post(admin(gw, path), timeout=60, **kwargs)


def under_config(text: str) -> dict[str, Any]:
    """Kong's most common body: the config text under a ``config`` key, as JSON."""
    return {"json": {"config": textwrap.dedent(text)}}


def yaml_consumer(name: str) -> str:
    return f'_format_version: "1.1"\nconsumers:\n- username: "{name}"\n'


# -- /routes (75-130) ----------------------------------------------------------------------
ROUTE = {"protocols": ["http"], "hosts": ["my.route.test"], "service": {"id": str(uuid.uuid4())}}
COMPLEX_ROUTE = {
    **ROUTE,
    "methods": ["GET", "POST", "PATCH"],
    "hosts": ["foo.api.test", "bar.api.test"],
    "paths": ["/foo", "/bar"],
}


def _form(route: dict[str, Any]) -> dict[str, Any]:
    # lua-resty-http's form encoding of Kong's test client: arrays as repeated keys, records
    # dotted
    pairs = [(k, v) for k, vs in route.items() if isinstance(vs, list) for v in vs]
    pairs += [("service.id", route["service"]["id"])]
    form = "application/x-www-form-urlencoded"
    return {"content": urlencode(pairs), "headers": {"Content-Type": form}}


@pytest.mark.parametrize("route", [ROUTE, COMPLEX_ROUTE], ids=["route", "complex route"])
@pytest.mark.parametrize("encode", ["form", "json"])
def test_routes_post_is_unsupported(gw: Gateway, route: dict[str, Any], encode: str) -> None:
    # "doesn't allow to creates a route" / "a complex route" (77-128); Kong skips multipart
    kwargs = _form(route) if encode == "form" else {"json": route}
    r = post(gw, "/routes", **kwargs)
    assert (r.status_code, r.json()) == (405, UNSUPPORTED)


# -- POST /config: accepted bodies (220-411) ------------------------------------------------
ACCEPTED: dict[str, tuple[Callable[[str], dict[str, Any]], str]] = {
    "JSON body": (
        lambda u: {"json": {"_format_version": "1.1", "consumers": [{"username": u}]}},
        "bobby_in_json_body",
    ),
    "YAML body": (
        lambda u: {"content": yaml_consumer(u), "headers": {"Content-Type": "application/yaml"}},
        "bobby_in_yaml_body",
    ),
    "JSON string under config": (
        lambda u: {
            "json": {
                "config": json.dumps({"_format_version": "1.1", "consumers": [{"username": u}]})
            }
        },
        "bobby_in_json_under_config",
    ),
    "YAML string under config": (
        lambda u: {"json": {"config": yaml_consumer(u)}},
        "bobby_in_yaml_under_config",
    ),
    "multipart config": (
        lambda u: {"files": {"config": (None, yaml_consumer(u))}},
        "bobby_in_multipart",
    ),
}


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_accepts_configuration(gw: Gateway, case: str) -> None:
    make, username = ACCEPTED[case]
    assert post(gw, **make(username)).status_code == 201
    assert httpx.get(admin(gw, f"/consumers/{username}")).json()["username"] == username


def test_accepts_configuration_containing_null_as_a_yaml_string(gw: Gateway) -> None:
    text = """\
        _format_version: "1.1"
        routes:
        - paths:
          - "/"
          service: null
    """
    assert post(gw, **under_config(text)).status_code == 201


@pytest.mark.parametrize("separate", [False, True], ids=["attached snis", "separate snis"])
def test_certificates_are_related_to_their_snis(gw: Gateway, separate: bool) -> None:
    # "certificates should be auto-related with attach/separate snis" (468-537)
    cert, key = Pki("off spec CA").issue("foo.example", dns="foo.example")
    cert_id, sni_id = "d83994d2-c24c-4315-b431-ee76b6611dcb", "1c6e83b7-c9ad-40ac-94e8-52f5ee7bde44"
    sni: dict[str, Any] = {"name": "foo.example", "id": sni_id}
    certificate: dict[str, Any] = {"cert": cert, "id": cert_id, "key": key}
    document: dict[str, Any] = {"_format_version": "1.1", "certificates": [certificate]}
    if separate:
        document["snis"] = [{**sni, "certificate": {"id": cert_id}}]
    else:
        certificate["snis"] = [sni]
    r = post(gw, json=document)
    assert r.status_code == 201
    entities = r.json()
    assert entities["snis"][sni_id]["certificate"]["id"] == entities["certificates"][cert_id]["id"]


UPSTREAM_FOO = """\
_format_version: "1.1"
services:
- host: foo
  routes:
  - paths:
    - "/"
upstreams:
- name: "foo"
  targets:
"""


def test_can_reload_upstreams(gw: Gateway) -> None:
    config = under_config(UPSTREAM_FOO + "  - target: 10.20.30.40\n")
    assert post(gw, **config).status_code == 201
    assert post(gw, **config).status_code == 201


def test_returns_304_if_checking_hash_and_configuration_is_identical(gw: Gateway) -> None:
    config = under_config(yaml_consumer("bobby_tables"))
    assert post(gw, "/config?check_hash=1", **config).status_code == 201
    assert post(gw, "/config?check_hash=1", **config).status_code == 304


# -- POST /config: 400 bodies (621-912) -----------------------------------------------------
SERVICES_TWICE = """\
    _format_version: "1.1"
    services:
    - {first}name: foo
      host: example.com
      protocol: https
      routes:
      - name: foo
        methods: ["GET"]
        plugins:
          - name: key-auth
          - name: http-log
            config:
              http_endpoint: https://example.com
    - {second}
      host: example.test
      port: 3000
      routes:
      - name: bar
        paths:
        - /
        plugins:
        - name: basic-auth
        - name: tcp-log
          config:
            host: 127.0.0.1
            port: 10000
"""
SERVICE_ID = "0855b320-0dd2-547d-891d-601e9b38647f"
PK_UNIQUE = (
    f"uniqueness violation: 'services' entity with primary key set to '{SERVICE_ID}' "
    "already declared"
)
NAME_UNIQUE = "uniqueness violation: 'services' entity with name set to 'foo' already declared"
CUSTOM_ID_UNIQUE = (
    "uniqueness violation: 'consumers' entity with custom_id set to 'conflict' already declared"
)
INVALID: dict[str, tuple[str, dict[str, Any], str]] = {
    "an invalid config string": (
        "bobby tables",
        {"error": "failed parsing declarative configuration: expected an object"},
        '{error="failed parsing declarative configuration: expected an object"}',
    ),
    "a validation error": (
        '_format_version: "1.1"\nservices:\n- port: -12\n',
        {
            "services": [
                {"host": "required field missing", "port": "value should be between 0 and 65535"}
            ]
        },
        '{services={{host="required field missing",port="value should be between 0 and 65535"}}}',
    ),
    "a primary key uniqueness error": (
        SERVICES_TWICE.format(
            first=f"id: {SERVICE_ID}\n      ", second=f"id: {SERVICE_ID}\n      name: bar"
        ),
        {"services": [None, PK_UNIQUE]},
        f'{{services={{[2]="{PK_UNIQUE}"}}}}',
    ),
    "an endpoint key uniqueness error": (
        SERVICES_TWICE.format(first="", second="name: foo"),
        {"services": [None, NAME_UNIQUE]},
        f'{{services={{[2]="{NAME_UNIQUE}"}}}}',
    ),
    "a regular key uniqueness error": (
        '_format_version: "1.1"\nconsumers:\n- username: foo\n  custom_id: conflict\n'
        "- username: bar\n  custom_id: conflict\n",
        {"consumers": {"bar": CUSTOM_ID_UNIQUE}},
        f'{{consumers={{bar="{CUSTOM_ID_UNIQUE}"}}}}',
    ),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_returns_400_on(gw: Gateway, case: str) -> None:
    text, fields, message = INVALID[case]
    r = post(gw, **under_config(text))
    assert r.status_code == 400
    assert r.json() == {
        "code": 14,
        "name": "invalid declarative configuration",
        "message": f"declarative config is invalid: {message}",
        "fields": fields,
    }


def test_sparse_responses_are_correctly_generated(gw: Gateway) -> None:
    key_auth = {"name": "key-auth", "enabled": True, "protocols": ["http", "https"]}
    cors = {
        "name": "cors",
        "config": {
            "credentials": True,
            "exposed_headers": ["*"],
            "headers": ["*"],
            "methods": ["*"],
            "origins": ["*"],
            "preflight_continue": True,
        },
        "enabled": True,
        "protocols": ["http", "https"],
    }
    document = {"_format_version": "1.1", "plugins": [key_auth] * 10 + [cors]}
    assert post(gw, json={"config": json.dumps(document)}).status_code == 400


# -- GET /config (915-957) ------------------------------------------------------------------
def test_get_config_returns_back_the_configuration(gw: Gateway) -> None:
    consumer = {"username": "bobo", "id": "d885e256-1abe-5e24-80b6-8f68fe59ea8e"}
    document = {"_format_version": "1.1", "consumers": [{**consumer, "created_at": 1566863706}]}
    assert post(gw, json=document).status_code == 201
    r = httpx.get(admin(gw, "/config"))
    assert r.status_code == 200
    config = yaml.safe_load(r.json()["config"])
    # Kong exports every field, unset ones as null (kong/db/declarative/export.lua:17-35)
    exported = {**consumer, "created_at": 1566863706, "custom_id": None, "tags": None}
    if "updated_at" in config["consumers"][0]:
        exported["updated_at"] = config["consumers"][0]["updated_at"]
    assert config == {"_format_version": "3.0", "_transform": False, "consumers": [exported]}


def burst_config(count: int = 236) -> str:
    """The shape of Kong's ``spec/fixtures/burst.yml``: KIC services, routes, upstreams."""
    healthchecks = {
        "active": {
            "concurrency": 10,
            "healthy": {"http_statuses": [200, 302], "interval": 0, "successes": 0},
            "http_path": "/",
            "https_verify_certificate": True,
            "type": "http",
            "timeout": 1,
            "unhealthy": {
                "http_failures": 0,
                "http_statuses": [429, 404, 500, 501, 502, 503, 504, 505],
                "tcp_failures": 0,
                "timeouts": 0,
                "interval": 0,
            },
        },
        "passive": {
            "healthy": {"http_statuses": [200, 201, 202, 203, 204, 226, 300, 301], "successes": 0},
            "unhealthy": {"http_failures": 0, "tcp_failures": 0, "timeouts": 0},
        },
    }
    services, upstreams = [], []
    for i in range(count):
        host = f"svc-{i}.4test-any.svc"
        services.append(
            {
                "connect_timeout": 60000,
                "host": host,
                "name": f"4test-any.svc-{i}.80",
                "path": "/",
                "port": 80,
                "protocol": "http",
                "read_timeout": 60000,
                "retries": 5,
                "write_timeout": 60000,
                "routes": [
                    {
                        "hosts": [f"svc-{i}.example.test"],
                        "name": f"4test-any.svc-{i}.00",
                        "paths": [f"/svc-{i}"],
                        "preserve_host": True,
                        "protocols": ["http", "https"],
                        "regex_priority": 0,
                        "strip_path": True,
                        "https_redirect_status_code": 426,
                    }
                ],
            }
        )
        upstreams.append(
            {
                "name": host,
                "algorithm": "round-robin",
                "slots": 10000,
                "healthchecks": healthchecks,
                "targets": [{"target": f"10.0.{i // 250}.{i % 250 + 1}:80", "weight": 100}],
            }
        )
    document = {
        "_format_version": "1.1",
        "services": services,
        "upstreams": upstreams,
        "plugins": [{"name": "prometheus"}],
    }
    return json.dumps(document, indent=2)


def test_can_load_large_declarative_config(gw: Gateway) -> None:
    text = burst_config()
    assert len(text) > 400_000
    assert post(gw, json={"config": text}).status_code == 201


def test_updates_stream_subsystem_config(gw: Gateway, stream_port: int, tcp_echo: int) -> None:
    text = f"""\
        _format_version: "1.1"
        services:
        - connect_timeout: 60000
          host: 127.0.0.1
          name: mock
          port: {tcp_echo}
          protocol: tcp
          routes:
          - name: mock_route
            protocols:
            - tcp
            destinations:
            - port: {stream_port}
    """
    assert post(gw, **under_config(text)).status_code == 201

    def echoes() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", stream_port), timeout=1) as sock:
                sock.sendall(b"hi\n")
                return sock.makefile("rb").readline() == b"hi\n"
        except OSError:
            return False

    eventually(echoes, timeout=10)


# -- /upstreams (1017-1123) -----------------------------------------------------------------
def test_can_set_target_health_without_port(gw: Gateway) -> None:
    text = UPSTREAM_FOO + (
        "  - target: 10.20.30.40\n"
        "  healthchecks:\n"
        "    passive:\n"
        "      healthy:\n"
        "        successes: 1\n"
        "      unhealthy:\n"
        "        http_failures: 1\n"
    )
    assert post(gw, **under_config(text)).status_code == 201
    r = httpx.get(admin(gw, "/upstreams/foo/targets"))
    assert r.status_code == 200
    (target,) = r.json()["data"]
    path = f"/upstreams/foo/targets/{target['id']}/10.20.30.40/unhealthy"
    eventually(lambda: httpx.put(admin(gw, path)).status_code == 204, timeout=10)


def test_targets_created_missing_ports_listed_with_ports(gw: Gateway) -> None:
    text = UPSTREAM_FOO + "  - target: 10.20.30.40\n  - target: 50.60.70.80:90\n"
    assert post(gw, **under_config(text)).status_code == 201
    r = httpx.get(admin(gw, "/upstreams/foo/targets/all"))
    assert r.status_code == 200
    targets = sorted(t["target"] for t in r.json()["data"])
    assert targets == ["10.20.30.40:8000", "50.60.70.80:90"]


# -- [flattened errors] through HTTP (1125-3073) --------------------------------------------
def _drains_input() -> dict[str, Any]:
    route = {"protocols": ["http", "https"], "methods": ["GET"], "hosts": ["test"]}
    return {
        "_format_version": "3.0",
        "abnormal_extra_field": 123,
        "services": [
            {
                "name": "nope",
                "host": "localhost",
                "port": 1234,
                "protocol": "nope",
                "tags": ["service-01"],
                "routes": [
                    {"name": "valid.route", **route, "tags": ["route_service-01", "service-01"]},
                    {
                        "name": "nope.route",
                        "protocols": ["tcp"],
                        "tags": ["route_service-02", "service-01"],
                    },
                ],
            },
            {
                "name": "mis-matched",
                "host": "localhost",
                "protocol": "tcp",
                "path": "/path",
                "tags": ["service-02"],
                "routes": [
                    {"name": "invalid", **route, "tags": ["route_service-03", "service-02"]}
                ],
            },
            {
                "name": "okay",
                "url": "http://localhost:1234",
                "tags": ["service-03"],
                "routes": [
                    {
                        "name": "probably-valid",
                        **route,
                        "tags": ["route_service-04", "service-03"],
                        "plugins": [
                            {
                                "name": "http-log",
                                "config": {"not_endpoint": "anything"},
                                "tags": [
                                    "route_service_plugin-01",
                                    "route_service-04",
                                    "service-03",
                                ],
                            }
                        ],
                    }
                ],
            },
        ],
    }


def test_drains_errors_from_the_top_level_fields_object(gw: Gateway) -> None:
    # 2549-2675; the full `fields` tree of the plain answer is checked by the unit module
    document = _drains_input()
    original = post(gw, "/config?flatten_errors=off", json=document)
    assert original.status_code == 400
    assert set(original.json()) == {"code", "name", "message", "fields"}
    assert original.json()["fields"]["abnormal_extra_field"] == "unknown field"
    assert len(original.json()["fields"]["services"]) == 3
    # Kong (kong/db/errors.lua `flatten_errors`) drains every entity error out of `fields`
    # into `flattened_errors`: what is left is the top-level field's error.
    flattened = post(gw, "/config?flatten_errors=true", json=document)
    assert flattened.status_code == 400
    body = flattened.json()
    assert set(body) == {"code", "name", "message", "fields", "flattened_errors"}
    assert (body["code"], body["name"]) == (14, "invalid declarative configuration")
    assert body["fields"] == {"abnormal_extra_field": "unknown field"}
    assert body["message"] == (
        'declarative config is invalid: {abnormal_extra_field="unknown field"}'
    )
    assert len(body["flattened_errors"]) == 4


def test_origin_error_is_kept_when_flattening_12167(gw: Gateway) -> None:
    consumers = [
        {
            "id": "a73dc9a7-93df-584d-97c0-7f41a1bbce3d",
            "username": "test-consumer-1",
            "tags": ["consumer-1"],
        },
        {
            "id": "a73dc9a7-93df-584d-97c0-7f41a1bbce32",
            "username": "test-consumer-1",
            "tags": ["consumer-2"],
        },
    ]
    r = post(
        gw, "/config?flatten_errors=1", json={"_format_version": "3.0", "consumers": consumers}
    )
    assert r.status_code == 400
    assert r.json()["flattened_errors"] == [
        {
            "entity_type": "consumer",
            "entity_id": consumers[1]["id"],
            "entity_tags": ["consumer-2"],
            "entity": consumers[1],
            "errors": [
                {
                    "type": "entity",
                    "message": "uniqueness violation: 'consumers' entity with username set to "
                    "'test-consumer-1' already declared",
                }
            ],
        }
    ]


# -- "Admin API (concurrency tests) #off" (3075-3195) ---------------------------------------
def test_succeeds_and_replaces_previous_cache_if_config_fits(gw: Gateway) -> None:
    previous = json.dumps({"_format_version": "1.1", "consumers": [{"username": "previous"}]})
    for k in range(1, 6):
        assert post(gw, json={"config": previous}).status_code == 201
        consumers = [{"username": f"bobby-{k}-{i}"} for i in range(1, 11)]
        config = json.dumps({"_format_version": "1.1", "consumers": consumers})
        assert post(gw, json={"config": config}).status_code == 201
        eventually(lambda: httpx.get(admin(gw, "/consumers/previous")).status_code == 404)
        last = httpx.get(admin(gw, f"/consumers/bobby-{k}-10"))
        assert (last.status_code, last.json()["username"]) == (200, f"bobby-{k}-10")
