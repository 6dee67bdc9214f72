"""``fastkong start`` settings read as Kong reads them (fastkong/cli.py)."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import ssl
import subprocess
from pathlib import Path

import pytest

from fastkong.cli import (
    DEFAULT_PROXY_LISTEN,
    first_taken_address,
    parse_listen,
    proxy_listeners,
    worker_count,
)
from fastkong.kong_conf import (
    DEFAULT_CIPHER_SUITE,
    DEFAULT_SSL_PROTOCOLS,
    check_deployment,
    log_level,
    on_off,
    parse_listeners,
    parse_nginx_time,
    port_maps,
    tls_minimum,
    unread_settings,
)
from fastkong.proxy.upstream_tls import TrustStore
from tests.helpers import fastkong_cli, free_port
from tests.pki import Pki


def test_worker_count() -> None:
    assert worker_count(None) == 1
    assert worker_count("3") == 3
    assert worker_count(2) == 2
    # Kong's default: one per CPU this process may use.
    assert worker_count("auto") == len(os.sched_getaffinity(0))
    for bad in ("0", "-1", "two", "1.5", ""):
        with pytest.raises(ValueError, match="nginx_worker_processes: expected a number >= 1"):
            worker_count(bad)


def test_kongs_default_proxy_listen_is_both_listeners() -> None:
    listeners = proxy_listeners(DEFAULT_PROXY_LISTEN, None, None)
    assert [(x.host, x.port, x.ssl) for x in listeners] == [
        ("0.0.0.0", 8000, False),
        ("0.0.0.0", 8443, True),
    ]
    # Kong's `listener` text: the address, then the flags in the order Kong's loader lists them.
    assert [str(x) for x in listeners] == [
        "0.0.0.0:8000 reuseport backlog=16384",
        "0.0.0.0:8443 ssl http2 reuseport backlog=16384",
    ]
    assert [x.url for x in listeners] == ["http://0.0.0.0:8000", "https://0.0.0.0:8443"]
    assert listeners[0].backlog == 16384


def test_listener_flags_are_kongs() -> None:
    (v6,) = parse_listeners("[::1]:9443 ssl deferred bind ipv6only=on so_keepalive=on", "x")
    assert (v6.host, v6.port, v6.ssl, v6.backlog) == ("::1", 9443, True, None)
    assert str(v6) == "[::1]:9443 ssl deferred bind ipv6only=on so_keepalive=on"
    assert parse_listeners("off", "x") == []
    with pytest.raises(ValueError, match="^x: invalid listener '1.2.3.4:80 sll': unknown flag"):
        parse_listeners("1.2.3.4:80 sll", "x")
    with pytest.raises(ValueError, match="^proxy_listen: 127.0.0.1:80 is listed twice$"):
        parse_listeners("127.0.0.1:80, 127.0.0.1:80 ssl", "proxy_listen")
    # The same port on two addresses is two listeners, as in nginx.
    assert len(parse_listeners("127.0.0.1:80, 127.0.0.2:80", "x")) == 2


def test_proxy_listen_refusals() -> None:
    with pytest.raises(ValueError, match="^proxy_listen: fastkong is a data plane"):
        proxy_listeners("off", None, None)
    # The PROXY protocol is read by the edge (fastkong/stream/edge.py), on plain and ssl ones.
    (listener,) = proxy_listeners("0.0.0.0:8000 proxy_protocol", None, None)
    assert listener.flags == ("proxy_protocol",)
    with pytest.raises(ValueError, match="^ssl_cert_key must be set when ssl_cert is$"):
        proxy_listeners("0.0.0.0:8443 ssl", "cert.pem", None)
    with pytest.raises(ValueError, match="^ssl_cert must be set when ssl_cert_key is$"):
        proxy_listeners("0.0.0.0:8443 ssl", None, "key.pem")


def test_a_bad_worker_count_is_an_error_not_a_traceback() -> None:
    done = fastkong_cli(
        "start", "--status-listen", "off", env={"KONG_NGINX_WORKER_PROCESSES": "many"}
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "fastkong: nginx_worker_processes: expected a number >= 1 or auto, got 'many'"
    )


def test_admin_and_status_listeners() -> None:
    assert parse_listen("off") is None
    assert parse_listen("[::1]:8000") == ("::1", 8000)
    assert parse_listen(":9000 reuseport") == ("0.0.0.0", 9000)
    # These are served over plain HTTP at one address: the first plain entry (Kong's default
    # admin_listen also lists an ssl one).
    assert parse_listen("0.0.0.0:8444 ssl, 127.0.0.1:8001") == ("127.0.0.1", 8001)
    with pytest.raises(ValueError, match="has only ssl listeners; fastkong serves it over plain"):
        parse_listen("0.0.0.0:8444 http2 ssl", "admin_listen")
    for bad in ("nonsense", "1.2.3.4:", "1.2.3.4:70000", "host:port"):
        with pytest.raises(ValueError, match="status_listen: invalid listener"):
            parse_listen(bad, "status_listen")


def test_a_taken_address_is_named_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = fastkong_cli(
            "start",
            "--proxy-listen",
            f"127.0.0.1:{free_port()}, 127.0.0.1:{port} ssl",
            "--status-listen",
            "off",
            "--admin-listen",
            "off",
            "--prefix",
            str(tmp_path),
        )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"fastkong: proxy_listen: cannot listen on 127.0.0.1:{port}: Address already in use"
    )
    assert first_taken_address([("status_listen", None)]) is None


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("KONG_PROXY_LISTEN", "nonsense", "proxy_listen: invalid listener 'nonsense'"),
        ("KONG_TRUSTED_IPS", "10.0.0.0/33", "trusted_ips: '10.0.0.0/33' is not an IP address"),
        ("KONG_SSL_CIPHER_SUITE", "strong", "ssl_cipher_suite: Undefined cipher suite 'strong'"),
        ("KONG_NGINX_HTTP_KEEPALIVE_TIMEOUT", "soon", "keepalive_timeout: invalid time 'soon'"),
        ("KONG_TRACING_INSTRUMENTATIONS", "request,bogus", "invalid tracing type: bogus"),
        ("KONG_TRACING_SAMPLING_RATE", "2", "tracing_sampling_rate must be between 0 and 1"),
        ("KONG_REQUEST_DEBUG", "maybe", "request_debug: expected on or off, got 'maybe'"),
        ("KONG_DNS_STALE_TTL", "-1", "dns_stale_ttl: expected a number of seconds >= 0"),
        (
            "KONG_NGINX_PROXY_PROXY_BUFFER_SIZE",
            "16kb",
            "nginx_proxy_proxy_buffer_size: invalid size '16kb'",
        ),
        ("KONG_NGINX_HTTP_PROXY_BUFFER_SIZE", "0", "nginx_http_proxy_buffer_size: expected a size"),
        (
            "KONG_NGINX_HTTP_CLIENT_BODY_BUFFER_SIZE",
            "big",
            "nginx_http_client_body_buffer_size: invalid size 'big'",
        ),
    ],
)
def test_bad_kong_settings_are_errors_not_tracebacks(name: str, value: str, message: str) -> None:
    done = fastkong_cli("start", "--status-listen", "off", env={name: value})
    assert done.returncode == 1
    assert message in done.stderr and "Traceback" not in done.stderr


def test_nginx_times() -> None:
    for text, seconds in [("75s", 75), ("75", 75), ("1m30s", 90), ("500ms", 0.5), ("0", 0)]:
        assert parse_nginx_time(text, "keepalive_timeout") == seconds
    assert parse_nginx_time("1h", "x") == 3600 and parse_nginx_time("1d", "x") == 86400
    for bad in ("", "soon", "5x", "1.5s", "s", "10 s", "-1"):
        with pytest.raises(ValueError, match="keepalive_timeout: invalid time"):
            parse_nginx_time(bad, "keepalive_timeout")


def test_tls_versions_follow_kongs_cipher_suites() -> None:
    # Kong's default suite, intermediate, accepts TLS 1.2 (Granian's own floor is 1.3).
    assert tls_minimum(DEFAULT_CIPHER_SUITE, DEFAULT_SSL_PROTOCOLS) == "tls1.2"
    assert tls_minimum("modern", DEFAULT_SSL_PROTOCOLS) == "tls1.3"
    # Versions below 1.2 are not spoken (1.2 is the floor); a list without 1.3 cannot cap it.
    assert tls_minimum("old", DEFAULT_SSL_PROTOCOLS) == "tls1.2"
    assert tls_minimum("fips", DEFAULT_SSL_PROTOCOLS) == "tls1.2"
    # ssl_protocols counts only with the custom suite, as in Kong's conf loader.
    assert tls_minimum("intermediate", "TLSv1.3") == "tls1.2"
    assert tls_minimum("custom", "TLSv1.3") == "tls1.3"
    assert tls_minimum("custom", "TLSv1.1 TLSv1.2") == "tls1.2"
    with pytest.raises(ValueError, match="ssl_protocols: invalid entry 'SSLv3'"):
        tls_minimum("custom", "SSLv3 TLSv1.2")
    with pytest.raises(ValueError, match="ssl_protocols: no TLS version listed"):
        tls_minimum("custom", " ")
    with pytest.raises(ValueError, match="ssl_cipher_suite: Undefined cipher suite 'Modern'"):
        tls_minimum("Modern", DEFAULT_SSL_PROTOCOLS)


def test_demo_port_is_checked_by_the_parser() -> None:
    done = fastkong_cli("demo", "--port", "99999")
    assert done.returncode == 2
    assert "expected a port number 1-65535, got '99999'" in done.stderr


def test_kong_booleans() -> None:
    for text, value in (("on", True), (" TRUE ", True), ("off", False), ("false", False)):
        assert on_off(text, "x") is value
    with pytest.raises(ValueError, match="^allow_debug_header: expected on or off, got 'yes'$"):
        on_off("yes", "allow_debug_header")


def test_unread_kong_settings_are_named_and_service_links_are_not() -> None:
    environ = {
        "KONG_PROXY_LISTEN": "x",  # read
        "KONG_NGINX_DAEMON": "off",  # nothing to do
        "KONG_PORT": "tcp://10.0.0.1:8000",  # Kubernetes' links for a Service named kong
        "KONG_PORT_8000_TCP_ADDR": "10.0.0.1",
        "KONG_SERVICE_HOST": "10.0.0.1",
        "KONG_SERVICE_PORT_PROXY": "8000",
        "KONG_NGINX_PROXY_PROXY_BUFFER_SIZE": "16k",  # read: the response head limit
        "KONG_NGINX_PROXY_PROXY_BUFFERS": "8 16k",  # not implemented
        "KONG_DNS_RESOLVER": "10.0.0.10",
        "OTHER": "x",
    }
    assert unread_settings(environ) == ["KONG_DNS_RESOLVER", "KONG_NGINX_PROXY_PROXY_BUFFERS"]


def test_db_less_traditional_only() -> None:
    check_deployment({"KONG_DATABASE": "off", "KONG_ROLE": "traditional"})
    check_deployment({})
    with pytest.raises(ValueError, match="^database: fastkong runs DB-less only"):
        check_deployment({"KONG_DATABASE": "postgres"})
    with pytest.raises(ValueError, match="^role: fastkong runs as a traditional node only"):
        check_deployment({"KONG_ROLE": "data_plane"})


def test_log_levels_are_nginx_names() -> None:
    assert [log_level(x) for x in ("debug", "notice", "warn", "ERROR", "crit")] == [
        "DEBUG",
        "INFO",
        "WARNING",
        "ERROR",
        "CRITICAL",
    ]
    with pytest.raises(ValueError, match="^log_level: expected one of alert, crit, debug"):
        log_level("loud")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KONG_DATABASE": "postgres"}, "fastkong: database: fastkong runs DB-less only (off)"),
        ({"KONG_LOG_LEVEL": "loud"}, "fastkong: log_level: expected one of"),
        (
            {"KONG_LUA_SSL_TRUSTED_CERTIFICATE": "system,/nonexistent/ca.pem"},
            "fastkong: lua_ssl_trusted_certificate: cannot read /nonexistent/ca.pem: "
            "No such file or directory",
        ),
    ],
)
def test_deployment_settings_stop_the_start(env: dict[str, str], message: str) -> None:
    done = fastkong_cli("start", "--proxy-listen", f"127.0.0.1:{free_port()}", env=env)
    assert done.returncode == 1
    assert done.stderr.startswith(message), done.stderr


def test_a_file_without_certificates_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate\n")
    with pytest.raises(ValueError, match="no PEM certificate in"):
        TrustStore(f"system, {bogus}")
    assert TrustStore(None).system and TrustStore("system").files == ()


def test_trusted_certificates_may_be_given_as_pem_text_or_base64() -> None:
    """As Kong reads lua_ssl_trusted_certificate: an entry that is no file is the PEM itself."""
    cert, _ = Pki("trust-text-ca").issue("peer.test")
    for entry in (cert, base64.b64encode(cert.encode()).decode()):
        store = TrustStore(f"system, {entry}")
        assert store.system and store.files == ()
        assert store.pems.strip() == cert.strip()
        context = ssl.create_default_context(cadata=store.pems)  # loads as a verifier will
        assert context.cert_store_stats()["x509"] == 1


def start_warnings(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> list[str]:
    """``fastkong start`` on a config file that is not there: it reads and reports its
    settings, then stops (exit 1) before serving; its stderr lines."""
    done = fastkong_cli(
        "start",
        "-c",
        str(tmp_path / "missing.yml"),
        "--proxy-listen",
        f"127.0.0.1:{free_port()}",
        "--status-listen",
        "off",
        "--admin-listen",
        "off",
        *args,
        env=env,
    )
    assert done.returncode == 1
    return done.stderr.splitlines()


def test_a_start_that_stops_early_leaves_no_shared_tables(tmp_path: Path) -> None:
    """The node's counter and health tables live in /dev/shm, where nothing removes them: a
    start refused after they were made (here, an unreadable config) removes them. (They are
    named after the prefix: other nodes on the machine may make and remove theirs meanwhile.)"""
    prefix = tmp_path / "prefix"
    tag = hashlib.md5(str(prefix.resolve()).encode()).hexdigest()[:12]
    tables = [Path("/dev/shm") / f"fastkong-{tag}.{kind}" for kind in ("counters", "health")]
    lines = start_warnings(tmp_path, "--prefix", str(prefix))
    assert lines[-1].startswith("fastkong: cannot read ")
    assert prefix.is_dir()  # the start got as far as its state directory
    assert not [t for t in tables if t.exists()]
    assert not [p for p in prefix.iterdir() if p.name in ("counters", "health")]


def test_the_ignored_settings_are_said_once_at_start(tmp_path: Path) -> None:
    env = {"KONG_NGINX_PROXY_PROXY_BUFFERS": "8 16k", "KONG_PORT": "tcp://10.0.0.1:8000"}
    lines = start_warnings(tmp_path, env=env)
    assert "fastkong: not implemented, ignored: KONG_NGINX_PROXY_PROXY_BUFFERS" in lines
    assert not [line for line in lines if "KONG_PORT" in line]


def test_a_certificate_without_an_ssl_listener_is_said_unused(tmp_path: Path) -> None:
    lines = start_warnings(tmp_path, "--ssl-cert", "c.pem", "--ssl-key", "k.pem")
    assert "fastkong: ssl_cert is set but no proxy_listen entry has the ssl flag: unused" in lines


def ssl_start(
    tmp_path: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``fastkong start`` with one ssl proxy listener on an empty config, prefix
    ``tmp_path/prefix``: for the certificate checks that stop it before it serves."""
    config = tmp_path / "kong.yml"
    config.write_text('_format_version: "3.0"\n')
    return fastkong_cli(
        "start",
        "-c",
        str(config),
        "--proxy-listen",
        f"127.0.0.1:{free_port()} ssl",
        "--status-listen",
        "off",
        "--admin-listen",
        "off",
        "--prefix",
        str(tmp_path / "prefix"),
        env=env,
    )


def test_a_bad_certificate_stops_the_start_in_kongs_words(tmp_path: Path) -> None:
    done = ssl_start(
        tmp_path, {"KONG_SSL_CERT": "/nowhere/cert.pem", "KONG_SSL_CERT_KEY": "/nowhere/key.pem"}
    )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "fastkong: ssl_cert: failed loading certificate from /nowhere/cert.pem",
        "fastkong: ssl_cert_key: failed loading key from /nowhere/key.pem",
    ]


def test_a_prefix_where_no_certificate_can_be_written_is_one_line(tmp_path: Path) -> None:
    """An ssl listener without ssl_cert needs Kong's generated certificate in the prefix."""
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    (prefix / "ssl").write_text("a file where the ssl directory would be")
    done = ssl_start(tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith("fastkong: ssl_cert: cannot use the TLS certificate: ")
    assert "Traceback" not in done.stderr


def test_port_maps_are_kongs_host_ports() -> None:
    # kong/conf_loader/parse.lua: "host:listener" pairs, both 1..65535
    assert port_maps({}) == {}
    assert port_maps({"KONG_PORT_MAPS": "80:8000, 443:8443"}) == {8000: 80, 8443: 443}
    assert port_maps({"FASTKONG_PORT_MAPS": "8080:8000", "KONG_PORT_MAPS": "1:2"}) == {8000: 8080}
    for bad in ("80", "80:", "0:8000", "80:70000", "x:8000", "80:8000:1"):
        with pytest.raises(ValueError, match=r"invalid port mapping \(`port_maps`\): "):
            port_maps({"KONG_PORT_MAPS": bad})
