"""Pure-Python twin of the compiled counter table (``ratelimit.pyx``): same API, same answers.

The theory of operation (memory layout, locking, probing, eviction) is the docstring of
``ratelimit.pyx``. This twin uses the same file layout, hash, probe order and arithmetic, so a
single process gets identical results from both; what differs is the locking. The compiled core
takes per-slot spinlocks in the mapped memory; Python has no atomic compare-and-swap on a mapping,
so the twin serialises every operation behind one lock: a ``threading.Lock`` in the process, plus
an ``fcntl.lockf`` lock on the whole file across processes (the kernel drops it if a process dies).

The two lock disciplines do not exclude each other, so a table file belongs to the implementation
that created it (``lock_mode`` in the header); opening it with the other one raises ``ValueError``.
All workers of a node load the same implementation (``fastkong._core.load``), so this never
happens in practice.

The file handling (:func:`_open_table`) and the calendar helpers are shared with the compiled
module, which imports them from here.
"""

from __future__ import annotations

import fcntl
import functools
import math
import mmap
import os
import secrets
import struct
import threading
from collections.abc import Sequence
from typing import Self

from fastkong._core.windows import PERIOD_SECONDS, window_length, window_start

__all__ = [
    "PERIOD_SECONDS",
    "CounterTable",
    "key_hash",
    "window_length",
    "window_start",
]

# ---- layout (must match fk_header / fk_slot in ratelimit.pxd) --------------------------------
MAGIC = b"FKRLTBL\x00"
VERSION = 1
HEADER_SIZE = 64
SLOT_SIZE = 64
PROBE = 16
MIN_SLOTS = 16
MAX_SLOTS = 1 << 24
LOCK_ATOMIC = 1  # per-slot spinlocks: the compiled core
LOCK_FILE = 2  # one fcntl lock on the whole file: this twin
_HEADER = struct.Struct("=8sIIQIIQ24x")  # magic version slot_size nslots probe lock_mode evictions
_EVICTIONS_AT = 32
# Slot: lock u32, ilock u32 (the compiled core's), fp u64, kind u32, pad, expires, start, count,
# prev, spare (i64 each).
_SLOT_FP_KIND = struct.Struct("=QI")
_SLOT_STATE = struct.Struct("=qqqq")  # expires start count prev
_U64 = struct.Struct("=Q")
_I64 = struct.Struct("=q")
_FP_AT = 8
_EXPIRES_AT = 24
_COUNT_AT = 40


def _at(idx: int) -> int:
    return HEADER_SIZE + idx * SLOT_SIZE


# ---- semantics ----------------------------------------------------------------------------------
KIND_WINDOW = 1
KIND_SLIDING = 2
KIND_BUCKET = 3
MAX_KEYS = 8  # periods counted together by one hit_windows call
LATE_MS = 1000  # a window's counter outlives its ttl by this much (late requests still find it)
MICRO = 1_000_000  # micro-tokens per token
MAX_WINDOW_MS = 1 << 40
MAX_TOKENS = 1 << 40
MAX_ROUNDS = 1000  # retries of a multi-slot operation before giving up (compiled core only)

# ---- hash: XXH64's 8-byte round and avalanche over the key's UTF-8, little-endian words --------
_M = (1 << 64) - 1
P1 = 0x9E3779B185EBCA87
P2 = 0xC2B2AE3D27D4EB4F
P3 = 0x165667B19E3779F9
P4 = 0x85EBCA77C2B2AE63
P5 = 0x27D4EB2F165667C5


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _M


def _mix(h: int) -> int:
    h ^= h >> 33
    h = (h * P2) & _M
    h ^= h >> 29
    h = (h * P3) & _M
    return h ^ (h >> 32)


@functools.lru_cache(maxsize=4096)
def key_hash(key: str) -> int:
    """The 64-bit hash of ``key`` both implementations use (stable across processes and runs)."""
    if not isinstance(key, str):
        raise TypeError(f"counter keys are str, not {type(key).__name__}")
    b = key.encode()
    h = (P5 + len(b)) & _M
    for i in range(0, len(b), 8):
        w = int.from_bytes(b[i : i + 8], "little")
        h ^= (_rotl((w * P2) & _M, 31) * P1) & _M
        h = (_rotl(h, 27) * P1 + P4) & _M
    return _mix(h)


def _fingerprint(key: str, kind: int, param: int) -> int:
    fp = _mix(key_hash(key) ^ ((param * P1) & _M) ^ ((kind * P4) & _M))
    return fp or 1  # 0 marks a never-used slot


def _micro_per_ms(rate_per_sec: float) -> int:
    """Refill rate in micro-tokens per ms, rounded half up; exact twin of fk_micro_per_ms."""
    x = float(rate_per_sec) * 1000.0
    if not (0.5 <= x < 4611686018427387904.0):
        raise ValueError(f"rate_per_sec must be between 0.0005 and 4.6e15, not {rate_per_sec!r}")
    q = math.floor(x)
    return q + (x - q >= 0.5)


def _check_bucket(burst: int, cost: int) -> None:
    if not 0 <= burst <= MAX_TOKENS:
        raise ValueError(f"burst must be between 0 and 2**40, not {burst}")
    if not 0 <= cost <= MAX_TOKENS:
        raise ValueError(f"cost must be between 0 and 2**40, not {cost}")


def _check_sliding(window_ms: int, limit: int, cost: int) -> None:
    if not 0 < window_ms <= MAX_WINDOW_MS:
        raise ValueError(f"window_ms must be between 1 and 2**40, not {window_ms}")
    if limit < 0 or cost < 0:
        raise ValueError("limit and cost must not be negative")


def _check_windows(n: int, lengths: Sequence[int], cost: int) -> None:
    if not 1 <= n <= MAX_KEYS:
        raise ValueError(f"hit_windows counts 1 to {MAX_KEYS} windows at once, not {n}")
    if any(m != n for m in lengths):
        raise ValueError("keys, window_starts, limits and ttls must have the same length")
    if cost < 0:
        raise ValueError("cost must not be negative")


def _check_many(n: int, lengths: Sequence[int]) -> None:
    if not 1 <= n <= MAX_KEYS:
        raise ValueError(f"between 1 and {MAX_KEYS} keys are needed, got {n}")
    if any(length != n for length in lengths):
        raise ValueError("one value per key is needed")


def _duplicate() -> ValueError:
    return ValueError(
        "the same counter appears twice in one hit_windows call; "
        "give each period its own key (Kong's keys end with the period name)"
    )


# ---- the file -----------------------------------------------------------------------------------
def _size(nslots: int) -> int:
    return HEADER_SIZE + nslots * SLOT_SIZE


def _header(nslots: int, lock_mode: int) -> bytes:
    return _HEADER.pack(MAGIC, VERSION, SLOT_SIZE, nslots, PROBE, lock_mode, 0)


def _open_table(path: str | None, slots: int, lock_mode: int) -> tuple[mmap.mmap, int | None, int]:
    """Map a table: ``(mapping, fd or None, slot count)``.

    ``path=None`` maps private anonymous memory (process-local, copy-on-write after ``fork``).
    Otherwise the first process creates the file under a temporary name, sizes it, writes the
    header and publishes it with ``link`` (atomic, fails if the name exists), so no process ever
    sees a half-written header; the others open it and adopt its slot count.
    """
    if slots < MIN_SLOTS or slots > MAX_SLOTS or slots & (slots - 1):
        raise ValueError(f"slots must be a power of two from {MIN_SLOTS} to 2**24, not {slots}")
    if path is None:
        mm = mmap.mmap(-1, _size(slots), flags=mmap.MAP_PRIVATE)
        mm[:HEADER_SIZE] = _header(slots, lock_mode)
        return mm, None, slots
    fd = _open_or_create(path, slots, lock_mode)
    try:
        raw = os.pread(fd, HEADER_SIZE, 0)
        if len(raw) < HEADER_SIZE:
            raise ValueError(f"{path} is not a fastkong counter table (too short)")
        magic, version, slot_size, nslots, probe, mode, _ = _HEADER.unpack(raw)
        if magic != MAGIC:
            raise ValueError(f"{path} is not a fastkong counter table (bad magic)")
        if (version, slot_size, probe) != (VERSION, SLOT_SIZE, PROBE):
            raise ValueError(
                f"{path} is a counter table of another layout "
                f"(version {version}, slot size {slot_size}, probe {probe})"
            )
        if mode != lock_mode:
            raise ValueError(
                f"{path} was created by the {_IMPL[mode]}; open it with the same implementation "
                f"(this is the {_IMPL[lock_mode]})"
            )
        if os.fstat(fd).st_size < _size(nslots) or nslots < MIN_SLOTS or nslots & (nslots - 1):
            raise ValueError(f"{path} is not a fastkong counter table (bad size)")
        return mmap.mmap(fd, _size(nslots)), fd, nslots
    except BaseException:
        os.close(fd)
        raise


_IMPL = {LOCK_ATOMIC: "compiled core", LOCK_FILE: "pure-Python twin"}


def _open_or_create(path: str, slots: int, lock_mode: int) -> int:
    try:
        return os.open(path, os.O_RDWR)
    except FileNotFoundError:
        pass
    tmp = f"{path}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(fd, _size(slots))
        os.pwrite(fd, _header(slots, lock_mode), 0)
        os.link(tmp, path)
        return fd
    except FileExistsError:
        os.close(fd)
        return os.open(path, os.O_RDWR)
    except BaseException:
        os.close(fd)
        raise
    finally:
        os.unlink(tmp)


# ---- the table ----------------------------------------------------------------------------------
class CounterTable:
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

    __slots__ = ("path", "slots", "_mm", "_fd", "_mask", "_probe", "_tlock")

    def __init__(self, path: str | None = None, slots: int = 65536) -> None:
        self._mm: mmap.mmap | None = None
        self._fd: int | None = None
        self._mm, self._fd, self.slots = _open_table(path, slots, LOCK_FILE)
        self.path = path
        self._mask = self.slots - 1
        self._probe = min(PROBE, self.slots)
        self._tlock = threading.Lock()

    # -- locking
    def _lock(self) -> mmap.mmap:
        mm = self._mm
        if mm is None:
            raise ValueError("operation on a closed CounterTable")
        self._tlock.acquire()
        if self._fd is not None:
            try:
                fcntl.lockf(self._fd, fcntl.LOCK_EX)
            except BaseException:
                self._tlock.release()
                raise
        return mm

    def _unlock(self) -> None:
        if self._fd is not None:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)
        self._tlock.release()

    # -- probing (called with the lock held)
    def _find(self, mm: mmap.mmap, fp: int, kind: int) -> int:
        home = fp & self._mask
        for j in range(self._probe):
            idx = (home + j) & self._mask
            f, k = _SLOT_FP_KIND.unpack_from(mm, _at(idx) + _FP_AT)
            if f == fp and k == kind:
                return idx
            if f == 0:
                return -1
        return -1

    def _acquire(
        self, mm: mmap.mmap, fp: int, kind: int, now: int, exclude: Sequence[int] = ()
    ) -> tuple[int, bool]:
        """(slot, fresh): the slot holding (fp, kind), claimed if absent; fresh needs its state."""
        idx = self._find(mm, fp, kind)
        if idx >= 0:
            return idx, False
        home = fp & self._mask
        best, best_expires = -1, 0
        for j in range(self._probe):
            cand = (home + j) & self._mask
            if cand in exclude:
                continue
            (f,) = _U64.unpack_from(mm, _at(cand) + _FP_AT)
            (expires,) = _I64.unpack_from(mm, _at(cand) + _EXPIRES_AT)
            if f == 0 or expires <= now:
                best = cand
                break
            if best < 0 or expires < best_expires:
                best, best_expires = cand, expires
        else:
            (ev,) = _U64.unpack_from(mm, _EVICTIONS_AT)
            _U64.pack_into(mm, _EVICTIONS_AT, ev + 1)
        _SLOT_FP_KIND.pack_into(mm, _at(best) + _FP_AT, fp, kind)
        return best, True

    def _state(self, mm: mmap.mmap, idx: int) -> tuple[int, int, int, int]:
        expires, start, count, prev = _SLOT_STATE.unpack_from(mm, _at(idx) + _EXPIRES_AT)
        return expires, start, count, prev

    def _store(
        self, mm: mmap.mmap, idx: int, expires: int, start: int, count: int, prev: int
    ) -> None:
        _SLOT_STATE.pack_into(mm, _at(idx) + _EXPIRES_AT, expires, start, count, prev)

    # -- fixed windows
    def hit_windows(
        self,
        keys: Sequence[str],
        window_starts: Sequence[int],
        limits: Sequence[int],
        ttls: Sequence[int],
        cost: int = 1,
        now_s: int | None = None,
    ) -> tuple[bool, list[int]]:
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
        n = len(keys)
        _check_windows(n, (len(window_starts), len(limits), len(ttls)), cost)
        fps = [_fingerprint(keys[i], KIND_WINDOW, window_starts[i]) for i in range(n)]
        if len(set(fps)) != n:
            raise _duplicate()
        now = (max(window_starts) if now_s is None else now_s) * 1000
        mm = self._lock()
        try:
            idxs: list[int] = []
            counts: list[int] = []
            for i in range(n):
                idx, fresh = self._acquire(mm, fps[i], KIND_WINDOW, now, idxs)
                if fresh:
                    ws = window_starts[i]
                    self._store(mm, idx, (ws + ttls[i]) * 1000 + LATE_MS, ws, 0, 0)
                idxs.append(idx)
                counts.append(self._state(mm, idx)[2])
            if any(cost > limits[i] - counts[i] for i in range(n)):
                return False, counts
            for i in range(n):
                counts[i] += cost
                _I64.pack_into(mm, _at(idxs[i]) + _COUNT_AT, counts[i])
            return True, counts
        finally:
            self._unlock()

    def usage(self, key: str, window_start: int) -> int:
        """What ``key`` has counted in the fixed window starting at ``window_start`` (0 if none)."""
        fp = _fingerprint(key, KIND_WINDOW, window_start)
        mm = self._lock()
        try:
            idx = self._find(mm, fp, KIND_WINDOW)
            return self._state(mm, idx)[2] if idx >= 0 else 0
        finally:
            self._unlock()

    # -- sliding window
    def sliding_window(
        self, key: str, now_ms: int, window_ms: int, limit: int, cost: int = 1
    ) -> tuple[bool, int, int]:
        """Weighted two-window counter (Cloudflare, Kong rate-limiting-advanced ``sliding``).

        The estimate is ``previous * (window_ms - elapsed) / window_ms + current``, windows
        aligned to multiples of ``window_ms`` since the epoch; the request is admitted if the
        estimate plus ``cost`` stays within ``limit``. Returns ``(allowed, remaining, reset_ms)``:
        how many more unit requests would be admitted now, and the ms until the current window
        ends. A rejected request counts nothing.
        """
        allowed, remaining, resets = self.sliding_windows([key], now_ms, [window_ms], [limit], cost)
        return allowed, remaining[0], resets[0]

    # -- token bucket
    def token_bucket(
        self, key: str, now_ms: int, rate_per_sec: float, burst: int, cost: int = 1
    ) -> tuple[bool, int, int]:
        """Token bucket holding up to ``burst`` tokens, refilled at ``rate_per_sec``.

        Counted in micro-tokens (integer arithmetic; the rate is rounded to whole micro-tokens
        per ms, so it must be at least 0.0005/s). A new bucket starts full. Returns
        ``(allowed, remaining whole tokens, retry_after_ms)``: 0 when allowed, else the ms until
        ``cost`` tokens are there, or -1 if ``cost`` exceeds ``burst`` (never admitted).
        """
        allowed, tokens, retries = self.token_buckets([key], now_ms, [rate_per_sec], [burst], cost)
        return allowed, tokens[0], retries[0]

    # -- several periods at once
    def sliding_windows(
        self,
        keys: Sequence[str],
        now_ms: int,
        windows_ms: Sequence[int],
        limits: Sequence[int],
        cost: int = 1,
    ) -> tuple[bool, list[int], list[int]]:
        """:meth:`sliding_window` for several keys (one per period) as one step: the request
        is admitted, and counted, in every window or in none. Returns ``(allowed, remaining per
        key, reset_ms per key)``."""
        n = len(keys)
        _check_many(n, (len(windows_ms), len(limits)))
        for window_ms, limit in zip(windows_ms, limits, strict=True):
            _check_sliding(window_ms, limit, cost)
        fps = [_fingerprint(keys[i], KIND_SLIDING, windows_ms[i]) for i in range(n)]
        if len(set(fps)) != n:
            raise _duplicate()
        mm = self._lock()
        try:
            idxs: list[int] = []
            states: list[tuple[int, int, int, int]] = []  # start, cur, prev, now
            rooms: list[int] = []
            for i in range(n):
                w_ms = windows_ms[i]
                idx, fresh = self._acquire(mm, fps[i], KIND_SLIDING, now_ms, idxs)
                idxs.append(idx)
                if fresh:
                    start, cur, prev = now_ms - now_ms % w_ms, 0, 0
                else:
                    _, start, cur, prev = self._state(mm, idx)
                now = max(now_ms, start)  # a late clock never moves a window back
                w = now - now % w_ms
                if w == start + w_ms:
                    start, cur, prev = w, 0, cur
                elif w > start:
                    start, cur, prev = w, 0, 0
                states.append((start, cur, prev, now))
                rooms.append((limits[i] * w_ms - prev * (w_ms - (now - start))) // w_ms - cur)
            allowed = all(cost <= room for room in rooms)
            resets: list[int] = []
            for i in range(n):
                start, cur, prev, now = states[i]
                if allowed:
                    cur += cost
                    rooms[i] -= cost
                self._store(mm, idxs[i], start + 2 * windows_ms[i], start, cur, prev)
                resets.append(start + windows_ms[i] - now)
            return allowed, [max(room, 0) for room in rooms], resets
        finally:
            self._unlock()

    def token_buckets(
        self,
        keys: Sequence[str],
        now_ms: int,
        rates_per_sec: Sequence[float],
        bursts: Sequence[int],
        cost: int = 1,
    ) -> tuple[bool, list[int], list[int]]:
        """:meth:`token_bucket` for several keys (one per period) as one step: the request
        takes its tokens from every bucket or from none. Returns ``(allowed, whole tokens left
        per key, retry_after_ms per key)``."""
        n = len(keys)
        _check_many(n, (len(rates_per_sec), len(bursts)))
        rates = [_micro_per_ms(r) for r in rates_per_sec]
        for burst in bursts:
            _check_bucket(burst, cost)
        fps = [_fingerprint(keys[i], KIND_BUCKET, 0) for i in range(n)]
        if len(set(fps)) != n:
            raise _duplicate()
        need = cost * MICRO
        mm = self._lock()
        try:
            idxs: list[int] = []
            tokens: list[int] = []
            lasts: list[int] = []
            for i in range(n):
                cap, rate = bursts[i] * MICRO, rates[i]
                idx, fresh = self._acquire(mm, fps[i], KIND_BUCKET, now_ms, idxs)
                idxs.append(idx)
                if fresh:
                    have, last = cap, now_ms
                else:
                    _, last, have, _ = self._state(mm, idx)
                    have = min(have, cap)
                    if now_ms > last:
                        have = min(cap, have + (now_ms - last) * rate)
                        last = now_ms
                tokens.append(have)
                lasts.append(last)
            allowed = all(need <= have for have in tokens)
            retries: list[int] = []
            for i in range(n):
                cap, rate = bursts[i] * MICRO, rates[i]
                if allowed:
                    tokens[i] -= need
                    retries.append(0)
                elif need > cap:
                    retries.append(-1)
                elif need > tokens[i]:
                    retries.append(-((tokens[i] - need) // rate))
                else:
                    retries.append(0)  # this bucket had the tokens; another one did not
                expires = lasts[i] - ((tokens[i] - cap) // rate)
                self._store(mm, idxs[i], expires, lasts[i], tokens[i], 0)
            return allowed, [t // MICRO for t in tokens], retries
        finally:
            self._unlock()

    # -- lifecycle
    def close(self) -> None:
        """Unmap the table (the file stays for the other processes). Idempotent."""
        mm, self._mm = self._mm, None
        if mm is not None:
            mm.close()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        self.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def evictions(self) -> int:
        """Live counters dropped to make room since the table was created (all processes)."""
        mm = self._lock()
        try:
            (ev,) = _U64.unpack_from(mm, _EVICTIONS_AT)
            return int(ev)
        finally:
            self._unlock()

    def used(self) -> int:
        """Slots that ever held a counter (expired ones included, until they are reused)."""
        mm = self._lock()
        try:
            fps = memoryview(mm[HEADER_SIZE:]).cast("Q")[_FP_AT // 8 :: SLOT_SIZE // 8]
            return len(fps) - fps.tolist().count(0)
        finally:
            self._unlock()

    def __repr__(self) -> str:
        if self._mm is None:
            return f"<CounterTable path={self.path} slots={self.slots} closed>"
        return (
            f"<CounterTable path={self.path} slots={self.slots} used={self.used()} "
            f"evictions={self.evictions}>"
        )
