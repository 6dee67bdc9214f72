"""``fastkong start`` settings read as Kong reads them (fastkong/cli.py)."""

from __future__ import annotations

import os

import pytest

from fastkong.cli import parse_listen, worker_count
from fastkong.kong_conf import on_off
from tests.helpers import fastkong_cli


def test_worker_count() -> None:
    assert worker_count(None) == 1
    assert worker_count("3") == 3
    assert worker_count(2) == 2
    # Kong's default: one per CPU this process may use.
    assert worker_count("auto") == len(os.sched_getaffinity(0))
    for bad in ("0", "-1", "two", "1.5", ""):
        with pytest.raises(ValueError, match="nginx_worker_processes: expected a number >= 1"):
            worker_count(bad)


def test_kongs_default_proxy_listen_takes_its_plain_listener() -> None:
    kong_default = "0.0.0.0:8000 reuseport backlog=16384, 0.0.0.0:8443 http2 ssl reuseport"
    assert parse_listen(kong_default) == ("0.0.0.0", 8000)


def test_a_bad_worker_count_is_an_error_not_a_traceback() -> None:
    done = fastkong_cli(
        "start", "--status-listen", "off", env={"KONG_NGINX_WORKER_PROCESSES": "many"}
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "fastkong: nginx_worker_processes: expected a number >= 1 or auto, got 'many'"
    )


def test_listeners() -> None:
    assert parse_listen("off") is None
    assert parse_listen("[::1]:8000") == ("::1", 8000)
    assert parse_listen(":9000 reuseport") == ("0.0.0.0", 9000)
    # fastkong serves one address: an ssl one only when there is no plain one and TLS is set.
    assert parse_listen("0.0.0.0:8443 ssl, 127.0.0.1:8000") == ("127.0.0.1", 8000)
    assert parse_listen("0.0.0.0:8443 http2 ssl", allow_ssl=True) == ("0.0.0.0", 8443)
    with pytest.raises(ValueError, match="has only ssl listeners, which need ssl_cert"):
        parse_listen("0.0.0.0:8443 ssl", "proxy_listen")
    for bad in ("nonsense", "1.2.3.4:", "1.2.3.4:70000", "host:port"):
        with pytest.raises(ValueError, match="proxy_listen: invalid listener"):
            parse_listen(bad, "proxy_listen")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("KONG_PROXY_LISTEN", "nonsense", "proxy_listen: invalid listener 'nonsense'"),
        ("KONG_TRUSTED_IPS", "10.0.0.0/33", "trusted_ips: '10.0.0.0/33' is not an IP address"),
    ],
)
def test_bad_kong_settings_are_errors_not_tracebacks(name: str, value: str, message: str) -> None:
    done = fastkong_cli("start", "--status-listen", "off", env={name: value})
    assert done.returncode == 1
    assert message in done.stderr and "Traceback" not in done.stderr


def test_demo_port_is_checked_by_the_parser() -> None:
    done = fastkong_cli("demo", "--port", "99999")
    assert done.returncode == 2
    assert "expected a port number 1-65535, got '99999'" in done.stderr


def test_kong_booleans() -> None:
    for text, value in (("on", True), (" TRUE ", True), ("off", False), ("false", False)):
        assert on_off(text, "x") is value
    with pytest.raises(ValueError, match="^allow_debug_header: expected on or off, got 'yes'$"):
        on_off("yes", "allow_debug_header")
