"""The ``redis`` config record of Redis-backed plugins (Kong's ``kong/tools/redis/schema.lua``).

Kong's OSS fields, names and defaults: ``host``, ``port`` (6379), ``timeout`` (2000 ms),
``username``, ``password``, ``database`` (0), ``ssl``, ``ssl_verify``, ``server_name``. Plus
fastkong's Sentinel and Cluster fields, named as Kong Enterprise names them: ``sentinel_master``,
``sentinel_role``, ``sentinel_nodes`` (``host``, ``port`` 26379), ``sentinel_username``,
``sentinel_password``, ``cluster_nodes`` (``ip``, ``port`` 6379), ``cluster_max_redirections``
(5). :func:`redis_checks` is the record's part of a plugin's entity checks and
:func:`redis_options` turns it into the store's :class:`~fastkong.store.redis.RedisOptions`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from fastkong.config import checks as C
from fastkong.config import errors as E
from fastkong.config.schema import REFERENCEABLE, Host, Port
from fastkong.store.redis import RedisOptions

__all__ = ["ClusterNode", "RedisConfig", "SentinelNode", "redis_checks", "redis_options"]

TimeoutMs = Annotated[int, Meta(ge=0, le=2**31 - 2)]
LooseString = Annotated[str, Meta(min_length=0)]
Sni = Annotated[str, Meta(extra={"kong_check": C.check_sni})]


class SentinelNode(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    host: Host
    port: Port = 26379


class ClusterNode(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    ip: Host
    port: Port = 6379


class RedisConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    host: Host | None = None
    port: Port = 6379
    timeout: TimeoutMs = 2000
    username: Annotated[str, REFERENCEABLE] | None = None
    password: Annotated[LooseString, REFERENCEABLE] | None = None
    database: int = 0
    ssl: bool = False
    ssl_verify: bool = False
    server_name: Sni | None = None
    # fastkong extensions (Kong Enterprise's names)
    sentinel_master: str | None = None
    sentinel_role: Literal["master", "slave", "any"] | None = None
    sentinel_nodes: Annotated[list[SentinelNode], Meta(min_length=1)] | None = None
    sentinel_username: str | None = None
    sentinel_password: LooseString | None = None
    cluster_nodes: Annotated[list[ClusterNode], Meta(min_length=1)] | None = None
    cluster_max_redirections: Annotated[int, Meta(ge=0, le=100)] = 5


def redis_checks(redis: RedisConfig, at: str, prefix: str, if_field: str) -> list[tuple[str, str]]:
    """The record's checks when the plugin uses Redis.

    ``at`` is the record's path in the plugin config (``redis``), ``prefix`` its name in
    messages (``config.redis``), ``if_field`` the field that made Redis required.
    """
    out: list[tuple[str, str]] = []
    sentinel = redis.sentinel_master is not None or redis.sentinel_nodes is not None
    if sentinel and (redis.sentinel_master is None or redis.sentinel_nodes is None):
        fields = f"'{prefix}.sentinel_master', '{prefix}.sentinel_nodes'"
        out.append(("", E.MUTUALLY_REQUIRED.format(fields)))
    if sentinel and redis.cluster_nodes is not None:
        fields = f"'{prefix}.sentinel_master', '{prefix}.cluster_nodes'"
        out.append(("", E.MUTUALLY_EXCLUSIVE.format(fields)))
    if redis.host is None and not sentinel and redis.cluster_nodes is None:
        out.append((f"{at}.host", E.REQUIRED))
        out.append(("", E.CONDITIONAL.format(if_field)))
    return out


def redis_options(redis: RedisConfig, **overrides: Any) -> RedisOptions:
    """The store's connection options for ``redis`` (``overrides`` win, e.g. folded aliases)."""
    values: dict[str, Any] = {
        "host": redis.host,
        "port": redis.port,
        "timeout": redis.timeout / 1000.0,
        "username": redis.username,
        "password": redis.password,
        "database": redis.database,
        "ssl": redis.ssl,
        "ssl_verify": redis.ssl_verify,
        "server_name": redis.server_name,
    }
    values.update(overrides)
    if "timeout" in overrides:
        values["timeout"] = overrides["timeout"] / 1000.0
    return RedisOptions(
        **values,
        sentinel_master=redis.sentinel_master,
        sentinel_role=redis.sentinel_role or "master",
        sentinel_nodes=tuple((n.host, n.port) for n in redis.sentinel_nodes or ()),
        sentinel_username=redis.sentinel_username,
        sentinel_password=redis.sentinel_password,
        cluster_nodes=tuple((n.ip, n.port) for n in redis.cluster_nodes or ()),
        cluster_max_redirections=redis.cluster_max_redirections,
    )
