"""The routing decision shared by the proxy and ``config explain`` (sans-I/O)."""

from __future__ import annotations

from fastkong.config import load_config
from fastkong.proxy.routing import BAD_PATH, NO_ROUTE, Decision, decide, strip_port
from fastkong.runtime import compile_runtime

CONFIG = """
_format_version: "3.0"
services:
- name: s
  url: http://upstream.internal:8080/base
  routes:
  - {name: with-port, hosts: ["api.example.com:8443"]}
  - {name: any-port, hosts: ["www.example.com"], strip_path: false, paths: ["/x"]}
"""


def runtime():  # type: ignore[no-untyped-def]
    loaded = load_config(CONFIG)
    return compile_runtime(loaded.config, loaded.hash)


def test_host_port_uses_the_host_header_port_first() -> None:
    rt = runtime()
    d = decide(rt, "GET", "api.example.com:8443", 8000, "/a", "http", None)
    assert isinstance(d, Decision) and d.plan.name == "with-port"
    assert decide(rt, "GET", "api.example.com", 8000, "/a", "http", None) == NO_ROUTE
    # no port in the Host header: the listener's port counts
    d = decide(rt, "GET", "api.example.com", 8443, "/a", "http", None)
    assert isinstance(d, Decision) and d.plan.name == "with-port"


def test_upstream_path_and_repr() -> None:
    rt = runtime()
    d = decide(rt, "GET", "www.example.com:1234", 8000, "/x/y", "http", None)
    assert isinstance(d, Decision)
    assert d.upstream_path == "/base/x/y"
    assert repr(d) == "<Decision route=any-port upstream_path='/base/x/y'>"
    assert repr(rt).startswith("<Runtime v0 hash=")


def test_bad_escape_is_bad_path() -> None:
    assert decide(runtime(), "GET", "www.example.com", 80, "/x/%zz", "http", None) == BAD_PATH


def test_strip_port() -> None:
    assert strip_port("a.example:80") == "a.example"
    assert strip_port("[::1]:8000") == "[::1]"
    assert strip_port("[::1]") == "[::1]"
    assert strip_port("plain") == "plain"
