"""The worker's name cache (fastkong/upstreams/dns.py): Kong's dns_* settings.

The resolver's policy (fresh, stale, failures cached, one lookup shared) is decided in plain
code; the lookups here come from a loop whose ``getaddrinfo`` answers as the test says, and a
clock the test moves. One test resolves a real name through the real loop.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from fastkong.kong_conf import unread_settings
from fastkong.upstreams.dns import DnsSettings, Resolver, dns_settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ScriptedDns:
    """A loop stand-in: ``answers[name]`` is a list of IPv4 addresses, or a gaierror code;
    a lookup waits on ``gate`` when one is set (to keep it in flight)."""

    def __init__(self) -> None:
        self.answers: dict[str, list[str] | int] = {}
        self.asked: list[str] = []
        self.gate: asyncio.Event | None = None

    async def getaddrinfo(self, host: str, port: object, type: int = 0) -> list[tuple]:
        self.asked.append(host)
        if self.gate is not None:
            await self.gate.wait()
        answer = self.answers[host]
        if isinstance(answer, int):
            raise socket.gaierror(answer, "lookup failed")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 0)) for a in answer]


def resolver(settings: DnsSettings = DnsSettings()) -> tuple[Resolver, ScriptedDns, Clock]:
    dns, clock = ScriptedDns(), Clock()
    return Resolver(dns, settings, clock), dns, clock  # type: ignore[arg-type]


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_an_answer_is_reused_while_fresh_then_looked_up_again() -> None:
    r, dns, clock = resolver(DnsSettings(valid_ttl=30, stale_ttl=0))

    async def main() -> None:
        dns.answers["svc.test"] = ["10.0.0.1"]
        assert await r.resolve("svc.test") == ["10.0.0.1"]
        clock.now += 29
        dns.answers["svc.test"] = ["10.0.0.2"]
        assert await r.resolve("svc.test") == ["10.0.0.1"]
        assert dns.asked == ["svc.test"]
        clock.now += 2  # past the TTL, no stale window: the request waits for the lookup
        assert await r.resolve("svc.test") == ["10.0.0.2"]
        assert dns.asked == ["svc.test"] * 2

    run(main())


def test_a_stale_answer_is_served_at_once_while_one_lookup_refreshes_it() -> None:
    r, dns, clock = resolver(DnsSettings(valid_ttl=30, stale_ttl=3600))

    async def main() -> None:
        dns.answers["svc.test"] = ["10.0.0.1"]
        await r.resolve("svc.test")
        clock.now += 31
        dns.answers["svc.test"] = ["10.0.0.2"]
        dns.gate = asyncio.Event()  # the refresh hangs until released
        answers = [await r.resolve("svc.test") for _ in range(20)]
        assert answers == [["10.0.0.1"]] * 20  # nobody waited on the resolver
        await settle()
        assert dns.asked == ["svc.test"] * 2  # one refresh, not one per request
        dns.gate.set()
        await settle()
        assert await r.resolve("svc.test") == ["10.0.0.2"]
        assert r.cached("svc.test") == ["10.0.0.2"]

    run(main())


def test_a_resolver_outage_keeps_the_last_answer_for_the_stale_ttl() -> None:
    r, dns, clock = resolver(DnsSettings(valid_ttl=30, stale_ttl=100, error_ttl=1))

    async def main() -> None:
        dns.answers["svc.test"] = ["10.0.0.1"]
        await r.resolve("svc.test")
        dns.answers["svc.test"] = socket.EAI_AGAIN  # the resolver is down
        clock.now += 31
        assert await r.resolve("svc.test") == ["10.0.0.1"]
        await settle()
        assert len(dns.asked) == 2
        # within the error TTL the failed refresh is not retried on every request
        for _ in range(10):
            assert await r.resolve("svc.test") == ["10.0.0.1"]
        await settle()
        assert len(dns.asked) == 2
        clock.now += 1.5  # then it is, once
        assert await r.resolve("svc.test") == ["10.0.0.1"]
        await settle()
        assert len(dns.asked) == 3
        clock.now += 100  # past the stale window: nothing left to serve
        with pytest.raises(socket.gaierror):
            await r.resolve("svc.test")

    run(main())


def test_no_such_name_ends_a_stale_answer() -> None:
    # The name is gone: the addresses it had may be someone else's by now.
    r, dns, clock = resolver(DnsSettings(valid_ttl=30, stale_ttl=3600, not_found_ttl=30))

    async def main() -> None:
        dns.answers["svc.test"] = ["10.0.0.1"]
        await r.resolve("svc.test")
        dns.answers["svc.test"] = socket.EAI_NONAME
        clock.now += 31
        assert await r.resolve("svc.test") == ["10.0.0.1"]  # served while the refresh runs
        await settle()
        with pytest.raises(socket.gaierror) as caught:
            await r.resolve("svc.test")
        assert caught.value.errno == socket.EAI_NONAME
        assert r.usable("svc.test") is None

    run(main())


@pytest.mark.parametrize(
    ("code", "ttl_field", "ttl"),
    [(socket.EAI_NONAME, "not_found_ttl", 30.0), (socket.EAI_AGAIN, "error_ttl", 1.0)],
)
def test_a_failure_is_cached_for_its_ttl(code: int, ttl_field: str, ttl: float) -> None:
    r, dns, clock = resolver()
    assert getattr(r.settings, ttl_field) == ttl  # Kong's defaults

    async def main() -> None:
        dns.answers["gone.test"] = code
        for _ in range(10):
            with pytest.raises(socket.gaierror) as caught:
                await r.resolve("gone.test")
            assert caught.value.errno == code
        assert dns.asked == ["gone.test"]  # one lookup, not one per request
        clock.now += ttl + 0.1
        dns.answers["gone.test"] = ["10.0.0.9"]
        assert await r.resolve("gone.test") == ["10.0.0.9"]

    run(main())


def test_an_empty_answer_counts_as_no_such_name() -> None:
    r, dns, clock = resolver()

    async def main() -> None:
        dns.answers["empty.test"] = []
        for _ in range(3):
            with pytest.raises(OSError, match="no address"):
                await r.resolve("empty.test")
        assert dns.asked == ["empty.test"]
        clock.now += 29  # dns_not_found_ttl, not dns_error_ttl
        with pytest.raises(OSError):
            await r.resolve("empty.test")
        assert dns.asked == ["empty.test"]

    run(main())


@pytest.mark.parametrize("no_sync", [False, True])
def test_concurrent_misses_share_one_lookup_unless_dns_no_sync(no_sync: bool) -> None:
    r, dns, _ = resolver(DnsSettings(no_sync=no_sync))

    async def main() -> None:
        dns.answers["svc.test"] = ["10.0.0.1"]
        dns.gate = asyncio.Event()
        waiting = [asyncio.ensure_future(r.resolve("svc.test")) for _ in range(8)]
        await settle()
        dns.gate.set()
        assert await asyncio.gather(*waiting) == [["10.0.0.1"]] * 8
        assert len(dns.asked) == (8 if no_sync else 1)

    run(main())


def test_a_caller_that_gives_up_does_not_cancel_the_shared_lookup() -> None:
    r, dns, _ = resolver()

    async def main() -> None:
        dns.answers["svc.test"] = ["10.0.0.1"]
        dns.gate = asyncio.Event()
        first = asyncio.ensure_future(r.resolve("svc.test"))
        second = asyncio.ensure_future(r.resolve("svc.test"))
        await settle()
        first.cancel()  # its client went away
        await settle()
        dns.gate.set()
        assert await second == ["10.0.0.1"]
        assert first.cancelled() and dns.asked == ["svc.test"]

    run(main())


def test_the_targets_refresh_never_takes_a_stale_answer() -> None:
    # stale_ok=False (the registry's background refresh): an expired answer is looked up and
    # the new one returned; a failure is raised, and the registry decides what the target keeps.
    r, dns, clock = resolver(DnsSettings(valid_ttl=30, stale_ttl=3600))

    async def main() -> None:
        dns.answers["t.test"] = ["10.0.0.1"]
        await r.resolve("t.test", stale_ok=False)
        clock.now += 31
        dns.answers["t.test"] = ["10.0.0.2"]
        assert r.cached("t.test") is None and r.usable("t.test") == ["10.0.0.1"]
        assert await r.resolve("t.test", stale_ok=False) == ["10.0.0.2"]
        clock.now += 31
        dns.answers["t.test"] = socket.EAI_AGAIN
        with pytest.raises(socket.gaierror):
            await r.resolve("t.test", stale_ok=False)
        # the request path still has the stale answer
        assert await r.resolve("t.test") == ["10.0.0.2"]

    run(main())


def test_the_cache_holds_at_most_dns_cache_size_names() -> None:
    r, dns, _ = resolver(DnsSettings(cache_size=3))

    async def main() -> None:
        for i in range(5):
            dns.answers[f"n{i}.test"] = [f"10.0.0.{i}"]
            await r.resolve(f"n{i}.test")
        assert sorted(r.cache) == ["n2.test", "n3.test", "n4.test"]

    run(main())


def test_ip_literals_are_not_looked_up() -> None:
    r, dns, _ = resolver()
    assert run(r.resolve("10.1.2.3")) == ["10.1.2.3"]
    assert run(r.resolve("::1")) == ["::1"]
    assert dns.asked == []


def test_a_real_name_through_the_real_loop() -> None:
    async def main() -> list[str]:
        return await Resolver(asyncio.get_running_loop()).resolve("localhost")

    assert run(main())[0] in ("127.0.0.1", "::1")


def test_kong_settings_are_read_and_checked() -> None:
    env = {
        "KONG_DNS_VALID_TTL": "5",
        "KONG_DNS_STALE_TTL": "0",
        "KONG_DNS_NOT_FOUND_TTL": "2.5",
        "KONG_DNS_ERROR_TTL": "0.5",
        "KONG_DNS_NO_SYNC": "on",
        "KONG_DNS_CACHE_SIZE": "100",
    }
    assert dns_settings(env) == DnsSettings(5.0, 0.0, 2.5, 0.5, True, 100)
    assert dns_settings({}) == DnsSettings(30.0, 3600.0, 30.0, 1.0, False, 10000)
    assert unread_settings(env) == []  # read, so not named as ignored
    for name, bad in [
        ("KONG_DNS_STALE_TTL", "-1"),
        ("KONG_DNS_ERROR_TTL", "soon"),
        ("KONG_DNS_VALID_TTL", "nan"),
        ("KONG_DNS_NO_SYNC", "yes"),
        ("KONG_DNS_CACHE_SIZE", "0"),
    ]:
        with pytest.raises(ValueError, match=name[5:].lower()):
            dns_settings({name: bad})


def test_repr_shows_the_cache_state() -> None:
    r, dns, _ = resolver()

    async def main() -> None:
        dns.answers["svc.test"] = ["10.0.0.1"]
        await r.resolve("svc.test")

    run(main())
    assert repr(r) == "<Resolver names=1 inflight=0 valid_ttl=30.0 stale_ttl=3600.0>"
    assert repr(r.cache["svc.test"]).startswith("<_Entry ['10.0.0.1'] fresh_until=")
