"""Kong's ``headers``/``headers_upstream`` parsing and rules (fastkong/proxy/kong_headers.py)."""

from __future__ import annotations

import pytest

from fastkong.proxy.kong_headers import DEFAULT_SETTINGS, HeaderSettings, enabled
from fastkong.proxy.upstream import SERVER, VIA

ALL = {
    "server",
    "via",
    "x-kong-proxy-latency",
    "x-kong-response-latency",
    "x-kong-admin-latency",
    "x-kong-upstream-latency",
    "x-kong-upstream-status",
    "x-kong-request-id",
}


@pytest.mark.parametrize(
    ("value", "names"),
    [
        ("server_tokens, latency_tokens, X-Kong-Request-Id", ALL - {"x-kong-upstream-status"}),
        ("off", set()),
        ("off, via", set()),  # Kong: "off" first turns everything off
        ("via, off", {"via"}),  # ... and anywhere else is ignored
        ("", set()),
        ("SERVER_TOKENS", {"server", "via"}),
        ("latency_tokens", {n for n in ALL if n.endswith("latency")}),
        ("X-Kong-Upstream-Status , Server", {"x-kong-upstream-status", "server"}),
    ],
)
def test_enabled(value: str, names: set[str]) -> None:
    assert HeaderSettings.parse(value).names == names


def test_every_bad_entry_is_named() -> None:
    with pytest.raises(ValueError) as info:
        enabled("via, nope, x-kong", "headers", {"via"})
    assert str(info.value) == "headers: invalid entry 'nope'; headers: invalid entry 'x-kong'"
    with pytest.raises(ValueError, match="headers_upstream: invalid entry 'via'"):
        HeaderSettings.parse(headers_upstream="via")


def test_defaults_and_repr() -> None:
    assert HeaderSettings.parse().is_default
    assert HeaderSettings.parse("latency_tokens, server_tokens, x-kong-request-id").is_default
    assert not HeaderSettings.parse(headers_upstream="off").is_default
    assert DEFAULT_SETTINGS.request_id_upstream
    assert repr(HeaderSettings.parse("off", "off")) == (
        "<HeaderSettings headers=off headers_upstream=off>"
    )


def proxied(
    settings: HeaderSettings, own_server: bool, upstream_via: bytes | None
) -> list[tuple[bytes, bytes]]:
    headers: list[tuple[bytes, bytes]] = [(b"content-type", b"text/plain")]
    via = VIA if upstream_via is None else upstream_via + b", " + VIA
    settings.add_proxied(
        headers,
        own_server=own_server,
        via=via,
        upstream_via=upstream_via,
        upstream_latency=b"3",
        proxy_latency=b"1",
        request_id=b"rid",
        upstream_status=418,
    )
    return headers


def test_proxied_with_the_defaults_is_what_the_proxy_writes_inline() -> None:
    assert proxied(DEFAULT_SETTINGS, True, None) == [
        (b"content-type", b"text/plain"),
        (b"server", SERVER),
        (b"via", VIA),
        (b"x-kong-upstream-latency", b"3"),
        (b"x-kong-proxy-latency", b"1"),
        (b"x-kong-request-id", b"rid"),
    ]


def test_proxied_off_passes_the_upstreams_via_on() -> None:
    off = HeaderSettings.parse("off")
    assert proxied(off, True, b"1.1 edge") == [
        (b"content-type", b"text/plain"),
        (b"via", b"1.1 edge"),
    ]
    assert proxied(HeaderSettings.parse("x-kong-upstream-status"), False, None) == [
        (b"content-type", b"text/plain"),
        (b"x-kong-upstream-status", b"418"),
    ]


def test_produced_keeps_what_is_on_and_everything_not_the_gateways() -> None:
    headers = [
        (b"content-length", b"2"),
        (b"server", SERVER),
        (b"x-kong-request-id", b"rid"),
        (b"content-type", b"text/plain"),
        (b"x-kong-response-latency", b"0"),
    ]
    assert HeaderSettings.parse("off").produced(headers) == [
        (b"content-length", b"2"),
        (b"content-type", b"text/plain"),
    ]
    assert HeaderSettings.parse("server").produced(headers) == [
        (b"content-length", b"2"),
        (b"server", SERVER),
        (b"content-type", b"text/plain"),
    ]
