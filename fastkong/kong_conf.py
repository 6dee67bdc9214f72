"""Value types of Kong's ``kong.conf`` settings, read the way Kong's conf loader reads them, for
the CLI and the modules that take settings (one reading, one error text per type)."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Collection, Mapping
from typing import Final, NamedTuple

_SIZE: Final = re.compile(r"(\d+)([kKmMgG]?)")
_UNITS = {"": 1, "k": 1024, "m": 1024 * 1024, "g": 1024 * 1024 * 1024}


def on_off(value: str, setting: str) -> bool:
    """A boolean setting: ``on``/``off`` (also ``true``/``false``, as Kong's conf loader)."""
    text = value.strip().lower()
    if text in ("on", "true"):
        return True
    if text in ("off", "false"):
        return False
    raise ValueError(f"{setting}: expected on or off, got {value!r}")


def parse_size(value: str, setting: str) -> int:
    """An nginx size (``8k``, ``24K``, ``1m``, ``512``) in bytes; ValueError naming the setting."""
    match = _SIZE.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"{setting}: invalid size {value!r} (expected e.g. 8k, 1m, 512)")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


#: nginx's ``client_body_buffer_size`` in Kong's proxy (``nginx_http_client_body_buffer_size``).
DEFAULT_CLIENT_BODY_BUFFER: Final = "8k"


def client_body_buffer_size(environ: Mapping[str, str]) -> int:
    """Kong's ``nginx_proxy_client_body_buffer_size``, else ``nginx_http_...``, else its
    ``client_body_buffer_size``, in bytes: the size above which nginx would keep a request
    body in a temporary file (which Kong's body readers then skip). ValueError."""
    for name in (
        "NGINX_PROXY_CLIENT_BODY_BUFFER_SIZE",
        "NGINX_HTTP_CLIENT_BODY_BUFFER_SIZE",
        "CLIENT_BODY_BUFFER_SIZE",
    ):
        value = environ.get(f"FASTKONG_{name}") or environ.get(f"KONG_{name}")
        if value:
            return parse_size(value, name.lower())
    return parse_size(DEFAULT_CLIENT_BODY_BUFFER, "client_body_buffer_size")


def port_maps(environ: Mapping[str, str]) -> dict[int, int]:
    """Kong's ``port_maps`` (``"80:8000, 443:8443"``: the host's port, then the listener's, as a
    container's port mapping publishes them): listener port -> the port clients use, which
    ``X-Forwarded-Port`` names (Kong's ``host_ports``). ValueError in Kong's words."""
    raw = environ.get("FASTKONG_PORT_MAPS") or environ.get("KONG_PORT_MAPS") or ""
    found: dict[int, int] = {}
    for entry in (x.strip() for x in raw.split(",")):
        if not entry:
            continue
        host, colon, listener = entry.partition(":")
        ports = [int(p) if p.isdigit() else 0 for p in (host, listener)]
        if not colon or not all(1 <= p <= 65535 for p in ports):
            raise ValueError(f"invalid port mapping (`port_maps`): {entry}")
        found[ports[1]] = ports[0]
    return found


_TIME_PART: Final = re.compile(r"(\d+)(ms|s|m|h|d|w|M|y)?")
_TIME_UNITS: Final = {
    "ms": 0.001,
    "s": 1,
    None: 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 7 * 86400,
    "M": 30 * 86400,
    "y": 365 * 86400,
}


def parse_nginx_time(value: str, setting: str) -> float:
    """An nginx time (``75s``, ``75``, ``1m30s``, ``500ms``) in seconds; ValueError naming the
    setting. A bare number is seconds, as nginx reads it."""
    text = value.strip()
    total = 0.0
    at = 0
    while at < len(text):
        part = _TIME_PART.match(text, at)
        if part is None or (part.group(2) is None and part.end() != len(text)):
            raise ValueError(f"{setting}: invalid time {value!r} (expected e.g. 75s, 1m, 500ms)")
        total += int(part.group(1)) * _TIME_UNITS[part.group(2)]
        at = part.end()
    if not text:
        raise ValueError(f"{setting}: invalid time {value!r} (expected e.g. 75s, 1m, 500ms)")
    return total


#: nginx's ``keepalive_timeout`` (Kong leaves nginx's default): how long an idle client
#: connection is kept. Longer than the 60 s idle timeout of common load balancers on purpose,
#: so that they never send a request down a connection the gateway is closing.
DEFAULT_KEEPALIVE_TIMEOUT: Final = "75s"


#: The flags Kong's conf loader accepts on an HTTP listener (``conf_loader/listeners.lua``), as
#: patterns; anything else left beside the address makes the entry invalid, as in Kong.
_LISTEN_FLAGS = (
    "ssl",
    "http2",
    "proxy_protocol",
    "deferred",
    "bind",
    "reuseport",
    r"backlog=\d+",
    "ipv6only=(?:on|off)",
    r"so_keepalive=(?:on|off|\d*[smh]?:\d*[smh]?:\d*)",
)
_FLAG = re.compile("|".join(f"(?:{flag})" for flag in _LISTEN_FLAGS))
#: The flags Kong accepts on a ``stream_listen`` entry (no ``http2``/``deferred``; ``udp``).
STREAM_LISTEN_FLAGS: Final = (
    "udp",
    "ssl",
    "proxy_protocol",
    "bind",
    "reuseport",
    r"backlog=\d+",
    "ipv6only=(?:on|off)",
    r"so_keepalive=(?:on|off|\d*[smh]?:\d*[smh]?:\d*)",
)


class Listener(NamedTuple):
    """One entry of a Kong ``*_listen`` setting: an address and the flags given with it."""

    host: str
    port: int
    flags: tuple[str, ...] = ()

    @property
    def ssl(self) -> bool:
        return "ssl" in self.flags

    @property
    def backlog(self) -> int | None:
        for flag in self.flags:
            if flag.startswith("backlog="):
                return int(flag[8:])
        return None

    @property
    def address(self) -> str:
        """``ip:port`` with an IPv6 address in brackets, as nginx (and Kong's ``listener``)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl else 'http'}://{self.address}"

    def __str__(self) -> str:
        """Kong's ``listener`` text: the address and its flags, in the order Kong lists them."""
        return " ".join((self.address, *self.flags))


def parse_listeners(
    value: str, setting: str, known_flags: tuple[str, ...] = _LISTEN_FLAGS
) -> list[Listener]:
    """Kong's ``*_listen`` syntax: ``off`` (no listener) or ``ip:port [flags], ...``.

    ValueError naming ``setting`` for an entry that is not an address with known flags, and for
    two entries on one address (nginx would fail to bind the second).
    """
    found: list[Listener] = []
    if value.strip() == "off":
        return found
    for entry in value.split(","):
        words = entry.split()
        if not words:
            continue
        host, colon, port = words[0].rpartition(":")
        if not colon or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{setting}: invalid listener {entry.strip()!r} (expected ip:port)")
        flag_pattern = (
            _FLAG
            if known_flags is _LISTEN_FLAGS
            else re.compile("|".join(f"(?:{flag})" for flag in known_flags))
        )
        unknown = [word for word in words[1:] if not flag_pattern.fullmatch(word)]
        if unknown:
            raise ValueError(
                f"{setting}: invalid listener {entry.strip()!r}: unknown flag {unknown[0]!r}"
            )
        flags = tuple(sorted(set(words[1:]), key=_flag_rank))
        listener = Listener(host.strip("[]") or "0.0.0.0", int(port), flags)
        if any(other[:2] == listener[:2] for other in found):
            raise ValueError(f"{setting}: {listener.address} is listed twice")
        found.append(listener)
    if not found:
        raise ValueError(f"{setting}: no listener in {value!r}")
    return found


def _flag_rank(flag: str) -> int:
    for rank, pattern in enumerate(_LISTEN_FLAGS):
        if re.fullmatch(pattern, flag):
            return rank
    return len(_LISTEN_FLAGS)


#: The Kong settings ``fastkong start`` reads (names after ``KONG_``; docs/settings.md).
READ_SETTINGS: Final = frozenset(
    {
        "DECLARATIVE_CONFIG",
        "PROXY_LISTEN",
        "STREAM_LISTEN",
        "ADMIN_LISTEN",
        "STATUS_LISTEN",
        "SSL_CERT",
        "SSL_CERT_KEY",
        "SSL_CIPHER_SUITE",
        "SSL_PROTOCOLS",
        "NGINX_WORKER_PROCESSES",
        "ROUTER_FLAVOR",
        "TRUSTED_IPS",
        "REAL_IP_HEADER",
        "REAL_IP_RECURSIVE",
        "HEADERS",
        "HEADERS_UPSTREAM",
        "ERROR_DEFAULT_TYPE",
        "ALLOW_DEBUG_HEADER",
        "PROXY_ACCESS_LOG",
        "PROXY_STREAM_ACCESS_LOG",
        "NGINX_PROXY_LARGE_CLIENT_HEADER_BUFFERS",
        "NGINX_HTTP_LARGE_CLIENT_HEADER_BUFFERS",
        "NGINX_PROXY_CLIENT_MAX_BODY_SIZE",
        "NGINX_HTTP_CLIENT_MAX_BODY_SIZE",
        "NGINX_PROXY_CLIENT_BODY_BUFFER_SIZE",  # the aws-lambda plugin's skip_large_bodies
        "NGINX_HTTP_CLIENT_BODY_BUFFER_SIZE",
        "CLIENT_BODY_BUFFER_SIZE",
        "NGINX_PROXY_KEEPALIVE_TIMEOUT",
        "NGINX_HTTP_KEEPALIVE_TIMEOUT",
        "NGINX_PROXY_PROXY_BUFFER_SIZE",  # the upstream response head limit (proxy/upstream.py)
        "NGINX_HTTP_PROXY_BUFFER_SIZE",
        "UPSTREAM_KEEPALIVE_POOL_SIZE",
        "UPSTREAM_KEEPALIVE_MAX_REQUESTS",
        "UPSTREAM_KEEPALIVE_IDLE_TIMEOUT",
        "DNS_VALID_TTL",  # the name cache (upstreams/dns.py)
        "DNS_STALE_TTL",
        "DNS_NOT_FOUND_TTL",
        "DNS_ERROR_TTL",
        "DNS_NO_SYNC",
        "DNS_CACHE_SIZE",
        "LUA_SSL_TRUSTED_CERTIFICATE",
        "LOG_LEVEL",
        "PREFIX",
        "DATABASE",
        "ROLE",
        "DATADOG_AGENT_HOST",  # the datadog plugin's agent when its host is null
        "DATADOG_AGENT_PORT",
        "TRACING_INSTRUMENTATIONS",  # the opentelemetry plugin's spans
        "TRACING_SAMPLING_RATE",
        "OPENTELEMETRY_TRACING",  # Kong's deprecated aliases of the two above
        "OPENTELEMETRY_TRACING_SAMPLING_RATE",
        "REQUEST_DEBUG",  # X-Kong-Request-Debug (proxy/request_debug.py)
        "REQUEST_DEBUG_TOKEN",
    }
)
#: Kong settings whose only meaning is nginx's or Kong's own housekeeping, or that say what
#: fastkong does anyway: accepted without a word (errors go to stderr, no daemon, no reports,
#: no Lua, no port maps behind a proxy fastkong does not front).
HOUSEKEEPING_SETTINGS: Final = frozenset(
    {
        "NGINX_DAEMON",
        "PROXY_ERROR_LOG",
        "ADMIN_ACCESS_LOG",
        "ADMIN_ERROR_LOG",
        "ADMIN_GUI_ACCESS_LOG",
        "ADMIN_GUI_ERROR_LOG",
        "STATUS_ACCESS_LOG",
        "STATUS_ERROR_LOG",
        "PROXY_STREAM_ERROR_LOG",
        "PORTAL_API_ACCESS_LOG",  # Kong's Helm chart sets these four for every node
        "PORTAL_API_ERROR_LOG",
        "PORTAL_GUI_ACCESS_LOG",
        "PORTAL_GUI_ERROR_LOG",
        "ANONYMOUS_REPORTS",
        "LUA_PACKAGE_PATH",
        "LUA_PACKAGE_CPATH",
        "LUA_SSL_VERIFY_DEPTH",
        "KIC",
        "ADMIN_GUI_LISTEN",
        "CLUSTER_LISTEN",
        "PLUGINS",
    }
)
#: The variables Kubernetes adds for a Service named ``kong`` (``KONG_PORT``,
#: ``KONG_SERVICE_HOST``, ``KONG_PORT_8000_TCP_ADDR``, ...): not settings.
_SERVICE_LINK = re.compile(r"(?:.*_)?(?:SERVICE_HOST|SERVICE_PORT(?:_\w+)?|PORT(?:_\d+_\w+)?)")


def unread_settings(environ: Mapping[str, str], settings: Collection[str] = ()) -> list[str]:
    """The ``KONG_*`` variables that name a setting fastkong neither reads nor can ignore;
    ``settings`` are variables known to be settings (a kong.conf's entries: ``pg_port`` is not
    a Kubernetes service link there)."""
    found = []
    for key in environ:
        if not key.startswith("KONG_"):
            continue
        name = key[5:]
        if name in READ_SETTINGS or name in HOUSEKEEPING_SETTINGS:
            continue
        if _SERVICE_LINK.fullmatch(name) and key not in settings:
            continue
        found.append(key)
    return sorted(found)


def check_deployment(environ: Mapping[str, str]) -> None:
    """``database`` and ``role``: fastkong is a DB-less, traditional node; ValueError else."""
    database = environ.get("KONG_DATABASE", "off").strip()
    if database not in ("off", ""):
        raise ValueError(f"database: fastkong runs DB-less only (off), got {database!r}")
    role = environ.get("KONG_ROLE", "traditional").strip()
    if role not in ("traditional", ""):
        raise ValueError(f"role: fastkong runs as a traditional node only, got {role!r}")


#: nginx's error log levels -> Python's (Kong's ``log_level``).
LOG_LEVELS: Final = {
    "debug": "DEBUG",
    "info": "INFO",
    "notice": "INFO",
    "warn": "WARNING",
    "warning": "WARNING",
    "error": "ERROR",
    "crit": "CRITICAL",
    "alert": "CRITICAL",
    "emerg": "CRITICAL",
}


def log_level(value: str) -> str:
    """Kong's ``log_level`` (nginx's names; ``warning`` too) as a Python level; ValueError."""
    level = LOG_LEVELS.get(value.strip().lower())
    if level is None:
        names = ", ".join(sorted(set(LOG_LEVELS) - {"warning"}))
        raise ValueError(f"log_level: expected one of {names}, got {value!r}")
    return level


#: The TLS versions of Kong's named cipher suites (``ssl_cipher_suite``; its conf loader puts a
#: suite's versions in nginx's ``ssl_protocols``, and reads ``ssl_protocols`` only for
#: ``custom``), and Kong's defaults for the two settings.
CIPHER_SUITE_PROTOCOLS: Final = {
    "modern": "TLSv1.3",
    "intermediate": "TLSv1.2 TLSv1.3",
    "old": "TLSv1 TLSv1.1 TLSv1.2 TLSv1.3",
    "fips": "TLSv1.2",
}
DEFAULT_CIPHER_SUITE: Final = "intermediate"
DEFAULT_SSL_PROTOCOLS: Final = "TLSv1.1 TLSv1.2 TLSv1.3"
_TLS_VERSIONS: Final = ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")


def tls_minimum(cipher_suite: str, protocols: str) -> str:
    """The oldest TLS version the ``ssl`` listeners accept, as Granian names it (``tls1.2`` or
    ``tls1.3``), for Kong's ``ssl_cipher_suite`` and ``ssl_protocols``; ValueError else.

    Granian's TLS speaks 1.2 and 1.3 only and takes a floor, not a list: TLSv1 and TLSv1.1 (the
    ``old`` suite, a custom list) come down to 1.2, and a list without 1.3 (``fips``) still
    accepts 1.3.
    """
    suite = cipher_suite.strip()
    if suite == "custom":
        listed = protocols.split()
        for version in listed:
            if version not in _TLS_VERSIONS:
                raise ValueError(
                    f"ssl_protocols: invalid entry {version!r} "
                    f"(expected some of {', '.join(_TLS_VERSIONS)})"
                )
        if not listed:
            raise ValueError("ssl_protocols: no TLS version listed")
    elif suite in CIPHER_SUITE_PROTOCOLS:
        listed = CIPHER_SUITE_PROTOCOLS[suite].split()
    else:
        raise ValueError(
            f"ssl_cipher_suite: Undefined cipher suite {suite!r} "
            f"(expected one of {', '.join(CIPHER_SUITE_PROTOCOLS)}, custom)"
        )
    return "tls1.3" if listed == ["TLSv1.3"] else "tls1.2"


def pem_text(entry: str) -> bytes | None:
    """The PEM text a certificate setting's entry carries when it is not a file: the text as
    given, or base64 of it (how Secrets reach environment variables); None if neither. Kong
    reads ``ssl_cert``, ``ssl_cert_key`` and ``lua_ssl_trusted_certificate`` entries so."""
    if "-----BEGIN" in entry:
        return entry.encode("latin-1")
    try:
        decoded = base64.b64decode(entry, validate=True)
    except (binascii.Error, ValueError):
        return None
    return decoded if b"-----BEGIN" in decoded else None


#: Kong 3.9's ``tracing_instrumentations`` values (``instrumentation.available_types`` plus
#: ``off``, ``all`` and ``request``).
TRACING_TYPES: Final = frozenset(
    {
        "off",
        "all",
        "request",
        "db_query",
        "dns_query",
        "router",
        "http_client",
        "balancer",
        "plugin_rewrite",
        "plugin_access",
        "plugin_header_filter",
        "create_span",
    }
)


class TracingSettings(NamedTuple):
    """Kong's ``tracing_instrumentations`` and ``tracing_sampling_rate``."""

    instrumentations: tuple[str, ...] = ("off",)
    sampling_rate: float = 0.01

    @property
    def enabled(self) -> bool:
        """Whether Kong would record its request span (any value but ``off``)."""
        return self.instrumentations[0] != "off"


def tracing_settings(environ: Mapping[str, str]) -> TracingSettings:
    """The two settings from ``KONG_*`` variables (or Kong's deprecated ``opentelemetry_*``
    names), checked as Kong's conf loader checks them; ValueError in Kong's words."""
    raw = environ.get("KONG_TRACING_INSTRUMENTATIONS") or environ.get(
        "KONG_OPENTELEMETRY_TRACING", "off"
    )
    types = tuple(t.strip() for t in raw.split(",") if t.strip()) or ("off",)
    for kind in types:
        if kind not in TRACING_TYPES:
            raise ValueError(f"invalid tracing type: {kind}")
    if len(types) > 1 and "off" in types:
        raise ValueError("invalid tracing types: off, other types are mutually exclusive")
    rate_text = environ.get("KONG_TRACING_SAMPLING_RATE") or environ.get(
        "KONG_OPENTELEMETRY_TRACING_SAMPLING_RATE", "0.01"
    )
    try:
        rate = float(rate_text)
    except ValueError:
        raise ValueError(f"tracing_sampling_rate is not a number: {rate_text!r}") from None
    if not 0 <= rate <= 1:
        raise ValueError("tracing_sampling_rate must be between 0 and 1")
    return TracingSettings(types, rate)
