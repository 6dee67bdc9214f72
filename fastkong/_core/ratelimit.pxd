# The compiled counter table's header: the shared-memory layout, the atomics, and the typed state
# of CounterTable. Theory of operation: the docstring of ratelimit.pyx. The layout must match the
# struct formats of _ratelimit_py.py (_HEADER, _SLOT_*), which creates and checks the file.

from libc.stdint cimport int64_t, uint32_t, uint64_t


cdef extern from *:
    """
    #include <errno.h>
    #include <math.h>
    #include <sched.h>
    #include <signal.h>
    #include <stdint.h>
    #include <string.h>

    typedef struct {            /* 64 bytes, at offset 0 of the mapping */
        char magic[8];
        uint32_t version;
        uint32_t slot_size;
        uint64_t nslots;
        uint32_t probe;
        uint32_t lock_mode;
        uint64_t evictions;     /* atomic add */
        char reserved[24];
    } fk_header;

    typedef struct {            /* 64 bytes = one cache line; slot i at 64 + 64 * i */
        uint32_t lock;          /* 0 free, else the holder's pid: guards the rest of the slot */
        uint32_t ilock;         /* insert lock of the probe run that starts at this slot */
        uint64_t fp;            /* key fingerprint, 0 = never used; written under lock */
        uint32_t kind;          /* 1 fixed window, 2 sliding window, 3 token bucket */
        uint32_t pad;
        int64_t expires;        /* ms; from then on the slot is as good as empty */
        int64_t start;          /* window start (s) / current window start (ms) / last refill (ms) */
        int64_t count;          /* count / current window count / micro-tokens */
        int64_t prev;           /* previous window count (sliding) */
        int64_t spare;
    } fk_slot;

    /* ---- atomics (GCC/Clang __atomic builtins: x86_64, aarch64) ---- */
    static inline uint64_t fk_load_u64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    static inline uint32_t fk_load_u32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
    static inline int64_t fk_load_i64(const int64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
    static inline void fk_store_u32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
    static inline void fk_store_u64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
    static inline void fk_add_u64(uint64_t *p, uint64_t v) { __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }

    static inline void fk_cpu_relax(void) {
    #if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
    #elif defined(__aarch64__) || defined(__arm__)
        __asm__ __volatile__("yield" ::: "memory");
    #endif
    }

    static uint32_t fk_pid = 1;
    static void fk_set_pid(long pid) { fk_pid = (uint32_t)pid; }

    /* Test-and-test-and-set spinlock holding the owner's pid. Critical sections are a few dozen
       instructions with the GIL held, so waiting is short: spin with pause, then yield the CPU.
       A holder that died inside its critical section (SIGKILL, OOM) would wedge the slot, so a
       long waiter checks that the owner still exists and takes the lock over if it does not. */
    static void fk_lock(uint32_t *w) {
        uint32_t expected, owner;
        unsigned long spins = 0;
        for (;;) {
            expected = 0;
            if (__atomic_compare_exchange_n(w, &expected, fk_pid, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
                return;
            do {
                if (++spins < 256) {
                    fk_cpu_relax();
                } else {
                    sched_yield();
                    if ((spins & 4095) == 0) {
                        owner = __atomic_load_n(w, __ATOMIC_RELAXED);
                        if (owner != 0 && kill((pid_t)owner, 0) == -1 && errno == ESRCH
                            && __atomic_compare_exchange_n(w, &owner, fk_pid, 0,
                                                           __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
                            return;
                    }
                }
            } while (__atomic_load_n(w, __ATOMIC_RELAXED) != 0);
        }
    }
    static inline void fk_unlock(uint32_t *w) { __atomic_store_n(w, 0, __ATOMIC_RELEASE); }

    /* ---- hash: XXH64's 8-byte round and avalanche, little-endian words, zero-padded tail ---- */
    #define FK_P1 0x9E3779B185EBCA87ULL
    #define FK_P2 0xC2B2AE3D27D4EB4FULL
    #define FK_P3 0x165667B19E3779F9ULL
    #define FK_P4 0x85EBCA77C2B2AE63ULL
    #define FK_P5 0x27D4EB2F165667C5ULL
    static inline uint64_t fk_rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
    static inline uint64_t fk_mix(uint64_t h) {
        h ^= h >> 33; h *= FK_P2; h ^= h >> 29; h *= FK_P3; h ^= h >> 32; return h;
    }
    static inline uint64_t fk_round(uint64_t h, uint64_t w) {
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        w = __builtin_bswap64(w);
    #endif
        h ^= fk_rotl(w * FK_P2, 31) * FK_P1;
        return fk_rotl(h, 27) * FK_P1 + FK_P4;
    }
    static uint64_t fk_hash(const char *s, Py_ssize_t n) {
        uint64_t h = FK_P5 + (uint64_t)n, w;
        for (; n >= 8; s += 8, n -= 8) { memcpy(&w, s, 8); h = fk_round(h, w); }
        if (n > 0) { w = 0; memcpy(&w, s, (size_t)n); h = fk_round(h, w); }
        return fk_mix(h);
    }
    static inline uint64_t fk_fingerprint(uint64_t h, uint32_t kind, int64_t param) {
        uint64_t fp = fk_mix(h ^ ((uint64_t)param * FK_P1) ^ ((uint64_t)kind * FK_P4));
        return fp ? fp : 1;
    }

    /* ---- arithmetic shared with the twin, bit for bit ---- */
    /* rate (tokens/s) -> micro-tokens/ms rounded half up; -1 when out of range. The volatile
       keeps the product rounded to a double (no fused multiply-add), as in Python. */
    static int64_t fk_micro_per_ms(double rate) {
        volatile double xv = rate * 1000.0;
        double x = xv, q;
        if (!(x >= 0.5 && x < 4611686018427387904.0)) return -1;
        q = floor(x);
        return (int64_t)q + ((x - q) >= 0.5);
    }
    static inline int64_t fk_floordiv(int64_t a, int64_t b) {   /* b > 0 */
        int64_t q = a / b;
        return (a % b < 0) ? q - 1 : q;
    }
    /* floor((limit*W - prev*(W - elapsed)) / W) - cur, in 128 bits, clamped to int64. */
    static int64_t fk_sliding_room(int64_t limit, int64_t W, int64_t prev, int64_t elapsed, int64_t cur) {
        __int128 num = (__int128)limit * W - (__int128)prev * (W - elapsed);
        __int128 q = num / W;
        if (num % W < 0) q -= 1;
        q -= cur;
        if (q > INT64_MAX) return INT64_MAX;
        if (q < INT64_MIN) return INT64_MIN;
        return (int64_t)q;
    }
    """
    ctypedef struct fk_header:
        uint64_t nslots
        uint64_t evictions

    ctypedef struct fk_slot:
        uint32_t lock
        uint32_t ilock
        uint64_t fp
        uint32_t kind
        int64_t expires
        int64_t start
        int64_t count
        int64_t prev

    uint64_t fk_load_u64(const uint64_t* p) noexcept nogil
    uint32_t fk_load_u32(const uint32_t* p) noexcept nogil
    int64_t fk_load_i64(const int64_t* p) noexcept nogil
    void fk_store_u32(uint32_t* p, uint32_t v) noexcept nogil
    void fk_store_u64(uint64_t* p, uint64_t v) noexcept nogil
    void fk_add_u64(uint64_t* p, uint64_t v) noexcept nogil
    void fk_set_pid(long pid) noexcept nogil
    void fk_lock(uint32_t* w) noexcept nogil
    void fk_unlock(uint32_t* w) noexcept nogil
    uint64_t fk_hash(const char* s, Py_ssize_t n) noexcept nogil
    uint64_t fk_fingerprint(uint64_t h, uint32_t kind, int64_t param) noexcept nogil
    int64_t fk_micro_per_ms(double rate) noexcept nogil
    int64_t fk_floordiv(int64_t a, int64_t b) noexcept nogil
    int64_t fk_sliding_room(
        int64_t limit, int64_t W, int64_t prev, int64_t elapsed, int64_t cur
    ) noexcept nogil


cdef class CounterTable:
    cdef fk_header* _hdr
    cdef fk_slot* _slots            # NULL once closed
    cdef uint64_t _mask
    cdef Py_ssize_t _probe
    cdef Py_buffer _buf
    cdef bint _has_buf
    cdef object _mm
    cdef readonly object path
    cdef readonly Py_ssize_t slots

    cdef int _check_open(self) except -1
    cdef Py_ssize_t _find(self, uint64_t fp, uint32_t kind) noexcept nogil
    cdef Py_ssize_t _choose(
        self, uint64_t fp, int64_t now, const Py_ssize_t* excl, Py_ssize_t nexcl, bint* evict
    ) noexcept nogil
    cdef Py_ssize_t _acquire(
        self, uint64_t fp, uint32_t kind, int64_t now, const Py_ssize_t* excl, Py_ssize_t nexcl,
        bint* fresh
    ) noexcept nogil
    cdef int _lock_all(
        self, const uint64_t* fps, uint32_t kind, Py_ssize_t n, int64_t now,
        const int64_t* init_a, const int64_t* init_b, Py_ssize_t* idx, Py_ssize_t* order
    ) except -1
    cdef void _unlock_all(
        self, const Py_ssize_t* idx, const Py_ssize_t* order, Py_ssize_t n
    ) noexcept nogil
