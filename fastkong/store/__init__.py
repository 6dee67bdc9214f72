"""Counters for rate limiting: the node's shared table (:mod:`.local`) and Redis (:mod:`.redis`).

``local`` is one compiled, shared-memory table per node; ``redis`` is a pipelined client with the
Lua scripts that check and count every period in one round trip, and the batches of
``sync_rate`` mode. Nothing here knows about plugins or requests.
"""

from fastkong.store.local import node_table
from fastkong.store.redis import (
    RedisClient,
    RedisError,
    RedisOptions,
    RedisTimeout,
    RedisUnavailable,
    client_for,
)

__all__ = [
    "RedisClient",
    "RedisError",
    "RedisOptions",
    "RedisTimeout",
    "RedisUnavailable",
    "client_for",
    "node_table",
]
