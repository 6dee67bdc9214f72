"""The node's counter table: one :class:`CounterTable` per worker process, shared by the node.

``fastkong start`` passes every worker the table's path in ``FASTKONG_COUNTERS``; all workers
map the same file, so ``policy: local`` limits the *node* exactly (the check and the count are
one atomic step of the compiled core). Outside ``fastkong start`` (tests, another ASGI server)
the variable is unset and the table is anonymous memory of this process.

The table is opened on first use and kept across config reloads: counters survive a reload, as
Kong's shared dict does.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from fastkong._core import load

if TYPE_CHECKING:
    from fastkong._core import _ratelimit_py as ratelimit
else:
    ratelimit = load("ratelimit")

__all__ = ["ENV", "SLOTS", "CounterTable", "node_table", "reset_node_table"]

ENV = "FASTKONG_COUNTERS"
#: Slots of a table this module creates (64 B each: 4 MiB). A counter is one key in one window;
#: size for about twice the live counters (identifiers x periods) to avoid evictions.
SLOTS = 65536

CounterTable = ratelimit.CounterTable

_table: ratelimit.CounterTable | None = None


def node_table() -> ratelimit.CounterTable:
    """This process's handle on the node's counter table (opened once per process)."""
    return _table if _table is not None else _open()


def _open() -> ratelimit.CounterTable:
    global _table
    _table = ratelimit.CounterTable(os.environ.get(ENV) or None, SLOTS)
    return _table


def _forget() -> None:
    # A forked child opens its own handle (an anonymous table must not be shared by accident).
    global _table
    _table = None


os.register_at_fork(after_in_child=_forget)


def reset_node_table() -> None:
    """Close and forget the handle (tests): the next :func:`node_table` opens the table again."""
    global _table
    if _table is not None:
        _table.close()
    _table = None
