"""Pure-Python twin of the compiled router (``router.pyx``): same API, same answers.

Regex paths (pattern, literal prefix, compile caches) are :mod:`fastkong._core._regex_paths`.
The build half lives here and is shared: ``router.pyx`` imports :func:`_plan`, :func:`_group`
and :func:`_radix` (and the small helpers next to them), so both routers split, rank and index
routes identically and only the index layout and the per-request walk are written twice.
The theory of operation is the docstring of ``router.pyx``.
"""

from __future__ import annotations

import gc
import hashlib
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from fastkong._core._regex_paths import (
    cached_pattern,
    compile_cached,
    compile_lazily,
    compile_path_regex,
    path_regex_source,
    rotate_caches,
)
from fastkong._core.routespec import RouteSpec
from fastkong.background import pace

__all__ = ["RouteMatch", "Router"]

# Kong's u64 route priority (kong/router/transform.lua get_priority), high bits first.
_MATCH_WEIGHT_SHIFT = 61
_PLAIN_HOST_ONLY = 1 << 60
_HEADER_COUNT_SHIFT = 52
_MAX_HEADER_COUNT = 255
_REGEX_URL = 1 << 51
_REGEX_PRIORITY_SHIFT = 19
# Kong shifts a signed regex_priority into bits 19-50; a negative one would spill into the high
# bits. We store it biased by 2**31 (clamped to 32 bits) so that -1 sorts just below 0.
_REGEX_PRIORITY_BIAS = 1 << 31
_MAX_LENGTH_MASK = 0x7FFFF

# Path kinds.
NO_PATH = 0
PREFIX = 1
REGEX = 2

# Host (and SNI) operators: Kong's ATC ==, =^ (ends with) and ^= (starts with).
EXACT = 0
SUFFIX = 1
PREFIX_HOST = 2

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


HostEntry = tuple[int, str, int | None]
HeaderTest = tuple[str, frozenset[str], tuple["re.Pattern[str]", ...]]
SniTest = tuple[frozenset[str], tuple[str, ...], tuple[str, ...]]
Captures = dict[int | str, str]


class RouteMatch:
    """The winning matcher of :meth:`Router.match`.

    ``key`` is the route's :attr:`RouteSpec.key`; ``path`` the configured path that matched
    (``None`` for a route without paths); ``matched_len`` the number of characters of the request
    path the path consumed; ``captures`` Kong's ``uri_captures`` for a regex path that has capture
    groups (``{0: whole, 1: group1, ..., "name": value}``, unmatched groups omitted), else None.
    """

    __slots__ = ("key", "path", "matched_len", "captures")

    def __init__(
        self, key: int, path: str | None, matched_len: int, captures: Captures | None
    ) -> None:
        self.key = key
        self.path = path
        self.matched_len = matched_len
        self.captures = captures

    def __repr__(self) -> str:
        extra = "" if self.captures is None else f" captures={self.captures!r}"
        return (
            f"<RouteMatch key={self.key} path={self.path!r} matched_len={self.matched_len}{extra}>"
        )


# -- build: specs -> ranked matcher plans --------------------------------------------------------


class _Plan:
    """One matcher: a route restricted to one of its paths (or the route, if it has none)."""

    __slots__ = (
        "rank",
        "key",
        "path",
        "kind",
        "prefix_len",
        "regex",
        "regex_source",
        "index_key",
        "methods",
        "hosts",
        "headers",
        "snis",
        "priority",
        "order",
    )

    def __init__(
        self,
        key: int,
        path: str | None,
        kind: int,
        regex: re.Pattern[str] | None,
        regex_source: str | None,
        index_key: str,
        methods: frozenset[str] | None,
        hosts: tuple[HostEntry, ...],
        headers: tuple[HeaderTest, ...],
        snis: SniTest | None,
        priority: int,
        order: tuple[int, int, int],
    ) -> None:
        self.rank = -1
        self.key = key
        self.path = path
        self.kind = kind
        self.prefix_len = len(path) if kind == PREFIX and path is not None else 0
        self.regex = regex
        self.regex_source = regex_source
        self.index_key = index_key
        self.methods = methods
        self.hosts = hosts
        self.headers = headers
        self.snis = snis
        self.priority = priority
        self.order = order


def split_host_port(value: str) -> tuple[str, int | None]:
    """``host:port`` -> (host, port); the port is kept only if it is a number (as Kong)."""
    host, sep, port = value.partition(":")
    if sep and port.isascii() and port.isdigit():
        return host, int(port)
    return value, None


def _host_entry(value: str) -> HostEntry:
    host, port = split_host_port(value.lower())
    if host.startswith("*"):
        return SUFFIX, host[1:], port
    if host.endswith("*"):
        return PREFIX_HOST, host[:-1], port
    return EXACT, host, port


def _sni_test(snis: Sequence[str]) -> SniTest:
    exact: set[str] = set()
    suffixes: list[str] = []
    prefixes: list[str] = []
    for sni in snis:
        if sni.endswith("*") and not sni.startswith("*"):
            prefixes.append(sni[:-1])
            continue
        if len(sni) > 1 and sni.endswith("."):
            sni = sni[:-1]  # the trailing dot of an FQDN is not used for routing
        if sni.startswith("*"):
            suffixes.append(sni[1:])
        else:
            exact.add(sni)
    return frozenset(exact), tuple(suffixes), tuple(prefixes)


def _header_tests(headers: Sequence[tuple[str, Sequence[str]]]) -> tuple[HeaderTest, ...]:
    tests: list[HeaderTest] = []
    for name, values in headers:
        # Kong reads http.headers.<name with '-' as '_'>; nginx's lookup maps '_' back to '-'.
        name = name.lower().replace("_", "-")
        equal: set[str] = set()
        regexes: list[re.Pattern[str]] = []
        for value in values:
            if value.startswith("~*"):
                # Kong lower-cases the pattern too (ASCII only, like Lua's string.lower).
                pattern = value[2:].translate(_ASCII_LOWER)
                try:
                    regexes.append(compile_cached(pattern))
                except (re.error, OverflowError, RecursionError) as exc:
                    raise ValueError(
                        f"invalid regex {value!r} for header {name!r}: {exc}"
                    ) from None
            else:
                equal.add(value.translate(_ASCII_LOWER))
        tests.append((name, frozenset(equal), tuple(regexes)))
    return tuple(tests)


def route_priority(
    *,
    methods: bool,
    hosts: Sequence[str],
    header_count: int,
    snis: bool,
    path: str | None,
    regex_priority: int,
) -> int:
    """Kong's u64 priority of one matcher (higher is tried first); see ``router.pyx``."""
    weight = bool(methods) + bool(hosts) + (header_count > 0) + bool(snis) + (path is not None)
    value = weight << _MATCH_WEIGHT_SHIFT
    if hosts and not any("*" in h for h in hosts):
        value |= _PLAIN_HOST_ONLY
    value |= min(header_count, _MAX_HEADER_COUNT) << _HEADER_COUNT_SHIFT
    if path is not None:
        if path.startswith("~"):
            biased = min(max(regex_priority, -_REGEX_PRIORITY_BIAS), _REGEX_PRIORITY_BIAS - 1)
            value |= _REGEX_URL | (biased + _REGEX_PRIORITY_BIAS) << _REGEX_PRIORITY_SHIFT
        else:
            value |= len(path.encode("utf-8", "surrogateescape")) & _MAX_LENGTH_MASK
    return value


# Kong's namespace for the UUIDv5 of a split route's groups (transform.lua uuid_generator).
_SPLIT_NAMESPACE = uuid.UUID("7f145bf9-0dce-4f91-98eb-debbce4b9f6b").bytes
# RFC 4122 version 5 and variant bits, set on the first 16 bytes of the SHA-1.
_V5_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_V5_SET = (5 << 76) | (0x8000 << 48)


def _uuid5_int(name: str) -> int:
    """``uuid.uuid5(namespace, name).int`` without building UUID objects (a 10,000-route build
    may need 20,000 of these)."""
    digest = hashlib.sha1(_SPLIT_NAMESPACE + name.encode(), usedforsecurity=False).digest()
    return (int.from_bytes(digest[:16], "big") & _V5_CLEAR) | _V5_SET


def _uuid_int(value: str) -> int:
    try:
        return int(value.replace("-", ""), 16) if len(value) == 36 else uuid.UUID(value).int
    except ValueError:
        return 0  # not a UUID (ids are validated by the config loader): sorts last


def tie_breakers(spec: RouteSpec) -> list[int]:
    """Per path of ``spec``, the UUID (as an int) Kong ranks its matcher by on equal priority.

    Kong gives atc-router one matcher per path group (all regexes; each prefix length, in bytes;
    numbered by first appearance) and, when there are several groups, names group ``n`` by the
    UUIDv5 of ``"<route id>#<n>"`` (transform.lua ``split_routes_and_services_by_path``).
    Without an id every path gets 0 (ties then go by config order).
    """
    paths = spec.paths
    count = len(paths) or 1
    if spec.id is None:
        return [0] * count
    if count > 1:
        groups: dict[int, int] = {}
        numbers: list[int] = []
        for p in paths:
            if p.startswith("~"):
                key = 0
            else:
                key = len(p) if p.isascii() else len(p.encode("utf-8", "surrogateescape"))
            number = groups.get(key)
            if number is None:
                number = groups[key] = len(groups) + 1
            numbers.append(number)
        if len(groups) > 1:
            prefix = spec.id + "#"
            return [_uuid5_int(prefix + str(n)) for n in numbers]
    return [_uuid_int(spec.id)] * count


def _plan(specs: Iterable[RouteSpec], lazy_regex: bool = False) -> tuple[list[_Plan], int]:
    """Split specs into per-path matchers and rank them; returns (plans by rank, spec count).

    With ``lazy_regex`` a regex path not cached from an earlier build is left uncompiled (its
    ``regex`` None, ``regex_source`` set) and is neither compiled nor checked here.
    """
    rotate_caches()
    plans: list[_Plan] = []
    position = -1
    for position, spec in enumerate(specs):
        pace()
        methods = frozenset(spec.methods) if spec.methods else None
        hosts = tuple(dict.fromkeys(_host_entry(h) for h in spec.hosts))
        headers = _header_tests(spec.headers)
        header_count = len({name for name, _, _ in headers})
        snis = _sni_test(spec.snis) if spec.snis else None
        paths: Sequence[str | None] = spec.paths or (None,)
        ties = tie_breakers(spec)
        for index, path in enumerate(paths):
            regex: re.Pattern[str] | None = None
            source: str | None = None
            if path is None:
                kind, index_key = NO_PATH, ""
            elif path.startswith("~"):
                kind = REGEX
                if lazy_regex:
                    # Compiled now only if an earlier build has it; else at its first use.
                    source, index_key = path_regex_source(path)
                    regex = cached_pattern(source)
                else:
                    regex, index_key = compile_path_regex(path)
            else:
                kind, index_key = PREFIX, path
            priority = route_priority(
                methods=bool(spec.methods),
                hosts=spec.hosts,
                header_count=header_count,
                snis=bool(spec.snis),
                path=path,
                regex_priority=spec.regex_priority,
            )
            plans.append(
                _Plan(
                    spec.key,
                    path,
                    kind,
                    regex,
                    source,
                    index_key,
                    methods,
                    hosts,
                    headers,
                    snis,
                    priority,
                    (ties[index], position, index),
                )
            )
    # Higher priority first; ties go to the larger UUID (atc-router tries its (priority, uuid)
    # keys from the largest down), then the earlier route, then the earlier path of the route
    # (the order of the paths in Kong's expression for their group).
    # One integer per plan: comparing ints inside the sort is several times cheaper than
    # comparing tuples, and the sort is one uninterruptible call.
    plans.sort(
        key=lambda p: (-p.priority << 192) - (p.order[0] << 64) + (p.order[1] << 20) + p.order[2]
    )
    for rank, plan in enumerate(plans):
        plan.rank = rank
    return plans, position + 1


# A bucket: (host operator, host value, port or None); NO_HOST for routes without hosts.
BucketKey = tuple[int, str, int | None]
NO_HOST: BucketKey = (-1, "", None)


def _group(plans: Sequence[_Plan]) -> dict[BucketKey, dict[str, list[int]]]:
    """Bucket -> trie key -> ranks (ascending). Plans must come in rank order."""
    buckets: dict[BucketKey, dict[str, list[int]]] = {}
    for plan in plans:
        for bucket in plan.hosts or (NO_HOST,):
            ranks = buckets.setdefault(bucket, {}).setdefault(plan.index_key, [])
            if not ranks or ranks[-1] != plan.rank:
                ranks.append(plan.rank)
    return buckets


class _RNode:
    """A radix-tree node: ``label`` is the edge from the parent; ``ranks`` end here."""

    __slots__ = ("label", "ranks", "children")

    def __init__(self, label: str, ranks: list[int]) -> None:
        self.label = label
        self.ranks = ranks
        self.children: dict[str, _RNode] = {}


def _common_prefix_len(a: str, b: str) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo] and a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def _radix(entries: Mapping[str, list[int]]) -> _RNode:
    """Compress ``key -> ranks`` into a radix tree, in one pass over the sorted keys.

    The stack holds the path spelling the previous key as (node, length spelled so far); a new
    key shares ``lcp`` characters with it: pop what lies deeper, split the edge that crosses
    ``lcp`` if any, then hang the rest of the key below.
    """
    root = _RNode("", list(entries.get("", ())))
    stack: list[tuple[_RNode, int]] = [(root, 0)]
    previous = ""
    for key in sorted(k for k in entries if k):
        lcp = _common_prefix_len(previous, key)
        popped: _RNode | None = None
        while stack[-1][1] > lcp:
            popped = stack.pop()[0]
        parent, depth = stack[-1]
        if depth < lcp:
            assert popped is not None
            middle = _RNode(popped.label[: lcp - depth], [])
            popped.label = popped.label[lcp - depth :]
            middle.children[popped.label[0]] = popped
            parent.children[middle.label[0]] = middle
            parent, depth = middle, lcp
            stack.append((middle, lcp))
        leaf = _RNode(key[depth:], list(entries[key]))
        parent.children[key[depth]] = leaf
        stack.append((leaf, len(key)))
        previous = key
    return root


def _checkpoint() -> None:
    """Called from the compiled router's long loops: entering any Python function lets the
    interpreter hand the GIL to a thread that has been waiting (see router.pyx); a paced
    background build also rests here now and then."""
    pace()


@contextmanager
def gc_paused() -> Iterator[None]:
    """Hold the cyclic GC while a router is built.

    A build allocates ~10 objects per route, all long-lived and acyclic; the collections they
    would trigger find nothing and cost about as much as the build itself.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def has_surrogates(path: str) -> bool:
    """True if ``path`` holds undecodable bytes (see ``uri.normalize_path``)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


# -- the twin's index and walk -------------------------------------------------------------------


class _Bucket:
    __slots__ = ("any_port", "ports")

    def __init__(self) -> None:
        self.any_port: _RNode | None = None
        self.ports: dict[int, _RNode] = {}


def _walk(node: _RNode, path: str, out: list[list[int]]) -> None:
    pos = 0
    end = len(path)
    while True:
        if node.ranks:
            out.append(node.ranks)
        if pos >= end:
            return
        child = node.children.get(path[pos])
        if child is None or not path.startswith(child.label, pos):
            return
        pos += len(child.label)
        node = child


class Router:
    """Kong ``traditional_compatible`` route matching over a fixed set of :class:`RouteSpec`.

    Build once per config snapshot; :meth:`match` is then read-only and safe to share.

    Parameters
    ----------
    specs:
        The routes, in config order. Priority ties go to the larger ``RouteSpec.id`` (as Kong),
        then to the earlier route.
    lazy_regex:
        Compile each regex path at its first use instead of here (a path another build compiled
        is reused at once). For validated configs: a worker rebuilding a 10,000-regex config then
        compiles only the regexes its traffic needs, and an invalid regex is not reported.

    Raises
    ------
    ValueError
        A regex path or ``~*`` header value does not compile (the message names it).
    """

    __slots__ = (
        "header_names",
        "_plans",
        "_count",
        "_exact",
        "_suffix",
        "_prefix",
        "_odd",
        "_nohost",
        "_regex_count",
    )

    def __init__(self, specs: Iterable[RouteSpec], *, lazy_regex: bool = False) -> None:
        with gc_paused():
            self._build(specs, lazy_regex)

    def _build(self, specs: Iterable[RouteSpec], lazy_regex: bool) -> None:
        plans, count = _plan(specs, lazy_regex)
        self._plans = plans
        self._count = count
        self._regex_count = sum(1 for p in plans if p.kind == REGEX)
        self.header_names: frozenset[str] = frozenset(
            name for p in plans for name, _, _ in p.headers
        )
        self._exact: dict[str, _Bucket] = {}
        self._suffix: dict[str, _Bucket] = {}
        self._prefix: dict[str, _Bucket] = {}
        # Wildcards not cut at a dot ("*example.com", "example*"): tested one by one.
        self._odd: list[tuple[int, str, _Bucket]] = []
        self._nohost: _RNode | None = None
        odd: dict[tuple[int, str], _Bucket] = {}
        for (op, host, port), entries in _group(plans).items():
            tree = _radix(entries)
            if op < 0:
                self._nohost = tree
                continue
            if op == EXACT:
                bucket = self._exact.setdefault(host, _Bucket())
            elif op == SUFFIX and host.startswith("."):
                bucket = self._suffix.setdefault(host, _Bucket())
            elif op == PREFIX_HOST and host.endswith("."):
                bucket = self._prefix.setdefault(host, _Bucket())
            else:
                if (op, host) not in odd:
                    odd[(op, host)] = _Bucket()
                    self._odd.append((op, host, odd[(op, host)]))
                bucket = odd[(op, host)]
            if port is None:
                bucket.any_port = tree
            else:
                bucket.ports[port] = tree

    def release(self) -> list[Any]:
        """Empty the router and hand over its matchers (teardown of a retired snapshot).

        The router then matches nothing. Freeing a 10,000-route router's matchers at once is one
        long deallocation; the caller drops the returned list a slice at a time instead.
        """
        plans: list[Any] = self._plans
        self._plans = []
        self._count = self._regex_count = 0
        self.header_names = frozenset()
        self._exact, self._suffix, self._prefix, self._odd = {}, {}, {}, []
        self._nohost = None
        return plans

    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        hosts = len(self._exact) + len(self._suffix) + len(self._prefix) + len(self._odd)
        return (
            f"<Router routes={self._count} matchers={len(self._plans)} "
            f"regex={self._regex_count} hosts={hosts}>"
        )

    def match(
        self,
        method: str,
        host: str,
        port: int,
        path: str,
        headers: Mapping[str, Sequence[str]] | None = None,
        sni: str | None = None,
    ) -> RouteMatch | None:
        """The highest-priority route matching the request, or None.

        Parameters
        ----------
        method: upper-case request method.
        host: lower-case Host without its port; "" when absent.
        port: the port ``host:port`` route hosts compare with (Kong: the Host header's port,
            else the listener's).
        path: the normalized request path (``uri.normalize_path``), without the query.
        headers: lower-case header name -> values, for the names in :attr:`header_names`.
        sni: the TLS server name; None on plain HTTP (the ``snis`` criterion is then ignored).
            Pass "" for a TLS connection without SNI.
        """
        if not path.isascii() and has_surrogates(path):
            return None  # Kong's ATC refuses a non-UTF-8 path: no route
        lists: list[list[int]] = []
        if host:
            bucket = self._exact.get(host)
            if bucket is not None:
                self._collect(bucket, port, path, lists)
            if self._suffix:
                i = host.find(".")
                while i >= 0:
                    bucket = self._suffix.get(host[i:])
                    if bucket is not None:
                        self._collect(bucket, port, path, lists)
                    i = host.find(".", i + 1)
            if self._prefix:
                i = host.find(".")
                while i >= 0:
                    bucket = self._prefix.get(host[: i + 1])
                    if bucket is not None:
                        self._collect(bucket, port, path, lists)
                    i = host.find(".", i + 1)
            for op, value, bucket in self._odd:
                if host.endswith(value) if op == SUFFIX else host.startswith(value):
                    self._collect(bucket, port, path, lists)
        if self._nohost is not None:
            _walk(self._nohost, path, lists)
        if not lists:
            return None
        ranks = lists[0] if len(lists) == 1 else sorted({r for ranks in lists for r in ranks})
        for rank in ranks:
            result = self._try(self._plans[rank], method, path, headers, sni)
            if result is not None:
                return result
        return None

    @staticmethod
    def _collect(bucket: _Bucket, port: int, path: str, out: list[list[int]]) -> None:
        if bucket.any_port is not None:
            _walk(bucket.any_port, path, out)
        if bucket.ports:
            tree = bucket.ports.get(port)
            if tree is not None:
                _walk(tree, path, out)

    @staticmethod
    def _try(
        plan: _Plan,
        method: str,
        path: str,
        headers: Mapping[str, Sequence[str]] | None,
        sni: str | None,
    ) -> RouteMatch | None:
        if plan.methods is not None and method not in plan.methods:
            return None
        if plan.snis is not None and sni is not None and not _sni_matches(plan.snis, sni):
            return None
        if plan.headers and not _headers_match(plan.headers, headers):
            return None
        if plan.kind == REGEX:
            regex = plan.regex
            if regex is None:
                assert plan.regex_source is not None
                regex = plan.regex = compile_lazily(plan.regex_source)
            m = regex.search(path)
            if m is None:
                return None
            return RouteMatch(plan.key, plan.path, len(m.group()), _captures(m))
        return RouteMatch(plan.key, plan.path, plan.prefix_len, None)


def _sni_matches(test: SniTest, sni: str) -> bool:
    exact, suffixes, prefixes = test
    if sni in exact:
        return True
    return any(sni.endswith(s) for s in suffixes) or any(sni.startswith(p) for p in prefixes)


def _headers_match(
    tests: tuple[HeaderTest, ...], headers: Mapping[str, Sequence[str]] | None
) -> bool:
    if not headers:
        return False
    for name, equal, regexes in tests:
        values = headers.get(name)
        if not values:
            return False
        for value in values:
            lowered = value.lower()
            if lowered in equal or any(r.search(lowered) for r in regexes):
                break
        else:
            return False
    return True


def _captures(m: re.Match[str]) -> Captures | None:
    """Kong's uri_captures: None unless some group besides the whole match took part."""
    groups = m.groups()
    if not groups:
        return None
    captures: Captures = {0: m.group()}
    for i, value in enumerate(groups, 1):
        if value is not None:
            captures[i] = value
    if len(captures) == 1:
        return None
    for name, value in m.groupdict().items():
        if value is not None:
            captures[name] = value
    return captures
