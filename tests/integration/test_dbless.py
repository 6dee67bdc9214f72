"""DB-less operations: config watching (plain files and ConfigMap volumes), last good config,
the admin API, persistence across restarts, SIGHUP, SIGTERM draining, multi-worker agreement."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.helpers import ROOT, Echo, Gateway, KubeletVolume, eventually, free_port

pytestmark = pytest.mark.integration


def config_for(echo: Echo, *route_paths: str) -> str:
    routes = "".join(f'  - name: r{i}\n    paths: ["{p}"]\n' for i, p in enumerate(route_paths))
    return (
        '_format_version: "3.0"\nservices:\n- name: echo\n'
        f"  url: http://127.0.0.1:{echo.port}\n  routes:\n{routes}"
    )


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def all_workers_on(gw: Gateway, expected: str) -> bool:
    status = gw.status()
    workers = status["fastkong"]["workers"]
    return (
        status["configuration_hash"] == expected
        and len(workers) == gw.workers
        and set(workers.values()) == {expected}
    )


@pytest.fixture
def two_workers(tmp_path: Path, echo: Echo) -> Iterator[tuple[Gateway, KubeletVolume]]:
    volume = KubeletVolume(tmp_path / "configmap")
    volume.write(config_for(echo, "/one"))
    gw = Gateway(tmp_path, None, 2, "-c", str(volume.path), "--prefix", str(tmp_path / "prefix"))
    gw.start()
    yield gw, volume
    assert gw.stop() == 0


def test_configmap_swap_reaches_every_worker_within_a_second_and_drops_nothing(
    two_workers: tuple[Gateway, KubeletVolume], echo: Echo
) -> None:
    gw, volume = two_workers
    eventually(lambda: all_workers_on(gw, md5(config_for(echo, "/one"))))
    assert httpx.get(gw.url("/one")).status_code == 200
    assert httpx.get(gw.url("/two")).status_code == 404

    failures: list[str] = []
    stop = threading.Event()
    sent = [0]

    def hammer() -> None:
        with httpx.Client() as client:
            while not stop.is_set():
                r = client.get(gw.url("/one"))
                sent[0] += 1
                if r.status_code != 200:
                    failures.append(f"{r.status_code} {r.text[:80]}")

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        for i in range(5):
            text = config_for(echo, "/one", f"/v{i}")
            volume.write(text)
            took = eventually(lambda t=text: all_workers_on(gw, md5(t)))
            # the watcher ticks every 0.5 s and workers poll every 0.25 s
            assert took < 1.5, f"reload {i} took {took:.2f}s"
            assert httpx.get(gw.url(f"/v{i}")).status_code == 200
    finally:
        stop.set()
        thread.join()
    assert sent[0] > 50
    assert failures == []


def test_invalid_update_keeps_the_last_good_config(
    two_workers: tuple[Gateway, KubeletVolume], echo: Echo
) -> None:
    gw, volume = two_workers
    good = md5(config_for(echo, "/one"))
    eventually(lambda: all_workers_on(gw, good))
    volume.write(config_for(echo, "/one", "no-slash") + "  - name: bad\n    paths: [42]\n")
    eventually(lambda: gw.status()["fastkong"]["last_error"] is not None)
    status = gw.status()
    assert status["configuration_hash"] == good
    errors = status["fastkong"]["last_error"]
    assert any(e.startswith("services[0].routes[1].paths[0]:") for e in errors), errors
    assert status["fastkong"]["reloads"]["failure"] == 1
    assert httpx.get(gw.url("/one")).status_code == 200
    metrics = httpx.get(gw.status_url("/metrics")).text
    assert 'fastkong_config_reloads_total{result="failure"} 1' in metrics


def test_plain_file_edit_and_sighup(tmp_path: Path, echo: Echo) -> None:
    gw = Gateway(tmp_path, config_for(echo, "/a")).start()
    try:
        text = config_for(echo, "/a", "/b")
        gw.config_path.write_text(text)
        eventually(lambda: all_workers_on(gw, md5(text)), timeout=3)
        # SIGHUP re-reads at once (no wait for the watcher's content check)
        text2 = config_for(echo, "/c")
        gw.config_path.write_text(text2)
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGHUP)
        eventually(lambda: all_workers_on(gw, md5(text2)), timeout=3)
        assert httpx.get(gw.url("/c")).status_code == 200
        assert httpx.get(gw.url("/a")).status_code == 404
    finally:
        assert gw.stop() == 0


@pytest.fixture
def admin_gateway(tmp_path: Path) -> Iterator[Gateway]:
    gw = Gateway(tmp_path, None, 1, "--prefix", str(tmp_path / "prefix"))
    gw.start(wait_ready=False)
    yield gw
    gw.stop()


def admin(gw: Gateway, path: str) -> str:
    return f"http://127.0.0.1:{gw.admin_port}{path}"


def test_admin_api_post_config_and_read_back(admin_gateway: Gateway, echo: Echo) -> None:
    gw = admin_gateway
    ready = httpx.get(gw.status_url("/status/ready"))
    assert ready.status_code == 503
    assert ready.json() == {
        "message": "no configuration available (configuration hash is not initialized)"
    }
    assert gw.status()["configuration_hash"] == "0" * 32

    assert httpx.post(admin(gw, "/config"), content=b"").json() == {
        "message": "expected a declarative configuration"
    }
    text = config_for(echo, "/posted")
    r = httpx.post(admin(gw, "/config"), content=text, headers={"content-type": "text/yaml"})
    assert r.status_code == 201
    gw.wait_ready()
    assert gw.status()["configuration_hash"] == md5(text)
    assert httpx.get(gw.url("/posted")).status_code == 200

    r = httpx.post(admin(gw, "/config?check_hash=1"), content=text)
    assert r.status_code == 304
    r = httpx.post(admin(gw, "/config"), data={"config": config_for(echo, "/form")})
    assert r.status_code == 201
    eventually(lambda: httpx.get(gw.url("/form")).status_code == 200)

    exported = yaml.safe_load(httpx.get(admin(gw, "/config")).json()["config"])
    assert [r["paths"] for r in exported["routes"]] == [["/form"]]
    services = httpx.get(admin(gw, "/services")).json()
    assert services["next"] is None
    assert [s["name"] for s in services["data"]] == ["echo"]
    routes = httpx.get(admin(gw, "/services/echo/routes")).json()["data"]
    assert routes[0]["paths"] == ["/form"]
    assert routes[0]["service"] == {"id": services["data"][0]["id"]}
    assert httpx.get(admin(gw, "/routes/r0")).json()["strip_path"] is True
    page = httpx.get(admin(gw, "/routes?size=1")).json()
    assert len(page["data"]) == 1
    assert httpx.get(admin(gw, "/consumers/nobody")).status_code == 404

    r = httpx.post(admin(gw, "/services"), json={"name": "x", "host": "example.com"})
    assert r.status_code == 405
    assert r.json() == {
        "code": 12,
        "name": "operation unsupported",
        "message": "cannot create 'services' entities when not using a database",
    }
    assert httpx.delete(admin(gw, "/routes/r0")).status_code == 405


def test_admin_api_invalid_config_error_body(admin_gateway: Gateway, echo: Echo) -> None:
    gw = admin_gateway
    bad = (
        '_format_version: "3.0"\nservices:\n- name: s\n  port: 99999\n  tags: ["k8s-name:s"]\n'
        "  routes:\n  - name: r\n    paths: [nope]\n"
    )
    body = httpx.post(admin(gw, "/config"), content=bad).json()
    assert body["code"] == 14
    assert body["name"] == "invalid declarative configuration"
    assert body["message"].startswith("declarative config is invalid: {services={")
    service_errors = body["fields"]["services"][0]
    assert service_errors["host"] == "required field missing"
    assert service_errors["port"] == "value should be between 0 and 65535"
    assert "flattened_errors" not in body
    # flattened, the entity errors leave ``fields`` for the list (Kong's flatten_errors)
    r = httpx.post(admin(gw, "/config?flatten_errors=1"), content=bad)
    assert r.status_code == 400
    body = r.json()
    assert body["fields"] == {}
    assert body["message"] == "declarative config is invalid: {}"
    flat = {e["entity_type"]: e for e in body["flattened_errors"]}
    assert flat["service"]["entity_name"] == "s"
    assert flat["service"]["entity_tags"] == ["k8s-name:s"]
    assert {"type": "field", "field": "port", "message": "value should be between 0 and 65535"} in (
        flat["service"]["errors"]
    )
    assert "route" in flat
    # The echoed entity is decoded as the loader decodes YAML (Kong's types: no dates)
    dated = '_format_version: "3.0"\nservices:\n- name: 2024-01-01\n  port: 99999\n'
    r = httpx.post(admin(gw, "/config?flatten_errors=1"), content=dated)
    assert r.status_code == 400
    (entry,) = r.json()["flattened_errors"]
    assert entry["entity_name"] == "2024-01-01"
    assert entry["entity"] == {"name": "2024-01-01", "port": 99999}
    assert gw.status()["configuration_hash"] == "0" * 32


def test_posted_config_survives_a_restart(tmp_path: Path, echo: Echo) -> None:
    prefix = tmp_path / "prefix"
    text = config_for(echo, "/kept")
    gw = Gateway(tmp_path, None, 1, "--prefix", str(prefix)).start(wait_ready=False)
    try:
        assert httpx.post(admin(gw, "/config"), content=text).status_code == 201
        gw.wait_ready()
    finally:
        assert gw.stop() == 0
    again = Gateway(tmp_path, None, 1, "--prefix", str(prefix)).start()
    try:
        assert again.status()["configuration_hash"] == md5(text)
        assert httpx.get(again.url("/kept")).status_code == 200
    finally:
        assert again.stop() == 0


def test_concurrent_post_gets_429(admin_gateway: Gateway, echo: Echo) -> None:
    gw = admin_gateway
    big = config_for(echo, *(f"/p{i}" for i in range(8000)))
    results: list[int] = []

    def post() -> None:
        results.append(httpx.post(admin(gw, "/config"), content=big, timeout=60).status_code)

    first = threading.Thread(target=post)
    first.start()
    time.sleep(0.3)
    second = httpx.post(admin(gw, "/config"), content=big, timeout=60)
    first.join()
    assert results == [201]
    assert second.status_code == 429
    assert second.json() == {"message": "Currently loading previous configuration"}
    assert second.headers["retry-after"] == "1"


def test_sigterm_drains_in_flight_requests(tmp_path: Path, echo: Echo) -> None:
    text = (
        '_format_version: "3.0"\nservices:\n- name: echo\n'
        f"  url: http://127.0.0.1:{echo.port}\n  routes:\n  - name: slow\n"
        '    paths: ["/delay"]\n    strip_path: false\n'
    )
    gw = Gateway(tmp_path, text).start()
    result: list[httpx.Response] = []
    thread = threading.Thread(
        target=lambda: result.append(httpx.get(gw.url("/delay/1500"), timeout=10))
    )
    thread.start()
    time.sleep(0.3)
    assert gw.proc is not None
    gw.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    draining = httpx.get(gw.status_url("/status/ready"))
    assert draining.status_code == 503 and draining.json() == {"message": "draining"}
    thread.join()
    assert result[0].status_code == 200
    assert gw.proc.wait(20) == 0


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def test_sigterm_while_workers_start_stops_without_the_kill_timeout(
    tmp_path: Path, echo: Echo
) -> None:
    # A worker is forked with its master's Python signal handlers, which only set the master's
    # stop flag: a SIGTERM that came while the worker imported and built its app was lost, and
    # the node waited out Granian's kill timeout (the 30 s drain timeout) for it.
    gw = Gateway(tmp_path, config_for(echo, "/a"), 2)
    gw.proc = subprocess.Popen(gw.command(), cwd=ROOT)
    deadline = time.monotonic() + 30
    while not [w for master in children(gw.proc.pid) for w in children(master)]:
        assert gw.proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.002)
    # Past the master's own start (a master stopped before it has handlers dies at once,
    # its workers with it), near the workers' own start (building the app; they once imported
    # fastkong there too, most of a second: the master imports it for them now).
    time.sleep(0.1)
    gw.proc.send_signal(signal.SIGTERM)
    assert gw.proc.wait(20) == 0


def test_admin_beyond_loopback_needs_a_token(tmp_path: Path) -> None:
    port = free_port()
    cmd = [sys.executable, "-m", "fastkong", "start", "--admin-listen", f"0.0.0.0:{port}"]
    env = {k: v for k, v in os.environ.items() if k != "FASTKONG_ADMIN_TOKEN"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert "FASTKONG_ADMIN_TOKEN" in proc.stderr


def test_admin_token_is_required_when_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASTKONG_ADMIN_TOKEN", "s3cret")
    gw = Gateway(tmp_path, None).start(wait_ready=False)
    try:
        assert httpx.get(admin(gw, "/services")).status_code == 401
        ok = httpx.get(admin(gw, "/services"), headers={"Kong-Admin-Token": "s3cret"})
        assert ok.status_code == 200
    finally:
        gw.stop()
