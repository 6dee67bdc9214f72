"""``konghq.com/*`` annotations: Ingress -> route fields, Service -> service and upstream fields.

Semantics follow KIC (``kic:internal/annotations``, ``kic:internal/dataplane/kongstate/route.go``
and ``service.go``): comma lists are trimmed and empty items dropped, booleans are Go's
``strconv.ParseBool``. Where KIC silently ignores a bad value, we ignore it too but say so with a
warning :class:`~fastkong.k8s.objects.Problem`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any, Final

from fastkong.k8s.objects import ObjectRef, Problem, split_comma

PREFIX: Final = "konghq.com/"
PLUGINS: Final = PREFIX + "plugins"
OVERRIDE: Final = PREFIX + "override"
REGEX_PREFIX: Final = PREFIX + "regex-prefix"
DEFAULT_REGEX_PREFIX: Final = "/~"
FORCE_SSL_REDIRECT: Final = "ingress.kubernetes.io/force-ssl-redirect"
SERVICE_UPSTREAM: Final = "ingress.kubernetes.io/service-upstream"
REWRITE: Final = PREFIX + "rewrite"

#: ``util.ValidateProtocol`` in KIC (``kic:internal/util/protocol.go``): no ``udp``.
PROTOCOLS: Final = frozenset(
    {"http", "https", "grpc", "grpcs", "tcp", "tls", "tls_passthrough", "ws", "wss"}
)
REDIRECT_CODES: Final = frozenset({426, 301, 302, 307, 308})
_TRUE: Final = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE: Final = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_METHOD = re.compile(r"[A-Z]+")
_PATH_HANDLING = re.compile(r"v\d")
_SNI = re.compile(r"([a-zA-Z0-9]+(-[a-zA-Z0-9]+)*)(\.([a-zA-Z0-9]+(-[a-zA-Z0-9]+)*))*")
_HOST = re.compile(
    r"(\*\.)?([a-zA-Z0-9]+(-[a-zA-Z0-9]+)*)(\.([a-zA-Z0-9]+(-[a-zA-Z0-9]+)*))*?(\.\*)?"
)


def parse_bool(value: str) -> bool | None:
    """Go's ``strconv.ParseBool`` (KIC lower-cases first for strip-path and preserve-host)."""
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    return None


class _Reader:
    def __init__(self, anns: Mapping[str, str], ref: ObjectRef, problems: list[Problem]) -> None:
        self.anns = anns
        self.ref = ref
        self.problems = problems

    def get(self, key: str) -> str | None:
        return self.anns.get(PREFIX + key)

    def bad(self, key: str, why: str) -> None:
        value = self.anns.get(key if "/" in key else PREFIX + key, "")
        self.problems.append(
            Problem(self.ref, f"annotation {_full(key)}={value!r} ignored: {why}", "warning")
        )

    def boolean(self, key: str, *, lower: bool = False) -> bool | None:
        """``lower``: KIC's strip-path/preserve-host rule (only true/false, any case)."""
        raw = self.get(key)
        if raw is None or raw == "":
            return None
        value = {"true": True, "false": False}.get(raw.lower()) if lower else parse_bool(raw)
        if value is None:
            self.bad(key, "expected true or false")
        return value

    def integer(self, key: str) -> int | None:
        raw = self.get(key)
        if raw is None:
            return None
        try:
            return int(raw.strip())
        except ValueError:
            self.bad(key, "expected an integer")
            return None

    def common(self, *, route: bool) -> None:
        if route and OVERRIDE in self.anns:
            # (On a Service it names the KongIngress whose upstream section applies:
            # kong_ingress.py.)
            self.bad(OVERRIDE, "KongIngress overrides of routes were removed in KIC 3.0")


def _full(key: str) -> str:
    return key if "/" in key else PREFIX + key


def apply_route_annotations(
    route: dict[str, Any], anns: Mapping[str, str], ref: ObjectRef, problems: list[Problem]
) -> None:
    """Override ``route``'s fields from an Ingress's annotations (KIC's ``overrideByAnnotation``
    then ``normalizeProtocols``)."""
    r = _Reader(anns, ref, problems)
    r.common(route=True)
    if (v := r.boolean("strip-path", lower=True)) is not None:
        route["strip_path"] = v
    if anns.get(FORCE_SSL_REDIRECT) == "true":
        route["https_redirect_status_code"] = 302
        route["protocols"] = _ssl_protocols(route["protocols"])
    if (code := r.integer("https-redirect-status-code")) is not None:
        if code in REDIRECT_CODES:
            route["https_redirect_status_code"] = code
        else:
            r.bad("https-redirect-status-code", "expected 426, 301, 302, 307 or 308")
    if (v := r.boolean("preserve-host", lower=True)) is not None:
        route["preserve_host"] = v
    for key in ("request-buffering", "response-buffering"):
        if (b := r.boolean(key)) is not None:
            route[key.replace("-", "_")] = b
    if (raw := r.get("protocols")) is not None and (protocols := split_comma(raw)):
        bad = [p for p in protocols if p not in PROTOCOLS]
        if bad:
            r.bad("protocols", f"unknown protocol {bad[0]!r}")
        else:
            route["protocols"] = protocols
    if (prio := r.integer("regex-priority")) is not None:
        route["regex_priority"] = prio
    if (raw := r.get("methods")) is not None and (methods := split_comma(raw)):
        methods = [m.upper() for m in methods]
        if all(_METHOD.fullmatch(m) for m in methods):
            route["methods"] = methods
        else:
            r.bad("methods", "methods are letters only")
    if (raw := r.get("snis")) is not None:
        snis = split_comma(raw)
        if all(_SNI.fullmatch(s) for s in snis):
            route.pop("snis", None)
            if snis:
                route["snis"] = snis
        else:
            r.bad("snis", "not a list of host names")
    if (raw := r.get("host-aliases")) is not None and (aliases := split_comma(raw)):
        if all(_HOST.fullmatch(h) for h in aliases):
            hosts = list(route.get("hosts", []))
            hosts += [h for h in aliases if h not in hosts]
            route["hosts"] = hosts
        else:
            r.bad("host-aliases", "not a list of host names")
    _apply_headers(route, anns)
    if (raw := r.get("path-handling")) is not None:
        if _PATH_HANDLING.fullmatch(raw):
            route["path_handling"] = raw
        else:
            r.bad("path-handling", "expected v0 or v1")
    _normalize_protocols(route)


def _apply_headers(route: dict[str, Any], anns: Mapping[str, str]) -> None:
    prefix = PREFIX + "headers."
    separator = anns.get(PREFIX + "headers-separator", ",") or ","
    headers: dict[str, list[str]] = {}
    for key in sorted(anns):
        if key.startswith(prefix) and len(key) > len(prefix) and anns[key]:
            headers[key[len(prefix) :]] = [v.strip() for v in anns[key].split(separator)]
    if headers:
        route["headers"] = headers


def _ssl_protocols(protocols: list[str]) -> list[str]:
    grpc = any("grpc" in p for p in protocols)
    http = any("http" in p for p in protocols)
    out = ["grpcs"] if grpc else []
    if http or not grpc:
        out.append("https")
    return out


def _normalize_protocols(route: dict[str, Any]) -> None:
    protocols = route["protocols"]
    grpc = any("grpc" in p for p in protocols)
    http = any("http" in p for p in protocols)
    if grpc and http:
        route["protocols"] = ["http", "https"]
    if grpc:
        # KIC unsets strip_path whenever a grpc protocol was named, with http too: Kong's default
        # (true) then applies.
        route.pop("strip_path", None)


def apply_service_annotations(
    service: dict[str, Any],
    upstream: dict[str, Any],
    anns: Mapping[str, str],
    ref: ObjectRef,
    problems: list[Problem],
) -> None:
    """Override a Kong service (and its upstream) from a Kubernetes Service's annotations."""
    r = _Reader(anns, ref, problems)
    r.common(route=False)
    if (protocol := r.get("protocol")) is not None and protocol != "":
        if protocol in PROTOCOLS:
            service["protocol"] = protocol
        else:
            r.bad("protocol", "unknown protocol")
    if (path := r.get("path")) is not None and path != "":
        if path.startswith("/"):
            service["path"] = path
        else:
            r.bad("path", "must start with /")
    for key in ("connect-timeout", "read-timeout", "write-timeout", "retries"):
        if (value := r.integer(key)) is not None:
            service[key.replace("-", "_")] = value
    if (verify := r.boolean("tls-verify")) is not None:
        service["tls_verify"] = verify
    if (depth := r.integer("tls-verify-depth")) is not None:
        service["tls_verify_depth"] = depth
    if host := r.get("host-header"):
        upstream["host_header"] = host
    if service.get("protocol") in ("grpc", "grpcs"):
        service.pop("path", None)


def plugin_names(anns: Mapping[str, str]) -> list[str]:
    """The KongPlugin names in ``konghq.com/plugins``, in order, without duplicates."""
    out: list[str] = []
    for item in split_comma(anns.get(PLUGINS, "")):
        if item not in out:
            out.append(item)
    return out


def rewrite_uri(value: str) -> str:
    """``konghq.com/rewrite`` as a request-transformer ``replace.uri`` template (KIC's
    ``generateRewriteURIConfig``, with its RewriteURIs feature gate on): ``$N`` is the route's
    regex capture N, ``\\$`` a literal ``$``, an empty value ``/``. Raises ValueError."""
    out: list[str] = []
    state = "plain"
    for pos, char in enumerate(value or "/"):
        if state == "escape":
            if char != "$":
                raise ValueError(f"unexpected {char} at pos {pos}")
            out.append(char)
            state = "plain"
            continue
        if state == "mark":
            if unicodedata.category(char) != "Nd":
                raise ValueError(f"unexpected {char} at pos {pos}")
            out.append(f"$(uri_captures[{char}")
            state = "digit"
            continue
        if state == "digit":
            if unicodedata.category(char) == "Nd":
                out.append(char)
                continue
            out.append("])")
        if char == "$":
            state = "mark"
        elif char == "\\":
            state = "escape"
        else:
            out.append(char)
            state = "plain"
    if state == "digit":
        out.append("])")
    elif state != "plain":
        raise ValueError("unexpected end of string")
    return "".join(out)
