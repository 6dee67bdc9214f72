"""Where the acme plugin keeps its account, certificates, locks and challenges.

Kong's plugin talks to a storage adapter of lua-resty-acme with five operations: ``get``,
``set`` (with an optional time to live), ``add`` (set only when absent: the issuance lock),
``delete`` and ``list`` (keys by prefix). Two are implemented here, under Kong's names:

``shm`` (the default): :class:`FileStorage`, a directory shared by every process of the node.
    Kong's ``shm`` is an nginx shared-memory zone: shared by the node's workers, lost on
    restart, so a restarted Kong orders every certificate again (and meets Let's Encrypt's
    rate limits). fastkong's processes do not share a heap, so the node's store is a directory
    in its prefix (``<prefix>/acme/<shm_name>``): one file per key (named by its SHA-256, the key
    inside), written to a temporary name and renamed over (a reader sees the old value or the
    new one, never half), and ``add`` made atomic across processes with ``flock`` on the
    directory's lock file. With a persistent
    prefix (a hostPath or a volume in Kubernetes) certificates survive a restart.
``redis``: :class:`RedisStorage`, shared by every node: lua-resty-acme's layout (the key, or
    ``<namespace>::<key>``), values as they are, ``SET ... PX`` for times to live and
    ``SET ... NX PX`` for ``add``, ``SCAN ... MATCH`` for ``list``. A Kong node and a fastkong
    node on one Redis read each other's certificates.

``kong`` (a database), ``consul`` and ``vault`` are refused when the config is loaded.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Final, Protocol

from fastkong.store.redis import RedisOptions, client_for

#: Kong's keys (``kong/plugins/acme/reserved_words.lua`` and lua-resty-acme's http-01 suffix),
#: shared by the plugin's checks, the edge and the manager.
RENEW_KEY_PREFIX: Final = "kong_acme:renew_config:"
RENEW_LAST_RUN_KEY: Final = "kong_acme:renew_last_run"
CERTKEY_KEY_PREFIX: Final = "kong_acme:cert_key:"
RESERVED_WORDS: Final = (RENEW_KEY_PREFIX, RENEW_LAST_RUN_KEY, CERTKEY_KEY_PREFIX)
CHALLENGE_SUFFIX: Final = "#http-01"


class AcmeStorage(Protocol):
    """lua-resty-acme's storage interface (values are text)."""

    async def get(self, key: str) -> str | None: ...
    async def set(self, key: str, value: str, ttl: float | None = None) -> None: ...
    async def add(self, key: str, value: str, ttl: float | None = None) -> bool: ...
    async def delete(self, key: str) -> None: ...
    async def list(self, prefix: str) -> list[str]: ...


def _file_name(key: str) -> str:
    # base64url keeps a short name (a zone's) one safe path segment
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def _record_name(key: str) -> str:
    # A key can be longer than a file name may be (a 253-byte host in a prefixed key): records
    # are named by the key's SHA-256 and hold the key itself, which ``list`` reads.
    return hashlib.sha256(key.encode()).hexdigest()


class FileStorage:
    """The node's store: one JSON file per key (``{"key", "value", "expires"}``) in
    ``directory``, named by the key's SHA-256."""

    __slots__ = ("directory",)

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def __repr__(self) -> str:
        return f"<FileStorage {self.directory}>"

    def _ensure(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    @staticmethod
    def _load(path: Path) -> dict[str, Any] | None:
        """A live record (None when missing, unreadable or expired)."""
        try:
            record = json.loads(path.read_bytes())
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or not isinstance(record.get("value"), str):
            return None
        expires = record.get("expires")
        if expires is not None and expires <= time.time():
            return None
        return record

    def read(self, key: str) -> str | None:
        """``get`` without awaiting (a local file read): the edge's SNI callback uses it."""
        record = self._load(self.directory / _record_name(key))
        return record["value"] if record is not None and record.get("key") == key else None

    def _write(self, key: str, value: str, ttl: float | None) -> None:
        self._ensure()
        record: dict[str, Any] = {"key": key, "value": value, "expires": None}
        if ttl is not None:
            record["expires"] = time.time() + ttl
        name = _record_name(key)
        tmp = self.directory / f".{name}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(json.dumps(record).encode())
        os.replace(tmp, self.directory / name)

    async def get(self, key: str) -> str | None:
        return self.read(key)

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        self._write(key, value, ttl)

    async def add(self, key: str, value: str, ttl: float | None = None) -> bool:
        self._ensure()
        # The check and the write happen under one exclusive lock every process of the node
        # takes, so two processes cannot both find the key absent (or expired).
        fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if self.read(key) is not None:
                return False
            self._write(key, value, ttl)
            return True
        finally:
            os.close(fd)  # releases the lock

    async def delete(self, key: str) -> None:
        (self.directory / _record_name(key)).unlink(missing_ok=True)

    async def list(self, prefix: str) -> list[str]:
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        keys = []
        for name in names:
            if name.startswith("."):
                continue
            record = self._load(self.directory / name)
            key = record.get("key") if record is not None else None
            if isinstance(key, str) and key.startswith(prefix):
                keys.append(key)
        return sorted(keys)


class RedisStorage:
    """The cluster's store in Redis (lua-resty-acme's key layout; see the module docstring)."""

    __slots__ = ("options", "namespace", "scan_count")

    def __init__(self, options: RedisOptions, namespace: str = "", scan_count: int = 10) -> None:
        self.options = options
        self.namespace = namespace
        self.scan_count = max(1, int(scan_count))

    def __repr__(self) -> str:
        return (
            f"<RedisStorage {self.options.host}:{self.options.port} namespace={self.namespace!r}>"
        )

    def _key(self, key: str) -> str:
        return f"{self.namespace}::{key}" if self.namespace else key

    async def _run(self, *args: Any) -> Any:
        return await client_for(self.options).execute(*args, key=str(args[1]).encode())

    async def get(self, key: str) -> str | None:
        value = await self._run("GET", self._key(key))
        return value.decode() if isinstance(value, bytes) else value

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        if ttl is None:
            await self._run("SET", self._key(key), value)
        else:
            await self._run("SET", self._key(key), value, "PX", max(1, int(ttl * 1000)))

    async def add(self, key: str, value: str, ttl: float | None = None) -> bool:
        if ttl is None:
            reply = await self._run("SET", self._key(key), value, "NX")
        else:
            reply = await self._run("SET", self._key(key), value, "NX", "PX", int(ttl * 1000))
        return reply is not None

    async def delete(self, key: str) -> None:
        await self._run("DEL", self._key(key))

    async def list(self, prefix: str) -> list[str]:
        client = client_for(self.options)
        pattern = _glob_escape(self._key(prefix)) + "*"
        cursor = b"0"
        found: set[str] = set()
        strip = len(self.namespace) + 2 if self.namespace else 0
        while True:
            cursor, keys = await client.execute(
                "SCAN", cursor, "MATCH", pattern, "COUNT", self.scan_count
            )
            found.update(k.decode()[strip:] for k in keys)
            if cursor in (b"0", 0, "0"):
                return sorted(found)


def _glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis MATCH pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def node_directory(shm_name: str, state_dir: Path | None = None) -> Path:
    """The ``shm`` store's directory: ``<prefix>/acme/<shm_name>``; the prefix is the node's
    (the directory of ``FASTKONG_STATE_FILE`` in its processes)."""
    if state_dir is None:
        state = os.environ.get("FASTKONG_STATE_FILE")
        state_dir = Path(state).parent if state else Path(tempfile.gettempdir()) / "fastkong"
    return state_dir / "acme" / _file_name(shm_name)


__all__ = ["AcmeStorage", "FileStorage", "RedisStorage", "node_directory"]
