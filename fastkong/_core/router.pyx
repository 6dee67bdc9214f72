# cython: cdivision=True
"""Compiled route matcher: Kong 3.x ``traditional_compatible`` semantics, indexed.

Theory of operation
===================

Rules (what a match means)
--------------------------
Kong compiles each route into an ATC expression plus a u64 priority and returns the
highest-priority route whose expression holds. We keep the semantics and drop the interpreter.

* A route with several paths is split into one *matcher* per path; a route without paths is one
  matcher. Priority is computed per matcher (Kong groups paths of equal priority into one
  matcher; with ties broken by path order the result is the same).
* A matcher holds when every non-empty criterion holds:

  - hosts (ORed): ``h`` equals the host; ``*.x`` = host ends with ``.x``; ``x.*`` = host starts
    with ``x.``; ``h:port`` also needs ``port`` to equal the given port. No host, no match.
  - path: a plain path is a character prefix of the request path; ``~re`` is ``^re`` searched
    with Python ``re`` (``(?<name>`` read as ``(?P<name>``), written so that it reads as Rust's
    ``regex`` (Kong's ATC) does: ``\\A`` for the anchor and ``\\Z`` for ``$`` (the ends of
    the text, even before a newline or after a leading ``(?m)``).
  - methods (ORed): exact.
  - headers: every configured name must match (AND); one of its configured values (OR) must
    equal one of the request's lower-cased values, or, for ``~*re``, ``re`` (lower-cased, as
    Kong does) must be *found* in one.
  - snis (ORed, same operators as hosts; a trailing dot is dropped): only when ``sni`` is not
    None, i.e. on TLS. Plain HTTP ignores the criterion, as Kong's ``net.protocol != "https"``.

* Priority (Kong's ``get_priority``), high bits first:
  ``weight(3) | plain-host-only(1) | header count(8) | regex(1) | regex_priority(32) |
  prefix length(19)``. weight counts the non-empty criteria among methods, hosts, headers,
  snis, path; plain-host-only means hosts are set and none has ``*``; regex_priority is only set
  for regex matchers and is stored biased by 2**31, so negative values sort below 0 instead of
  wrapping; prefix length is the UTF-8 length of a plain path, masked to 19 bits.
* Ties: the larger UUID wins, as atc-router tries its ``(priority, uuid)`` keys from the
  largest down. A route whose paths form several groups (all regexes; each prefix length) is
  one matcher per group in Kong, named by the UUIDv5 of ``"<id>#<group>"``; ``tie_breakers``
  gives each path its group's UUID. Then the earlier route in the input (routes without an
  id), then the earlier path (the order of the paths in Kong's expression for a group).

Data structures
---------------
At build every matcher gets a *rank*: its index in (priority desc, UUID desc, route position,
path index) order, so "higher priority" is just "smaller int". Matchers are then bucketed by host:

* ``_exact``: host -> bucket; ``_suffix`` (``*.x`` stored as ``.x``) and ``_prefix`` (``x.*``
  stored as ``x.``) -> bucket, probed at each ``.`` of the request host, and only for lengths
  some key has (``_suffix_lens`` / ``_prefix_lens`` bitmaps, so most probes cost no slice);
  ``_odd``: wildcards not cut at a dot (``*example.com``), tested one by one; ``_nohost``: the
  tree of matchers without hosts. A bucket has one tree for "any port" and one per port.
* Each tree is a radix tree over characters (prefix semantics, not segments). A matcher sits at
  the node spelling its *index key*: the plain path; for a regex, the literal text every match
  must start with (``/v1/users/`` for ``~/v1/users/\\d+``; "" when unknown, e.g. top-level
  ``|`` or inline flags); "" for a matcher without path.
* All trees live in one arena of C structs (``_TNode``), laid out breadth-first so that the
  children of a node are adjacent; a node holds offsets into three flat arrays: ``_labels``
  (edge label characters), ``_ranks`` (its matchers, ascending rank; a single one is kept in
  the node itself) and, per child, ``_keys``
  (first character of the label, ascending: children are found by binary search). A walk step
  touches a node, a run of keys and a label, a few cache lines, and no Python object; at 10k
  routes that locality is most of the match cost.

Match
-----
1. Find the buckets of the request host (1 dict probe, plus one per ``.`` when wildcards
   exist) and the port, then walk each bucket's tree once along the path, collecting the rank
   arrays of the nodes passed (each a *span*). Every matcher outside these spans fails on host
   or path, so the spans hold all candidates.
2. Merge the spans by rank (k-way, k is small: nodes on the path x buckets) and test each
   candidate in that order: methods, snis, headers, then the regex, if any. The first one that
   holds is the answer; regexes after it are never run, so a regex costs only when it could win.

Invariants: spans are ascending, so the merge yields ranks in ascending order and equal ranks
(one matcher reached through two buckets) consecutively, which is how duplicates are skipped.
The router is immutable after ``__init__``; ``match`` keeps its state on the C stack (heap only
past 32 spans), so a router is shared by all requests of a worker.

Complexity: build O(M log M + total key length) for M matchers; match O(len(path) x log(fanout)
+ candidates tested), independent of M for the usual distinct-prefix configs. The paths are
expected normalized (``uri.normalize_path``); a path holding undecodable bytes matches nothing,
as in Kong, whose ATC refuses non-UTF-8 input.
"""

cimport cython
from cpython.list cimport PyList_GET_ITEM
from libc.limits cimport INT_MAX
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, memset

from fastkong._core._regex_paths import compile_lazily
from fastkong._core._router_py import (
    EXACT,
    PREFIX_HOST,
    REGEX,
    SUFFIX,
    _checkpoint,
    _group,
    _plan,
    _radix,
    gc_paused,
    has_surrogates,
)

cdef extern from "Python.h":
    int PyUnicode_IS_ASCII(object)
    int PyUnicode_KIND(object)
    void* PyUnicode_DATA(object)
    Py_UCS4 PyUnicode_READ(int kind, const void* data, Py_ssize_t index) noexcept

__all__ = ["RouteMatch", "Router"]

cdef enum:
    _STACK_SPANS = 32

cdef int _REGEX = REGEX


# The router's objects form trees and RouteMatch holds only strings and ints: none can be part
# of a reference cycle, so they stay out of the cyclic GC (fewer objects to traverse, and a
# match does not count towards the next collection).
@cython.no_gc
cdef class RouteMatch:
    """The winning matcher of :meth:`Router.match` (see ``_router_py.RouteMatch``)."""

    def __init__(self, key, path, Py_ssize_t matched_len, captures):
        self.key = key
        self.path = path
        self.matched_len = matched_len
        self.captures = captures

    def __repr__(self):
        extra = "" if self.captures is None else f" captures={self.captures!r}"
        return (
            f"<RouteMatch key={self.key} path={self.path!r} "
            f"matched_len={self.matched_len}{extra}>"
        )


@cython.no_gc
cdef class _Matcher:
    pass


@cython.no_gc
cdef class _Bucket:
    pass


cdef _Bucket _new_bucket():
    cdef _Bucket bucket = _Bucket.__new__(_Bucket)
    bucket.any_port = -1
    bucket.ports = None
    return bucket


cdef int _set_regex(_Matcher m, object regex) except -1:
    m.regex_search = regex.search
    m.ngroups = regex.groups
    m.group_names = tuple(sorted(regex.groupindex.items(), key=lambda kv: kv[1]))
    return 0


cdef _Matcher _matcher_from(plan):
    cdef _Matcher m = _Matcher.__new__(_Matcher)
    m.key = plan.key
    m.path = plan.path
    m.kind = plan.kind
    m.prefix_len = plan.prefix_len
    m.regex_search = None
    m.ngroups = 0
    m.group_names = ()
    m.regex_source = plan.regex_source
    if plan.regex is not None:
        _set_regex(m, plan.regex)
    m.methods = plan.methods
    m.headers = tuple(
        (name, equal, tuple(r.search for r in regexes)) for name, equal, regexes in plan.headers
    )
    m.has_snis = plan.snis is not None
    if m.has_snis:
        m.sni_exact, m.sni_suffixes, m.sni_prefixes = plan.snis
    return m


cdef int _push(_Spans* spans, const int* ranks, Py_ssize_t n) except -1:
    cdef _Span* grown
    if spans.n == spans.cap:
        if spans.heap:
            grown = <_Span*>realloc(spans.items, 2 * spans.cap * sizeof(_Span))
        else:
            grown = <_Span*>malloc(2 * spans.cap * sizeof(_Span))
            if grown != NULL:
                memcpy(grown, spans.items, spans.n * sizeof(_Span))
        if grown == NULL:
            raise MemoryError()
        spans.items = grown
        spans.cap *= 2
        spans.heap = True
    spans.items[spans.n].ranks = ranks
    spans.items[spans.n].n = n
    spans.items[spans.n].i = 0
    spans.n += 1
    return 0


cdef bint _sni_ok(_Matcher m, str sni) except -1:
    if sni in m.sni_exact:
        return True
    for s in m.sni_suffixes:
        if sni.endswith(s):
            return True
    for s in m.sni_prefixes:
        if sni.startswith(s):
            return True
    return False


cdef object _captures(_Matcher m, object found, str whole):
    """Kong's uri_captures (see ``_router_py._captures``): None unless a group took part."""
    cdef tuple groups
    cdef dict captures
    cdef Py_ssize_t i
    if not m.ngroups:
        return None
    groups = found.groups()
    captures = {0: whole}
    for i in range(m.ngroups):
        value = groups[i]
        if value is not None:
            captures[i + 1] = value
    if len(captures) == 1:
        return None
    for name, index in m.group_names:
        value = groups[<Py_ssize_t>index - 1]
        if value is not None:
            captures[name] = value
    return captures


cdef bint _headers_ok(tuple tests, object headers) except -1:
    cdef tuple test
    cdef frozenset equal
    cdef bint ok
    if not headers:
        return False
    for test in tests:
        name = test[0]
        if type(headers) is dict:
            values = (<dict>headers).get(name)
        else:
            values = headers.get(name)
        if not values:
            return False
        equal = <frozenset>test[1]
        ok = False
        for value in values:
            lowered = value.lower()
            if lowered in equal:
                ok = True
                break
            for search in <tuple>test[2]:
                if search(lowered) is not None:
                    ok = True
                    break
            if ok:
                break
        if not ok:
            return False
    return True


# A build runs in a worker's background thread while the event loop serves requests. Compiled
# loops never return to the interpreter, so they would keep the GIL for their whole length. Every
# few hundred items they call a no-op Python function instead: entering it runs the interpreter's
# periodic check, which hands the GIL over once the loop thread has waited a switch interval.
# (Releasing the GIL here with `with nogil` does not work: each release and re-take counts as a
# switch, which restarts the waiter's interval, so a frequent re-taker starves the loop thread.)
cdef enum:
    _YIELD_EVERY = 256


cdef inline int _let_others_run() except -1:
    _checkpoint()
    return 0


cdef class Router:
    """Kong ``traditional_compatible`` route matching over a fixed set of ``RouteSpec``.

    Build once per config snapshot; ``match`` is then read-only and safe to share.

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

    def __cinit__(self):
        self._reset()

    def __init__(self, specs, *, bint lazy_regex=False):
        with gc_paused():
            self._reset()
            self._build(specs, lazy_regex)

    cdef _reset(self):
        # An empty router: also what match sees if __init__ never ran or failed.
        free(self._nodes)
        free(self._keys)
        free(self._labels)
        free(self._ranks)
        self._nodes = NULL
        self._keys = NULL
        self._labels = NULL
        self._ranks = NULL
        self._nnodes = self._nlabels = self._nranks = 0
        self._count = self._regex_count = 0
        self._matchers = []
        self.header_names = frozenset()
        self._exact = {}
        self._suffix = {}
        self._prefix = {}
        self._odd = []
        self._nohost = -1
        memset(self._suffix_lens, 0, sizeof(self._suffix_lens))
        memset(self._prefix_lens, 0, sizeof(self._prefix_lens))

    cdef _build(self, specs, bint lazy_regex):
        cdef _Bucket bucket
        cdef int tree
        cdef Py_ssize_t n, nodes = 0, labels = 0, ranks = 0
        cdef Py_ssize_t i = 0
        plans, count = _plan(specs, lazy_regex)
        matchers = []
        for p in plans:
            matchers.append(_matcher_from(p))
            i += 1
            if i % _YIELD_EVERY == 0:
                _let_others_run()
        trees = []
        groups = _group(plans)
        for key in list(groups):
            trees.append((key, _radix(groups.pop(key))))
            _let_others_run()

        stack = [t for _, t in trees]
        while stack:
            rnode = stack.pop()
            nodes += 1
            labels += len(rnode.label)
            ranks += len(rnode.ranks)
            stack.extend(rnode.children.values())
            if nodes % _YIELD_EVERY == 0:
                _let_others_run()
        if max(nodes, labels, ranks) >= INT_MAX:
            raise OverflowError("too many routes for one router")
        self._nodes = <_TNode*>malloc((nodes + 1) * sizeof(_TNode))
        self._keys = <Py_UCS4*>malloc((nodes + 1) * sizeof(Py_UCS4))
        self._labels = <Py_UCS4*>malloc((labels + 1) * sizeof(Py_UCS4))
        self._ranks = <int*>malloc((ranks + 1) * sizeof(int))
        if not (self._nodes and self._keys and self._labels and self._ranks):
            raise MemoryError()
        # From here on nothing raises: the router becomes consistent as a whole.
        self._count = count
        self._matchers = matchers
        self._regex_count = sum(1 for p in plans if p.kind == _REGEX)
        self.header_names = frozenset(name for p in plans for name, _, _ in p.headers)

        # The plans and the radix trees are temporaries; they are freed piecemeal here (and as
        # _lay_out goes) because dropping them whole at the end is one long deallocation.
        while plans:
            del plans[-_YIELD_EVERY:]
            _let_others_run()

        odd = {}
        for (op, host, port), rtree in trees:
            tree = self._lay_out(rtree)
            _let_others_run()
            if op < 0:
                self._nohost = tree
                continue
            n = len(host)
            if op == EXACT:
                bucket = self._exact.get(host)
                if bucket is None:
                    bucket = self._exact[host] = _new_bucket()
            elif op == SUFFIX and host.startswith(".") and n < 256:
                bucket = self._suffix.get(host)
                if bucket is None:
                    bucket = self._suffix[host] = _new_bucket()
                self._suffix_lens[n] = 1
            elif op == PREFIX_HOST and host.endswith(".") and n < 256:
                bucket = self._prefix.get(host)
                if bucket is None:
                    bucket = self._prefix[host] = _new_bucket()
                self._prefix_lens[n] = 1
            else:
                bucket = odd.get((op, host))
                if bucket is None:
                    bucket = odd[(op, host)] = _new_bucket()
                    self._odd.append((op, host, bucket))
            if port is None:
                bucket.any_port = tree
            else:
                if bucket.ports is None:
                    bucket.ports = {}
                bucket.ports[port] = tree

    cdef int _lay_out(self, object tree) except -1:
        """Copy one radix tree into the arena, breadth-first; returns its root's index.

        The tree is taken apart on the way (each node loses its children once they are queued,
        and its queue slot once placed), so its nodes are freed one by one, not all at the end.
        """
        cdef int root = self._nnodes, index, first, k
        self._nnodes += 1
        self._place(root, tree)
        queue = [(root, tree)]
        done = 0
        while done < len(queue):
            index, rnode = queue[done]
            queue[done] = None
            done += 1
            if done % _YIELD_EVERY == 0:
                _let_others_run()
            items = sorted(rnode.children.items())
            rnode.children = {}
            first = self._nnodes
            self._nnodes += len(items)
            self._nodes[index].child_off = first
            self._nodes[index].nchildren = len(items)
            for k in range(len(items)):
                self._keys[first + k] = ord(items[k][0])
                self._place(first + k, items[k][1])
                queue.append((first + k, items[k][1]))
        return root

    cdef int _place(self, int index, object rnode) except -1:
        cdef _TNode* node = &self._nodes[index]
        cdef str label = rnode.label
        cdef Py_ssize_t i
        node.label_off = self._nlabels
        node.label_len = len(label)
        for i in range(node.label_len):
            self._labels[self._nlabels + i] = label[i]
        self._nlabels += node.label_len
        node.child_off = 0
        node.nchildren = 0
        ranks = rnode.ranks
        node.ranks_off = self._nranks
        node.nranks = len(ranks)
        node.rank0 = ranks[0] if ranks else -1
        if node.nranks > 1:
            for i in range(node.nranks):
                self._ranks[self._nranks + i] = ranks[i]
            self._nranks += node.nranks
        return 0

    def release(self):
        """Empty the router and hand over its matchers (teardown of a retired snapshot).

        The router then matches nothing. Freeing a 10,000-route router's matchers at once is one
        long deallocation; the caller drops the returned list a slice at a time instead.
        """
        matchers = self._matchers
        self._reset()
        return matchers

    def __dealloc__(self):
        free(self._nodes)
        free(self._keys)
        free(self._labels)
        free(self._ranks)

    def __len__(self):
        return self._count

    def __repr__(self):
        hosts = len(self._exact) + len(self._suffix) + len(self._prefix) + len(self._odd)
        return (
            f"<Router routes={self._count} matchers={len(self._matchers)} "
            f"regex={self._regex_count} hosts={hosts}>"
        )

    def match(self, str method not None, str host not None, port, str path not None,
              headers=None, sni=None):
        """The highest-priority route matching the request, or None.

        See ``_router_py.Router.match`` for the parameters.
        """
        cdef _Span stack_items[_STACK_SPANS]
        cdef _Spans spans
        cdef _Span* sp
        cdef _Bucket bucket
        cdef Py_ssize_t i, hl, k, bi
        cdef int best, last, r
        cdef RouteMatch result
        cdef int kind = PyUnicode_KIND(path)
        cdef const void* data = PyUnicode_DATA(path)
        cdef Py_ssize_t end = len(path)
        spans.items = stack_items
        spans.n = 0
        spans.cap = _STACK_SPANS
        spans.heap = False
        if not PyUnicode_IS_ASCII(path) and has_surrogates(path):
            return None  # Kong's ATC refuses a non-UTF-8 path: no route
        try:
            hl = len(host)
            if hl:
                bucket = self._exact.get(host)
                if bucket is not None:
                    self._collect(bucket, port, kind, data, end, &spans)
                if self._suffix:
                    for i in range(hl):
                        if host[i] == u"." and hl - i < 256 and self._suffix_lens[hl - i]:
                            bucket = self._suffix.get(host[i:])
                            if bucket is not None:
                                self._collect(bucket, port, kind, data, end, &spans)
                if self._prefix:
                    for i in range(hl):
                        if host[i] == u"." and i + 1 < 256 and self._prefix_lens[i + 1]:
                            bucket = self._prefix.get(host[:i + 1])
                            if bucket is not None:
                                self._collect(bucket, port, kind, data, end, &spans)
                for op, value, odd_bucket in self._odd:
                    if host.endswith(value) if op == SUFFIX else host.startswith(value):
                        self._collect(odd_bucket, port, kind, data, end, &spans)
            if self._nohost >= 0:
                self._walk(self._nohost, kind, data, end, &spans)

            last = -1
            while True:
                best = INT_MAX
                bi = -1
                for k in range(spans.n):
                    sp = &spans.items[k]
                    if sp.i < sp.n:
                        r = sp.ranks[sp.i]
                        if r < best:
                            best = r
                            bi = k
                if bi < 0:
                    return None
                spans.items[bi].i += 1
                if best == last:
                    continue
                last = best
                result = self._try(
                    <_Matcher>PyList_GET_ITEM(self._matchers, best), method, path, headers, sni
                )
                if result is not None:
                    return result
        finally:
            if spans.heap:
                free(spans.items)

    cdef int _walk(self, int node, int kind, const void* data, Py_ssize_t end,
                   _Spans* spans) except -1:
        """Follow the path down one tree, pushing the rank array of every node passed."""
        cdef Py_ssize_t pos = 0, j
        cdef int lo, hi, mid
        cdef Py_UCS4 c, k
        cdef _TNode* n = &self._nodes[node]
        cdef _TNode* child
        cdef const Py_UCS4* label
        while True:
            if n.nranks == 1:
                _push(spans, &n.rank0, 1)
            elif n.nranks:
                _push(spans, self._ranks + n.ranks_off, n.nranks)
            if pos >= end or not n.nchildren:
                return 0
            c = PyUnicode_READ(kind, data, pos)
            lo = n.child_off
            hi = lo + n.nchildren
            while lo < hi:
                mid = (lo + hi) >> 1
                k = self._keys[mid]
                if k < c:
                    lo = mid + 1
                elif k > c:
                    hi = mid
                else:
                    break
            else:
                return 0
            child = &self._nodes[mid]
            if pos + child.label_len > end:
                return 0
            label = self._labels + child.label_off
            for j in range(1, child.label_len):
                if PyUnicode_READ(kind, data, pos + j) != label[j]:
                    return 0
            pos += child.label_len
            n = child

    cdef int _collect(self, _Bucket bucket, object port, int kind, const void* data,
                      Py_ssize_t end, _Spans* spans) except -1:
        if bucket.any_port >= 0:
            self._walk(bucket.any_port, kind, data, end, spans)
        if bucket.ports is not None:
            tree = bucket.ports.get(port)
            if tree is not None:
                self._walk(<int>tree, kind, data, end, spans)
        return 0

    cdef RouteMatch _try(self, _Matcher m, str method, str path, object headers, object sni):
        cdef RouteMatch result
        if m.methods is not None and method not in m.methods:
            return None
        if m.has_snis and sni is not None and not _sni_ok(m, sni):
            return None
        if m.headers and not _headers_ok(m.headers, headers):
            return None
        if m.kind == _REGEX:
            if m.regex_search is None:  # a lazy_regex build: compile at first use
                _set_regex(m, compile_lazily(m.regex_source))
            found = m.regex_search(path)
            if found is None:
                return None
            whole = found.group()
            result = RouteMatch.__new__(RouteMatch)
            result.matched_len = len(whole)
            result.captures = _captures(m, found, whole)
        else:
            result = RouteMatch.__new__(RouteMatch)
            result.matched_len = m.prefix_len
            result.captures = None
        result.key = m.key
        result.path = m.path
        return result
