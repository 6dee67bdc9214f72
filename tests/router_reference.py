"""A naive reference router for the property test: Kong's definitions, no index, no cleverness.

Every route is split per path; each matcher is checked criterion by criterion; its priority is
Kong's u64 (``kong/router/transform.lua`` get_priority) written as a sum of non-overlapping
fields, so a negative regex_priority simply subtracts; the highest (priority, UUID, earlier
route, earlier path) that matches wins. The UUID is the route's id, or for a route whose paths
fall into several groups (regexes; each prefix length) the UUIDv5 Kong names each group by.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence

from fastkong._core.routespec import RouteSpec

Result = tuple[int, "str | None", int, "dict[int | str, str] | None"]


def _split_host_port(value: str) -> tuple[str, int | None]:
    host, sep, port = value.partition(":")
    if sep and port.isdigit():
        return host, int(port)
    return value, None


def _host_ok(spec: RouteSpec, host: str, port: int) -> bool:
    if not spec.hosts:
        return True
    if not host:
        return False
    for value in spec.hosts:
        pattern, want_port = _split_host_port(value.lower())
        if want_port is not None and want_port != port:
            continue
        if pattern.startswith("*"):
            if host.endswith(pattern[1:]):
                return True
        elif pattern.endswith("*"):
            if host.startswith(pattern[:-1]):
                return True
        elif host == pattern:
            return True
    return False


def _sni_ok(spec: RouteSpec, sni: str | None) -> bool:
    if not spec.snis or sni is None:
        return True
    for value in spec.snis:
        if value.endswith("*") and not value.startswith("*"):
            if sni.startswith(value[:-1]):
                return True
            continue
        if len(value) > 1 and value.endswith("."):
            value = value[:-1]
        if value.startswith("*"):
            if sni.endswith(value[1:]):
                return True
        elif sni == value:
            return True
    return False


def _ascii_lower(value: str) -> str:
    return "".join(c.lower() if c.isascii() else c for c in value)


def _headers_ok(spec: RouteSpec, headers: Mapping[str, Sequence[str]] | None) -> bool:
    for name, wanted in spec.headers:
        got = [v.lower() for v in (headers or {}).get(name.lower().replace("_", "-"), ())]
        ok = False
        for want in wanted:
            if want.startswith("~*"):
                rx = re.compile(_ascii_lower(want[2:]))
                ok = any(rx.search(v) for v in got)
            else:
                ok = _ascii_lower(want) in got
            if ok:
                break
        if not ok:
            return False
    return True


def _regex(path: str) -> re.Pattern[str]:
    body = re.sub(r"\(\?<(?![=!])", "(?P<", path[1:])
    flags = re.match(r"(\(\?[aiLmsux]+\))*", body)
    lead = flags.group() if flags else ""
    return re.compile(lead + "^" + body[len(lead) :])


def _path_match(path: str | None, request: str) -> tuple[int, dict[int | str, str] | None] | None:
    if path is None:
        return 0, None
    if not path.startswith("~"):
        return (len(path), None) if request.startswith(path) else None
    m = _regex(path).search(request)
    if m is None:
        return None
    captures: dict[int | str, str] = {0: m.group(0)}
    for i in range(1, (m.re.groups or 0) + 1):
        if m.group(i) is not None:
            captures[i] = m.group(i)
    if len(captures) > 1:
        for name, value in m.groupdict().items():
            if value is not None:
                captures[name] = value
    return len(m.group(0)), (captures if len(captures) > 1 else None)


def priority(spec: RouteSpec, path: str | None) -> int:
    """Kong's u64 for one matcher, as a sum of its fields."""
    names = {name.lower().replace("_", "-") for name, _ in spec.headers}
    weight = sum(1 for criterion in (spec.methods, spec.hosts, names, spec.snis, path) if criterion)
    plain_host_only = bool(spec.hosts) and all("*" not in h for h in spec.hosts)
    regex = path is not None and path.startswith("~")
    length = len(path.encode()) if path is not None and not regex else 0
    return (
        (weight << 61)
        + (int(plain_host_only) << 60)
        + (min(len(names), 255) << 52)
        + (int(regex) << 51)
        + ((spec.regex_priority if regex else 0) << 19)
        + (length & 0x7FFFF)
    )


def matcher_uuid(spec: RouteSpec, path: str | None) -> int:
    """The UUID atc-router sorts the matcher holding ``path`` by (0 without an id)."""
    if spec.id is None:
        return 0

    def group_key(p: str) -> object:
        return "regex" if p.startswith("~") else len(p.encode())

    keys: list[object] = []
    for p in spec.paths:
        if group_key(p) not in keys:
            keys.append(group_key(p))
    if path is None or len(keys) < 2:
        return uuid.UUID(spec.id).int
    number = keys.index(group_key(path)) + 1
    namespace = uuid.UUID("7f145bf9-0dce-4f91-98eb-debbce4b9f6b")
    return uuid.uuid5(namespace, f"{spec.id}#{number}").int


def reference_match(
    specs: Sequence[RouteSpec],
    method: str,
    host: str,
    port: int,
    path: str,
    headers: Mapping[str, Sequence[str]] | None = None,
    sni: str | None = None,
) -> Result | None:
    """(key, path, matched_len, captures) of the winning matcher, or None."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return None
    best: tuple[tuple[int, int, int, int], Result] | None = None
    for position, spec in enumerate(specs):
        if spec.methods and method not in spec.methods:
            continue
        if not (_host_ok(spec, host, port) and _sni_ok(spec, sni) and _headers_ok(spec, headers)):
            continue
        for index, configured in enumerate(spec.paths or (None,)):
            found = _path_match(configured, path)
            if found is None:
                continue
            rank = (
                priority(spec, configured),
                matcher_uuid(spec, configured),
                -position,
                -index,
            )
            if best is None or rank > best[0]:
                best = (rank, (spec.key, configured, found[0], found[1]))
    return None if best is None else best[1]
