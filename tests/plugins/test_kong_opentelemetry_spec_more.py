"""Kong's ``spec/03-plugins/37-opentelemetry/04-exporter_spec.lua`` (DB-less run), and the
``request`` run of ``03-propagation_spec.lua`` 804-903, against real gateways, the echo upstream
and a loopback OTLP collector (Kong's ``helpers.http_mock``) decoding with the reference
``opentelemetry-proto``.

Gateways (``tracing_instrumentations``/``tracing_sampling_rate``): ``all``/1 holds the "valid
#http request" plugin (global, as Kong's ``setup_instrumentations`` makes it), the scoping
plugins, the overwritten resource attributes, the referenceable fields and the 0.5 plugin
``sampling_rate`` of the global-rate-1 run, each on its own route and collector path; ``all``/0,
``all``/0.001 (plugin ``sampling_rate`` 0.5) and ``all``/0.5 (plugin rate unset) are the
sampling describes; ``request``/1 holds the cascade and ``#propagation`` describes. Exports are
told apart by the collector path each plugin posts to. "Nothing was exported" is checked once a
later request's span, queued on the same plugin, has arrived (Kong sleeps 2 s instead).

Ported (spec lines): 157-220 "exports valid traces"; 350-500 the sampling describes (global
rates 0, 0.001, 1 with the plugin's 0.5; unset with a global 0.5); 501-558 ``#scoping``: Kong's
six gateways are one here, the route+service, route and service plugins on their own routes,
a global plugin, and ``/no_plugin`` reported by the global one only; 560-631 overwritten
resource attributes; 633-729 the cascade of 5 services through the gateway itself (6 spans);
731-804 ``#propagation`` (the span's ids and its exact attributes; ``http.host`` and
``http.url`` name 127.0.0.1, the address the client used, where Kong's client used 0.0.0.0);
806-866 ``#referenceable fields`` (Kong's env vault); 03-propagation_spec 804-903 for
``request`` (the upstream's parent is the ``kong`` span; an incoming "not sampled" exports
nothing).

Left out:

- 292-351 "exports valid logs with/without tracing": fastkong exports no log lines over OTLP
  (docs/plugins.md, opentelemetry row), and the log lines come from ``post-function`` (Lua);
- ``06-regression_spec.lua`` (#KAG-1061): the spec returns early for the ``off`` strategy (it
  PATCHes the plugin through the Admin API of a database node);
- ``01-otlp_spec.lua`` is ported in ``test_kong_otlp_spec``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import Echo, Gateway, echoed_headers, free_port
from tests.plugins.kong_tracing_fakes import GatewaySpec, OtlpCollector, settle, start_gateways

pytestmark = pytest.mark.integration

SAMPLED_TRACE_ID = "92a54b3e1a7c4f2da9e44b8a6f3e1dab"  # always sampled at 0.5
NON_SAMPLED_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"  # never sampled at 0.5
PARENT = "0123456789abcdef"
KONG_VERSION = "3.10.0"  # kong.version of the spec's Kong (kong/meta.lua)
FAST = {"max_coalescing_delay": 0.1}
SCOPES = ("scoped-rs", "scoped-r", "scoped-s")


def _plugin(config: dict[str, Any], **scope: Any) -> dict[str, Any]:
    return {"name": "opentelemetry", "config": config, **scope}


def _route(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "paths": [path], "protocols": ["http"]}


def _endpoint(collector: OtlpCollector, path: str) -> str:
    return f"http://127.0.0.1:{collector.port}{path}"


def _all_1(echo: Echo, collector: OtlpCollector) -> str:
    """The ``all``/1 gateway: see the module docstring."""
    services: list[dict[str, Any]] = [
        {
            "name": "mock-service",
            "url": echo.url,
            "routes": [
                _route("root", "/"),
                {
                    **_route("rate-half", "/rate-half"),
                    "plugins": [
                        _plugin(
                            {
                                "traces_endpoint": _endpoint(collector, "/all-1/rate-half"),
                                "sampling_rate": 0.5,
                                "batch_flush_delay": 0,
                            }
                        )
                    ],
                },
                {
                    **_route("resattr", "/resattr"),
                    "plugins": [
                        _plugin(
                            {
                                "traces_endpoint": _endpoint(collector, "/all-1/resattr"),
                                "batch_flush_delay": 0,
                                "resource_attributes": {
                                    "service.name": "kong_oss",
                                    "os.version": "debian",
                                    "host.name": "$(headers.host)",
                                    "validstr": "$($@#)",
                                },
                            }
                        )
                    ],
                },
                {
                    **_route("vault", "/vault"),
                    "plugins": [
                        _plugin(
                            {
                                "endpoint": "{vault://env/test_otel_endpoint}",
                                "headers": {
                                    "X-Access-Key": "{vault://env/test_otel_access_key}",
                                    "X-Access-Secret": "{vault://env/test_otel_access_secret}",
                                },
                                "queue": FAST,
                            }
                        )
                    ],
                },
            ],
        },
        {"name": "mock-service2", "url": echo.url, "routes": [_route("no-plugin", "/no_plugin")]},
    ]
    scoped: dict[str, Any] = {"headers": {"X-Access-Token": "token"}, "batch_flush_delay": 0}
    for name in SCOPES:
        config = {"traces_endpoint": _endpoint(collector, f"/all-1/{name}"), **scoped}
        route = _route(name, f"/{name}")
        service: dict[str, Any] = {"name": name, "url": echo.url, "routes": [route]}
        if name == "scoped-rs":  # one plugin on the route and the service together
            service["plugins"] = [_plugin(config, route=name)]
        elif name == "scoped-r":
            route["plugins"] = [_plugin(config)]
        else:
            service["plugins"] = [_plugin(config)]
        services.append(service)
    global_config = {"traces_endpoint": _endpoint(collector, "/all-1/global"), **scoped}
    return json.dumps(
        {"_format_version": "3.0", "services": services, "plugins": [_plugin(global_config)]}
    )


def _sampling(echo: Echo, collector: OtlpCollector, tag: str, rate: float | None) -> str:
    """A gateway of the sampling describes: a global plugin, Kong's ``/`` route."""
    config: dict[str, Any] = {
        "traces_endpoint": _endpoint(collector, f"/{tag}/global"),
        "batch_flush_delay": 0,
    }
    if rate is not None:
        config["sampling_rate"] = rate
    services = [{"name": "mock-service", "url": echo.url, "routes": [_route("root", "/")]}]
    return json.dumps(
        {"_format_version": "3.0", "services": services, "plugins": [_plugin(config)]}
    )


def _request(echo: Echo, collector: OtlpCollector, port: int) -> str:
    """The ``request``/1 gateway: Kong's ``/`` route and the 5 cascaded services (each the
    gateway itself, one route down, the first back to ``/``)."""
    services: list[dict[str, Any]] = [
        {"name": "mock-service", "url": echo.url, "routes": [_route("root", "/")]}
    ]
    for i in range(1, 6):
        path = "/" if i == 1 else f"/cascade-{i - 1}"
        services.append(
            {
                "name": f"cascade-{i}",
                "url": f"http://127.0.0.1:{port}{path}",
                "routes": [{**_route(f"cascade-{i}", f"/cascade-{i}"), "strip_path": True}],
            }
        )
    config = {"traces_endpoint": _endpoint(collector, "/request/global"), "batch_flush_delay": 0}
    return json.dumps(
        {"_format_version": "3.0", "services": services, "plugins": [_plugin(config)]}
    )


@pytest.fixture(scope="module")
def echo() -> Iterator[Echo]:
    server = Echo().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def collector() -> Iterator[OtlpCollector]:
    server = OtlpCollector().start()
    yield server
    server.stop()


def _env(instrumentations: str, rate: float) -> dict[str, str]:
    return {
        "KONG_TRACING_INSTRUMENTATIONS": instrumentations,
        "KONG_TRACING_SAMPLING_RATE": str(rate),
    }


@pytest.fixture(scope="module")
def gateways(
    echo: Echo, collector: OtlpCollector, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Gateway]]:
    vault = {
        "TEST_OTEL_ENDPOINT": _endpoint(collector, "/all-1/vault"),
        "TEST_OTEL_ACCESS_KEY": "secret-1",
        "TEST_OTEL_ACCESS_SECRET": "secret-2",
    }
    request_port = free_port()
    specs = {
        "all-1": GatewaySpec(_all_1(echo, collector), {**_env("all", 1), **vault}),
        "all-0": GatewaySpec(_sampling(echo, collector, "all-0", 0.5), _env("all", 0)),
        "all-0.001": GatewaySpec(_sampling(echo, collector, "all-0.001", 0.5), _env("all", 0.001)),
        "all-0.5": GatewaySpec(_sampling(echo, collector, "all-0.5", None), _env("all", 0.5)),
        "request": GatewaySpec(
            _request(echo, collector, request_port), _env("request", 1), port=request_port
        ),
    }
    started = start_gateways(list(specs.values()), Path(tmp_path_factory.mktemp("otel-exporter")))
    yield dict(zip(specs, started, strict=True))
    for gateway in started:
        gateway.stop()


def gen_trace_id() -> str:
    return os.urandom(16).hex()


def get(gateway: Gateway, path: str, traceparent: str | None = None) -> tuple[httpx.Response, str]:
    """GET ``path`` (with a ``traceparent``): the response and the trace id the upstream got."""
    headers = {"traceparent": traceparent} if traceparent else {}
    r = httpx.get(gateway.url(path), headers=headers)
    assert r.status_code == 200, r.text
    return r, echoed_headers(r.json())["traceparent"][0].split("-")[1]


def attributes(message: Any) -> dict[str, Any]:
    """Key -> the set value of each attribute, sorted by key (Kong's ``sort_by_key``)."""
    found = {a.key: getattr(a.value, a.value.WhichOneof("value")) for a in message.attributes}
    return dict(sorted(found.items()))


# -- 157-220 ------------------------------------------------------------------------------------
def test_exports_valid_traces(gateways: dict[str, Gateway], collector: OtlpCollector) -> None:
    _, trace_id = get(gateways["all-1"], "/")
    (export, _), *_ = collector.wait_spans("/all-1/global", trace_id)
    assert export.headers["content-type"] == "application/x-protobuf"
    assert export.headers["x-access-token"] == "token"  # the plugin's custom headers
    request = export.request()
    resource = attributes(request.resource_spans[0].resource)
    assert list(resource) == ["service.instance.id", "service.name", "service.version"]
    assert (resource["service.name"], resource["service.version"]) == ("kong", KONG_VERSION)
    assert len(request.resource_spans[0].scope_spans) > 0


# -- 350-500: the plugin's sampling_rate against the node's -------------------------------------
#: global rate -> (gateway, path, collector path); "unset" is the plugin without sampling_rate.
SAMPLING = {
    "0": ("all-0", "/", "/all-0/global"),
    "0.001": ("all-0.001", "/", "/all-0.001/global"),
    "1": ("all-1", "/rate-half", "/all-1/rate-half"),
    "unset-global-0.5": ("all-0.5", "/", "/all-0.5/global"),
}


def _send_sampled(gateway: Gateway, path: str, collector: OtlpCollector, target: str) -> None:
    before = len(collector.spans(target, SAMPLED_TRACE_ID))
    get(gateway, path, f"00-{SAMPLED_TRACE_ID}-{PARENT}-01")
    collector.wait_spans(target, SAMPLED_TRACE_ID, before + 1)


@pytest.mark.parametrize("global_rate", list(SAMPLING))
def test_does_not_sample_spans_when_trace_id_is_non_sampled(
    gateways: dict[str, Gateway], collector: OtlpCollector, global_rate: str
) -> None:
    name, path, target = SAMPLING[global_rate]
    get(gateways[name], path, f"00-{NON_SAMPLED_TRACE_ID}-{PARENT}-01")
    _send_sampled(gateways[name], path, collector, target)  # queued after it, had it been
    settle(0.2)
    assert collector.spans(target, NON_SAMPLED_TRACE_ID) == []


@pytest.mark.parametrize("global_rate", list(SAMPLING))
def test_samples_spans_when_trace_id_is_sampled(
    gateways: dict[str, Gateway], collector: OtlpCollector, global_rate: str
) -> None:
    name, path, target = SAMPLING[global_rate]
    for _ in range(10 if global_rate.startswith("unset") else 1):
        _send_sampled(gateways[name], path, collector, target)
    (export, _), *_ = collector.spans(target, SAMPLED_TRACE_ID)
    assert len(export.request().resource_spans[0].scope_spans) > 0


# -- 501-558 ------------------------------------------------------------------------------------
@pytest.mark.parametrize("scoped", SCOPES)
def test_scoping_only_the_global_plugin_reports_a_route_without_plugin(
    gateways: dict[str, Gateway], collector: OtlpCollector, scoped: str
) -> None:
    _, trace_id = get(gateways["all-1"], "/no_plugin")
    collector.wait_spans("/all-1/global", trace_id)
    assert collector.spans(f"/all-1/{scoped}", trace_id) == []
    # the scoped plugin does report its own route
    _, own = get(gateways["all-1"], f"/{scoped}")
    collector.wait_spans(f"/all-1/{scoped}", own)


# -- 560-631 ------------------------------------------------------------------------------------
def _resource(gateways: dict[str, Gateway], collector: OtlpCollector) -> dict[str, Any]:
    _, trace_id = get(gateways["all-1"], "/resattr")
    (export, _), *_ = collector.wait_spans("/all-1/resattr", trace_id)
    assert export.headers["content-type"] == "application/x-protobuf"
    assert len(export.request().resource_spans[0].scope_spans) > 0
    return attributes(export.request().resource_spans[0].resource)


def test_overwrite_resource_attributes(
    gateways: dict[str, Gateway], collector: OtlpCollector
) -> None:
    resource = _resource(gateways, collector)
    assert list(resource) == [
        "host.name",
        "os.version",
        "service.instance.id",
        "service.name",
        "service.version",
        "validstr",
    ]
    assert resource["os.version"] == "debian"
    assert resource["service.name"] == "kong_oss"
    assert resource["service.version"] == KONG_VERSION
    assert resource["validstr"] == "$($@#)"  # not a template that compiles: kept as given


def test_resource_attribute_templates_render_the_request(
    gateways: dict[str, Gateway], collector: OtlpCollector
) -> None:
    # Kong renders "$(headers.host)" with the request's Host header (otel utils.lua
    # compile_resource_attributes, called by the handler's log phase)
    resource = _resource(gateways, collector)
    assert resource["host.name"] == f"127.0.0.1:{gateways['all-1'].port}"


# -- 633-729 ------------------------------------------------------------------------------------
def test_cascaded_requests_send_enough_spans(
    gateways: dict[str, Gateway], collector: OtlpCollector
) -> None:
    _, trace_id = get(gateways["request"], "/cascade-5")
    # one `kong` span per pass through the gateway, all of the one propagated trace
    assert len(collector.wait_spans("/request/global", trace_id, 6)) >= 6


# -- 731-804 ------------------------------------------------------------------------------------
def test_propagate_w3c_traceparent(gateways: dict[str, Gateway], collector: OtlpCollector) -> None:
    trace_id, parent_id = gen_trace_id(), os.urandom(8).hex()
    r, _ = get(gateways["request"], "/", f"00-{trace_id}-{parent_id}-01")
    ((export, span),) = collector.wait_spans("/request/global", trace_id)
    assert export.headers["content-type"] == "application/x-protobuf"
    assert (span.trace_id.hex(), span.parent_span_id.hex()) == (trace_id, parent_id)
    assert attributes(span) == {
        "http.client_ip": "127.0.0.1",
        "http.flavor": "1.1",
        "http.host": "127.0.0.1",
        "http.method": "GET",
        "http.route": "/",
        "http.scheme": "http",
        "http.status_code": 200,
        "http.url": "http://127.0.0.1/",
        "kong.request.id": r.headers["x-kong-request-id"],
        "net.peer.ip": "127.0.0.1",
    }
    value = next(a.value for a in span.attributes if a.key == "http.status_code")
    assert value.WhichOneof("value") == "int_value"


# -- 806-866 ------------------------------------------------------------------------------------
def test_referenceable_fields(gateways: dict[str, Gateway], collector: OtlpCollector) -> None:
    _, trace_id = get(gateways["all-1"], "/vault")
    (export, _), *_ = collector.wait_spans("/all-1/vault", trace_id)
    assert export.headers["content-type"] == "application/x-protobuf"
    assert export.headers["x-access-key"] == "secret-1"  # dereferenced headers
    assert export.headers["x-access-secret"] == "secret-2"


# -- 03-propagation_spec 804-903, the `request` instrumentation --------------------------------
def test_request_instrumentation_sets_the_outgoing_parent_span_id(
    gateways: dict[str, Gateway], collector: OtlpCollector
) -> None:
    trace_id, incoming = gen_trace_id(), os.urandom(8).hex()
    r, _ = get(gateways["request"], "/", f"00-{trace_id}-{incoming}-01")
    spans = [span for _, span in collector.wait_spans("/request/global", trace_id)]
    (root,) = [span for span in spans if span.name == "kong"]  # the outgoing parent
    assert echoed_headers(r.json())["traceparent"] == [f"00-{trace_id}-{root.span_id.hex()}-01"]
    assert root.parent_span_id.hex() == incoming


def test_request_instrumentation_disables_sampling_when_incoming_is_not_sampled(
    gateways: dict[str, Gateway], collector: OtlpCollector
) -> None:
    trace_id = gen_trace_id()
    get(gateways["request"], "/", f"00-{trace_id}-{os.urandom(8).hex()}-00")
    _, marker = get(gateways["request"], "/")
    collector.wait_spans("/request/global", marker)
    settle(0.2)
    assert collector.spans("/request/global", trace_id) == []
