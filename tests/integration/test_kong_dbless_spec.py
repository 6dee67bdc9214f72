"""Kong's DB-less runtime specs (``spec/02-integration/11-dbless/``) against real gateways.

Ported:

- ``01-respawn_spec.lua`` l.48-259 (4 workers, ``nginx_main_worker_processes``: ``--workers``):
  the Admin API's ``GET /`` ``pids.workers`` and ``GET /status`` ``memory.workers_lua_vms``
  rotate when every worker is killed (l.78-189), and a config posted to ``/config`` (key-auth
  and a consumer) is what the respawned workers serve (l.191-258). ``helpers.signal_workers(nil,
  "-TERM")`` is a SIGTERM to each worker pid the node reports; fastkong's workers are Granian's,
  whose master (``respawn_failed_workers``, fastkong/control/granian_main.py) starts a new one
  that loads the current config from the state file under the prefix. The spec's cases each
  kill every worker right after the previous case's respawn: that sequence is a case of its
  own here (``test_workers_killed_again_right_after_respawning_come_back``).
- ``02-workers_spec.lua`` l.16-62 (1 worker): a killed worker comes back serving a 1001-service
  config with 1001 key-auth instances. Kong's log check (no "error building initial plugins
  iterator") is, here, no worker ``cannot load`` line and no traceback on stderr.
- ``03-config_persistence_spec.lua`` l.16-57: a posted 1001-service config is served after a
  restart on the same prefix. Kong's log line "found persisted lmdb config" is observed as
  fastkong reports it: ``/status`` ``fastkong.config_source`` "admin API (persisted)"
  (fastkong/control/supervisor.py ``load_initial``). l.60-162: with a declarative config
  (``-c``), neither a restart nor a reload (``kong reload``: SIGHUP, README.md "Signals") serves
  the posted config; the file's is served.
- ``04-pagination_spec.lua`` l.67-106: a posted 3000-service config is served after a restart
  with no error logged. Its ``post-function`` asserted ``kong.db``'s internal page sizes (Lua, and
  Kong's DAO: left out) and ended the request with ``ngx.exit(200)``: a global
  ``request-termination`` with status 200 stands for that exit. The Admin API's own page-size
  bounds are covered by tests/integration/test_admin_kong_api.py::test_size_errors_are_kongs_*.

Covered elsewhere (not repeated): a small posted config surviving a restart
(tests/integration/test_dbless.py::test_posted_config_survives_a_restart), memory across
reloads (tests/integration/test_reload_memory.py).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import Echo, Gateway, eventually

pytestmark = pytest.mark.integration

WORKER_PROCS = 4
#: Kong's SERVICE_YML (02-workers_spec.lua l.5-14, 03-config_persistence_spec.lua l.5-14).
SERVICE_YML = """- name: my-service-{i}
  url: https://example{i}.dev
{plugins}  routes:
  - name: my-route-{i}
    paths:
    - /{i}
"""
KEY_AUTH = "  plugins:\n  - name: key-auth\n"
#: Slow steps under a loaded machine (a 3000-service load, a worker's respawn).
LONG = 60.0


def services(numbers: range | list[int], plugins: str = KEY_AUTH, head: str = "") -> str:
    """Kong's generated config: ``_format_version``, ``head``, one service per number."""
    body = "".join(SERVICE_YML.format(i=i, plugins=plugins) for i in numbers)
    return f"_format_version: '3.0'\n{head}services:\n{body}"


def admin(gw: Gateway, path: str) -> str:
    return f"http://127.0.0.1:{gw.admin_port}{path}"


def post_config(gw: Gateway, text: str) -> int:
    """``POST /config`` as Kong's specs send it (JSON ``{"config": <yaml>}``): the status."""
    return httpx.post(admin(gw, "/config"), json={"config": text}, timeout=LONG).status_code


def proxy_status(gw: Gateway, path: str, **headers: str) -> int:
    headers.setdefault("host", "example1.dev")
    return httpx.get(gw.url(path), headers=headers, timeout=LONG).status_code


def node_pids(gw: Gateway) -> list[int]:
    """``GET /`` ``pids.workers`` on the Admin API, holes (JSON nulls) removed."""
    body = httpx.get(admin(gw, "/"), timeout=10).json()
    return [pid for pid in body["pids"].get("workers") or [] if pid is not None]


def lua_vms(gw: Gateway) -> list[dict[str, Any]]:
    """``GET /status`` ``memory.workers_lua_vms`` on the Admin API, holes removed."""
    body = httpx.get(admin(gw, "/status"), timeout=10).json()
    return [entry for entry in body["memory"]["workers_lua_vms"] if entry is not None]


def signal_workers(pids: list[int]) -> None:
    """``helpers.signal_workers(nil, "-TERM")``: SIGTERM to each worker of the node."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def wait_pids(gw: Gateway, count: int, timeout: float = 10.0) -> list[int]:
    found: list[int] = []

    def enough() -> bool:
        found[:] = node_pids(gw)
        return len(found) == count

    eventually(enough, timeout)
    return found


def wait_until_no_common_workers(gw: Gateway, old: list[int], count: int) -> None:
    """Kong's helper: the node reports ``count`` workers, none of them one of ``old``."""

    def rotated() -> bool:
        assert gw.proc is not None and gw.proc.poll() is None, f"the node exited: {gw.proc}"
        try:
            pids = node_pids(gw)
        except httpx.HTTPError:  # Kong's assert.eventually(...).ignore_exceptions(true)
            return False
        return len(pids) == count and not set(pids) & set(old)

    eventually(rotated, LONG)


def wait_serving(gw: Gateway, timeout: float = LONG) -> None:
    """Every worker serves the node's current config (the hash each one reports)."""

    def in_step() -> bool:
        status = gw.status()
        workers = status["fastkong"]["workers"]
        return len(workers) == gw.workers and set(workers.values()) == {
            status["configuration_hash"]
        }

    eventually(in_step, timeout)


def start(workdir: Path, prefix: Path, workers: int = 1, *extra: str) -> Gateway:
    """``fastkong start`` with ``--prefix``, stderr to ``workdir/stderr.log``; a node without a
    config is not ready, so readiness is waited for only with ``-c``."""
    gw = Gateway(workdir, None, workers, "--prefix", str(prefix), *extra)
    gw.stderr_path = workdir / "stderr.log"
    return gw.start(wait_ready="-c" in extra)


def restart(gw: Gateway) -> Gateway:
    """``helpers.restart_kong``: stop the node, start it again on the same prefix and flags."""
    assert gw.stop() == 0
    again = Gateway(gw.workdir, None, gw.workers, *gw.extra)
    again.stderr_path = gw.stderr_path
    try:
        again.start(wait_ready=False)
        wait_serving(again)
    except BaseException:
        again.stop()
        raise
    return again


def stderr_problems(gw: Gateway) -> list[str]:
    """Lines of the node's stderr that say something failed: a worker that could not load its
    config, a traceback, an error of Granian's."""
    assert gw.stderr_path is not None
    marks = ("cannot load", "Traceback", "[ERROR]", "Unexpected exit")
    text = gw.stderr_path.read_text(errors="replace")
    return [line for line in text.splitlines() if any(mark in line for mark in marks)]


# -- 01-respawn_spec.lua ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def respawn_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    workdir = tmp_path_factory.mktemp("respawn")
    gw = start(workdir, workdir / "prefix", WORKER_PROCS)
    try:
        yield gw
    finally:
        gw.stop()


def test_rotates_pids_and_deletes_the_old_ones(respawn_node: Gateway) -> None:
    """01-respawn_spec.lua l.78-126. Kong lists every worker's pid from its start (each worker
    stores it in the ``kong`` shm when it seeds, kong/globalpatches.lua:509-518; ``GET /``
    reads them, kong/api/routes/kong.lua:96-111), config or not: this node has none yet."""
    gw = respawn_node
    pids = wait_pids(gw, WORKER_PROCS)
    signal_workers(pids)
    wait_until_no_common_workers(gw, pids, WORKER_PROCS)


def test_rotates_kong_mem_stats_and_deletes_the_old_ones(respawn_node: Gateway) -> None:
    """01-respawn_spec.lua l.128-189: ``GET /status`` ``memory.workers_lua_vms`` has one entry
    per worker, by pid (kong/pdk/node.lua:171-226); a respawned worker's replaces the old."""
    gw = respawn_node
    mem: list[dict[str, Any]] = []

    def per_worker() -> bool:
        mem[:] = lua_vms(gw)
        return len(mem) == WORKER_PROCS

    eventually(per_worker, 10)
    old = {entry["pid"] for entry in mem}
    assert None not in old
    signal_workers(sorted(old))

    def rotated() -> bool:
        now = lua_vms(gw)
        return len(now) == WORKER_PROCS and not {entry["pid"] for entry in now} & old

    eventually(rotated, LONG)


def cache_page_config(echo: Echo) -> str:
    """01-respawn_spec.lua l.196-215, on the echo upstream."""
    return f"""_format_version: "3.0"
services:
- name: my-service
  host: 127.0.0.1
  port: {echo.port}
  path: /
  protocol: http
  plugins:
  - name: key-auth
  routes:
  - name: my-route
    paths:
    - /
consumers:
- username: my-user
  keyauth_credentials:
  - key: my-key
"""


def test_lands_on_the_correct_cache_page_5799(respawn_node: Gateway, echo: Echo) -> None:
    """01-respawn_spec.lua l.191-258: the respawned workers serve the posted config."""
    gw = respawn_node
    assert post_config(gw, cache_page_config(echo)) == 201
    # (the workers take the posted config up independently: readiness says when all have)
    wait_serving(gw)
    assert proxy_status(gw, "/") == 401
    assert proxy_status(gw, "/", apikey="my-key") == 200

    wait_serving(gw)  # helpers.get_kong_workers(WORKER_PROCS): every worker is up
    workers = wait_pids(gw, WORKER_PROCS)
    signal_workers(workers)
    wait_until_no_common_workers(gw, workers, WORKER_PROCS)

    assert proxy_status(gw, "/") == 401
    assert proxy_status(gw, "/", apikey="my-key") == 200


def test_workers_killed_again_right_after_respawning_come_back(
    respawn_node: Gateway, echo: Echo
) -> None:
    """The spec's three cases each TERM every worker (l.100, l.150, l.243) right after the
    previous case's respawn: nginx's master starts a new worker whenever one dies, however
    soon after its own start."""
    gw = respawn_node
    assert post_config(gw, cache_page_config(echo)) == 201
    for _ in range(2):
        wait_serving(gw)
        workers = wait_pids(gw, WORKER_PROCS)
        signal_workers(workers)
        wait_until_no_common_workers(gw, workers, WORKER_PROCS)
    assert proxy_status(gw, "/", apikey="my-key") == 200


# -- 02-workers_spec.lua ---------------------------------------------------------------------


def test_restarts_worker_with_1000_plugins_in_the_config(tmp_path: Path) -> None:
    """02-workers_spec.lua l.35-62: ``nginx_worker_processes = 1``; the killed worker comes
    back with the posted 1001 key-auth instances and proxies (401: no key)."""
    gw = start(tmp_path, tmp_path / "prefix", 1)
    try:
        assert post_config(gw, services(range(1, 1002))) == 201
        wait_serving(gw)  # Kong's worker answered the POST: it had loaded the config
        workers = node_pids(gw)
        signal_workers(workers)
        # Kong sends its request right after the TERM: nginx's master keeps the listening
        # socket, so it waits in the backlog. Granian's workers each bind the port themselves
        # (SO_REUSEPORT), so a node of ONE worker refuses connections for the second its
        # worker takes to come back (README "Kong compatibility notes"; with two or more
        # workers the others serve meanwhile): the request is made once the worker is back.
        wait_until_no_common_workers(gw, workers, 1)
        assert proxy_status(gw, "/1") == 401
        assert stderr_problems(gw) == []
    finally:
        gw.stop()


# -- 03-config_persistence_spec.lua -----------------------------------------------------------


def test_loads_the_persisted_config_on_restarts(tmp_path: Path) -> None:
    """03-config_persistence_spec.lua l.27-57."""
    gw = start(tmp_path, tmp_path / "prefix")
    try:
        assert post_config(gw, services(range(1, 1002))) == 201
        gw = restart(gw)
        assert proxy_status(gw, "/1") == 401
        assert proxy_status(gw, "/1000") == 401
        # Kong: assert.logfile().has.line("found persisted lmdb config") (kong/init.lua:928)
        assert gw.status()["fastkong"]["config_source"] == "admin API (persisted)"
    finally:
        gw.stop()


DECLARATIVE = """_format_version: "3.0"
services:
- name: my-service
  url: https://example1.dev
  plugins:
  - name: key-auth
  routes:
  - name: my-route
    paths:
    - /test
"""


@pytest.fixture
def declarative_node(tmp_path: Path) -> Iterator[list[Gateway]]:
    """03-config_persistence_spec.lua l.78-117: a node started with ``declarative_config``,
    then ``services`` 500 posted to ``/config`` and served. A list, so a test can put the
    restarted node in it for the teardown."""
    yaml_file = tmp_path / "declarative.yml"
    yaml_file.write_text(DECLARATIVE)
    gw = start(tmp_path, tmp_path / "prefix", 1, "-c", str(yaml_file))
    nodes = [gw]
    try:
        assert proxy_status(gw, "/test") == 401
        assert post_config(gw, services([500])) == 201
        eventually(lambda: proxy_status(gw, "/500") == 401, 5)
        yield nodes
    finally:
        nodes[-1].stop()


def serves_the_file_not_the_posted_config(gw: Gateway) -> bool:
    return proxy_status(gw, "/test") == 401 and proxy_status(gw, "/500") == 404


def test_declarative_config_wins_over_the_persisted_one_on_restart(
    declarative_node: list[Gateway],
) -> None:
    """03-config_persistence_spec.lua l.122-141 (kong/init.lua:924-946: with a declarative
    config set, the persisted one is not loaded)."""
    gw = restart(declarative_node[0])
    declarative_node.append(gw)
    eventually(lambda: serves_the_file_not_the_posted_config(gw), 15)


def test_declarative_config_wins_over_the_persisted_one_on_reload(
    declarative_node: list[Gateway],
) -> None:
    """03-config_persistence_spec.lua l.143-162: ``kong reload`` with the declarative config
    set loads it again (kong/init.lua:936-946), the posted config gone: fastkong's reload is
    SIGHUP ("SIGHUP re-reads the config file at once", README.md)."""
    gw = declarative_node[0]
    assert gw.proc is not None
    gw.proc.send_signal(signal.SIGHUP)
    eventually(lambda: serves_the_file_not_the_posted_config(gw), 15)


# -- 04-pagination_spec.lua -------------------------------------------------------------------


def test_a_3000_service_config_is_served_after_a_restart(tmp_path: Path) -> None:
    """04-pagination_spec.lua l.78-106 (COUNT = 3000; the post-function's ``ngx.exit(200)`` is a
    global request-termination with status 200 here, see the module docstring)."""
    head = "plugins:\n- name: request-termination\n  config:\n    status_code: 200\n"
    gw = start(tmp_path, tmp_path / "prefix")
    try:
        assert post_config(gw, services(range(1, 3001), plugins="", head=head)) == 201
        gw = restart(gw)
        assert proxy_status(gw, "/1") == 200
        assert stderr_problems(gw) == []  # Kong: assert.logfile().has.no.line("[error]")
    finally:
        gw.stop()
