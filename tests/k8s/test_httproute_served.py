"""What the HTTPRoute translation produces, served: the translated config is loaded by the real
data plane (in process, through ``httpx.ASGITransport``) in front of a real echo upstream on
loopback, so each KIC-style filter is checked for what it does to a request, not only for the
config it writes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fastkong.config import load_config
from fastkong.k8s import translate
from fastkong.proxy.app import Gateway
from fastkong.runtime import compile_runtime
from tests.helpers import Echo
from tests.k8s.kube import (
    backend_ref,
    endpoint_slice,
    gateway,
    gateway_class,
    httproute,
    listener,
    rule,
    service,
)


@pytest.fixture(scope="module")
def echo() -> Iterator[Echo]:
    e = Echo().start()
    yield e
    e.stop()


def rewrite(prefix: str) -> list[dict[str, Any]]:
    path = {"type": "ReplacePrefixMatch", "replacePrefixMatch": prefix}
    return [{"type": "URLRewrite", "urlRewrite": {"path": path}}]


def objects(echo: Echo) -> list[dict[str, Any]]:
    headers = {
        "type": "RequestHeaderModifier",
        "requestHeaderModifier": {
            "set": [{"name": "x-set", "value": "yes"}],
            "add": [{"name": "x-added", "value": "1"}],
            "remove": ["x-secret"],
        },
    }
    response = {
        "type": "ResponseHeaderModifier",
        "responseHeaderModifier": {"set": [{"name": "x-answer", "value": "from-route"}]},
    }
    full = {
        "type": "URLRewrite",
        "urlRewrite": {
            "hostname": "internal.test",
            "path": {"type": "ReplaceFullPath", "replaceFullPath": "/index"},
        },
    }
    redirect = {
        "type": "RequestRedirect",
        "requestRedirect": {"scheme": "https", "port": 8443, "statusCode": 301},
    }
    return [
        gateway_class(),
        gateway("main", listener(hostname="*.example.com")),
        service("echo"),
        endpoint_slice("echo-1", "echo", "127.0.0.1", echo.port),
        httproute(
            "app",
            rule("/old", backend_ref("echo"), filters=rewrite("/new")),
            rule("/strip", backend_ref("echo"), filters=rewrite("/")),
            rule("/full", backend_ref("echo"), filters=[full]),
            rule("/hdr", backend_ref("echo"), filters=[headers, response]),
            rule("/exact.json", backend_ref("echo"), kind="Exact"),
            rule("/secure", filters=[redirect]),
            hostnames=["app.example.com"],
        ),
        httproute(
            "root",
            rule("/", backend_ref("echo"), filters=rewrite("/base")),
            hostnames=["root.example.com"],
        ),
        httproute("gone", rule("/gone", backend_ref("missing")), hostnames=["app.example.com"]),
    ]


def test_translated_filters_do_what_the_gateway_api_says(echo: Echo) -> None:
    result = translate(objects(echo))
    assert [str(p) for p in result.problems] == [
        "error: HTTPRoute default/gone: backendRef default/missing: Service not found; not used"
    ]
    runtime = compile_runtime(load_config(result.to_yaml().encode()).config, "1")

    async def main() -> None:
        gw = Gateway(runtime)
        await gw.startup()
        transport = httpx.ASGITransport(app=gw)
        async with httpx.AsyncClient(transport=transport, timeout=5) as client:

            async def upstream(path: str, host: str = "app.example.com", **kw: Any) -> Any:
                r = await client.get(f"http://gw.test{path}", headers={"host": host, **kw})
                assert r.status_code == 200, (path, r.status_code, r.text)
                return r.json()

            assert (await upstream("/old"))["path"] == "/new"
            assert (await upstream("/old/a/b"))["path"] == "/new/a/b"
            assert (await upstream("/strip/a"))["path"] == "/a"
            assert (await upstream("/strip"))["path"] == "/"
            assert (await upstream("/x/y", "root.example.com"))["path"] == "/base/x/y"
            assert (await upstream("/", "root.example.com"))["path"] == "/base"
            full = await upstream("/full/deep")
            assert full["path"] == "/index" and ["host", "internal.test"] in full["headers"]
            seen = await upstream("/hdr", **{"x-secret": "s", "x-set": "old"})
            assert ["x-set", "yes"] in seen["headers"] and ["x-added", "1"] in seen["headers"]
            assert not any(k in ("x-secret",) for k, _ in seen["headers"])
            assert ["x-set", "old"] not in seen["headers"]
            answer = await client.get("http://gw.test/hdr", headers={"host": "app.example.com"})
            assert answer.headers["x-answer"] == "from-route"
            assert (await upstream("/exact.json"))["path"] == "/exact.json"
            for path, host in (("/exactxjson", "app.example.com"), ("/old", "other.test")):
                r = await client.get(f"http://gw.test{path}", headers={"host": host})
                assert r.status_code == 404, path
            r = await client.get("http://gw.test/secure/x?q=1", headers={"host": "app.example.com"})
            assert r.status_code == 301
            assert r.headers["location"] == "https://app.example.com:8443/secure/x?q=1"
            r = await client.get("http://gw.test/gone", headers={"host": "app.example.com"})
            assert r.status_code == 500
        await gw.shutdown()

    asyncio.run(main())
