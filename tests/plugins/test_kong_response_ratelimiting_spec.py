"""Kong's response-ratelimiting access and Redis specs, ported:
``spec/03-plugins/24-response-rate-limiting/04-access_spec.lua`` (l. 130-1018) and
``05-integration_spec.lua`` (l. 22-325), against real gateways, a real upstream (below) and a
real ``redis-server`` (plain and TLS ports, ``tests/redis_server.py``).

Kong's loops become parameters. ``store``: ``local`` and ``redis`` with Kong's three
``redis_confs`` (``redis``: no_ssl; ``redis-tls-verify``: a throwaway CA trusted through
``KONG_LUA_SSL_TRUSTED_CERTIFICATE``, ``server_name`` its certificate's name;
``redis-tls-no-verify``: an unknown ``server_name``, not verified). Kong starts one Kong per
``describe``; here one gateway holds every route-scoped case of every store (hosts
``<store>.<case>.test``) and 05's routes, one more holds the four stores' consumer-scoped plugins
(04 l. 711-765: a global key-auth), and one per store holds its global plugin (04 l. 767-828: a
config has one global response-ratelimiting plugin). They start side by side.

Kong's ``mock_upstream`` is :class:`MockUpstream`: ``/response-headers?k=v`` answers the query
arguments as response headers (a repeated one joined with ", ", as ``send_text_response``);
every path answers JSON ``{"headers": <the request's headers>}`` (``/get``, ``/status/200``).

Windows: Kong's limits are per ``second`` and ``wait_server_sync`` starts each case at a new
second. Here Kong's ``second`` is ``minute`` and its ``minute`` is ``hour`` (the headers are
named accordingly: ``x-ratelimit-remaining-video-minute``), and each case starts with
:func:`fresh_window` (waits for the next minute only when this one ends within a few seconds),
so a case never straddles a boundary, under load too. Every case has routes of its own, so the
minute-long counters of one case never meet another's (test1 gets a twin, test1b, for ``blocks if
exceeding limit``; test3's two cases count two consumers apart). ``expires a counter`` keeps
``second`` (its point is the window's end). Kong's ``wait_remaining_sync`` (its Redis counts land
from a timer) is :func:`sync`, a poll with a deadline.

Redis databases: 04 uses 1 (Kong's; ``expire1`` 0, as Kong's), except the global plugins of
the TLS stores (14 and 15: a global plugin's keys name no route, so the three would share them);
05's four routes per strategy use 2-5, 6-9, 10-13 (Kong runs one strategy at a time on 1-4,
flushing Redis between).

Covered by ``test_response_ratelimiting`` (not repeated here): ``hide_client_headers`` with
``policy: local`` (``test_hidden_headers_and_a_custom_price_header``) and 04's ``fault tolerance``
for Redis (l. 941-1012, a dead Redis with and without ``fault_tolerant``:
``test_a_dead_redis_is_tolerated_or_not``).

Left out:

* ``policy: cluster`` (04's third policy; 04 l. 831-939, pending in Kong too): needs a database
  (``response_ratelimiting_metrics``); DB-less refuses it (``test_response_ratelimiting::
  test_schema``).
* ``02-policies_spec.lua`` (whole file): ``policies.cluster.usage/increment`` against a database
  only (the ``cluster`` policy, above).
* 05 l. 327-489 (``creating rate-limiting plugins using api``): Admin API ``POST/DELETE
  /plugins`` (DB-less has no entity CRUD) and Kong's log-file deprecation lines; the legacy
  ``redis_*`` fields are covered by ``test_response_ratelimiting::test_schema``.
* 04 l. 444-461 (``returns remaining counter #grpc``): a plain gRPC call cannot be proxied by
  fastkong (README "Kong compatibility notes": Granian's ASGI carries no HTTP/2 trailers; a
  ``grpc`` service is reached over HTTP/1.1 and the call ends in a 502 "An invalid response was
  received from the upstream server").
* Hybrid mode: none in these files.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from tests.helpers import Gateway, LoopServer, eventually, free_port, read_request, wait_port
from tests.pki import Pki
from tests.redis_server import RedisServer, redis_cli

pytestmark = [pytest.mark.integration, pytest.mark.redis]

STORES = ("local", "redis", "redis-tls-verify", "redis-tls-no-verify")
REDIS_STORES = STORES[1:]
N = 6  # Kong's ITERATIONS
SNI = "redis.test"
DB_ACCESS = 1  # Kong's REDIS_DATABASE
DB_GLOBAL = {"redis": 1, "redis-tls-verify": 14, "redis-tls-no-verify": 15}
INTEGRATION_DBS = {
    "redis": (2, 3, 4, 5),
    "redis-tls-verify": (6, 7, 8, 9),
    "redis-tls-no-verify": (10, 11, 12, 13),
}
REDIS_USER_VALID, REDIS_USER_INVALID, REDIS_PASSWORD = (
    "response-ratelimit-user",
    "some-user",
    "secret",
)
CONSUMER_123 = "00000000-0000-4000-8000-000000000123"
CONSUMER_124 = "00000000-0000-4000-8000-000000000124"
MARGIN = 8.0  # seconds a minute-long case may take, load included


class MockUpstream(LoopServer):
    """Kong's ``mock_upstream`` as these specs use it (module docstring)."""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await read_request(reader)
                path, _, query = request.target.partition("?")
                extra = b""
                if path == "/response-headers":
                    args: dict[str, list[str]] = {}
                    for name, value in parse_qsl(query, keep_blank_values=True):
                        args.setdefault(name, []).append(value)
                    lines = "".join(f"{k}: {', '.join(v)}\r\n" for k, v in args.items())
                    extra = lines.encode("latin-1")
                body = json.dumps({"headers": request.lowered, "url": request.target}).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    + extra
                    + b"content-length: %d\r\n\r\n%s" % (len(body), body)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


# -- config -------------------------------------------------------------------------------------
def redis_record(ports: tuple[int, int], store: str, database: int, **extra: Any) -> dict:
    plain, tls = ports
    record: dict[str, Any] = {"host": "127.0.0.1", "port": plain, "database": database}
    if store == "redis-tls-verify":
        record.update(port=tls, ssl=True, ssl_verify=True, server_name=SNI)
    elif store == "redis-tls-no-verify":
        server_name = "really.really.really.does.not.exist.host.test"
        record.update(port=tls, ssl=True, ssl_verify=False, server_name=server_name)
    return record | extra


def rrl(ports: tuple[int, int], store: str, limits: dict, **config: Any) -> dict:
    """A response-ratelimiting plugin for ``store`` (Kong's: ``fault_tolerant = false``, the
    store's ``redis`` record on database 1, ``password = ""``)."""
    config = {"fault_tolerant": False, "limits": limits, **config}
    config["policy"] = "local" if store == "local" else "redis"
    if store != "local":
        config.setdefault("redis", redis_record(ports, store, DB_ACCESS, password=""))
    return {"name": "response-ratelimiting", "config": config}


def video(minute: int, hour: int | None = None) -> dict:
    return {"minute": minute} | ({"hour": hour} if hour else {})


def route(name: str, host: str, plugins: list[dict], **extra: Any) -> dict:
    return {"name": name, "hosts": [host], "plugins": plugins, **extra}


def access_config(ports: tuple[int, int], store: str, upstream: str) -> dict:
    """04 l. 140-414 and 651-683 for ``store``: routes ``<store>.testN.test`` (Kong's hosts)."""

    def host(name: str) -> str:
        return f"{store}.{name}.test"

    def plugin(limits: dict, **config: Any) -> dict:
        return rrl(ports, store, limits, **config)

    routes = [
        route(f"{store}-1", host("test1"), [plugin({"video": video(N)})]),
        # test1's twin for ``blocks if exceeding limit``: Kong's test1 starts that case with a
        # new second's counter, here a minute-long one spent by the case before
        route(f"{store}-1b", host("test1b"), [plugin({"video": video(N)})]),
        route(
            f"{store}-2",
            host("test2"),
            [plugin({"video": video(N * 2, N * 4), "image": video(N)})],
        ),
        route(
            f"{store}-3",
            host("test3"),
            [
                {"name": "key-auth"},
                # Kong's route-level plugin here: its own redis record (the plain port) and
                # fault_tolerant left to its default (l. 212-224)
                plugin(
                    {"video": video(N - 3)},
                    fault_tolerant=True,
                    redis={"host": "127.0.0.1", "port": ports[0], "password": "", "database": 1},
                ),
            ],
        ),
        route(
            f"{store}-4", host("test4"), [plugin({"video": video(N * 2 + 2), "image": video(N)})]
        ),
        route(
            f"{store}-7",
            host("test7"),
            [
                plugin(
                    {"video": video(N, N * 2), "image": video(4)},
                    block_on_first_violation=True,
                )
            ],
        ),
        route(
            f"{store}-8", host("test8"), [plugin({"video": video(N, N * 2), "image": video(N - 1)})]
        ),
        route(f"{store}-9", host("test9"), [plugin({"video": video(N)}, hide_client_headers=True)]),
    ]
    expire = plugin({"video": {"second": N}})  # 04 l. 661-676: no database (0)
    if store != "local":
        expire["config"]["redis"] = redis_record(ports, store, 0, password="")
    routes.append(route(f"{store}-expire", host("expire1"), [expire]))
    service10 = {
        "name": f"{store}-service10",
        "url": upstream,
        "routes": [route(f"{store}-service10-{i}", host(f"test-service{i}"), []) for i in (1, 2)],
        "plugins": [plugin({"video": video(N)})],
    }
    consumer_route = plugin({"video": video(N - 2)})  # 04 l. 226-243
    consumer_route.update(route=f"{store}-3", consumer=CONSUMER_123)
    return {
        "services": [
            {"name": f"{store}-mock", "url": upstream, "routes": routes},
            service10,
        ],
        "plugins": [consumer_route],
    }


def integration_routes(ports: tuple[int, int], store: str) -> list[dict]:
    """05 l. 89-179: four routes on Redis databases of their own, two with users."""
    users: list[dict] = [
        {},
        {},
        {"username": REDIS_USER_VALID, "password": REDIS_PASSWORD},
        {"username": REDIS_USER_INVALID, "password": REDIS_PASSWORD},
    ]
    out = []
    for n, (db, user) in enumerate(zip(INTEGRATION_DBS[store], users, strict=True), 1):
        record = redis_record(ports, store, db, timeout=10000, **user)
        plugin = rrl(ports, store, {"video": {"minute": 6}}, redis=record)
        out.append(route(f"it-{store}-{n}", f"redistest{n}.{store}.test", [plugin]))
    return out


def main_config(ports: tuple[int, int], upstream: str) -> dict:
    services: list[dict] = []
    plugins: list[dict] = []
    for store in STORES:
        part = access_config(ports, store, upstream)
        services += part["services"]
        plugins += part["plugins"]
    it_routes = [r for store in REDIS_STORES for r in integration_routes(ports, store)]
    services.append({"name": "integration", "url": upstream, "routes": it_routes})
    consumers = [
        {"id": cid, "custom_id": f"provider_{n}", "keyauth_credentials": [{"key": f"apikey{n}"}]}
        for cid, n in ((CONSUMER_123, 123), (CONSUMER_124, 124))
    ]
    return {"services": services, "plugins": plugins, "consumers": consumers}


def six_routes(upstream: str) -> list[dict]:
    """``for i = 1, ITERATIONS do bp.routes:insert({ hosts = { "test<i>.test" } })``."""
    routes = [route(f"r{i}", f"test{i}.test", []) for i in range(1, N + 1)]
    return [{"name": "mock", "url": upstream, "routes": routes}]


def single_consumer_config(ports: tuple[int, int], upstream: str) -> dict:
    """04 l. 713-755, a consumer per store: global key-auth, consumer-scoped plugins."""
    consumers, plugins = [], [{"name": "key-auth"}]
    for i, store in enumerate(STORES):
        cid = f"00000000-0000-4000-8000-00000000126{i}"
        consumers.append(
            {
                "id": cid,
                "custom_id": f"provider_126-{store}",
                "keyauth_credentials": [{"key": f"apikey126-{store}"}],
            }
        )
        plugin = rrl(ports, store, {"video": video(N)})
        plugins.append(plugin | {"consumer": cid})
    return {"services": six_routes(upstream), "plugins": plugins, "consumers": consumers}


def global_config(ports: tuple[int, int], store: str, upstream: str) -> dict:
    """04 l. 769-799: one global plugin (the Redis stores' on databases of their own: their
    keys are the same, Kong's run one after the other, flushing Redis between)."""
    plugin = rrl(ports, store, {"video": video(N)})
    if store != "local":
        plugin["config"]["redis"]["database"] = DB_GLOBAL[store]
    return {"services": six_routes(upstream), "plugins": [plugin]}


# -- fixtures -------------------------------------------------------------------------------------
@dataclass
class Env:
    redis: RedisServer
    main: Gateway
    single_consumer: Gateway
    globals: dict[str, Gateway]
    client: httpx.Client


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    workdir = tmp_path_factory.mktemp("kong-rrl")
    pki = Pki("redis-ca")
    cert, key = pki.issue(SNI, dns=SNI, ip="127.0.0.1")
    for name, text in (("ca.pem", pki.pem), ("redis.crt", cert), ("redis.key", key)):
        (workdir / name).write_text(text)
    tls_port = free_port()
    tls = ["--tls-port", str(tls_port), "--tls-auth-clients", "no"]
    tls += ["--tls-cert-file", str(workdir / "redis.crt")]
    tls += ["--tls-key-file", str(workdir / "redis.key")]
    tls += ["--tls-ca-cert-file", str(workdir / "ca.pem")]
    redis = RedisServer(workdir, *tls).start()
    upstream = MockUpstream().start()
    client = httpx.Client(timeout=30)
    gateways: list[Gateway] = []
    try:
        wait_port(tls_port)
        # 05 l. 78-79: the users exist before Kong starts
        redis.cli("ACL", "SETUSER", REDIS_USER_VALID, "on", "allkeys", "allcommands", ">secret")
        redis.cli("ACL", "SETUSER", REDIS_USER_INVALID, "on", "allkeys", "+get", ">secret")
        ports = (redis.port, tls_port)
        url = f"http://127.0.0.1:{upstream.port}"
        configs = {
            "main": main_config(ports, url),
            "single-consumer": single_consumer_config(ports, url),
        }
        configs |= {store: global_config(ports, store, url) for store in STORES}
        for name, config in configs.items():
            text = json.dumps({"_format_version": "3.0", **config})
            gateways.append(Gateway(tmp_path_factory.mktemp(name), text))
        with (
            pytest.MonkeyPatch.context() as mp,  # Kong's lua_ssl_trusted_certificate
            concurrent.futures.ThreadPoolExecutor(len(gateways)) as pool,
        ):
            mp.setenv("KONG_LUA_SSL_TRUSTED_CERTIFICATE", str(workdir / "ca.pem"))
            list(pool.map(Gateway.start, gateways))
        yield Env(
            redis, gateways[0], gateways[1], dict(zip(STORES, gateways[2:], strict=True)), client
        )
    finally:
        client.close()
        for gw in gateways:
            gw.stop()
        upstream.stop()
        redis.stop()


# -- helpers --------------------------------------------------------------------------------------
def fresh_window(period: int = 60, margin: float = MARGIN) -> None:
    """Kong's ``wait_server_sync``, only when needed: sleep into the next window when this one
    ends within ``margin`` seconds."""
    left = period - time.time() % period
    if left < margin:
        time.sleep(left + 0.05)


def get(
    env: Env,
    host: str,
    limit: str | list[str] | None = None,
    path: str = "/response-headers",
    apikey: str | None = None,
    gw: Gateway | None = None,
) -> httpx.Response:
    """``GET <path>?[apikey=..&]x-kong-limit=<limit>`` with ``Host: <host>``."""
    params: list[tuple[str, str]] = [("apikey", apikey)] if apikey else []
    if limit is not None:
        params += [("x-kong-limit", v) for v in ([limit] if isinstance(limit, str) else limit)]
    url = (gw or env.main).url(path)
    return env.client.get(url, params=params, headers={"host": host})


def num(res: httpx.Response, name: str) -> int | None:
    value = res.headers.get(name)
    return None if value is None else int(value)


def sync(
    env: Env,
    host: str,
    expected: dict[str, int],
    status: int = 200,
    apikey: str | None = None,
    gw: Gateway | None = None,
) -> httpx.Response:
    """Kong's ``wait_remaining_sync``: an unpriced GET until its status is ``status`` and (for a
    200) the ``expected`` headers hold; the last answer."""
    last: list[httpx.Response] = []

    def reached() -> bool:
        res = get(env, host, apikey=apikey, gw=gw)
        last[:] = [res]
        if status != 200:
            return res.status_code == status
        return res.status_code == 200 and all(num(res, k) == v for k, v in expected.items())

    eventually(reached, 10)
    return last[0]


REMAINING, LIMIT = "x-ratelimit-remaining-video-minute", "x-ratelimit-limit-video-minute"
#: Kong waits on video's counters only; image's Redis count may land after video's (a script call
#: per counter), so the polls here wait for image's too before its header is read.
IMAGE, VIDEO_HOUR = "x-ratelimit-remaining-image-minute", "x-ratelimit-remaining-video-hour"


def pair(res: httpx.Response, counter: str) -> tuple[int | None, int | None]:
    """``X-RateLimit-Limit-<counter>`` and ``X-RateLimit-Remaining-<counter>``."""
    return num(res, f"x-ratelimit-limit-{counter}"), num(res, f"x-ratelimit-remaining-{counter}")


def check_limit(
    env: Env, hosts: list[str], limit: int = N, apikey: str | None = None, gw: Gateway | None = None
) -> None:
    """Kong's ``test_limit`` (l. 91-110): ``limit`` priced responses pass (the i-th on
    ``hosts[i]``), then one more is refused."""
    for i in range(limit):
        res = get(env, hosts[i % len(hosts)], "video=1", apikey=apikey, gw=gw)
        assert res.status_code == 200, res.text
    sync(env, hosts[0], {REMAINING: 0}, apikey=apikey, gw=gw)
    res = get(env, hosts[0], "video=1", apikey=apikey, gw=gw)
    assert res.status_code == 429
    assert pair(res, "video-minute") == (limit, 0)


# -- 04-access ------------------------------------------------------------------------------------
@pytest.mark.parametrize("store", STORES)
def test_returns_remaining_counter(env: Env, store: str) -> None:
    """04 l. 422-442."""
    fresh_window()
    host, n = f"{store}.test1.test", N // 2
    for _ in range(n):
        assert get(env, host, "video=1").status_code == 200
    sync(env, host, {REMAINING: N - n})
    res = get(env, host, "video=1")
    assert res.status_code == 200
    assert pair(res, "video-minute") == (N, N - n - 1)


@pytest.mark.parametrize("store", STORES)
def test_blocks_if_exceeding_limit(env: Env, store: str) -> None:
    """04 l. 463-466 (on test1's twin, test1b)."""
    fresh_window()
    check_limit(env, [f"{store}.test1b.test"])


@pytest.mark.parametrize("store", STORES)
def test_counts_against_the_same_service_from_different_routes(env: Env, store: str) -> None:
    """04 l. 468-493: a service's plugin counts its routes' responses together (``test=6``
    names no limit: ignored)."""
    fresh_window()
    limit, n = f"video=1, test={N}", N // 2
    for i in range(N):
        host = f"{store}.test-service{1 if i < n else 2}.test"
        assert get(env, host, limit).status_code == 200
    sync(env, f"{store}.test-service1.test", {REMAINING: 0})
    assert get(env, f"{store}.test-service1.test", limit).status_code == 429


@pytest.mark.parametrize("store", STORES)
def test_handles_multiple_limits(env: Env, store: str) -> None:
    """04 l. 495-550: video {minute 12, hour 24}, image {minute 6} (Kong: second, minute)."""
    fresh_window()
    host, n = f"{store}.test2.test", N // 2
    in_min, in_hour = N * 2, N * 4  # Kong's remain_in_sec, remain_in_min
    for _ in range(n):
        assert get(env, host, "video=2, image=1").status_code == 200
        in_min, in_hour = in_min - 2, in_hour - 2
    res = sync(env, host, {REMAINING: in_min, VIDEO_HOUR: in_hour, IMAGE: N - n})
    assert pair(res, "video-minute") == (N * 2, in_min)
    assert pair(res, "video-hour") == (N * 4, in_hour)
    assert pair(res, "image-minute") == (N, N - n)
    for _ in range(n, N):
        assert get(env, host, "video=1, image=1").status_code == 200
        in_min, in_hour = in_min - 1, in_hour - 1
    res = sync(env, host, {REMAINING: in_min, VIDEO_HOUR: in_hour, IMAGE: 0})
    assert (num(res, IMAGE), num(res, REMAINING), num(res, VIDEO_HOUR)) == (0, in_min, in_hour)
    res = get(env, host, "video=1, image=1")
    assert (num(res, IMAGE), num(res, REMAINING), num(res, VIDEO_HOUR)) == (
        0,
        in_min - 1,
        in_hour - 1,
    )
    assert res.status_code == 429


@pytest.mark.parametrize(
    ("apikey", "limit"),
    [("apikey123", N - 2), ("apikey124", N - 3)],
    ids=["per-consumer-and-route", "per-route"],
)
@pytest.mark.parametrize("store", STORES)
def test_blocks_with_authentication(env: Env, store: str, apikey: str, limit: int) -> None:
    """04 l. 555-563: consumer 123 has a plugin on route and consumer (limit 4), consumer 124
    the route's (limit 3); each counts by its consumer."""
    fresh_window()
    check_limit(env, [f"{store}.test3.test"], limit, apikey=apikey)


@pytest.mark.parametrize("store", STORES)
def test_upstream_usage_headers_with_multiple_limits(env: Env, store: str) -> None:
    """04 l. 568-593: ``X-RateLimit-Remaining-<name>`` upstream, the smallest of its periods."""
    fresh_window()
    host = f"{store}.test8.test"

    def upstream_saw(res: httpx.Response) -> tuple[int, int]:
        assert res.status_code == 200
        headers = res.json()["headers"]
        return int(headers["x-ratelimit-remaining-image"]), int(
            headers["x-ratelimit-remaining-video"]
        )

    assert upstream_saw(get(env, host, path="/get")) == (N - 1, N)
    assert upstream_saw(get(env, host, "video=2, image=1")) == (N - 1, N)
    sync(env, host, {REMAINING: N - 2, IMAGE: N - 2})
    assert upstream_saw(get(env, host, path="/get")) == (N - 2, N - 2)


@pytest.mark.parametrize("store", STORES)
def test_combines_multiple_x_kong_limit_headers(env: Env, store: str) -> None:
    """04 l. 595-618 (the mock joins the two query arguments into one header, as Kong's)."""
    fresh_window()
    host, both = f"{store}.test4.test", ["video=2", "image=1"]
    for _ in range(N):
        assert get(env, host, both).status_code == 200
    get(env, host, "video=1")
    sync(env, host, {REMAINING: 1, IMAGE: 0})
    res = get(env, host, both)
    assert res.status_code == 429
    assert (num(res, IMAGE), num(res, REMAINING)) == (0, 0)


@pytest.mark.parametrize("store", STORES)
def test_block_on_first_violation(env: Env, store: str) -> None:
    """04 l. 621-635."""
    fresh_window()
    host = f"{store}.test7.test"
    assert get(env, host, "video=2, image=4").status_code == 200
    sync(env, host, {}, status=429)
    res = get(env, host, "video=2")
    assert res.status_code == 429
    assert "API rate limit exceeded for 'image'" in res.json()["message"]


@pytest.mark.parametrize("store", REDIS_STORES)
def test_hide_client_headers(env: Env, store: str) -> None:
    """04 l. 637-648 (``local``: test_response_ratelimiting)."""
    res = get(env, f"{store}.test9.test", path="/status/200")
    assert res.status_code == 200
    assert REMAINING not in res.headers and LIMIT not in res.headers


@pytest.mark.parametrize("store", STORES)
def test_expires_a_counter(env: Env, store: str) -> None:
    """04 l. 689-708: per second, as Kong's; each request starts away from its second's end,
    the second one in the next second."""
    host = f"{store}.expire1.test"
    for step in range(2):
        fresh_window(1, 1 if step else 0.6)  # step 1: into the next second, the counter expired
        res = get(env, host, "video=1")
        assert res.status_code == 200
        assert pair(res, "video-second") == (N, N - 1)


@pytest.mark.parametrize("store", STORES)
def test_global_for_single_consumer_blocks_on_any_route(env: Env, store: str) -> None:
    """04 l. 761-764: a consumer's plugin (no route, no service) counts on every route."""
    fresh_window()
    hosts = [f"test{i}.test" for i in range(1, N + 1)]
    check_limit(env, hosts, apikey=f"apikey126-{store}", gw=env.single_consumer)


@pytest.mark.parametrize("store", STORES)
def test_global_blocks_if_exceeding_limit(env: Env, store: str) -> None:
    """04 l. 809-827."""
    fresh_window()
    check_limit(env, [f"test{i}.test" for i in range(1, N + 1)], gw=env.globals[store])


# -- 05-integration ------------------------------------------------------------------------------
def dbsize(env: Env, db: int) -> int:
    return int(redis_cli(env.redis.port, "-n", str(db), "DBSIZE"))


@pytest.mark.parametrize("store", REDIS_STORES)
def test_connection_pool_respects_database_setting(env: Env, store: str) -> None:
    """05 l. 194-301. Kong sleeps 1 s after each request for its timer; polled here."""
    db1, db2, db3, _ = INTEGRATION_DBS[store]
    assert (dbsize(env, db1), dbsize(env, db2), dbsize(env, db3)) == (0, 0, 0)
    for n, db in enumerate((db1, db2, db3), 1):
        res = get(env, f"redistest{n}.{store}.test", "video=1")
        assert res.status_code == 200
        assert pair(res, "video-minute") == (6, 5)
        eventually(lambda db=db: dbsize(env, db) > 0, 5)
        sizes = [dbsize(env, d) > 0 for d in (db1, db2, db3)]
        assert sizes == [i < n for i in range(3)]


@pytest.mark.parametrize("store", REDIS_STORES)
def test_authenticates_with_a_valid_redis_user_having_proper_acls(env: Env, store: str) -> None:
    """05 l. 303-312."""
    assert get(env, f"redistest3.{store}.test", path="/status/200").status_code == 200


@pytest.mark.parametrize("store", REDIS_STORES)
def test_fails_to_rate_limit_for_a_redis_user_with_missing_acls(env: Env, store: str) -> None:
    """05 l. 314-323: the user may only GET (``SELECT`` is refused): Kong's 500."""
    assert get(env, f"redistest4.{store}.test", path="/status/200").status_code == 500
