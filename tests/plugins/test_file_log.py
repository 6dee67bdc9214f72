"""file-log through a running gateway (Kong's spec/03-plugins/04-file-log)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fastkong.config import ConfigError, load_config
from tests.helpers import Echo, Gateway

pytestmark = pytest.mark.integration


def errors(config: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config('_format_version: "3.0"\n' + config)
    return [f"{e.path}: {e.message}" for e in info.value.errors]


# -- schema (Kong's 02-schema_spec) ------------------------------------------------------------


@pytest.mark.parametrize("path", ["/ovo*", "/ovo`", "test&thing", "test%thing", "test\\\\thing"])
def test_rejects_invalid_filenames(path: str) -> None:
    assert errors(f'plugins: [{{name: file-log, config: {{path: "{path}"}}}}]\n') == [
        "plugins[0].config.path: not a valid filename"
    ]


@pytest.mark.parametrize("path", [" /ovo", "/ovo  "])
def test_rejects_blanks_at_either_end(path: str) -> None:
    assert errors(f'plugins: [{{name: file-log, config: {{path: "{path}"}}}}]\n') == [
        "plugins[0].config.path: not a valid filename"
    ]


def test_path_is_required_and_spaces_inside_are_fine() -> None:
    assert errors("plugins: [{name: file-log, config: {reopen: true}}]\n") == [
        "plugins[0].config.path: required field missing"
    ]
    doc = '_format_version: "3.0"\nplugins: [{name: file-log, config: {path: /o vo.loga}}]\n'
    assert load_config(doc).config.plugins[0].config == {
        "path": "/o vo.loga",
        "reopen": False,
        "custom_fields_by_lua": None,
    }


def test_lua_fields_are_refused() -> None:
    assert errors(
        "plugins: [{name: file-log, config: {path: /tmp/x, custom_fields_by_lua: "
        "{foo: \"return 'bar'\"}}}]\n"
    ) == [
        "plugins[0].config.custom_fields_by_lua: custom_fields_by_lua is not supported: "
        "fastkong does not run Lua code"
    ]


# -- logging -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, echo: Echo, logs: Path) -> Iterator[Gateway]:
    config = f"""
_format_version: "3.0"
services:
- name: echo
  url: http://127.0.0.1:{echo.port}
  routes:
  - name: logged
    paths: [/logged]
    plugins: [{{name: file-log, config: {{path: "{logs / "file.log"}"}}}}]
  - name: reopened
    paths: [/reopened]
    plugins: [{{name: file-log, config: {{path: "{logs / "reopen.log"}", reopen: true}}}}]
  - name: kept
    paths: [/kept]
    plugins: [{{name: file-log, config: {{path: "{logs / "kept.log"}"}}}}]
  - name: nowhere
    paths: [/nowhere]
    plugins: [{{name: file-log, config: {{path: "{logs / "missing-dir" / "x.log"}"}}}}]
"""
    gw = Gateway(tmp_path_factory.mktemp("file-log"), config).start()
    yield gw
    gw.stop()


def wait_for_line(path: Path, needle: str, timeout: float = 10.0) -> dict[str, Any]:
    """The JSON line of ``path`` that contains ``needle``."""
    deadline = time.monotonic() + timeout
    while True:
        if path.exists():
            for line in path.read_text().splitlines():
                if needle in line:
                    entry: dict[str, Any] = json.loads(line)
                    return entry
        if time.monotonic() > deadline:
            raise AssertionError(f"no line with {needle} in {path}")
        time.sleep(0.05)


def test_logs_one_json_line_per_request(gateway: Gateway, logs: Path) -> None:
    tag = str(uuid.uuid4())
    r = httpx.get(
        gateway.url("/logged/status/200?q=1"),
        headers={"file-log-uuid": tag, "authorization": "Bearer very-secret"},
    )
    assert r.status_code == 200
    entry = wait_for_line(logs / "file.log", tag)
    assert entry["client_ip"] == "127.0.0.1"
    assert entry["request"]["headers"]["file-log-uuid"] == tag
    assert entry["request"]["headers"]["authorization"] == "REDACTED"
    assert entry["request"]["method"] == "GET"
    assert entry["request"]["uri"] == "/logged/status/200?q=1"
    assert entry["request"]["querystring"] == {"q": "1"}
    assert entry["request"]["id"] == r.headers["x-kong-request-id"]
    assert isinstance(entry["request"]["size"], int)
    assert entry["response"]["status"] == 200
    assert entry["response"]["size"] > len(r.content)
    assert entry["response"]["headers"]["x-kong-request-id"] == r.headers["x-kong-request-id"]
    assert entry["upstream_uri"] == r.json()["url"] == "/status/200?q=1"
    assert entry["upstream_status"] == "200"
    assert entry["route"]["name"] == "logged"
    assert entry["service"]["name"] == "echo"
    assert entry["source"] == "upstream"
    assert entry["workspace_name"] == "default"
    assert set(entry["latencies"]) == {"kong", "proxy", "request", "receive"}
    assert entry["latencies"]["proxy"] >= 0
    assert abs(entry["started_at"] / 1000 - time.time()) < 60
    assert "very-secret" not in (logs / "file.log").read_text()


def test_every_request_gets_its_line(gateway: Gateway, logs: Path) -> None:
    tags = [str(uuid.uuid4()) for _ in range(50)]
    with httpx.Client() as client:
        for tag in tags:
            assert client.get(gateway.url("/logged"), headers={"x-tag": tag}).status_code == 200
    wait_for_line(logs / "file.log", tags[-1])
    text = (logs / "file.log").read_text()
    assert all(text.count(tag) == 1 for tag in tags)
    assert all(json.loads(line) for line in text.splitlines())


def test_reopen_recreates_a_removed_file(gateway: Gateway, logs: Path) -> None:
    path = logs / "reopen.log"
    first = str(uuid.uuid4())
    assert httpx.get(gateway.url("/reopened"), headers={"x-tag": first}).status_code == 200
    wait_for_line(path, first)
    path.unlink()
    second = str(uuid.uuid4())
    assert httpx.get(gateway.url("/reopened"), headers={"x-tag": second}).status_code == 200
    wait_for_line(path, second)
    assert first not in path.read_text()


def test_without_reopen_a_removed_file_stays_gone(gateway: Gateway, logs: Path) -> None:
    path = logs / "kept.log"
    first = str(uuid.uuid4())
    assert httpx.get(gateway.url("/kept"), headers={"x-tag": first}).status_code == 200
    wait_for_line(path, first)
    path.unlink()
    second = str(uuid.uuid4())
    assert httpx.get(gateway.url("/kept"), headers={"x-tag": second}).status_code == 200
    # Kong's "logs are lost if reopen = false and file doesn't exist": the worker still writes
    # to the unlinked inode; the name is not recreated.
    time.sleep(0.5)
    assert not path.exists()


def test_an_unopenable_file_never_fails_the_request(gateway: Gateway, logs: Path) -> None:
    for _ in range(3):
        assert httpx.get(gateway.url("/nowhere")).status_code == 200
    assert not (logs / "missing-dir").exists()
