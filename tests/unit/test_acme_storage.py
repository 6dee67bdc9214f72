"""The acme plugin's two stores, one suite over both: a node directory (``shm``) and a real
redis-server (``redis``), plus the store's key layout in Redis as lua-resty-acme writes it."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastkong.acme.storage import AcmeStorage, FileStorage, RedisStorage, node_directory
from fastkong.store.redis import RedisOptions
from tests.redis_server import RedisServer


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["file", "redis", "redis-namespaced"])
async def storage(
    request: pytest.FixtureRequest, tmp_path: Path, redis: RedisServer
) -> AsyncIterator[AcmeStorage]:
    if request.param == "file":
        yield FileStorage(tmp_path / "acme")
        return
    redis.flush()
    namespace = "ns" if request.param == "redis-namespaced" else ""
    yield RedisStorage(RedisOptions(host="127.0.0.1", port=redis.port), namespace, scan_count=2)


async def test_get_set_delete(storage: AcmeStorage) -> None:
    assert await storage.get("kong_acme:cert_key:a.example") is None
    await storage.set("kong_acme:cert_key:a.example", '{"cert": "c"}')
    assert await storage.get("kong_acme:cert_key:a.example") == '{"cert": "c"}'
    await storage.set("kong_acme:cert_key:a.example", "second")
    assert await storage.get("kong_acme:cert_key:a.example") == "second"
    await storage.delete("kong_acme:cert_key:a.example")
    assert await storage.get("kong_acme:cert_key:a.example") is None
    await storage.delete("never-there")  # deleting a missing key is no error


async def test_time_to_live(storage: AcmeStorage) -> None:
    await storage.set("short", "v", ttl=0.2)
    await storage.set("long", "v", ttl=60)
    assert await storage.get("short") == "v"
    await asyncio.sleep(0.35)
    assert await storage.get("short") is None
    assert await storage.get("long") == "v"


async def test_add_is_set_if_absent_and_an_expired_key_is_absent(storage: AcmeStorage) -> None:
    assert await storage.add("kong_acme:update_lock:h", "placeholder", 0.2)
    assert not await storage.add("kong_acme:update_lock:h", "other", 0.2)
    assert await storage.get("kong_acme:update_lock:h") == "placeholder"
    await asyncio.sleep(0.35)
    assert await storage.add("kong_acme:update_lock:h", "after", 30)
    assert await storage.get("kong_acme:update_lock:h") == "after"


async def test_list_by_prefix(storage: AcmeStorage) -> None:
    for host in ("a.example", "b.example", "c.example"):
        await storage.set(f"kong_acme:renew_config:{host}", json.dumps({"host": host}))
    await storage.set("kong_acme:cert_key:a.example", "x")
    await storage.set("kong_acme:renew_config:gone", "x", ttl=0.1)
    await storage.set("kong_acme:renew_config*literal", "x")  # a glob character stays literal
    await asyncio.sleep(0.2)
    assert await storage.list("kong_acme:renew_config:") == [
        "kong_acme:renew_config:a.example",
        "kong_acme:renew_config:b.example",
        "kong_acme:renew_config:c.example",
    ]
    assert await storage.list("kong_acme:renew_config*") == ["kong_acme:renew_config*literal"]
    assert await storage.list("nothing:") == []


async def test_a_key_longer_than_a_file_name(storage: AcmeStorage) -> None:
    host = ".".join(["a" * 63] * 3) + ".example"  # 200 bytes: its base64 would not fit in 255
    key = f"kong_acme:cert_key:{host}"
    await storage.set(key, "pem", ttl=60)
    assert await storage.get(key) == "pem"
    assert await storage.list("kong_acme:cert_key:") == [key]
    assert await storage.add(f"kong_acme:update_lock:{host}", "p", 30)


@settings(max_examples=40, deadline=None)
@given(key=st.text(min_size=1, max_size=80), value=st.text(max_size=200))
def test_any_key_and_value_round_trip_through_the_node_directory(key: str, value: str) -> None:
    async def run(directory: Path) -> None:
        storage = FileStorage(directory)
        await storage.set(key, value)
        assert await storage.get(key) == value
        assert key in await storage.list(key[:1])

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(Path(tmp)))


async def test_redis_keys_are_lua_resty_acme_s(redis: RedisServer) -> None:
    redis.flush()
    options = RedisOptions(host="127.0.0.1", port=redis.port)
    await RedisStorage(options, "team").set("kong_acme:cert_key:a.example", "v")
    await RedisStorage(options).set("plain", "w", ttl=30)
    assert redis.cli("GET", "team::kong_acme:cert_key:a.example") == "v"
    assert redis.cli("GET", "plain") == "w"
    assert 0 < int(redis.cli("PTTL", "plain")) <= 30_000
    # and a key Kong wrote is read back
    redis.cli("SET", "team::kong_acme:renew_config:b.example", '{"host":"b.example"}')
    listed = await RedisStorage(options, "team").list("kong_acme:renew_config:")
    assert listed == ["kong_acme:renew_config:b.example"]


def _contend(directory: str, results: multiprocessing.Queue[bool]) -> None:
    async def take() -> bool:
        return await FileStorage(Path(directory)).add("kong_acme:update_lock:h", "p", 30)

    results.put(asyncio.run(take()))


def test_one_process_of_many_takes_the_node_lock(tmp_path: Path) -> None:
    """``add`` is the issuance lock of every process of the node: exactly one wins."""
    ctx = multiprocessing.get_context("fork")
    results: multiprocessing.Queue[bool] = ctx.Queue()
    procs = [ctx.Process(target=_contend, args=(str(tmp_path), results)) for _ in range(8)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=20) for _ in procs]
    for proc in procs:
        proc.join(timeout=20)
    assert sorted(outcomes) == [False] * 7 + [True]


def test_node_directory_is_in_the_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASTKONG_STATE_FILE", str(tmp_path / "state"))
    assert node_directory("kong").parent == tmp_path / "acme"
    assert node_directory("kong", Path("/srv")).parent == Path("/srv/acme")
    assert node_directory("a/b") != node_directory("a_b")  # a zone name never escapes
    assert "/" not in node_directory("../../etc").name


def test_file_records_are_replaced_whole(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path)
    asyncio.run(storage.set("k", "v" * 10_000, ttl=60))
    (record,) = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    data = json.loads(record.read_text())
    assert data["value"] == "v" * 10_000 and data["expires"] > time.time() and data["key"] == "k"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
