"""The name cache seen through a gateway (in process, a real upstream on loopback): what a
resolver outage, a vanished name and a burst of new connections do to requests.

The gateway runs as an ASGI app in this process, so that its resolver's lookups can come from a
loop stand-in whose answers the test sets (no lookup leaves the process); its connections to the
upstream are real. The pool keeps no idle connection, so every request looks its host up.
"""

from __future__ import annotations

import asyncio
import json
import socket

import httpx

from fastkong.config import load_config
from fastkong.proxy.app import Gateway
from fastkong.runtime import compile_runtime
from fastkong.upstreams.dns import DnsSettings, Resolver
from tests.helpers import Echo

NO_KEEPALIVE = {
    "upstream_keepalive_pool_size": 0,
    "upstream_keepalive_max_requests": 0,
    "upstream_keepalive_idle_timeout": 0,
}


class Answers:
    """A loop stand-in for the resolver: ``getaddrinfo`` answers from ``names`` (an address,
    or a gaierror code), counting the lookups."""

    def __init__(self) -> None:
        self.names: dict[str, str | int] = {}
        self.asked = 0

    async def getaddrinfo(self, host: str, port: object, type: int = 0) -> list[tuple]:
        self.asked += 1
        await asyncio.sleep(0.01)  # a lookup takes a while: concurrent misses overlap
        answer = self.names[host]
        if isinstance(answer, int):
            raise socket.gaierror(answer, "lookup failed")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answer, 0))]


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def gateway(echo: Echo) -> Gateway:
    config = f"""
_format_version: "3.0"
services:
- name: named
  url: http://svc.test:{echo.port}
  routes: [{{name: named, paths: ["/"]}}]
"""
    runtime = compile_runtime(load_config(config.encode()).config, "1")
    return Gateway(runtime, keepalive=NO_KEEPALIVE)


async def requests(client: httpx.AsyncClient, count: int) -> list[int]:
    replies = await asyncio.gather(*(client.get("http://gw.test/x") for _ in range(count)))
    return [r.status_code for r in replies]


def test_requests_ride_out_a_resolver_outage_and_share_lookups(echo: Echo) -> None:
    async def main() -> None:
        gw = gateway(echo)
        await gw.startup()
        answers, clock = Answers(), Clock()
        gw.resolver = Resolver(answers, DnsSettings(valid_ttl=30), clock)  # type: ignore[arg-type]
        answers.names["svc.test"] = "127.0.0.1"
        transport = httpx.ASGITransport(app=gw)
        async with httpx.AsyncClient(transport=transport, timeout=5) as client:
            # a burst of first requests: one lookup between them
            assert await requests(client, 10) == [200] * 10
            assert answers.asked == 1
            # the answer expires and the resolver goes down: requests go on, on the last answer,
            # while one refresh a second (dns_error_ttl) tries again
            clock.now += 31
            answers.names["svc.test"] = socket.EAI_AGAIN
            for _ in range(3):
                assert await requests(client, 10) == [200] * 10
            assert answers.asked == 2
            clock.now += 1.5
            assert await requests(client, 10) == [200] * 10
            assert answers.asked == 3
            # the name is gone ("no such name"): Kong's 503, remembered for dns_not_found_ttl
            clock.now += 1.5
            answers.names["svc.test"] = socket.EAI_NONAME
            await requests(client, 1)  # served stale while this refresh learns the news
            await asyncio.sleep(0.05)
            r = await client.get("http://gw.test/x", headers={"accept": "application/json"})
            assert r.status_code == 503
            assert json.loads(r.text)["message"] == "name resolution failed"
            asked = answers.asked
            assert await requests(client, 10) == [503] * 10
            assert answers.asked == asked
        await gw.shutdown()

    asyncio.run(main())
