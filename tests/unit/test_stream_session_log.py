"""Kong's stream serializer message (fastkong/stream/session_log.py), as the log plugins get it
when a stream session ends."""

from __future__ import annotations

import time

from fastkong.stream.session_log import RouteLogPhase, SessionEnd, note_try, stream_try


def test_the_message_of_a_proxied_tls_session() -> None:
    phase = RouteLogPhase(None, (), {"id": "r", "name": "db"}, {"id": "s", "protocol": "tcp"})
    before = int(time.time() * 1000)
    message = phase.message(
        SessionEnd(200, True, 5, 10, 1.25, "10.0.0.7", 5432, ("TLSv1.3", "X"), 3)
    )
    assert message["session"] == {
        "tls": {"version": "TLSv1.3", "cipher": "X", "client_verify": "NONE"},
        "received": 5,
        "sent": 10,
        "status": 200,
        "server_port": 5432,
    }
    # What the upstream received is what the client sent, and the other way round.
    assert message["upstream"] == {"received": 10, "sent": 5}
    assert message["latencies"] == {"kong": 3, "session": 1250}
    assert message["route"] == {"id": "r", "name": "db"}
    assert message["service"] == {"id": "s", "protocol": "tcp"}
    assert message["client_ip"] == "10.0.0.7"
    # Started the session's length before now.
    assert before - 1250 - 50 <= message["started_at"] <= int(time.time() * 1000) - 1250 + 50
    assert message["workspace_name"] == "default"


def test_a_refused_session_has_no_upstream_bytes_and_no_tls() -> None:
    phase = RouteLogPhase(None, (), {"id": "r"}, None)
    message = phase.message(SessionEnd(403, False, 0, 0, 0.0, "10.0.0.8", 5432))
    assert "tls" not in message["session"] and message["session"]["status"] == 403
    assert message["upstream"] == {"received": 0, "sent": 0}
    assert "service" not in message


def test_tries_as_kongs_balancer_records_them() -> None:
    started = time.monotonic() - 0.5
    ok = stream_try("10.0.0.9", 5432, started)
    assert (ok["ip"], ok["port"], ok["balancer_latency"]) == ("10.0.0.9", 5432, 0)
    assert "state" not in ok
    assert abs(ok["balancer_start"] - (time.time() - 0.5) * 1000) < 100
    assert stream_try("10.0.0.9", 5432, started, True)["code"] == 502
    timed_out = stream_try("10.0.0.9", 5432, started, True, True)
    assert (timed_out["state"], timed_out["code"]) == ("failed", 504)
    phase = RouteLogPhase(None)
    end = SessionEnd(502, False, 0, 0, 1.0, "10.0.0.8", 5432, tries=(timed_out,))
    assert phase.message(end)["tries"] == [timed_out]


def test_tries_are_noted_only_for_a_route_with_a_log_plugin() -> None:
    tries: list[dict[str, object]] = []
    note_try(None, tries, "10.0.0.9", 5432, time.monotonic())
    note_try(RouteLogPhase(None), tries, "10.0.0.9", 5432, time.monotonic())  # prometheus only
    assert tries == []
    note_try(RouteLogPhase(None, (object(),)), tries, "10.0.0.9", 5432, time.monotonic(), True)
    assert [(t["ip"], t["state"]) for t in tries] == [("10.0.0.9", "failed")]
