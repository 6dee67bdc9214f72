"""Kong's node command specs (``spec/02-integration/02-cmd/``), the DB-less cases, on real nodes:
``07-health_spec.lua``, ``08-quit_spec.lua``, ``17-drain_spec.lua`` (``#off`` and the plain
cases; fastkong's status listener has no ``ssl``, so not the TLS one) and the cases of
``02-start_stop_spec.lua`` that apply (already running prefix, stale pid file, stop, errors).
The node is found through ``<prefix>/pids/fastkong.pid`` and ``<prefix>/node.json``
(fastkong/control/node_files.py); Kong's messages say "Kong" where fastkong's say "fastkong".

Three nodes: one for health, the already-running refusal, reload, drain and quit; one started
over a stale pid file and stopped; one forced down by quit's timeout.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fastkong.cli import build_parser
from fastkong.control.node_files import is_running
from tests.helpers import ROOT, Echo, Gateway, eventually, fastkong_cli

pytestmark = pytest.mark.integration


def config(echo: Echo, path: str = "/echo") -> str:
    return (
        '_format_version: "3.0"\nservices:\n- name: echo\n'
        f"  url: http://127.0.0.1:{echo.port}\n  routes:\n  - name: r\n"
        f'    paths: ["{path}", "/delay"]\n    strip_path: false\n'
    )


def md5(text: str) -> str:
    import hashlib

    return hashlib.md5(text.encode()).hexdigest()


def descendants(pid: int) -> list[int]:
    """The process's children and their children (/proc)."""
    found = []
    for child in _children(pid):
        found += [child, *_children(child)]
    return found


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[Gateway]:
    workdir = tmp_path_factory.mktemp("cmd")
    gw = Gateway(workdir, config(echo), 1, "--prefix", str(workdir / "prefix")).start()
    yield gw
    gw.stop()


def prefix_of(gw: Gateway) -> Path:
    return gw.workdir / "prefix"


def run_command(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    args = build_parser().parse_args(list(argv))
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


# -- 07-health_spec.lua ----------------------------------------------------------------------


def test_health_succeeds_when_running_with_custom_prefix(node: Gateway) -> None:
    prefix = prefix_of(node)
    assert node.proc is not None
    assert (prefix / "pids" / "fastkong.pid").read_text() == f"{node.proc.pid}\n"
    done = fastkong_cli("health", "--prefix", str(prefix))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"fastkong....running\n\nfastkong is healthy at {prefix}\n"


# -- 02-start_stop_spec.lua: errors ------------------------------------------------------------


def test_should_not_start_if_already_running_in_prefix(node: Gateway, echo: Echo) -> None:
    """Kong: "notifies when Kong is already running", "should not start Kong if already
    running in prefix", "does not prepare the prefix directory if Kong is already running"."""
    prefix = prefix_of(node)
    before = {p.name: p.read_bytes() for p in (prefix / "node.json", prefix / "pids/fastkong.pid")}
    second = Gateway(node.workdir, None, 1, "--prefix", str(prefix))
    done = subprocess.run(second.command(), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert node.proc is not None
    assert done.stderr == f"fastkong: already running in {prefix} (pid {node.proc.pid})\n"
    after = {p.name: p.read_bytes() for p in (prefix / "node.json", prefix / "pids/fastkong.pid")}
    assert after == before
    assert httpx.get(node.url("/echo")).status_code == 200


# -- reload (03-reload_spec.lua's DB-less core: the declarative config is read again) ---------


def test_reload_reads_the_declarative_config_again(node: Gateway, echo: Echo) -> None:
    posted = config(echo, "/posted")
    r = httpx.post(f"http://127.0.0.1:{node.admin_port}/config", content=posted)
    assert r.status_code == 201
    assert node.status()["configuration_hash"] == md5(posted)
    done = fastkong_cli("reload", "-p", str(prefix_of(node)))
    assert (done.returncode, done.stdout, done.stderr) == (0, "fastkong reloaded\n", "")
    file_hash = md5(node.config_path.read_text())
    eventually(lambda: node.status()["configuration_hash"] == file_hash)
    eventually(lambda: httpx.get(node.url("/echo")).status_code == 200)


# -- 17-drain_spec.lua ("kong drain in DB-less mode #off") -----------------------------------


def test_drain_sets_the_node_draining(node: Gateway) -> None:
    assert httpx.get(node.status_url("/status/ready")).status_code == 200
    done = fastkong_cli("drain", "--prefix", str(prefix_of(node)))
    assert done.stderr == ""
    assert done.stdout == "fastkong's status successfully changed to 'draining'\n"
    assert done.returncode == 0
    ready = httpx.get(node.status_url("/status/ready"))
    assert (ready.status_code, ready.json()) == (503, {"message": "draining"})
    assert httpx.get(node.url("/echo")).status_code == 200  # traffic is still served


def test_drain_without_a_status_listener(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kong: "should return an error when trying to set 'draining' without a status
    listener" (its words, exit 0). The node file says the listener is off."""
    prefix = tmp_path / "prefix"
    (prefix / "pids").mkdir(parents=True)
    (prefix / "node.json").write_text(json.dumps({"pid": 1, "status_listen": None}))
    expected = (0, "No status listeners found in configuration.\n", "")
    assert run_command(capsys, "drain", "-p", str(prefix)) == expected
    # Without a node file, the status_listen setting says where (Kong: the configuration).
    for name in ("FASTKONG_PREFIX", "KONG_PREFIX", "FASTKONG_STATUS_LISTEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KONG_STATUS_LISTEN", "off")
    assert run_command(capsys, "drain") == expected


# -- 08-quit_spec.lua, then 07's "fails when Kong is not running" ----------------------------


def test_quit_gracefully_with_wait_and_timeout_options(
    node: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = prefix_of(node)
    assert node.proc is not None
    done = fastkong_cli("quit", "--wait", "1", "--timeout", "10", "--prefix", str(prefix))
    assert (done.returncode, done.stdout, done.stderr) == (0, "fastkong stopped (gracefully)\n", "")
    assert node.proc.wait(20) == 0
    assert not (prefix / "pids" / "fastkong.pid").exists()  # removed at a clean exit
    # (in this process from here: the same code, without a second of imports each)
    code, out, err = run_command(capsys, "health", "--prefix", str(prefix))
    assert (code, out) == (1, "fastkong....not running\n\n")
    assert err == f"Error: fastkong is not running at {prefix}\n"
    for command in ("stop", "quit", "reload"):
        code, _, err = run_command(capsys, command, "--prefix", str(prefix))
        assert (code, err) == (1, f"Error: fastkong not running in prefix: {prefix}\n")


# -- 02-start_stop_spec.lua: a stale pid file, stop -------------------------------------------


def test_a_stale_pid_file_is_replaced_and_stop_waits_for_the_exit(
    tmp_path: Path, echo: Echo
) -> None:
    prefix = tmp_path / "prefix"
    (prefix / "pids").mkdir(parents=True)
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    dead = int(ended.stdout)
    assert not is_running(dead)
    (prefix / "pids" / "fastkong.pid").write_text(f"{dead}\n")
    gw = Gateway(tmp_path, config(echo), 1, "--prefix", str(prefix)).start()
    try:
        assert gw.proc is not None
        assert (prefix / "pids" / "fastkong.pid").read_text() == f"{gw.proc.pid}\n"
        node = json.loads((prefix / "node.json").read_text())
        assert node["pid"] == gw.proc.pid
        assert node["status_listen"] == ["127.0.0.1", gw.status_port]
        assert node["status_ssl"] is False
        done = fastkong_cli("stop", "--prefix", str(prefix))
        assert (done.returncode, done.stdout, done.stderr) == (0, "fastkong stopped\n", "")
        assert gw.proc.poll() == 0  # stop returned once the node had ended
        assert not (prefix / "pids" / "fastkong.pid").exists()
    finally:
        gw.stop()


def test_quit_stops_forcefully_after_its_timeout(tmp_path: Path, echo: Echo) -> None:
    """A request outlives quit's timeout: the supervisor is killed; its processes stop as
    their parent died (the Granian master drains the request first)."""
    prefix = tmp_path / "prefix"
    gw = Gateway(tmp_path, config(echo), 1, "--prefix", str(prefix)).start()
    assert gw.proc is not None
    node_processes = descendants(gw.proc.pid)
    try:
        with socket.create_connection(("127.0.0.1", gw.port), timeout=20) as slow:
            # (sent before the command starts, long before it signals: the command's own start
            # takes a second, several on a loaded machine)
            slow.sendall(b"GET /delay/6000 HTTP/1.1\r\nHost: x\r\n\r\n")
            done = fastkong_cli("quit", "--timeout", "0.5", "-p", str(prefix))
            assert done.returncode == 0, done.stderr
            assert done.stdout == "Timeout, fastkong stopped forcefully\n"
            assert gw.proc.wait(10) == -9
            assert not (prefix / "pids" / "fastkong.pid").exists()
            assert slow.recv(65536).startswith(b"HTTP/1.1 200 ")
        eventually(lambda: not any(is_running(pid) for pid in node_processes), 40)
    finally:
        gw.stop()


# -- the commands' errors (in this process: no node needed) ----------------------------------


@pytest.mark.parametrize("command", ["stop", "quit", "reload", "health"])
def test_errors_on_inexisting_prefix(
    command: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    code, out, err = run_command(capsys, command, "--prefix", "inexistent")
    assert (code, out) == (1, "")
    assert err == f"Error: no such prefix: {ROOT / 'inexistent'}\n"


def test_a_command_without_a_prefix_says_which_option_to_use(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("FASTKONG_PREFIX", "KONG_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    code, _, err = run_command(capsys, "stop")
    assert code == 1
    assert err.startswith("Error: no prefix given: use -p/--prefix PREFIX, or set FASTKONG_PREFIX")
    # Kong: the prefix may come from the environment; -p wins over it ("stop honors custom
    # Kong prefix higher than environment variable").
    monkeypatch.setenv("KONG_PREFIX", str(tmp_path))
    assert run_command(capsys, "health")[2] == f"Error: fastkong is not running at {tmp_path}\n"
    code, _, err = run_command(capsys, "health", "-p", str(tmp_path / "dne"))
    assert err == f"Error: no such prefix: {tmp_path / 'dne'}\n"


@pytest.mark.parametrize("command", ["stop", "quit", "reload", "health", "drain"])
def test_command_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([command, "--help"])
    assert exited.value.code == 0
    assert "--prefix" in capsys.readouterr().out


def test_does_not_start_with_an_invalid_declarative_config_file(tmp_path: Path) -> None:
    """Kong's case, its errors in fastkong's shape; the refused start leaves no pid file."""
    bad = tmp_path / "bad.yml"
    bad.write_text(
        '_format_version: "1.1"\nservices:\n- name: "@gobo"\n  protocol: foo\n'
        "  host: mockbin.org\n- name: my-service\n  url: http://mockbin.org\n  routes:\n"
        "  - name: example-route\n    hosts:\n    - example.test\n    - \\\\99\n"
    )
    gw = Gateway(tmp_path, None, 1, "-c", str(bad), "--prefix", str(tmp_path / "prefix"))
    done = subprocess.run(gw.command(), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "services[0].protocol: expected one of: grpc, grpcs, http, https, tcp, tls, " \
        "tls_passthrough, udp" in done.stderr  # fmt: skip
    assert (
        "services[0].name: invalid value '@gobo': the only accepted ascii characters are "
        "alphanumerics or ., -, _, and ~" in done.stderr
    )
    assert "services[1].routes[0].hosts[1]: invalid hostname: \\\\99" in done.stderr
    assert not (tmp_path / "prefix" / "pids" / "fastkong.pid").exists()
    assert os.listdir(tmp_path / "prefix" / "pids") == []
