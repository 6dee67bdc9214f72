# cython: cdivision=True
"""Compiled rate-limit counters shared by every worker process of a node.

Theory of operation
===================

Why shared memory
-----------------
Granian workers are processes, and Kong's ``policy: local`` is a per-*node* limit. Per-worker
counters would admit ``workers x limit``. So the counters live in one table mapped by every
worker (a file under ``/dev/shm``, or any path), and each operation is one atomic step on it:
check every window and count in all of them, or in none. Two workers with ``minute: 100``
admit exactly 100 requests per window, under any interleaving. Kong itself checks, then counts
later from a timer, so bursts overshoot; and we never count rejected requests.

The kernel never reads a clock: every call gets its ``now`` (or window starts) from the caller.

Memory layout
-------------
::

    0     header (64 B): magic "FKRLTBL\\0", version 1, slot size 64, slot count (2**k),
          probe window 16, lock mode (1 = these spinlocks, 2 = the twin's fcntl lock),
          evictions (atomic counter), reserved
    64    slot 0 (64 B = one cache line, so slots never share a line)
    128   slot 1 ...

    slot: lock u32 | ilock u32 | fp u64 | kind u32 | pad | expires i64 | start i64 | count i64 |
          prev i64 | spare i64

``fp`` is a 64-bit fingerprint of the key (XXH64-style hash of its UTF-8) mixed with the kind and,
for a fixed window, the window start, for a sliding window, its length: one slot is one counter.
Two keys with the same fingerprint would share a counter; at 2**-64 per pair we accept it, and we
store no key text, so slots stay fixed-size. ``fp == 0`` marks a slot never used.

``expires`` (ms) is the moment from which the slot's state is *as good as absent*: a fixed
window's end plus 1 s of grace for late requests (``(start + ttl) * 1000 + 1000``); a sliding
window's ``start + 2 * window`` (both halves have decayed); a token bucket's time to be full again.
Reusing an expired slot therefore never changes an answer. Kinds: 1 fixed window (start in
seconds, count), 2 sliding window (current window start in ms, current count, previous count),
3 token bucket (last refill in ms, micro-tokens).

Probing
-------
A key's *home* is ``fp & (slots - 1)``; it lives in one of the 16 slots from there (linear
probing, wrapping). A slot never returns to ``fp == 0``, so if a key sits at offset ``p`` every
slot before it is non-zero, and a lookup stops at the first never-used slot. To insert, take the
first slot that is never-used or expired; if all 16 hold live counters, *evict the stalest*: the
smallest ``expires``, the earliest in probe order on a tie. The header's ``evictions`` counts
these; a table that evicts is too small (size it to about twice the live counters: keys x
periods). An eviction forgets a live count, so that key may be admitted again in its window.

Locking
-------
Every slot has two spinlock words (test-and-test-and-set on ``__atomic`` builtins; the value is
the holder's pid, and a waiter takes over a lock whose holder no longer exists, so a worker
killed mid-operation cannot wedge the table):

* ``lock`` guards the slot's state. Lookups read ``fp`` without it (atomic loads), then lock the
  slot and check that ``fp`` and ``kind`` still match, retrying if the slot was reused meanwhile.
* ``ilock`` of a key's *home* slot serialises inserts of keys with that home: the inserter
  re-scans under it, so two processes never insert the same key twice (split counters would
  admit twice the limit). While holding it, it locks the chosen slot, checks it is still free
  (else starts over), writes ``kind`` then ``fp`` (release store) and drops ``ilock``.

Single-slot operations (one window, sliding window, token bucket) acquire the slot locked and
finish under that one lock. The several-key operations (``hit_windows``, ``sliding_windows``,
``token_buckets``: one key per period) first resolve each key to a slot (finding it, or claiming
it with its initial state, never evicting a slot of the same call), then lock the slots *in
ascending index order*, re-check every fingerprint, and only then check every limit and count
in all or none (``_lock_all``). A mismatch (a slot reused in between) releases everything
and starts over, up to 1000 times (then ``RuntimeError``: a table thrashing this hard is far too
small). No deadlock: at most one ``ilock`` is held, always before a slot lock and never while
waiting for anything but that one slot lock; slot locks are taken in index order. No Python
object is allocated while a slot lock is held (a GC callback must not run in a critical section).

Arithmetic
----------
Integers only, identical in the twin. Sliding window (Cloudflare / Kong RLA): with ``e`` ms
elapsed in the current window ``W``, the request is admitted iff
``prev * (W - e) + (cur + cost) * W <= limit * W``, computed in 128 bits; ``remaining`` is
``floor((limit * W - prev * (W - e)) / W) - cur``, the unit requests still admissible now.
Token bucket: micro-tokens, the rate rounded half up to micro-tokens per ms; a new bucket is
full; refill is ``min(cap, tokens + elapsed * rate)`` without overflow. A clock older than the
stored one (another worker got there first) never moves a window or a bucket back.

Complexity: O(periods) per call, each a scan of at most 16 cache lines (usually the first) and
one uncontended compare-and-swap; ``__repr__`` scans the table.
"""

from cpython.buffer cimport PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.unicode cimport PyUnicode_AsUTF8AndSize

import os

from fastkong._core import _ratelimit_py as _py
from fastkong._core._ratelimit_py import (
    _check_bucket,
    _check_many,
    _check_sliding,
    _check_windows,
    _duplicate,
    _micro_per_ms,
    _open_table,
)
from fastkong._core.windows import PERIOD_SECONDS, window_length, window_start

__all__ = ["PERIOD_SECONDS", "CounterTable", "key_hash", "window_length", "window_start"]

# The twin's constants, as C constants (checked against it below).
cdef enum:
    HEADER_SIZE = 64
    PROBE = 16
    KIND_WINDOW = 1
    KIND_SLIDING = 2
    KIND_BUCKET = 3
    MAX_KEYS = 8
    LATE_MS = 1000
    MAX_ROUNDS = 1000
    LOCK_ATOMIC = 1

cdef int64_t MICRO = 1000000
cdef int64_t MAX_WINDOW_MS = 1099511627776  # 2**40
cdef int64_t MAX_TOKENS = 1099511627776  # 2**40

assert (HEADER_SIZE, PROBE, KIND_WINDOW, KIND_SLIDING, KIND_BUCKET, MAX_KEYS, LATE_MS) == (
    _py.HEADER_SIZE, _py.PROBE, _py.KIND_WINDOW, _py.KIND_SLIDING, _py.KIND_BUCKET,
    _py.MAX_KEYS, _py.LATE_MS,
)
assert (MAX_ROUNDS, LOCK_ATOMIC, MICRO, MAX_WINDOW_MS, MAX_TOKENS) == (
    _py.MAX_ROUNDS, _py.LOCK_ATOMIC, _py.MICRO, _py.MAX_WINDOW_MS, _py.MAX_TOKENS,
)
assert sizeof(fk_header) == _py.HEADER_SIZE and sizeof(fk_slot) == _py.SLOT_SIZE


def _set_pid():
    fk_set_pid(os.getpid())


_set_pid()
os.register_at_fork(after_in_child=_set_pid)


cdef inline uint64_t _hash(object key) except? 0:
    cdef Py_ssize_t n
    cdef const char* p
    if not isinstance(key, str):
        raise TypeError(f"counter keys are str, not {type(key).__name__}")
    p = PyUnicode_AsUTF8AndSize(key, &n)
    return fk_hash(p, n)


def key_hash(key):
    """The 64-bit hash of ``key`` both implementations use (stable across processes and runs)."""
    return _hash(key)


cdef inline int64_t _floormod(int64_t a, int64_t b) noexcept nogil:
    return a - fk_floordiv(a, b) * b


cdef class CounterTable:
    """Rate-limit counters shared by every process that opens the same ``path``.

    Parameters
    ----------
    path:
        The table file (e.g. under ``/dev/shm``), created by the first process and opened by
        the others, which adopt its slot count; ``None`` for process-local memory.
    slots:
        Slot count when creating: a power of two from 16 to 2**24. Each slot is 64 bytes and
        holds one counter (one key in one fixed window, one sliding window or one bucket).
    """

    def __init__(self, path=None, Py_ssize_t slots=65536):
        if self._has_buf:
            raise RuntimeError("CounterTable is already open")
        mm, fd, n = _open_table(path, slots, LOCK_ATOMIC)
        if fd is not None:
            os.close(fd)  # the mapping keeps its own descriptor
        PyObject_GetBuffer(mm, &self._buf, PyBUF_WRITABLE)
        self._has_buf = True
        self._mm = mm
        self.path = path
        self.slots = n
        self._hdr = <fk_header*>self._buf.buf
        self._slots = <fk_slot*>(<char*>self._buf.buf + HEADER_SIZE)
        self._mask = <uint64_t>(n - 1)
        self._probe = min(PROBE, n)

    def __dealloc__(self):
        if self._has_buf:
            PyBuffer_Release(&self._buf)

    cdef int _check_open(self) except -1:
        if self._slots == NULL:
            raise ValueError("operation on a closed CounterTable")
        return 0

    # -- probing --------------------------------------------------------------------------------
    cdef Py_ssize_t _find(self, uint64_t fp, uint32_t kind) noexcept nogil:
        cdef Py_ssize_t j
        cdef uint64_t f
        cdef fk_slot* s
        for j in range(self._probe):
            s = &self._slots[(fp + <uint64_t>j) & self._mask]
            f = fk_load_u64(&s.fp)
            if f == fp and fk_load_u32(&s.kind) == kind:
                return <Py_ssize_t>((fp + <uint64_t>j) & self._mask)
            if f == 0:
                return -1
        return -1

    cdef Py_ssize_t _choose(
        self, uint64_t fp, int64_t now, const Py_ssize_t* excl, Py_ssize_t nexcl, bint* evict
    ) noexcept nogil:
        cdef Py_ssize_t j, e, idx, best = -1
        cdef int64_t expires, best_expires = 0
        cdef fk_slot* s
        for j in range(self._probe):
            idx = <Py_ssize_t>((fp + <uint64_t>j) & self._mask)
            for e in range(nexcl):
                if excl[e] == idx:
                    break
            else:
                s = &self._slots[idx]
                expires = fk_load_i64(&s.expires)
                if fk_load_u64(&s.fp) == 0 or expires <= now:
                    evict[0] = False
                    return idx
                if best < 0 or expires < best_expires:
                    best = idx
                    best_expires = expires
        evict[0] = True
        return best

    cdef Py_ssize_t _acquire(
        self, uint64_t fp, uint32_t kind, int64_t now, const Py_ssize_t* excl, Py_ssize_t nexcl,
        bint* fresh
    ) noexcept nogil:
        # Returns the slot holding (fp, kind), LOCKED; claimed if absent (then *fresh is set and
        # the caller writes its initial state before unlocking).
        cdef uint32_t* ilock = &self._slots[fp & self._mask].ilock
        cdef Py_ssize_t idx
        cdef fk_slot* s
        cdef bint evict
        while True:
            idx = self._find(fp, kind)
            if idx < 0:
                fk_lock(ilock)
                idx = self._find(fp, kind)
                if idx < 0:
                    idx = self._choose(fp, now, excl, nexcl, &evict)
                    s = &self._slots[idx]
                    fk_lock(&s.lock)
                    if s.fp != 0 and s.expires > now:
                        if not evict:  # taken meanwhile: look again
                            fk_unlock(&s.lock)
                            fk_unlock(ilock)
                            continue
                        fk_add_u64(&self._hdr.evictions, 1)
                    fk_store_u32(&s.kind, kind)
                    fk_store_u64(&s.fp, fp)
                    fk_unlock(ilock)
                    fresh[0] = True
                    return idx
                fk_unlock(ilock)
            s = &self._slots[idx]
            fk_lock(&s.lock)
            if s.fp == fp and s.kind == kind:
                fresh[0] = False
                return idx
            fk_unlock(&s.lock)

    cdef int _lock_all(
        self, const uint64_t* fps, uint32_t kind, Py_ssize_t n, int64_t now,
        const int64_t* init_a, const int64_t* init_b, Py_ssize_t* idx, Py_ssize_t* order
    ) except -1:
        # Returns with the slots of n distinct keys of one kind LOCKED (idx[i] is key i's slot).
        # Absent keys are claimed and given their initial state under their own lock first
        # (_init_state), so no other process ever sees a claimed slot without state; then all
        # are locked in slot order, so two callers never wait on each other in a cycle, and
        # checked to still hold their keys (a slot reused in between sends us round again).
        cdef Py_ssize_t i, j, k
        cdef bint fresh, valid
        cdef fk_slot* s
        cdef int rounds = 0
        while True:
            for i in range(n):
                k = self._find(fps[i], kind)
                if k < 0:
                    k = self._acquire(fps[i], kind, now, idx, i, &fresh)
                    if fresh:
                        _init_state(&self._slots[k], kind, init_a[i], init_b[i], now)
                    fk_unlock(&self._slots[k].lock)
                idx[i] = k
            for i in range(n):  # insertion sort of the slot indices
                j = i
                while j > 0 and idx[order[j - 1]] > idx[i]:
                    order[j] = order[j - 1]
                    j -= 1
                order[j] = i
            valid = True
            for j in range(1, n):
                if idx[order[j]] == idx[order[j - 1]]:
                    valid = False  # a slot was reused for another key of this call: again
            if valid:
                for j in range(n):
                    fk_lock(&self._slots[idx[order[j]]].lock)
                for i in range(n):
                    s = &self._slots[idx[i]]
                    if s.fp != fps[i] or s.kind != kind:
                        valid = False
                if valid:
                    return 0
                self._unlock_all(idx, order, n)
            rounds += 1
            if rounds >= MAX_ROUNDS:
                raise RuntimeError(
                    "counter slots were reused 1000 times in a row; the table is far too small"
                )

    cdef void _unlock_all(
        self, const Py_ssize_t* idx, const Py_ssize_t* order, Py_ssize_t n
    ) noexcept nogil:
        cdef Py_ssize_t j
        for j in range(n):
            fk_unlock(&self._slots[idx[order[j]]].lock)

    # -- fixed windows --------------------------------------------------------------------------
    def hit_windows(self, keys, window_starts, limits, ttls, int64_t cost=1, now_s=None):
        """Count one request in several fixed windows at once, or in none.

        If ``usage_i + cost <= limits[i]`` for every window ``i``, add ``cost`` to each and return
        ``(True, new usages)``; otherwise count nothing and return ``(False, current usages)``.

        Parameters
        ----------
        keys:
            One key per window, distinct per period (Kong's keys end with the period name).
        window_starts:
            The windows' starts in seconds (:func:`window_start`); part of the counter's identity.
        limits:
            The most each window may count.
        ttls:
            Seconds the counter must live after its window start: :func:`window_length`.
        cost:
            What this request counts (``>= 0``).
        now_s:
            The clock in seconds, used to recognise expired slots; default ``max(window_starts)``.
        """
        cdef Py_ssize_t n = len(keys), i, j, k
        cdef uint64_t fps[MAX_KEYS]
        cdef int64_t ws[MAX_KEYS]
        cdef int64_t lim[MAX_KEYS]
        cdef int64_t ttl[MAX_KEYS]
        cdef int64_t cnt[MAX_KEYS]
        cdef Py_ssize_t idx[MAX_KEYS]
        cdef Py_ssize_t order[MAX_KEYS]
        cdef int64_t now = 0
        cdef bint fresh, ok = False
        cdef fk_slot* s
        self._check_open()
        if (
            n < 1 or n > MAX_KEYS or cost < 0 or len(window_starts) != n or len(limits) != n
            or len(ttls) != n
        ):
            _check_windows(n, (len(window_starts), len(limits), len(ttls)), cost)
        for i in range(n):
            ws[i] = window_starts[i]
            lim[i] = limits[i]
            ttl[i] = ttls[i]
            fps[i] = fk_fingerprint(_hash(keys[i]), KIND_WINDOW, ws[i])
            for j in range(i):
                if fps[j] == fps[i]:
                    raise _duplicate()
            if i == 0 or ws[i] > now:
                now = ws[i]
        now = (now if now_s is None else <int64_t>now_s) * 1000

        if n == 1:
            k = self._acquire(fps[0], KIND_WINDOW, now, NULL, 0, &fresh)
            s = &self._slots[k]
            if fresh:
                _init_window(s, ws[0], ttl[0])
            ok = cost <= lim[0] - s.count
            if ok:
                s.count += cost
            cnt[0] = s.count
            fk_unlock(&s.lock)
            return ok, [cnt[0]]

        self._lock_all(fps, KIND_WINDOW, n, now, ws, ttl, idx, order)
        ok = True
        for i in range(n):
            cnt[i] = self._slots[idx[i]].count
            if cost > lim[i] - cnt[i]:
                ok = False
        if ok:
            for i in range(n):
                cnt[i] += cost
                self._slots[idx[i]].count = cnt[i]
        self._unlock_all(idx, order, n)
        return ok, [cnt[i] for i in range(n)]

    def usage(self, key, int64_t window_start):
        """What ``key`` has counted in the fixed window starting at ``window_start`` (0 if none)."""
        cdef uint64_t fp = fk_fingerprint(_hash(key), KIND_WINDOW, window_start)
        cdef Py_ssize_t k
        cdef fk_slot* s
        cdef int64_t c
        self._check_open()
        while True:
            k = self._find(fp, KIND_WINDOW)
            if k < 0:
                return 0
            s = &self._slots[k]
            fk_lock(&s.lock)
            if s.fp == fp and s.kind == KIND_WINDOW:
                c = s.count
                fk_unlock(&s.lock)
                return c
            fk_unlock(&s.lock)

    # -- sliding window -------------------------------------------------------------------------
    def sliding_window(
        self, key, int64_t now_ms, int64_t window_ms, int64_t limit, int64_t cost=1
    ):
        """Weighted two-window counter (Cloudflare, Kong rate-limiting-advanced ``sliding``).

        The estimate is ``previous * (window_ms - elapsed) / window_ms + current``, windows
        aligned to multiples of ``window_ms`` since the epoch; the request is admitted if the
        estimate plus ``cost`` stays within ``limit``. Returns ``(allowed, remaining, reset_ms)``:
        how many more unit requests would be admitted now, and the ms until the current window
        ends. A rejected request counts nothing.
        """
        cdef uint64_t fp
        cdef Py_ssize_t k
        cdef fk_slot* s
        cdef bint fresh, ok
        cdef int64_t start, cur, prev, now, w, room
        self._check_open()
        if window_ms <= 0 or window_ms > MAX_WINDOW_MS or limit < 0 or cost < 0:
            _check_sliding(window_ms, limit, cost)
        fp = fk_fingerprint(_hash(key), KIND_SLIDING, window_ms)
        k = self._acquire(fp, KIND_SLIDING, now_ms, NULL, 0, &fresh)
        s = &self._slots[k]
        if fresh:
            start = now_ms - _floormod(now_ms, window_ms)
            cur = 0
            prev = 0
        else:
            start = s.start
            cur = s.count
            prev = s.prev
        now = now_ms if now_ms > start else start
        w = now - _floormod(now, window_ms)
        if w == start + window_ms:
            prev = cur
            cur = 0
            start = w
        elif w > start:
            prev = 0
            cur = 0
            start = w
        room = fk_sliding_room(limit, window_ms, prev, now - start, cur)
        ok = cost <= room
        if ok:
            cur += cost
            room -= cost
        s.start = start
        s.count = cur
        s.prev = prev
        s.expires = start + 2 * window_ms
        fk_unlock(&s.lock)
        return ok, (room if room > 0 else 0), start + window_ms - now

    # -- token bucket ---------------------------------------------------------------------------
    def token_bucket(
        self, key, int64_t now_ms, double rate_per_sec, int64_t burst, int64_t cost=1
    ):
        """Token bucket holding up to ``burst`` tokens, refilled at ``rate_per_sec``.

        Counted in micro-tokens (integer arithmetic; the rate is rounded to whole micro-tokens
        per ms, so it must be at least 0.0005/s). A new bucket starts full. Returns
        ``(allowed, remaining whole tokens, retry_after_ms)``: 0 when allowed, else the ms until
        ``cost`` tokens are there, or -1 if ``cost`` exceeds ``burst`` (never admitted).
        """
        cdef int64_t rate = fk_micro_per_ms(rate_per_sec)
        cdef int64_t cap, need, tokens, last, gap, elapsed, retry
        cdef uint64_t fp
        cdef Py_ssize_t k
        cdef fk_slot* s
        cdef bint fresh, ok
        self._check_open()
        if rate < 0:
            _micro_per_ms(rate_per_sec)
        if burst < 0 or burst > MAX_TOKENS or cost < 0 or cost > MAX_TOKENS:
            _check_bucket(burst, cost)
        cap = burst * MICRO
        need = cost * MICRO
        fp = fk_fingerprint(_hash(key), KIND_BUCKET, 0)
        k = self._acquire(fp, KIND_BUCKET, now_ms, NULL, 0, &fresh)
        s = &self._slots[k]
        if fresh:
            tokens = cap
            last = now_ms
        else:
            tokens = s.count if s.count < cap else cap
            last = s.start
            if now_ms > last:
                gap = cap - tokens
                elapsed = now_ms - last
                if gap > 0:
                    if elapsed >= (gap + rate - 1) / rate:
                        tokens = cap
                    else:
                        tokens += elapsed * rate
                last = now_ms
        ok = need <= tokens
        if ok:
            tokens -= need
            retry = 0
        elif need <= cap:
            retry = (need - tokens + rate - 1) / rate
        else:
            retry = -1
        s.start = last
        s.count = tokens
        s.prev = 0
        s.expires = last + (cap - tokens + rate - 1) / rate
        fk_unlock(&s.lock)
        return ok, tokens / MICRO, retry

    # -- several periods at once ----------------------------------------------------------------
    def sliding_windows(self, keys, int64_t now_ms, windows_ms, limits, int64_t cost=1):
        """:meth:`sliding_window` for several keys (one per period) as one step: the request is
        admitted, and counted, in every window or in none. Returns ``(allowed, remaining per
        key, reset_ms per key)``."""
        cdef Py_ssize_t n = len(keys), i, j
        cdef uint64_t fps[MAX_KEYS]
        cdef int64_t win[MAX_KEYS]
        cdef int64_t lim[MAX_KEYS]
        cdef int64_t unused[MAX_KEYS]
        cdef int64_t start[MAX_KEYS]
        cdef int64_t cur[MAX_KEYS]
        cdef int64_t prev[MAX_KEYS]
        cdef int64_t at[MAX_KEYS]
        cdef int64_t room[MAX_KEYS]
        cdef Py_ssize_t idx[MAX_KEYS]
        cdef Py_ssize_t order[MAX_KEYS]
        cdef int64_t w
        cdef bint ok = True
        cdef fk_slot* s
        self._check_open()
        if n < 1 or n > MAX_KEYS or len(windows_ms) != n or len(limits) != n:
            _check_many(n, (len(windows_ms), len(limits)))
        for i in range(n):
            win[i] = windows_ms[i]
            lim[i] = limits[i]
            if win[i] <= 0 or win[i] > MAX_WINDOW_MS or lim[i] < 0 or cost < 0:
                _check_sliding(win[i], lim[i], cost)
            fps[i] = fk_fingerprint(_hash(keys[i]), KIND_SLIDING, win[i])
            for j in range(i):
                if fps[j] == fps[i]:
                    raise _duplicate()
        self._lock_all(fps, KIND_SLIDING, n, now_ms, win, unused, idx, order)
        for i in range(n):
            s = &self._slots[idx[i]]
            start[i] = s.start
            cur[i] = s.count
            prev[i] = s.prev
            at[i] = now_ms if now_ms > start[i] else start[i]  # a late clock stays in its window
            w = at[i] - _floormod(at[i], win[i])
            if w == start[i] + win[i]:
                prev[i] = cur[i]
                cur[i] = 0
                start[i] = w
            elif w > start[i]:
                prev[i] = 0
                cur[i] = 0
                start[i] = w
            room[i] = fk_sliding_room(lim[i], win[i], prev[i], at[i] - start[i], cur[i])
            if cost > room[i]:
                ok = False
        for i in range(n):
            if ok:
                cur[i] += cost
                room[i] -= cost
            s = &self._slots[idx[i]]
            s.start = start[i]
            s.count = cur[i]
            s.prev = prev[i]
            s.expires = start[i] + 2 * win[i]
        self._unlock_all(idx, order, n)
        return (
            ok,
            [(room[i] if room[i] > 0 else 0) for i in range(n)],
            [start[i] + win[i] - at[i] for i in range(n)],
        )

    def token_buckets(self, keys, int64_t now_ms, rates_per_sec, bursts, int64_t cost=1):
        """:meth:`token_bucket` for several keys (one per period) as one step: the request
        takes its tokens from every bucket or from none. Returns ``(allowed, whole tokens left
        per key, retry_after_ms per key)``."""
        cdef Py_ssize_t n = len(keys), i, j
        cdef uint64_t fps[MAX_KEYS]
        cdef int64_t rate[MAX_KEYS]
        cdef int64_t cap[MAX_KEYS]
        cdef int64_t unused[MAX_KEYS]
        cdef int64_t tokens[MAX_KEYS]
        cdef int64_t last[MAX_KEYS]
        cdef int64_t retry[MAX_KEYS]
        cdef Py_ssize_t idx[MAX_KEYS]
        cdef Py_ssize_t order[MAX_KEYS]
        cdef int64_t need, gap, elapsed, burst
        cdef bint ok = True
        cdef fk_slot* s
        self._check_open()
        if n < 1 or n > MAX_KEYS or len(rates_per_sec) != n or len(bursts) != n:
            _check_many(n, (len(rates_per_sec), len(bursts)))
        if cost < 0 or cost > MAX_TOKENS:
            _check_bucket(0, cost)
        need = cost * MICRO
        for i in range(n):
            rate[i] = fk_micro_per_ms(rates_per_sec[i])
            if rate[i] < 0:
                _micro_per_ms(rates_per_sec[i])
            burst = bursts[i]
            if burst < 0 or burst > MAX_TOKENS:
                _check_bucket(burst, cost)
            cap[i] = burst * MICRO
            fps[i] = fk_fingerprint(_hash(keys[i]), KIND_BUCKET, 0)
            for j in range(i):
                if fps[j] == fps[i]:
                    raise _duplicate()
        self._lock_all(fps, KIND_BUCKET, n, now_ms, cap, unused, idx, order)
        for i in range(n):
            s = &self._slots[idx[i]]
            tokens[i] = s.count if s.count < cap[i] else cap[i]
            last[i] = s.start
            if now_ms > last[i]:
                gap = cap[i] - tokens[i]
                elapsed = now_ms - last[i]
                if gap > 0:
                    if elapsed >= (gap + rate[i] - 1) / rate[i]:
                        tokens[i] = cap[i]
                    else:
                        tokens[i] += elapsed * rate[i]
                last[i] = now_ms
            if need > tokens[i]:
                ok = False
        for i in range(n):
            if ok:
                tokens[i] -= need
                retry[i] = 0
            elif need > cap[i]:
                retry[i] = -1
            elif need > tokens[i]:
                retry[i] = (need - tokens[i] + rate[i] - 1) / rate[i]
            else:
                retry[i] = 0  # this bucket had the tokens; another one did not
            s = &self._slots[idx[i]]
            s.start = last[i]
            s.count = tokens[i]
            s.prev = 0
            s.expires = last[i] + (cap[i] - tokens[i] + rate[i] - 1) / rate[i]
        self._unlock_all(idx, order, n)
        return ok, [tokens[i] / MICRO for i in range(n)], [retry[i] for i in range(n)]

    # -- lifecycle and state --------------------------------------------------------------------
    def close(self):
        """Unmap the table (the file stays for the other processes). Idempotent."""
        self._slots = NULL
        self._hdr = NULL
        if self._has_buf:
            PyBuffer_Release(&self._buf)
            self._has_buf = False
        if self._mm is not None:
            self._mm.close()
            self._mm = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def evictions(self):
        """Live counters dropped to make room since the table was created (all processes)."""
        self._check_open()
        return fk_load_u64(&self._hdr.evictions)

    def used(self):
        """Slots that ever held a counter (expired ones included, until they are reused)."""
        cdef Py_ssize_t i, n = 0
        self._check_open()
        for i in range(self.slots):
            if fk_load_u64(&self._slots[i].fp) != 0:
                n += 1
        return n

    def __repr__(self):
        if self._slots == NULL:
            return f"<CounterTable path={self.path} slots={self.slots} closed>"
        return (
            f"<CounterTable path={self.path} slots={self.slots} used={self.used()} "
            f"evictions={self.evictions}>"
        )


cdef inline void _init_window(fk_slot* s, int64_t start, int64_t ttl) noexcept nogil:
    s.start = start
    s.count = 0
    s.prev = 0
    s.expires = (start + ttl) * 1000 + LATE_MS


cdef inline void _init_state(
    fk_slot* s, uint32_t kind, int64_t a, int64_t b, int64_t now
) noexcept nogil:
    # A claimed slot's first state, as each operation would start from it: a fixed window (a =
    # its start in s, b = its ttl), a sliding window aligned on now (a = window ms), or a full
    # bucket (a = capacity in micro-tokens; "as good as absent" from the next ms).
    if kind == KIND_WINDOW:
        _init_window(s, a, b)
    elif kind == KIND_SLIDING:
        s.start = now - _floormod(now, a)
        s.count = 0
        s.prev = 0
        s.expires = s.start + 2 * a
    else:
        s.start = now
        s.count = a
        s.prev = 0
        s.expires = now + 1
