"""Third-party plugins through the ``fastkong.plugins`` entry-point group (docs/plugins.md, "Your
own"): a package installed beside fastkong is found by ``fastkong start`` (its workers and the
Admin API's config checks) and by ``fastkong config validate``, with no change to fastkong; a
package whose entry point does not load is reported and left out, and the rest still works.

The packages are real distributions on ``PYTHONPATH`` (a ``.dist-info`` with
``entry_points.txt``, what pip writes), so discovery goes through ``importlib.metadata`` as it
does for an installed plugin.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import ROOT, Echo, Gateway, echoed_headers, plugin_package

pytestmark = pytest.mark.integration

#: A plugin that stamps the request upstream and refuses one path: both hooks Kong's
#: ``access`` has (change the request, answer instead of proxying).
STAMP = """
import msgspec

from fastkong.plugins.base import Exit, Plugin


class StampConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    value: str
    refuse: str = "/refused"


class Stamp(Plugin):
    name = "stamp"
    priority = 900
    Config = StampConfig

    async def access(self, ctx):
        if ctx.path == self.config.refuse:
            return Exit(418, b'{"message":"stamped out"}', content_type="application/json")
        ctx.set_upstream_header("x-stamp", self.config.value)
        return None
"""

BROKEN = "raise ImportError('this plugin package is broken')\n"


def config(echo: Echo, plugins: str) -> str:
    return f"""_format_version: "3.0"
services:
- name: echo
  url: http://127.0.0.1:{echo.port}
  routes:
  - name: all
    paths: [/]
plugins:
{plugins}
"""


STAMPED = "- name: stamp\n  config: {value: from-a-package}\n"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> str:
    return plugin_package(
        tmp_path_factory.mktemp("site"),
        "fastkong-stamp",
        {"stamp_plugin": STAMP, "broken_plugin": BROKEN},
        {"stamp": "stamp_plugin:Stamp", "broken": "broken_plugin:Broken"},
    )


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, echo: Echo, site: str) -> Iterator[Gateway]:
    workdir = tmp_path_factory.mktemp("gateway")
    gateway = Gateway(workdir, config(echo, STAMPED))
    gateway.stderr_path = workdir / "stderr.log"
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("PYTHONPATH", site)
            gateway.start()
        yield gateway
    finally:
        gateway.stop()


def test_an_installed_plugin_runs_in_the_proxy(gateway: Gateway) -> None:
    r = httpx.get(gateway.url("/anything"))
    assert r.status_code == 200
    assert echoed_headers(r.json())["x-stamp"] == ["from-a-package"]
    refused = httpx.get(gateway.url("/refused"))
    assert refused.status_code == 418
    assert refused.json() == {"message": "stamped out"}


def test_the_admin_api_lists_it_and_checks_configs_with_it(gateway: Gateway, echo: Echo) -> None:
    admin = f"http://127.0.0.1:{gateway.admin_port}"
    enabled = httpx.get(f"{admin}/plugins/enabled").json()["enabled_plugins"]
    assert "stamp" in enabled
    assert "key-auth" in enabled
    assert "broken" not in enabled
    bad = config(echo, "- name: stamp\n  config: {value: 1}\n")
    r = httpx.post(f"{admin}/config", content=bad, headers={"content-type": "text/yaml"})
    assert r.status_code == 400
    assert r.json()["fields"]["plugins"] == [{"config": {"value": "expected a string"}}]


def test_a_broken_package_is_reported_and_left_out(gateway: Gateway) -> None:
    assert gateway.stderr_path is not None
    log = gateway.stderr_path.read_text()
    assert "plugin entry point 'broken' (broken_plugin:Broken) did not load" in log
    assert "this plugin package is broken" in log


def validate(path: Path, site: str | None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": site or ""}
    return subprocess.run(
        [sys.executable, "-m", "fastkong", "config", "validate", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )


def test_config_validate_knows_installed_plugins(tmp_path: Path, echo: Echo, site: str) -> None:
    path = tmp_path / "kong.yml"
    path.write_text(config(echo, STAMPED))
    assert validate(path, site).returncode == 0
    # the same file without the package: the plugin is unknown, by Kong's message
    missing = validate(path, None)
    assert missing.returncode == 1
    unknown = "plugin 'stamp' not enabled; add it to the 'plugins' configuration property"
    assert f"plugins[0].name: {unknown}" in missing.stdout + missing.stderr
