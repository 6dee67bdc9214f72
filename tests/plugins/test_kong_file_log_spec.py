"""Kong's spec/03-plugins/04-file-log/01-log_spec.lua, ported against a real gateway and a real
echo upstream: the cases where the file cannot be written, or is a device.

Ported: l.496-514 (the directory does not exist), 516-534 (the path is a directory), 555-573
(no write permission), 575-592 (a character device). Kong's log line regexes end in
``.*while logging request``, nginx's error-log context for the log phase; fastkong's log lines
carry no nginx context, so the plugin's own message is asserted.

Covered elsewhere (``test_file_log.py``): l.311-330 "logs to file"
(``test_logs_one_json_line_per_request``), l.447-494 reopen
(``test_reopen_recreates_a_removed_file``), l.536-553 reopen = false
(``test_without_reopen_a_removed_file_stays_gone``).

Left out: l.332-401 ``custom_fields_by_lua`` (and l.379's ``pre-function``): fastkong runs no
Lua, the field is refused at config load (docs/plugins.md; ``test_file_log.py::
test_lua_fields_are_refused``); l.403-445 gRPC and gRPCs (README.md: a plain gRPC call cannot be
proxied, Granian's ASGI carries no HTTP/2 trailers).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import Echo, Gateway, eventually

pytestmark = pytest.mark.integration

#: Kong's unwritable file is /etc/shadow (its tests run Kong's workers as nobody). This suite
#: may run as root, which may append to /etc/shadow; a read-only sysfs attribute is refused
#: "Permission denied" to root too (kernfs refuses a write open of a file without a store).
UNWRITABLE = "/etc/shadow" if os.geteuid() != 0 else "/sys/kernel/uevent_seqnum"


class Env:
    def __init__(self, gateway: Gateway, workdir: Path) -> None:
        self.gateway = gateway
        self.workdir = workdir
        self.stderr = workdir / "gateway.log"
        self.barrier = workdir / "barrier.log"
        self.offset = 0

    def mark(self) -> None:
        """Kong's ``helpers.clean_logfile()``: later reads see what comes after this."""
        self.offset = self.stderr.stat().st_size if self.stderr.exists() else 0

    def log_text(self) -> str:
        with self.stderr.open("rb") as f:
            f.seek(self.offset)
            return f.read().decode("utf-8", "replace")

    def request(self, host: str) -> str:
        tag = str(uuid.uuid4())
        r = httpx.get(
            self.gateway.url("/status/200"),
            headers={"Host": host, "file-log-uuid": tag},
            timeout=10,
        )
        assert r.status_code == 200
        return tag

    def barrier_line(self) -> None:
        """A request whose line reaches a writable file: the worker's one writer thread takes
        files in order, so every earlier request's write (and its error line) is done then."""
        tag = self.request("file_logging_barrier.test")

        def written() -> bool:
            if not self.barrier.exists():
                return False
            lines = self.barrier.read_text().splitlines()
            return any(
                json.loads(line)["request"]["headers"]["file-log-uuid"] == tag for line in lines
            )

        eventually(written)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[Env]:
    workdir = tmp_path_factory.mktemp("file-log-spec")
    prefix = workdir / "prefix"
    (prefix / "dir").mkdir(parents=True)  # exists, without "file" in it
    routes = {
        "file_logging2.test": f"{prefix}/nodir/file",
        "file_logging3.test": f"{prefix}/dir/",
        "file_logging5.test": UNWRITABLE,
        "file_logging6.test": "/dev/null",
        "file_logging_barrier.test": str(workdir / "barrier.log"),
    }
    doc = {
        "_format_version": "3.0",
        "services": [
            {
                "name": "echo",
                "url": echo.url,
                "routes": [
                    {
                        "name": host.split(".")[0],
                        "hosts": [host],
                        "plugins": [{"name": "file-log", "config": {"path": path, "reopen": True}}],
                    }
                    for host, path in routes.items()
                ],
            }
        ],
    }
    gw = Gateway(workdir, json.dumps(doc))
    found = Env(gw, workdir)
    gw.stderr_path = found.stderr
    gw.start()
    try:
        yield found
    finally:
        gw.stop()


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        pytest.param("file_logging2.test", "No such file or directory", id="l.496-no-directory"),
        pytest.param("file_logging3.test", "Is a directory", id="l.516-path-is-a-directory"),
        pytest.param("file_logging5.test", "Permission denied", id="l.555-no-write-permission"),
    ],
)
def test_file_that_cannot_be_opened_is_said_in_the_log(env: Env, host: str, reason: str) -> None:
    env.mark()
    env.request(host)
    needle = f"[file-log] failed to open the file: {reason}"
    eventually(lambda: needle in env.log_text(), 30)


def test_no_directory_creates_no_file(env: Env) -> None:
    """l.496-514: nor the directory."""
    env.request("file_logging2.test")
    env.barrier_line()
    assert not (env.workdir / "prefix" / "nodir").exists()


def test_the_given_path_is_a_character_device_file(env: Env) -> None:
    """l.575-592: opened and written without an error; nothing can be read back."""
    env.mark()
    tag = env.request("file_logging6.test")
    env.barrier_line()
    assert "[file-log] failed to open the file" not in env.log_text()
    assert tag not in Path("/dev/null").read_text()
