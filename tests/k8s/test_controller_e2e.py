"""End to end, in process: fake API server -> controller -> ConfigMap -> a kubelet that
projects it into a volume (AtomicWriter layout) -> a running ``fastkong start -c <vol>/kong.yml``.
And the command itself (``ingress-controller``), configured the way the manifests do."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import ssl
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fastkong.k8s.controller_cli import add_parser, options_from_args
from tests.helpers import ROOT, Echo, free_port
from tests.helpers import Gateway as DataPlane
from tests.k8s.fake_apiserver import FakeApiServer
from tests.k8s.kube import NS, Kubelet, backend, configmap, controller, eventually, ingress
from tests.pki import Pki

pytestmark = pytest.mark.integration


@pytest.fixture
def echo() -> Iterator[Echo]:
    e = Echo().start()
    yield e
    e.stop()


async def code(http: httpx.AsyncClient, url: str) -> int:
    return (await http.get(url)).status_code


async def test_a_new_ingress_is_served_through_the_configmap_and_survives_the_controller(
    tmp_path: Path, echo: Echo
) -> None:
    async with FakeApiServer() as api, httpx.AsyncClient() as http:
        api.create(configmap("fastkong-config", '_format_version: "3.0"\n'))
        backend(api, "echo", echo.port)
        kubelet = Kubelet(api, tmp_path / "volume", "fastkong-config").start()
        gw = DataPlane(tmp_path, None, 1, "-c", str(kubelet.path), "--prefix", str(tmp_path / "p"))
        await asyncio.to_thread(gw.start, False)
        try:
            async with controller(api, configmap="fastkong-config", leader_election=True) as ctl:
                await eventually(lambda: ctl.configmap and ctl.configmap.writes == 1)
                assert await code(http, gw.url("/new")) == 404

                api.create(ingress("new", "/new", "echo"))

                async def served() -> bool:
                    return await code(http, gw.url("/new")) == 200

                await eventually(served, what="/new served")
                assert kubelet.swaps >= 3  # initial, the controller's first write, /new
                r = await http.get(gw.url("/new/deeper"))
                assert r.status_code == 200 and r.headers.get("via")

            # The controller is gone (and released its Lease); the data plane keeps its config.
            lease = api.get("Lease", NS, "fastkong-controller")
            assert lease is not None and not lease["spec"].get("holderIdentity")
            await asyncio.sleep(0.3)
            assert await code(http, gw.url("/new")) == 200
        finally:
            await kubelet.stop()
            assert await asyncio.to_thread(gw.stop) == 0


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fastkong")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_options_come_from_the_manifests_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "FASTKONG_INGRESS_CLASS": "fastkong,kong",
        "FASTKONG_CONFIGMAP": "fastkong-config",
        "FASTKONG_ADMIN_SERVICE": "fastkong-admin",
        "POD_NAME": "fastkong-controller-abc",
        "POD_NAMESPACE": "fastkong",
        "FASTKONG_ADMIN_TOKEN": "t0k",
        "FASTKONG_GATEWAY_CONTROLLER_NAME": "konghq.com/kic-gateway-controller",
        "FASTKONG_COMBINED_SERVICES": "true",
    }.items():
        monkeypatch.setenv(name, value)
    opts = options_from_args(parse(["ingress-controller"]))
    assert list(opts.ingress_classes) == ["fastkong", "kong"]
    assert (opts.configmap, opts.admin_service) == ("fastkong-config", "fastkong-admin")
    assert (opts.pod_name, opts.namespace, opts.admin_token) == (
        "fastkong-controller-abc",
        "fastkong",
        "t0k",
    )
    assert opts.health_listen == "0.0.0.0:10254" and opts.leader_election
    assert opts.proxy_service == "fastkong-proxy"
    assert opts.gateway_controller == "konghq.com/kic-gateway-controller"
    assert opts.combined_services is True
    flags = parse(["ingress-controller", "--ingress-class", "x", "--no-leader-election"])
    assert list(options_from_args(flags).ingress_classes) == ["x"]
    assert not options_from_args(flags).leader_election
    monkeypatch.delenv("FASTKONG_GATEWAY_CONTROLLER_NAME")
    monkeypatch.delenv("FASTKONG_COMBINED_SERVICES")
    defaults = options_from_args(parse(["ingress-controller"]))
    assert defaults.gateway_controller == "fastkong.io/gateway-controller"
    assert defaults.combined_services is False


async def test_the_command_runs_against_a_kubeconfig_and_stops_on_sigterm(tmp_path: Path) -> None:
    async with FakeApiServer() as api, httpx.AsyncClient() as http:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(api.kubeconfig())
        api.create(configmap("fastkong-config", '_format_version: "3.0"\n'))
        api.create(ingress("orphan", "/x", "missing"))
        health, webhook = free_port(), free_port()
        pki = Pki("webhook CA")
        cert, key = pki.issue("webhook", ip="127.0.0.1")
        (tmp_path / "tls.crt").write_text(cert)
        (tmp_path / "tls.key").write_text(key)
        env = {
            **os.environ,
            "FASTKONG_INGRESS_CLASS": "fastkong",
            "FASTKONG_CONFIGMAP": "fastkong-config",
            "FASTKONG_ADMIN_SERVICE": "fastkong-admin",
            "POD_NAME": "cli-0",
            "POD_NAMESPACE": NS,
            # The admission webhook, as the chart configures it.
            "CONTROLLER_ADMISSION_WEBHOOK_LISTEN": f"127.0.0.1:{webhook}",
            "CONTROLLER_ADMISSION_WEBHOOK_CERT_FILE": str(tmp_path / "tls.crt"),
            "CONTROLLER_ADMISSION_WEBHOOK_KEY_FILE": str(tmp_path / "tls.key"),
        }
        program = (
            "import sys; from tests.k8s.test_controller_e2e import parse; "
            "args = parse(sys.argv[1:]); sys.exit(args.func(args))"
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            program,
            "ingress-controller",
            "--kubeconfig",
            str(kubeconfig),
            "--health-listen",
            f"127.0.0.1:{health}",
            "--debounce",
            "0.05",
            "--retry-period",
            "0.2",
            "--renew-deadline",
            "1",
            "--lease-duration",
            "2",
            "--log-level",
            "warning",
            cwd=ROOT,
            env=env,
        )
        try:

            def written() -> bool:
                cm = api.get("ConfigMap", NS, "fastkong-config")
                return cm is not None and "fastkong.io/config-hash" in (
                    cm["metadata"].get("annotations") or {}
                )

            await eventually(written, timeout=15, what="the command wrote the ConfigMap")
            lease = api.get("Lease", NS, "fastkong-controller")
            assert lease is not None and lease["spec"]["holderIdentity"] == "cli-0"
            assert any(e["involvedObject"]["name"] == "orphan" for e in api.all("Event"))
            ready = await http.get(f"http://127.0.0.1:{health}/readyz")
            assert ready.status_code == 200
            bad_plugin = {
                "apiVersion": "configuration.konghq.com/v1",
                "kind": "KongPlugin",
                "metadata": {"name": "rl", "namespace": "default"},
                "plugin": "rate-limiting",
                "config": {"minute": "often"},
            }
            review = {
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "request": {"uid": "u-1", "operation": "CREATE", "object": bad_plugin},
            }
            async with httpx.AsyncClient(verify=ssl.create_default_context(cadata=pki.pem)) as tls:
                answer = await tls.post(f"https://127.0.0.1:{webhook}/", json=review)
            assert answer.status_code == 200
            assert answer.json()["response"]["allowed"] is False
            assert ("GET", "/api/v1/services?limit=500") in api.requests
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            returncode = await asyncio.wait_for(proc.wait(), 10)
        assert returncode == 0
        lease = api.get("Lease", NS, "fastkong-controller")
        assert lease is not None and not lease["spec"].get("holderIdentity")
