"""opentelemetry's resource attributes rendered per request (fastkong/plugins/bundled/
_otel_resource.py): plain values encoded once, templates rendered from the request, a template
that does not compile or render sent as written (Kong's ``param_value``)."""

from __future__ import annotations

import time
from typing import Any, cast

import pytest

from fastkong.plugins.bundled._otel_resource import Resource
from fastkong.plugins.bundled._otlp import TraceEnvelope
from fastkong.plugins.context import RequestContext
from fastkong.runtime import NO_ROUTE_PLAN, empty_runtime

FIXED = {"service.name": "kong"}


def request(headers: dict[str, str], query: bytes = b"") -> RequestContext:
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "query_string": query,
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
    }
    ctx = RequestContext(
        empty_runtime(),
        scope,
        cast(Any, None),
        NO_ROUTE_PLAN,
        cast(Any, None),
        "/",
        "h",
        80,
        "127.0.0.1",
        "id",
        time.monotonic(),
    )
    ctx.shared["tenant"] = "t1"
    return ctx


def encoded(attributes: dict[str, Any]) -> bytes:
    return TraceEnvelope(attributes).request([])


def test_plain_values_are_encoded_once() -> None:
    resource = Resource(FIXED, {"deployment": "prod"})
    assert not resource.templates
    first = resource.for_request(request({}))
    assert first is resource.for_request(request({"host": "x"}))
    assert first.request([]) == encoded({**FIXED, "deployment": "prod"})


def test_templates_render_from_the_request_and_are_reencoded_on_change() -> None:
    configured = {
        "host.name": "$(headers.host)",
        "q": "$(query_params.a)-$(shared.tenant)",
        "plain": "x",
    }
    resource = Resource(FIXED, configured)
    assert sorted(resource.templates) == ["host.name", "q"]
    a = resource.for_request(request({"host": "a.test"}, b"a=1"))
    assert a.request([]) == encoded({**FIXED, "plain": "x", "host.name": "a.test", "q": "1-t1"})
    assert resource.for_request(request({"host": "a.test"}, b"a=1")) is a  # same values
    b = resource.for_request(request({"host": "b.test"}, b"a=1"))
    assert b is not a
    assert b.request([]) == encoded({**FIXED, "plain": "x", "host.name": "b.test", "q": "1-t1"})


@pytest.mark.parametrize(
    "value",
    [
        "$(headers.host",  # unbalanced: literal text
        "$(headers..)",  # does not compile: sent as written
        "$(nope())",  # fails when rendered (calling nil): sent as written, with a warning
    ],
)
def test_a_bad_template_is_sent_as_written(value: str) -> None:
    resource = Resource(FIXED, {"attr": value})
    envelope = resource.for_request(request({"host": "a.test"}))
    assert envelope.request([]) == encoded({**FIXED, "attr": value})
