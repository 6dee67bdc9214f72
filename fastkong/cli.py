"""The ``fastkong`` command.

``fastkong start``            serve a declarative config (Kong's env names and kong.conf work too)
``fastkong check``            Kong's ``kong check``: a kong.conf and the settings start would read
``fastkong stop|quit|reload|health|drain``  Kong's node commands, on the node in a prefix
``fastkong config validate``  check a config: every error with its path (or ``config parse``)
``fastkong config explain``   which route a request matches and what goes upstream
``fastkong demo``             the gateway on the bundled config, with a bundled echo upstream
``fastkong k8s translate``    Kubernetes manifests -> declarative config (offline, for GitOps)
``fastkong ingress-controller`` watch the cluster, publish kong.yml (ConfigMap and/or POST /config)
``fastkong version``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from fastkong import __version__
from fastkong.kong_conf import (
    DEFAULT_CIPHER_SUITE,
    DEFAULT_KEEPALIVE_TIMEOUT,
    DEFAULT_SSL_PROTOCOLS,
    STREAM_LISTEN_FLAGS,
    Listener,
    check_deployment,
    client_body_buffer_size,
    log_level,
    on_off,
    parse_listeners,
    parse_nginx_time,
    port_maps,
    tls_minimum,
    tracing_settings,
    unread_settings,
)
from fastkong.stream.access_log import stream_access_log_setting

if TYPE_CHECKING:
    from fastkong.control.supervisor import Options, Supervisor

DEMO_CONFIG = Path(__file__).parent / "data" / "kong.yml"
#: Kong's default, both listeners: TLS on 8443 with the configured certificate, else a generated
#: self-signed one, as Kong does.
DEFAULT_PROXY_LISTEN = (
    "0.0.0.0:8000 reuseport backlog=16384, 0.0.0.0:8443 http2 ssl reuseport backlog=16384"
)


def parse_listen(value: str | None, setting: str = "listen") -> tuple[str, int] | None:
    """The admin or status listener from Kong's ``*_listen`` syntax; None for ``off``. These are
    served over plain HTTP at one address: the first plain entry (Kong's default admin_listen
    also lists an ``ssl`` one, which fastkong leaves out). ValueError naming ``setting``."""
    if value is None:
        return None
    listeners = parse_listeners(value, setting)
    if not listeners:
        return None
    for listener in listeners:
        if not listener.ssl:
            return listener.host, listener.port
    raise ValueError(
        f"{setting}: {value!r} has only ssl listeners; fastkong serves it over plain HTTP only"
    )


def proxy_listeners(value: str, cert: str | None, key: str | None) -> tuple[Listener, ...]:
    """Every ``proxy_listen`` entry, each served; ValueError for ``off`` (fastkong is a data
    plane) and for half a certificate."""
    listeners = parse_listeners(value, "proxy_listen")
    if not listeners:
        raise ValueError("proxy_listen: fastkong is a data plane and needs a proxy listener")
    if cert and not key:
        raise ValueError("ssl_cert_key must be set when ssl_cert is")
    if key and not cert:
        raise ValueError("ssl_cert must be set when ssl_cert_key is")
    return tuple(listeners)


def stream_listeners(value: str) -> tuple[Listener, ...]:
    """Every ``stream_listen`` entry (Kong's default ``off``: none). ``proxy_protocol`` ones
    read a PROXY protocol header; ``udp`` ones take datagrams, and refuse ``ssl`` and
    ``proxy_protocol`` as nginx does."""
    listeners = parse_listeners(value, "stream_listen", STREAM_LISTEN_FLAGS)
    for listener in listeners:
        if "udp" in listener.flags:
            for flag in ("ssl", "proxy_protocol"):
                if flag in listener.flags:
                    raise ValueError(
                        f'stream_listen: {str(listener)!r}: the "{flag}" parameter is '
                        'incompatible with "udp"'
                    )
    return tuple(listeners)


def first_taken_address(listeners: list[tuple[str, tuple[str, int] | None]]) -> str | None:
    """The first (setting, address) that cannot be bound now, as an error line; None if all
    can. Bound the way the servers bind (SO_REUSEADDR), then released at once."""
    for setting, address in listeners:
        if address is None:
            continue
        host, port = address
        try:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((host, port))
        except OSError as exc:
            shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            return f"{setting}: cannot listen on {shown}: {exc.strerror or exc}"
    return None


def _env(name: str) -> str | None:
    return os.environ.get(f"FASTKONG_{name}") or os.environ.get(f"KONG_{name}")


def _router_flavor(args: argparse.Namespace) -> str:
    """``--router-flavor``, else ``KONG_ROUTER_FLAVOR``, else Kong 3.x's default; ValueError
    naming the accepted values for one fastkong does not implement."""
    from fastkong.runtime import DEFAULT_ROUTER_FLAVOR, check_router_flavor

    return check_router_flavor(args.router_flavor or _env("ROUTER_FLAVOR") or DEFAULT_ROUTER_FLAVOR)


def _nginx_setting(name: str) -> str | None:
    """A Kong ``nginx_proxy_*`` setting, else its ``nginx_http_*`` one (the proxy server block
    inherits the http block's value unless it sets its own)."""
    return _env(f"NGINX_PROXY_{name}") or _env(f"NGINX_HTTP_{name}")


def _request_limits(args: argparse.Namespace) -> tuple[str, str]:
    """``large_client_header_buffers`` and ``client_max_body_size``, checked (ValueError)."""
    from fastkong.proxy.limits import DEFAULT_HEADER_BUFFERS, DEFAULT_MAX_BODY, RequestLimits

    buffers = (
        args.large_client_header_buffers
        or _nginx_setting("LARGE_CLIENT_HEADER_BUFFERS")
        or DEFAULT_HEADER_BUFFERS
    )
    max_body = (
        args.client_max_body_size or _nginx_setting("CLIENT_MAX_BODY_SIZE") or DEFAULT_MAX_BODY
    )
    RequestLimits.parse(buffers, max_body)
    return buffers, max_body


def _headers(args: argparse.Namespace) -> tuple[str, str]:
    """Kong's ``headers`` and ``headers_upstream``, checked (ValueError)."""
    from fastkong.proxy.kong_headers import (
        DEFAULT_HEADERS,
        DEFAULT_HEADERS_UPSTREAM,
        HeaderSettings,
    )

    headers = args.headers or _env("HEADERS") or DEFAULT_HEADERS
    upstream = args.headers_upstream or _env("HEADERS_UPSTREAM") or DEFAULT_HEADERS_UPSTREAM
    HeaderSettings.parse(headers, upstream)
    return headers, upstream


def access_log_setting(value: str) -> str:
    """Kong's ``proxy_access_log``: ``off``, or a path (a format name after it is Kong's custom
    nginx log_format, which fastkong does not have: refused)."""
    words = value.split()
    if not words:
        return "off"
    if len(words) > 1:
        raise ValueError(
            f"proxy_access_log: custom log formats are not supported ({value!r}); "
            "give a path or off"
        )
    return words[0]


def ssl_termination_setting(value: str) -> str:
    """``fastkong`` (the edge terminates the ssl listeners' TLS, every certificate served by
    SNI) or ``granian`` (Granian's TLS: one certificate, no relay)."""
    choice = value.strip().lower()
    if choice not in ("fastkong", "granian"):
        raise ValueError(f"ssl_termination: {value!r} is not fastkong or granian")
    return choice


def worker_count(value: str | int | None) -> int:
    """``--workers`` / Kong's ``nginx_worker_processes``: a number >= 1, or ``auto`` (Kong's
    default): one per CPU this process may run on (its affinity mask, which a container's
    cpuset narrows; nginx counts the online CPUs)."""
    if value is None:
        return 1
    text = str(value).strip()
    if text == "auto":
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # not on Linux
            return max(1, os.cpu_count() or 1)
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"nginx_worker_processes: expected a number >= 1 or auto, got {text!r}")
    return int(text)


def _real_ip(args: argparse.Namespace) -> tuple[str, str]:
    """``real_ip_header`` and ``real_ip_recursive``, checked (ValueError)."""
    from fastkong.proxy.trust import RealIp

    header = args.real_ip_header or _env("REAL_IP_HEADER") or "X-Real-IP"
    recursive = args.real_ip_recursive or _env("REAL_IP_RECURSIVE") or "off"
    RealIp.parse(header, recursive)
    return header, recursive


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def read_settings(args: argparse.Namespace) -> Options:
    """Every setting ``fastkong start`` reads (flags, then ``KONG_*``/``FASTKONG_*``, which a
    kong.conf has filled: fastkong/kong_conf_file.py), checked: the node's Options, or
    ValueError naming the setting. ``fastkong check`` reads them through this too."""
    from fastkong.config.flavor import set_router_flavor
    from fastkong.control.supervisor import Options
    from fastkong.proxy.errors import check_error_default_type
    from fastkong.proxy.request_debug import request_debug_settings
    from fastkong.proxy.trust import TrustedIps
    from fastkong.proxy.upstream import keepalive_settings, max_response_head
    from fastkong.proxy.upstream_tls import TrustStore
    from fastkong.upstreams.dns import dns_settings

    config = args.config or _env("DECLARATIVE_CONFIG")
    check_deployment(os.environ)
    level = log_level(args.log_level or _env("LOG_LEVEL") or "warn")
    TrustStore.from_environ(os.environ)  # read by each worker; checked here
    flavor = _router_flavor(args)
    set_router_flavor(flavor)  # (what the supervisor's config loads validate against)
    header_buffers, max_body = _request_limits(args)
    real_ip_header, real_ip_recursive = _real_ip(args)
    headers, headers_upstream = _headers(args)
    error_type = check_error_default_type(
        args.error_default_type or _env("ERROR_DEFAULT_TYPE") or "text/plain"
    )
    keepalive_settings(os.environ)  # read by each worker; checked here
    port_maps(os.environ)  # read by each worker; checked here
    dns_settings(os.environ)  # read by each worker; checked here
    max_response_head(os.environ)  # read by each worker; checked here
    keepalive_timeout = parse_nginx_time(
        args.keepalive_timeout or _nginx_setting("KEEPALIVE_TIMEOUT") or DEFAULT_KEEPALIVE_TIMEOUT,
        "keepalive_timeout",
    )
    tracing_settings(os.environ)  # read by each worker; checked here
    request_debug_settings(os.environ)  # read by each worker; checked here
    client_body_buffer_size(os.environ)  # read by each worker; checked here
    workers = worker_count(args.workers or _env("NGINX_WORKER_PROCESSES"))
    access_log = access_log_setting(args.proxy_access_log or _env("PROXY_ACCESS_LOG") or "off")
    stream_access_log = stream_access_log_setting(
        args.proxy_stream_access_log or _env("PROXY_STREAM_ACCESS_LOG") or "off"
    )
    ssl_termination = ssl_termination_setting(
        args.ssl_termination or os.environ.get("FASTKONG_SSL_TERMINATION") or "fastkong"
    )
    debug_header = on_off(
        args.allow_debug_header or _env("ALLOW_DEBUG_HEADER") or "off", "allow_debug_header"
    )
    ssl_cert = args.ssl_cert or _env("SSL_CERT")
    ssl_key = args.ssl_key or _env("SSL_CERT_KEY")
    tls_floor = tls_minimum(
        args.ssl_cipher_suite or _env("SSL_CIPHER_SUITE") or DEFAULT_CIPHER_SUITE,
        args.ssl_protocols or _env("SSL_PROTOCOLS") or DEFAULT_SSL_PROTOCOLS,
    )
    proxy = proxy_listeners(
        args.proxy_listen or _env("PROXY_LISTEN") or DEFAULT_PROXY_LISTEN, ssl_cert, ssl_key
    )
    stream = stream_listeners(args.stream_listen or _env("STREAM_LISTEN") or "off")
    status = parse_listen(
        args.status_listen or _env("STATUS_LISTEN") or "127.0.0.1:8100", "status_listen"
    )
    admin = parse_listen(
        args.admin_listen or _env("ADMIN_LISTEN") or "127.0.0.1:8001", "admin_listen"
    )
    TrustedIps.parse(args.trusted_ips or _env("TRUSTED_IPS") or "")
    opts = Options(
        config_path=Path(config) if config else None,
        proxy=proxy,
        stream=stream,
        status=status,
        admin=admin,
        workers=workers,
        trusted_ips=args.trusted_ips or _env("TRUSTED_IPS") or "",
        router_flavor=flavor,
        real_ip_header=real_ip_header,
        real_ip_recursive=real_ip_recursive,
        headers=headers,
        headers_upstream=headers_upstream,
        error_default_type=error_type,
        allow_debug_header=debug_header,
        proxy_access_log=access_log,
        proxy_stream_access_log=stream_access_log,
        large_client_header_buffers=header_buffers,
        client_max_body_size=max_body,
        ssl_cert=ssl_cert,
        ssl_key=ssl_key,
        ssl_protocol_min=tls_floor,
        keepalive_timeout=keepalive_timeout,
        http=args.http,
        log_level=level.lower(),
        prefix=Path(prefix) if (prefix := args.prefix or _env("PREFIX")) else None,
        admin_token=os.environ.get("FASTKONG_ADMIN_TOKEN") or None,
        ssl_termination=ssl_termination,
    )
    if opts.admin is not None and not _is_loopback(opts.admin[0]):
        if not opts.admin_token and not args.admin_insecure:
            raise ValueError(
                f"the admin API would listen on {opts.admin[0]}, beyond loopback, with no "
                "FASTKONG_ADMIN_TOKEN set; set one (clients send it as Kong-Admin-Token) or "
                "pass --admin-insecure"
            )
    return opts


def cmd_start(args: argparse.Namespace) -> int:
    from fastkong.control.logs import configure as configure_logging
    from fastkong.control.node_signals import ignore_operator_signals
    from fastkong.control.supervisor import Supervisor
    from fastkong.kong_conf_file import load_start_conf, unread_in_file

    try:
        conf_file = load_start_conf(args)  # before any setting is read: it fills KONG_*
        opts = read_settings(args)
    except ValueError as exc:
        print(f"fastkong: {exc}", file=sys.stderr)
        return 1
    if opts.prefix is not None:
        # Kong's "Kong is already running in <prefix>": checked before anything in the prefix
        # (certificates, shared tables named after it) is touched.
        from fastkong.control.node_files import NodeFiles

        running = NodeFiles(opts.prefix).running_pid()
        if running is not None:
            where = os.path.abspath(opts.prefix)
            print(f"fastkong: already running in {where} (pid {running})", file=sys.stderr)
            return 1
    taken = first_taken_address(
        [("proxy_listen", (x.host, x.port)) for x in opts.proxy]
        + [("stream_listen", (x.host, x.port)) for x in opts.stream]
        + [("status_listen", opts.status), ("admin_listen", opts.admin)]
    )
    if taken is not None:
        # nginx refuses to start when a listen address cannot be bound; a Granian child would
        # die after its siblings had started, and a starting worker ignores the stop signal.
        print(f"fastkong: {taken}", file=sys.stderr)
        return 1
    if opts.ssl_cert and not any(x.ssl for x in (*opts.proxy, *opts.stream)):
        # Kong's rule: TLS is a listener flag, so a certificate alone is likely a mistake.
        print(
            "fastkong: ssl_cert is set but no proxy_listen entry has the ssl flag: unused",
            file=sys.stderr,
        )
    unread = unread_settings(os.environ, conf_file.applied if conf_file else ())
    if unread or (conf_file and conf_file.ignored_lines):
        # Kong settings fastkong has no counterpart for: said once, so nobody believes them set.
        print(f"fastkong: not implemented, ignored: {unread_in_file(conf_file, unread)}",
              file=sys.stderr)  # fmt: skip
    configure_logging(opts.log_level)  # the children do alike (fastkong.control.logs)
    ignore_operator_signals()  # a logrotate USR1 while the config loads must not end the node
    supervisor = Supervisor(opts)
    try:
        supervisor.node_files.claim(opts.status)
    except OSError as exc:
        supervisor.close()
        print(f"fastkong: cannot write the pid file in {supervisor.state_dir}: {exc}",
              file=sys.stderr)  # fmt: skip
        return 1
    problem = _prepare(supervisor)
    if problem is not None:
        supervisor.close()  # nothing started: the shared tables must not outlive this process
        print(problem, file=sys.stderr)
        return 1
    loaded = supervisor.config.loaded
    ssl_listener = any(x.ssl for x in opts.proxy)
    if loaded and ssl_listener and opts.ssl_termination == "granian":
        if any(p.name == "acme" and p.enabled for p in loaded.config.plugins):
            print(
                "fastkong: acme: with --ssl-termination granian the ssl listeners serve one "
                "certificate; the plugin's certificates are served by fastkong's termination "
                "(the default)",
                file=sys.stderr,
            )
    print(
        f"fastkong {__version__}: proxy on {', '.join(x.url for x in opts.proxy)}"
        + (f", status on http://{opts.status[0]}:{opts.status[1]}" if opts.status else "")
        + (f", config hash {loaded.hash}" if loaded else ", no config loaded")
        + f", prefix {supervisor.state_dir}"
        + (f", settings from {conf_file.path}" if conf_file else ""),
        flush=True,
    )
    return _run(supervisor.run())


def _prepare(supervisor: Supervisor) -> str | None:
    """Load the config and make sure the TLS certificate is there; what stops the start (one
    line, or several for a config's errors), else None."""
    from fastkong.config import ConfigError

    opts = supervisor.options
    try:
        supervisor.load_initial()
    except ConfigError as exc:
        lines = [f"fastkong: invalid config {opts.config_path}:"]
        lines += [f"  {error.path}: {error.message}" for error in exc.errors]
        return "\n".join(lines)
    except OSError as exc:
        return f"fastkong: cannot read {opts.config_path}: {exc}"
    if any(x.ssl for x in opts.proxy):
        if opts.ssl_cert and opts.ssl_key:
            try:
                supervisor.certificates()  # checked now: a bad pair would kill a listener later
            except (ValueError, OSError) as exc:
                return "\n".join(f"fastkong: {line}" for line in str(exc).splitlines())
            given = supervisor.served.count if supervisor.served is not None else 0
            if given > 1 and opts.ssl_termination == "granian":
                print(
                    f"fastkong: ssl_cert: {given} certificates given, the first is served "
                    "(with --ssl-termination granian, one certificate per listener)",
                    file=sys.stderr,
                )
            return None
        try:
            supervisor.certificates()  # generated now, if it must be, so a failure is one line
        except (OSError, ValueError) as exc:
            return f"fastkong: ssl_cert: cannot use the TLS certificate: {exc}"
    return None


def _run(coro: object) -> int:
    try:
        import uvloop

        return int(uvloop.run(coro))  # type: ignore[arg-type]
    except ImportError:
        return int(asyncio.run(coro))  # type: ignore[arg-type]


def cmd_validate(args: argparse.Namespace) -> int:
    from fastkong.config import ConfigError, load_config
    from fastkong.config.flavor import using_router_flavor
    from fastkong.config.vault import references_unresolved

    # Secret references are fetched here, as the gateway will fetch them, unless this is not
    # where the gateway's secrets are (a CI job): then each is only parsed and its vault found.
    checking = references_unresolved() if args.no_secrets else contextlib.nullcontext()
    try:
        flavor = _router_flavor(args)
    except ValueError as exc:
        print(f"fastkong: {exc}", file=sys.stderr)
        return 1
    try:
        with checking, using_router_flavor(flavor):
            loaded = load_config(Path(args.path).read_bytes())
    except ConfigError as exc:
        for error in exc.errors:
            print(f"{error.path}: {error.message}")
        print(f"{args.path}: {len(exc.errors)} error(s)", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{args.path}: {exc}", file=sys.stderr)
        return 1
    c = loaded.config
    print(
        f"{args.path}: valid (_format_version {c.format_version}; {len(c.services)} services, "
        f"{len(c.routes)} routes, {len(c.upstreams)} upstreams, {len(c.targets)} targets, "
        f"{len(c.consumers)} consumers, {len(c.plugins)} plugins; hash {loaded.hash})"
    )
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from fastkong.config import ConfigError, load_config
    from fastkong.config.flavor import using_router_flavor
    from fastkong.proxy.routing import Decision, decide, request_facts
    from fastkong.runtime import compile_runtime

    try:
        flavor = _router_flavor(args)
    except ValueError as exc:
        print(f"fastkong: {exc}", file=sys.stderr)
        return 1
    try:
        url = urlsplit(args.url)
        port = url.port
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError("expected http://host/path or https://host/path")
    except ValueError as exc:
        print(f"fastkong: --url {args.url!r}: {exc}", file=sys.stderr)
        return 2
    headers: dict[str, list[str]] = {}
    sent: list[tuple[bytes, bytes]] = []  # (as sent, for expression routes)
    host_header = url.netloc
    for h in args.header:
        name, colon, value = h.partition(":")
        if not colon or not name.strip():
            print(f"fastkong: --header {h!r}: expected 'Name: value'", file=sys.stderr)
            return 2
        if name.strip().lower() == "host" and "host" not in headers:
            host_header = value.strip()  # as sent: preserve_host passes it on unchanged
        headers.setdefault(name.strip().lower(), []).append(value.strip().lower())
        sent.append((name.strip().lower().encode(), value.strip().encode("utf-8")))
    try:
        with using_router_flavor(flavor):
            loaded = load_config(Path(args.path).read_bytes())
    except ConfigError as exc:
        for error in exc.errors:
            print(f"{error.path}: {error.message}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"fastkong: cannot read {args.path}: {exc}", file=sys.stderr)
        return 1
    runtime = compile_runtime(loaded.config, loaded.hash, router_flavor=flavor)
    scheme = url.scheme
    port = port or (443 if scheme == "https" else 80)
    # The proxy reads the path's bytes as one character each (latin-1). A path typed on the
    # command line goes on the wire as UTF-8, as curl sends it: "/é" is the bytes C3 A9.
    raw_path = (url.path or "/").encode("utf-8", "surrogateescape").decode("latin-1")
    decision = decide(
        runtime,
        args.method.upper(),
        host_header,
        port,
        raw_path,
        scheme,
        headers or None,
        # The TLS server name the client sends (https); without --sni, the URL's host, as
        # clients send it (curl, browsers).
        args.sni if args.sni is not None else "",
        request_facts(sent, url.query.encode(), ("127.0.0.1", 0), "127.0.0.1"),
    )
    result: dict[str, object] = {
        "route": None,
        "service": None,
        "upstream_path": None,
        "host_header": None,
        "uri_captures": {},
    }
    if isinstance(decision, Decision):
        plan = decision.plan
        service = plan.service
        upstream_path = decision.upstream_path
        if upstream_path is not None and url.query:
            upstream_path += "?" + url.query
        host = None
        if service is not None:
            if plan.preserve_host:
                host = host_header
            elif service.balancer is not None and service.balancer.peers:
                host = service.peer_host_header(service.balancer.peers[0])
            else:
                host = service.host_header
        captures = decision.match.captures or {}
        result = {
            "route": plan.name or plan.id,
            "service": (service.name or service.id) if service else None,
            "upstream_path": upstream_path,
            "host_header": host,
            "uri_captures": {str(k): v for k, v in captures.items()},
        }
    print(json.dumps(result))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from fastkong.demo import run_demo

    return run_demo(DEMO_CONFIG, port=args.port)


def cmd_version(args: argparse.Namespace) -> int:
    print(f"fastkong {__version__}")
    return 0


def _port(value: str) -> int:
    """An argparse type: a TCP port number."""
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise argparse.ArgumentTypeError(f"expected a port number 1-65535, got {value!r}")
    return int(value)


def build_parser(kubernetes: bool = True) -> argparse.ArgumentParser:
    """The whole CLI; without ``kubernetes``, all but the Kubernetes commands (whose parsers
    import the translator: a third of a second a node command in a preStop hook waits for)."""
    parser = argparse.ArgumentParser(prog="fastkong", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    start = sub.add_parser("start", help="serve a declarative config")
    start.add_argument("-c", "--config", help="kong.yml (or KONG_DECLARATIVE_CONFIG)")
    start.add_argument(
        "--conf",
        help="Kong's kong.conf (name = value settings; the environment wins over it); default "
        "/etc/kong/kong.conf or /etc/kong.conf when present",
    )
    start.add_argument(
        "--proxy-listen",
        help="'ip:port [ssl] [http2] [backlog=N], ...' as Kong (or KONG_PROXY_LISTEN); "
        "default Kong's: 0.0.0.0:8000 and 0.0.0.0:8443 ssl",
    )
    start.add_argument(
        "--stream-listen",
        help="'ip:port [ssl] [backlog=N], ...' or off, as Kong (or KONG_STREAM_LISTEN): the "
        "listeners of tcp, tls and tls_passthrough routes; default off",
    )
    start.add_argument("--admin-listen", help="ip:port or off; default 127.0.0.1:8001")
    start.add_argument("--status-listen", help="ip:port or off; default 127.0.0.1:8100")
    start.add_argument(
        "--workers",
        help="Granian worker processes, or auto (KONG_NGINX_WORKER_PROCESSES); default 1",
    )
    start.add_argument(
        "--trusted-ips",
        help="comma-separated peers whose X-Forwarded-* (and stream PROXY protocol headers) "
        "are believed (KONG_TRUSTED_IPS)",
    )
    start.add_argument(
        "--real-ip-header",
        help="header a trusted peer names the client in: X-Real-IP (default), X-Forwarded-For "
        "or another (KONG_REAL_IP_HEADER)",
    )
    start.add_argument(
        "--real-ip-recursive",
        choices=("on", "off"),
        help="skip trusted addresses in real_ip_header from the right (KONG_REAL_IP_RECURSIVE)",
    )
    start.add_argument(
        "--headers",
        help="headers the gateway adds to responses, Kong's list or off; default "
        "'server_tokens, latency_tokens, X-Kong-Request-Id' (KONG_HEADERS)",
    )
    start.add_argument(
        "--error-default-type",
        help="type of error pages for requests that ask for none: text/plain (default), "
        "text/html, application/json, application/xml (KONG_ERROR_DEFAULT_TYPE)",
    )
    start.add_argument(
        "--allow-debug-header",
        choices=("on", "off"),
        help="answer a Kong-Debug request header with the route and service "
        "(KONG_ALLOW_DEBUG_HEADER)",
    )
    start.add_argument(
        "--proxy-access-log",
        help="file for one line per request in Kong's format, e.g. /dev/stdout; default off "
        "(KONG_PROXY_ACCESS_LOG)",
    )
    start.add_argument(
        "--proxy-stream-access-log",
        help="file for one line per stream connection in Kong's basic format; default off "
        "(KONG_PROXY_STREAM_ACCESS_LOG)",
    )
    start.add_argument(
        "--ssl-termination",
        help="who terminates the ssl proxy listeners' TLS: fastkong (default; the config's "
        "certificates served by SNI) or granian (one certificate, faster) "
        "(FASTKONG_SSL_TERMINATION)",
    )
    start.add_argument(
        "--headers-upstream",
        help="X-Kong-Request-Id (default) or off (KONG_HEADERS_UPSTREAM)",
    )
    start.add_argument(
        "--ssl-cert",
        help="PEM certificate for the ssl proxy listeners (or KONG_SSL_CERT); default a "
        "generated self-signed one, as Kong's",
    )
    start.add_argument("--ssl-key", help="PEM key for --ssl-cert (or KONG_SSL_CERT_KEY)")
    start.add_argument(
        "--keepalive-timeout",
        help="how long an idle client connection is kept, in nginx's time syntax (75s, the "
        "default, 1m, 500ms); 0 closes each connection after its response "
        "(KONG_NGINX_HTTP_KEEPALIVE_TIMEOUT)",
    )
    start.add_argument(
        "--ssl-cipher-suite",
        help="Kong's named TLS suite for the ssl listeners: modern (TLS 1.3), intermediate "
        "(default: TLS 1.2 and 1.3), old, fips, or custom to follow --ssl-protocols "
        "(KONG_SSL_CIPHER_SUITE)",
    )
    start.add_argument(
        "--ssl-protocols",
        help="TLS versions with --ssl-cipher-suite custom, e.g. 'TLSv1.2 TLSv1.3' "
        "(KONG_SSL_PROTOCOLS)",
    )
    start.add_argument(
        "--http",
        choices=("auto", "1", "2"),
        help="HTTP versions on every proxy listener; default each listener's own: HTTP/1.1, and "
        "HTTP/2 too with Kong's http2 flag",
    )
    start.add_argument(
        "--prefix",
        help="state directory (FASTKONG_PREFIX or KONG_PREFIX): posted configs persist here, "
        "and pids/fastkong.pid names the node for fastkong stop, quit, reload, health, drain",
    )
    start.add_argument(
        "--admin-insecure",
        action="store_true",
        help="allow a non-loopback admin listener without FASTKONG_ADMIN_TOKEN",
    )
    start.add_argument(
        "--router-flavor",
        help="traditional_compatible (Kong 3.x's default), traditional or expressions "
        "(KONG_ROUTER_FLAVOR)",
    )
    start.add_argument(
        "--large-client-header-buffers",
        help="nginx's 'number size' for request heads, default '4 8k' "
        "(KONG_NGINX_PROXY_LARGE_CLIENT_HEADER_BUFFERS)",
    )
    start.add_argument(
        "--client-max-body-size",
        help="largest request body, e.g. 10m; default 0, no limit "
        "(KONG_NGINX_PROXY_CLIENT_MAX_BODY_SIZE)",
    )
    start.add_argument(
        "--log-level",
        help="debug, info, notice, warn, error, crit (or KONG_LOG_LEVEL); default warn",
    )
    start.set_defaults(func=cmd_start)

    config = sub.add_parser("config", help="work with a declarative config file")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    validate = config_sub.add_parser("validate", aliases=["parse"], help="check a config file")
    validate.add_argument("path")
    validate.add_argument(
        "--no-secrets",
        action="store_true",
        help="check {vault://...} secret references without fetching them (where the "
        "gateway's environment variables are not set)",
    )
    validate.add_argument(
        "--router-flavor",
        help="traditional_compatible (Kong 3.x's default), traditional or expressions "
        "(KONG_ROUTER_FLAVOR): expressions accepts routes' 'expression' and 'priority'",
    )
    validate.set_defaults(func=cmd_validate)
    explain = config_sub.add_parser("explain", help="show how a request would be routed")
    explain.add_argument("path")
    explain.add_argument("--method", default="GET")
    explain.add_argument("--url", required=True)
    explain.add_argument("--header", action="append", default=[], help="'Name: value'")
    explain.add_argument("--sni", help="the TLS server name of an https request")
    explain.add_argument(
        "--router-flavor",
        help="traditional_compatible (Kong 3.x's default), traditional or expressions "
        "(KONG_ROUTER_FLAVOR)",
    )
    explain.set_defaults(func=cmd_explain)

    demo = sub.add_parser("demo", help="run the gateway on the bundled example config")
    demo.add_argument("--port", type=_port, default=8000)
    demo.set_defaults(func=cmd_demo)

    if kubernetes:
        from fastkong.k8s.cli import add_parser as add_k8s_parser
        from fastkong.k8s.controller_cli import add_parser as add_ingress_controller_parser

        add_k8s_parser(sub)
        add_ingress_controller_parser(sub)

    from fastkong.node_commands import add_parsers as add_node_command_parsers

    add_node_command_parsers(sub)

    from fastkong.kong_conf_file import add_parser as add_check_parser

    add_check_parser(sub)

    version = sub.add_parser("version", help="print the version")
    version.set_defaults(func=cmd_version)
    return parser


_NOT_KUBERNETES = {"start", "stop", "quit", "reload", "health", "drain", "check", "config", "demo"}


def main(argv: list[str] | None = None) -> None:
    given = sys.argv[1:] if argv is None else argv
    lean = bool(given) and given[0] in _NOT_KUBERNETES
    args = build_parser(kubernetes=not lean).parse_args(argv)
    sys.exit(args.func(args))
