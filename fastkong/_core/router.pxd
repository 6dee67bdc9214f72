# The compiled router's header: typed state of every object the match walk touches.
# Theory of operation: the docstring of router.pyx.


cdef struct _Span:
    # A rank-sorted run of matcher ranks (one trie node's list) being merged.
    const int* ranks
    Py_ssize_t n
    Py_ssize_t i


cdef struct _Spans:
    _Span* items
    Py_ssize_t n
    Py_ssize_t cap
    bint heap


cdef class RouteMatch:
    cdef readonly object key
    cdef readonly object path
    cdef readonly Py_ssize_t matched_len
    cdef readonly object captures


cdef class _Matcher:
    cdef object key
    cdef object path
    cdef int kind
    cdef Py_ssize_t prefix_len
    cdef object regex_search      # bound Pattern.search, or None (not compiled yet)
    cdef object regex_source      # the pattern of a regex path, compiled at first use if need be
    cdef Py_ssize_t ngroups       # capture groups of the regex
    cdef tuple group_names        # ((name, index), ...) of its named groups
    cdef object methods           # frozenset, or None for any method
    cdef tuple headers            # ((name, frozenset equal, (search, ...)), ...)
    cdef bint has_snis
    cdef frozenset sni_exact
    cdef tuple sni_suffixes
    cdef tuple sni_prefixes


cdef struct _TNode:
    # A radix-tree node in the router's arena. Children are contiguous, keyed in _keys.
    int label_off                 # into Router._labels
    int label_len
    int child_off                 # index of the first child in Router._nodes
    int nchildren
    int ranks_off                 # into Router._ranks: the matchers indexed here, ascending
    int nranks
    int rank0                     # the first of them, inline (most nodes index one matcher)


cdef class _Bucket:
    cdef int any_port             # root node of the tree for any port, or -1
    cdef dict ports               # int port -> root node, or None


cdef class Router:
    cdef readonly frozenset header_names
    cdef list _matchers           # rank -> _Matcher
    cdef Py_ssize_t _count
    cdef Py_ssize_t _regex_count
    cdef dict _exact              # "api.example.com" -> _Bucket
    cdef dict _suffix             # ".example.com" -> _Bucket   (from "*.example.com")
    cdef dict _prefix             # "example." -> _Bucket       (from "example.*")
    cdef list _odd                # [(op, value, _Bucket)]: wildcards not cut at a dot
    cdef int _nohost              # root node of the tree of routes without hosts, or -1
    cdef _TNode* _nodes           # every tree, breadth-first: siblings are adjacent
    cdef Py_UCS4* _keys           # _keys[i]: first character of node i's label
    cdef Py_UCS4* _labels
    cdef int* _ranks
    cdef int _nnodes
    cdef int _nlabels
    cdef int _nranks
    cdef unsigned char _suffix_lens[256]
    cdef unsigned char _prefix_lens[256]

    cdef _reset(self)
    cdef _build(self, specs, bint lazy_regex)
    cdef int _lay_out(self, object tree) except -1
    cdef int _place(self, int index, object rnode) except -1
    cdef int _walk(self, int node, int kind, const void* data, Py_ssize_t end,
                   _Spans* spans) except -1
    cdef int _collect(self, _Bucket bucket, object port, int kind, const void* data,
                      Py_ssize_t end, _Spans* spans) except -1
    cdef RouteMatch _try(self, _Matcher m, str method, str path, object headers, object sni)
