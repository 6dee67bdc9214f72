"""Offline checks of what we ship for Kubernetes: the kustomize base and overlay, the Helm chart,
the CRDs (and the CRs in the golden inputs against them), and the Dockerfile.

No API server can run here (reference/k8s.md section 2): objects are checked against the
Kubernetes OpenAPI schemas of ``kubernetes-validate`` (strict: unknown fields are errors), for the
oldest and newest Kubernetes the chart supports. The chart is rendered by Helm's own engine
through ``helm-python-sdk`` (no helm binary exists for this platform); the kustomizations by
``kubectl kustomize``. A missing tool fails these tests: install the test extra.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from helm_python import Chart, lint

from fastkong.cli import proxy_listeners, stream_listeners
from fastkong.k8s import translate
from fastkong.k8s.admission import Reviewer
from fastkong.k8s.admission_server import AdmissionServer
from fastkong.k8s.controller import ControllerOptions
from fastkong.k8s.watch import RESOURCES
from tests.k8s import gateway_api_schema
from tests.k8s.conftest import CASES, GOLDEN, REPO, load_objects

KUBE_VERSIONS = ["1.25.0", "1.37.0"]
BASE = REPO / "configs" / "kubernetes" / "base"
OVERLAY = REPO / "configs" / "kubernetes" / "overlays" / "with-controller"
CHART = REPO / "configs" / "helm" / "fastkong"
GATEWAY_EXAMPLE = REPO / "configs" / "kubernetes" / "examples" / "gateway-api.yaml"
STREAM_EXAMPLE = REPO / "configs" / "kubernetes" / "examples" / "stream"
ACME_EXAMPLE = REPO / "configs" / "kubernetes" / "examples" / "acme.yaml"
CR_GROUP = "configuration.konghq.com"
GATEWAY_GROUP = "gateway.networking.k8s.io"
IMAGE = "fastkong:0.1.0"

CHART_VALUES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "deployment-with-controller": {
        "deployment": {"daemonset": False, "replicaCount": 3},
        "ingressController": {"enabled": True},
        "proxy": {"type": "NodePort", "tls": {"enabled": True, "secretName": "edge-tls"}},
        "dblessConfig": {"checksumAnnotation": True},
        "env": {"trusted_ips": "0.0.0.0/0"},
        "tolerations": [{"operator": "Exists"}],
    },
    "existing-configmap": {
        "dblessConfig": {"configMap": "from-controller"},
        "admin": {"enabled": False},
        "networkPolicy": {"enabled": False},
        "rbac": {"create": False},
        "serviceAccount": {"create": False, "name": "gateway"},
        "proxy": {"type": "ClusterIP"},
    },
    "stream": {
        "proxy": {"type": "NodePort", "tls": {"enabled": True, "secretName": "edge-tls"}},
        "stream": {
            "listeners": [
                {
                    "name": "postgres",
                    "containerPort": 5432,
                    "nodePort": 30432,
                    "proxyProtocol": True,
                },
                {"name": "tls", "containerPort": 9443, "servicePort": 9000, "ssl": True},
            ]
        },
    },
}


def kustomize(path: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed to render the kustomizations (apt: kubectl)"
    proc = subprocess.run(
        [kubectl, "kustomize", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin", "KUBECONFIG": "/dev/null", "HOME": "/tmp"},
    )
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def render_chart(values: dict[str, Any]) -> list[dict[str, Any]]:
    chart = Chart.load(str(CHART))
    chart.validate_schema(values)
    rendered = chart.render(values, name="fastkong", namespace="fastkong")
    docs = []
    for name, text in sorted(rendered.items()):
        if name.endswith(".yaml"):
            docs += [d for d in yaml.safe_load_all(text) if d]
    docs += [yaml.safe_load(p.read_text()) for p in sorted((CHART / "crds").glob("*.yaml"))]
    return docs


def check_builtin(obj: dict[str, Any]) -> None:
    for version in KUBE_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            name = f"{obj['kind']} {obj['metadata'].get('name')}"
            pytest.fail(
                f"{name} invalid for Kubernetes {version}: {exc.message} at {list(exc.path)}"
            )


def crd_schemas() -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted((BASE / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        (version,) = crd["spec"]["versions"]
        out[crd["spec"]["names"]["kind"]] = _strict(version["schema"]["openAPIV3Schema"])
    return out


def gateway_api_schemas() -> dict[str, dict[str, Any]]:
    """``kind`` -> strict schema of the Gateway API kinds (fastkong's own, see
    :mod:`tests.k8s.gateway_api_schema`)."""
    return gateway_api_schema.schemas()


def _strict(schema: Any) -> Any:
    """An openAPIV3Schema as JSON Schema in which unknown fields are errors (the API server
    would prune them; kubectl --validate=strict rejects them)."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items() if not k.startswith("x-kubernetes")}
    if (
        schema.get("type") == "object"
        and "properties" in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
        and "additionalProperties" not in schema
    ):
        out["additionalProperties"] = False
    return out


def stream_ports(container: dict[str, Any]) -> dict[str, tuple[int, bool]]:
    """Port name -> (container port, ssl) of each KONG_STREAM_LISTEN listener; each listener
    must have its own container port."""
    env = {e["name"]: e.get("value") for e in container["env"]}
    listeners = stream_listeners(env.get("KONG_STREAM_LISTEN") or "off")
    names = {p["containerPort"]: p["name"] for p in container["ports"]}
    assert all(x.host == "0.0.0.0" and x.port in names for x in listeners), listeners
    assert len({x.port for x in listeners}) == len(listeners)
    return {names[x.port]: (x.port, x.ssl) for x in listeners}


def gateway_pod(objs: list[dict[str, Any]]) -> dict[str, Any]:
    (workload,) = [
        o
        for o in objs
        if o["kind"] in ("DaemonSet", "Deployment")
        and o["metadata"]["labels"].get("app.kubernetes.io/component") == "gateway"
    ]
    return workload["spec"]["template"]["spec"]


# -- kustomize ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path", [BASE, OVERLAY, STREAM_EXAMPLE], ids=["base", "with-controller", "stream"]
)
def test_kustomization_objects_are_valid(path: Path) -> None:
    objs = kustomize(path)
    for obj in objs:
        check_builtin(obj)
    assert all(o["metadata"].get("namespace") in (None, "fastkong") for o in objs)


def test_base_holds_the_data_plane() -> None:
    kinds = sorted(o["kind"] for o in kustomize(BASE))
    assert kinds == sorted(
        [
            "Namespace",
            *["CustomResourceDefinition"] * 9,  # KongPlugin, KongClusterPlugin, KongConsumer,
            # KongUpstreamPolicy, KongIngress, IngressClassParameters, TCPIngress, UDPIngress,
            # KongVault
            "IngressClass",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "DaemonSet",
            "Service",
            "Service",
            "NetworkPolicy",
        ]
    )


def test_overlay_adds_the_controller() -> None:
    objs = kustomize(OVERLAY)
    (controller,) = [o for o in objs if o["kind"] == "Deployment"]
    container = controller["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == IMAGE
    assert container["args"] == ["ingress-controller"]
    assert {o["kind"] for o in objs} >= {"Role", "RoleBinding", "DaemonSet"}


# -- policy: what every rendering of the data plane must keep -----------------------------------
def _renderings() -> list[tuple[str, list[dict[str, Any]]]]:
    out = [("kustomize-base", kustomize(BASE)), ("kustomize-overlay", kustomize(OVERLAY))]
    out += [("kustomize-stream", kustomize(STREAM_EXAMPLE))]
    out += [(f"chart-{k}", render_chart(v)) for k, v in CHART_VALUES.items()]
    return out


@pytest.fixture(scope="module")
def renderings() -> list[tuple[str, list[dict[str, Any]]]]:
    return _renderings()


def test_data_plane_policy(renderings: list[tuple[str, list[dict[str, Any]]]]) -> None:
    for label, objs in renderings:
        pod = gateway_pod(objs)
        (container,) = pod["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["KONG_DECLARATIVE_CONFIG"] == "/etc/fastkong/kong.yml", label
        assert env["KONG_STATUS_LISTEN"] == "0.0.0.0:8100", label
        stream = stream_ports(container)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert {k: v for k, v in ports.items() if k not in stream} == {
            "proxy": 8000,
            "proxy-tls": 8443,
            "admin": 8001,
            "status": 8100,
        }, label
        assert container["readinessProbe"]["httpGet"] == {"path": "/status/ready", "port": "status"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/status", "port": "status"}
        sleep = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
        assert 0 < sleep < pod["terminationGracePeriodSeconds"], label
        sc = container["securityContext"]
        assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"], label
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
        assert container["image"] == IMAGE and not container["image"].endswith(":latest")
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert (
            "subPath" not in mounts["config"] and mounts["config"]["mountPath"] == "/etc/fastkong"
        )
        assert mounts["tmp"]["mountPath"] == "/tmp"
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "configMap" in volumes["config"] and "emptyDir" in volumes["tmp"]


def test_admin_service_is_headless(renderings: list[tuple[str, list[dict[str, Any]]]]) -> None:
    for label, objs in renderings:
        admin = [
            o for o in objs if o["kind"] == "Service" and o["metadata"]["name"].endswith("-admin")
        ]
        assert admin and admin[0]["spec"]["clusterIP"] == "None", label


def test_stream_listeners_are_exposed(
    renderings: list[tuple[str, list[dict[str, Any]]]],
) -> None:
    """Each KONG_STREAM_LISTEN listener is a container port, a port of the proxy Service
    (targeting it by name) and a port the NetworkPolicy opens."""
    seen = {}
    for label, objs in renderings:
        stream = stream_ports(gateway_pod(objs)["containers"][0])
        seen[label] = stream
        proxy = [
            o for o in objs if o["kind"] == "Service" and o["metadata"]["name"].endswith("-proxy")
        ]
        for service in proxy:
            targets = {p["targetPort"] for p in service["spec"]["ports"]}
            assert set(stream) <= targets, label
            assert len({p["port"] for p in service["spec"]["ports"]}) == len(targets), label
        for policy in [o for o in objs if o["kind"] == "NetworkPolicy"]:
            opened = {p["port"] for p in policy["spec"]["ingress"][0]["ports"]}
            assert set(stream) <= opened, label
    assert seen["kustomize-stream"] == {
        "postgres": (5432, False),
        "tls-passthru": (9443, True),
        "dns": (5353, False),
    }
    assert seen["chart-stream"] == {"postgres": (5432, False), "tls": (9443, True)}
    assert all(not v for k, v in seen.items() if not k.endswith("-stream"))


def test_chart_stream_service_ports() -> None:
    objs = render_chart(CHART_VALUES["stream"])
    (proxy,) = [o for o in objs if o["metadata"]["name"] == "fastkong-proxy"]
    ports = {p["name"]: p for p in proxy["spec"]["ports"]}
    assert ports["postgres"] == {
        "name": "postgres",
        "port": 5432,
        "targetPort": "postgres",
        "protocol": "TCP",
        "nodePort": 30432,
    }
    assert ports["tls"]["port"] == 9000 and "nodePort" not in ports["tls"]
    (container,) = gateway_pod(objs)["containers"][:1]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KONG_STREAM_LISTEN"] == "0.0.0.0:5432 proxy_protocol, 0.0.0.0:9443 ssl"
    assert env["KONG_PROXY_LISTEN"] == "0.0.0.0:8000, 0.0.0.0:8443 http2 ssl"
    values = copy.deepcopy(CHART_VALUES["stream"])
    values["proxy"]["tls"]["proxyProtocol"] = True
    values["proxy"]["http"] = {"proxyProtocol": True}
    (container,) = gateway_pod(render_chart(values))["containers"][:1]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KONG_PROXY_LISTEN"] == (
        "0.0.0.0:8000 proxy_protocol, 0.0.0.0:8443 http2 ssl proxy_protocol"
    )
    proxy_listeners(env["KONG_PROXY_LISTEN"], None, None)  # fastkong reads it
    values = copy.deepcopy(CHART_VALUES["stream"])
    values["proxy"] = {"type": "ClusterIP"}
    (proxy,) = [o for o in render_chart(values) if o["metadata"]["name"] == "fastkong-proxy"]
    assert all("nodePort" not in p for p in proxy["spec"]["ports"])


# -- the chart ---------------------------------------------------------------------------------
@pytest.mark.parametrize("values", list(CHART_VALUES), ids=list(CHART_VALUES))
def test_chart_renders_valid_objects(values: str) -> None:
    for obj in render_chart(CHART_VALUES[values]):
        check_builtin(obj)


def test_chart_defaults_match_the_kustomize_base() -> None:
    chart = render_chart({})
    base = kustomize(BASE)
    assert sorted(o["kind"] for o in chart) == sorted(
        o["kind"] for o in base if o["kind"] != "Namespace"
    )
    chart_pod, base_pod = gateway_pod(chart), gateway_pod(base)
    for key in ("containers",):
        c, b = chart_pod[key][0], base_pod[key][0]
        for field in (
            "image",
            "args",
            "ports",
            "readinessProbe",
            "livenessProbe",
            "lifecycle",
            "resources",
            "securityContext",
            "volumeMounts",
        ):
            assert c[field] == b[field], field
        assert [e for e in c["env"] if e["name"] != "KONG_NGINX_WORKER_PROCESSES"] == [
            e for e in b["env"] if e["name"] != "KONG_NGINX_WORKER_PROCESSES"
        ]
    assert chart_pod["securityContext"] == base_pod["securityContext"]


def test_chart_switches() -> None:
    objs = render_chart(CHART_VALUES["deployment-with-controller"])
    kinds = [o["kind"] for o in objs]
    assert kinds.count("Deployment") == 2 and "DaemonSet" not in kinds
    pod = gateway_pod(objs)
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["KONG_SSL_CERT"] == "/etc/fastkong-tls/tls.crt"
    assert env["KONG_TRUSTED_IPS"] == "0.0.0.0/0"
    # Every proxy port the pod declares is a listener, the TLS one with TLS (it was declared
    # while the gateway listened on the plain port alone).
    served = {
        x.port: x.ssl
        for x in proxy_listeners(env["KONG_PROXY_LISTEN"], env["KONG_SSL_CERT"], "key")
    }
    ports = {p["name"]: p["containerPort"] for p in pod["containers"][0]["ports"]}
    assert served == {ports["proxy"]: False, ports["proxy-tls"]: True}
    objs = render_chart(CHART_VALUES["existing-configmap"])
    assert "ConfigMap" not in [o["kind"] for o in objs]
    pod = gateway_pod(objs)
    assert pod["serviceAccountName"] == "gateway"
    assert {v["name"]: v for v in pod["volumes"]}["config"]["configMap"][
        "name"
    ] == "from-controller"


def test_chart_lints_and_its_schema_rejects_bad_values() -> None:
    result = lint(str(CHART), strict=True, kube_version="v1.33.0")
    assert result["errors"] == [], result
    chart = Chart.load(str(CHART))
    for bad in ({"proxy": {"type": "Ingress"}}, {"deployment": {"daemonset": "yes"}}, {"typo": 1}):
        with pytest.raises(Exception, match="fastkong"):
            chart.validate_schema(bad)
    for listener in (
        {"name": "status", "containerPort": 9000},  # a name the chart uses
        {"name": "a-very-long-name", "containerPort": 9000},  # over 15 characters
        {"name": "Pg", "containerPort": 9000},
        {"name": "5432", "containerPort": 9000},  # no letter
        {"name": "pg"},
        {"name": "pg", "containerPort": 70000},
        {"name": "pg", "containerPort": 9000, "udp": "yes"},
        {"name": "pg", "containerPort": 9000, "nodePort": 80},
    ):
        with pytest.raises(Exception, match="fastkong"):
            chart.validate_schema({"stream": {"listeners": [listener]}})


@pytest.mark.parametrize(
    "listeners",
    [
        [{"name": "pg", "containerPort": 8000}],  # proxy's container port
        [{"name": "pg", "containerPort": 9000, "servicePort": 80}],  # proxy's service port
        [{"name": "pg", "containerPort": 9000}, {"name": "pg", "containerPort": 9001}],
        [{"name": "a", "containerPort": 9000}, {"name": "b", "containerPort": 9000}],
        [
            {"name": "a", "containerPort": 9000},
            {"name": "b", "containerPort": 9001, "servicePort": 9000},
        ],
        [
            {"name": "a", "containerPort": 9000, "nodePort": 30100},
            {"name": "b", "containerPort": 9001, "nodePort": 30100},
        ],
        [{"name": "a", "containerPort": 9000, "nodePort": 30080}],  # proxy.http's nodePort
    ],
)
def test_chart_refuses_stream_listeners_that_collide(listeners: list[dict[str, Any]]) -> None:
    values: dict[str, Any] = {"stream": {"listeners": listeners}}
    if any(x.get("nodePort") == 30080 for x in listeners):
        values["proxy"] = {"type": "NodePort", "http": {"nodePort": 30080}}
    Chart.load(str(CHART)).validate_schema(values)
    with pytest.raises(Exception, match="is taken"):
        render_chart(values)


def assert_protocols(objs: list[dict[str, Any]], want: dict[str, str]) -> None:
    """Each named stream port has protocol ``want[name]`` on the gateway's container, the
    proxy Service and the NetworkPolicy (a TCP port would never carry a udp listener's
    datagrams)."""
    (container,) = gateway_pod(objs)["containers"][:1]
    (proxy,) = [o for o in objs if o["metadata"]["name"] == "fastkong-proxy"]
    (policy,) = [o for o in objs if o["kind"] == "NetworkPolicy"]
    for found in (
        {p["name"]: p["protocol"] for p in container["ports"]},
        {p["name"]: p["protocol"] for p in proxy["spec"]["ports"]},
        {p["port"]: p.get("protocol", "TCP") for p in policy["spec"]["ingress"][0]["ports"]},
    ):
        assert {name: found.get(name) for name in want} == want


def test_stream_example_udp_listener_is_udp_everywhere() -> None:
    objs = kustomize(STREAM_EXAMPLE)
    (container,) = gateway_pod(objs)["containers"][:1]
    env = {e["name"]: e.get("value") for e in container["env"]}
    flags = [x.flags for x in stream_listeners(env["KONG_STREAM_LISTEN"])]
    assert flags == [(), ("ssl",), ("udp",)]
    assert_protocols(objs, {"dns": "UDP", "postgres": "TCP", "tls-passthru": "TCP"})


def test_chart_udp_listener_is_udp_everywhere() -> None:
    """A ``udp: true`` listener: Kong's ``udp`` flag, and container, Service and NetworkPolicy
    ports of protocol UDP (a TCP port would never carry its datagrams); not with ssl."""
    listeners = [{"name": "dns", "containerPort": 5353}, {"name": "pg", "containerPort": 5432}]
    listeners[0]["udp"] = True
    objs = render_chart({"stream": {"listeners": listeners}})
    for obj in objs:
        check_builtin(obj)
    (container,) = gateway_pod(objs)["containers"][:1]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KONG_STREAM_LISTEN"] == "0.0.0.0:5353 udp, 0.0.0.0:5432"
    assert [x.flags for x in stream_listeners(env["KONG_STREAM_LISTEN"])] == [("udp",), ()]
    assert_protocols(objs, {"dns": "UDP", "pg": "TCP"})
    listeners[0]["ssl"] = True
    with pytest.raises(Exception, match="udp cannot be ssl"):
        render_chart({"stream": {"listeners": listeners}})


def test_chart_crds_are_the_base_crds() -> None:
    for path in sorted((BASE / "crds").glob("*.yaml")):
        assert (CHART / "crds" / path.name).read_text() == path.read_text()


# -- CRDs and the custom resources in the golden inputs ----------------------------------------
def test_golden_inputs_are_valid_kubernetes_objects() -> None:
    schemas = {**crd_schemas(), **gateway_api_schemas()}
    seen = set()
    for case in CASES:
        for obj in load_objects(GOLDEN / case / "in.yaml"):
            seen.add(obj["kind"])
            if obj["apiVersion"].startswith((CR_GROUP, GATEWAY_GROUP)):
                errors = sorted(
                    jsonschema.Draft7Validator(schemas[obj["kind"]]).iter_errors(obj), key=str
                )
                assert not errors, f"{case}: {obj['kind']} {obj['metadata']['name']}: {errors[0]}"
            else:
                check_builtin(obj)
    assert {"KongPlugin", "KongClusterPlugin", "KongConsumer", "EndpointSlice"} <= seen
    assert {"GatewayClass", "Gateway", "HTTPRoute", "ReferenceGrant"} <= seen


def test_gateway_api_schemas_reject_typos() -> None:
    schemas = gateway_api_schemas()
    route = {
        "apiVersion": f"{GATEWAY_GROUP}/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "r"},
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}]}],
        },
    }
    assert not list(jsonschema.Draft7Validator(schemas["HTTPRoute"]).iter_errors(route))
    route["spec"]["rules"][0]["matchs"] = []
    assert list(jsonschema.Draft7Validator(schemas["HTTPRoute"]).iter_errors(route))


def test_gateway_api_stream_route_schemas() -> None:
    schemas = gateway_api_schemas()
    gateway = {
        "apiVersion": f"{GATEWAY_GROUP}/v1",
        "kind": "Gateway",
        "metadata": {"name": "gw"},
        "spec": {
            "gatewayClassName": "fastkong",
            "listeners": [
                {"name": "pg", "port": 5432, "protocol": "TCP"},
                {
                    "name": "vault",
                    "port": 9443,
                    "protocol": "TLS",
                    "hostname": "vault.example.com",
                    "tls": {"mode": "Passthrough"},
                    "allowedRoutes": {"kinds": [{"kind": "TLSRoute"}]},
                },
            ],
        },
    }
    assert not list(jsonschema.Draft7Validator(schemas["Gateway"]).iter_errors(gateway))
    backend = {"name": "pg", "port": 5432, "weight": 1}
    tcp = {
        "apiVersion": f"{GATEWAY_GROUP}/v1alpha2",
        "kind": "TCPRoute",
        "metadata": {"name": "pg"},
        "spec": {
            "parentRefs": [{"name": "gw", "sectionName": "pg", "port": 5432}],
            "rules": [{"name": "all", "backendRefs": [backend]}],
        },
    }
    tls = copy.deepcopy(tcp) | {"kind": "TLSRoute"}
    tls["spec"]["hostnames"] = ["vault.example.com"]
    for route in (tcp, tls):
        validator = jsonschema.Draft7Validator(schemas[route["kind"]])
        assert not list(validator.iter_errors(route)), route["kind"]
        for typo in (
            {"rules": [{"backendRef": [backend]}]},
            {"rules": [{"matches": [], "backendRefs": [backend]}]},  # no matches on streams
            {"rules": []},
            {"parentRefs": [{"name": "gw", "sectionname": "pg"}]},
        ):
            bad = copy.deepcopy(route)
            bad["spec"].update(typo)
            assert list(validator.iter_errors(bad)), (route["kind"], typo)
        # TLSRoute is v1 since Gateway API v1.5 (and v1alpha3, v1alpha2 before); TCPRoute is not.
        wrong = "v1" if route["kind"] == "TCPRoute" else "v1beta1"
        assert list(validator.iter_errors({**route, "apiVersion": f"{GATEWAY_GROUP}/{wrong}"}))
        if route["kind"] == "TLSRoute":
            for version in ("v1", "v1alpha3"):
                served = {**route, "apiVersion": f"{GATEWAY_GROUP}/{version}"}
                assert not list(validator.iter_errors(served)), version
    tcp["spec"]["hostnames"] = ["vault.example.com"]  # TLSRoute only
    assert list(jsonschema.Draft7Validator(schemas["TCPRoute"]).iter_errors(tcp))


def test_crds_accept_kic_fields_and_reject_typos() -> None:
    schemas = crd_schemas()
    plugin = {
        "apiVersion": f"{CR_GROUP}/v1",
        "kind": "KongPlugin",
        "metadata": {"name": "p"},
        "plugin": "rate-limiting",
        "config": {"minute": 5, "anything": {"nested": True}},
        "configPatches": [{"path": "/x", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
        "disabled": False,
        "instance_name": "rl",
        "protocols": ["http", "https"],
        "ordering": {"before": {"access": ["key-auth"]}},
        "run_on": "first",
        "consumerRef": "alice",
        "status": {"conditions": []},
    }
    assert not list(jsonschema.Draft7Validator(schemas["KongPlugin"]).iter_errors(plugin))
    typo = copy.deepcopy(plugin)
    typo["plugni"] = "x"
    assert list(jsonschema.Draft7Validator(schemas["KongPlugin"]).iter_errors(typo))
    cluster = {**plugin, "kind": "KongClusterPlugin"}
    cluster["configPatches"] = [
        {"path": "/x", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
    ]
    assert list(jsonschema.Draft7Validator(schemas["KongClusterPlugin"]).iter_errors(cluster))
    consumer = {
        "apiVersion": f"{CR_GROUP}/v1",
        "kind": "KongConsumer",
        "metadata": {"name": "c"},
        "username": "alice",
        "custom_id": "1",
        "credentials": ["a"],
        "consumerGroups": ["g"],
    }
    assert not list(jsonschema.Draft7Validator(schemas["KongConsumer"]).iter_errors(consumer))
    policy = {
        "apiVersion": f"{CR_GROUP}/v1beta1",
        "kind": "KongUpstreamPolicy",
        "metadata": {"name": "u"},
        "spec": {
            "algorithm": "consistent-hashing",
            "slots": 100,
            "hashOn": {"header": "x-user"},
            "hashOnFallback": {"input": "ip"},
            "healthchecks": {
                "active": {
                    "type": "http",
                    "httpPath": "/health",
                    "healthy": {"interval": 5, "successes": 2, "httpStatuses": [200]},
                    "unhealthy": {"interval": 5, "httpFailures": 3, "tcpFailures": 1},
                    "headers": {"x-probe": ["1"]},
                },
                "passive": {"unhealthy": {"httpFailures": 5, "httpStatuses": [500, 503]}},
                "threshold": 50,
            },
        },
    }
    assert not list(jsonschema.Draft7Validator(schemas["KongUpstreamPolicy"]).iter_errors(policy))
    typo = copy.deepcopy(policy)
    typo["spec"]["hashOn"] = {"hedaer": "x-user"}
    assert list(jsonschema.Draft7Validator(schemas["KongUpstreamPolicy"]).iter_errors(typo))
    kong_ingress = {
        "apiVersion": f"{CR_GROUP}/v1",
        "kind": "KongIngress",
        "metadata": {"name": "k"},
        "upstream": {
            "algorithm": "consistent-hashing",
            "hash_on": "header",
            "hash_on_header": "x-user",
            "slots": 1000,
            "healthchecks": {"active": {"http_path": "/health", "healthy": {"interval": 5}}},
        },
        "proxy": {"retries": 3},
        "route": {"strip_path": True},
    }
    schema = schemas["KongIngress"]
    assert not list(jsonschema.Draft7Validator(schema).iter_errors(kong_ingress))
    kong_ingress["upstream"]["hash_onn"] = "ip"
    assert list(jsonschema.Draft7Validator(schema).iter_errors(kong_ingress))
    params = {
        "apiVersion": f"{CR_GROUP}/v1alpha1",
        "kind": "IngressClassParameters",
        "metadata": {"name": "p"},
        "spec": {"serviceUpstream": True, "enableLegacyRegexDetection": False},
    }
    schema = schemas["IngressClassParameters"]
    assert not list(jsonschema.Draft7Validator(schema).iter_errors(params))
    params["spec"]["serviceUpstreams"] = True
    assert list(jsonschema.Draft7Validator(schema).iter_errors(params))


def test_tcpingress_crd_accepts_kic_fields_and_rejects_typos() -> None:
    schema = crd_schemas()["TCPIngress"]
    ingress = {
        "apiVersion": f"{CR_GROUP}/v1beta1",
        "kind": "TCPIngress",
        "metadata": {"name": "t", "annotations": {"kubernetes.io/ingress.class": "kong"}},
        "spec": {
            "rules": [
                {"port": 5432, "backend": {"serviceName": "pg", "servicePort": 5432}},
                {
                    "host": "vault.example.com",
                    "port": 9443,
                    "backend": {"serviceName": "vault", "servicePort": 8200},
                },
            ],
            "tls": [{"hosts": ["vault.example.com"], "secretName": "vault-tls"}],
        },
        "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}},
    }
    assert not list(jsonschema.Draft7Validator(schema).iter_errors(ingress))
    for path, value in [
        (("spec", "rules", 0, "backend"), {"serviceName": "pg", "serivcePort": 5432}),
        (("spec", "rules", 0, "backend"), {"serviceName": "pg"}),
        (("spec", "rules", 0, "backend"), {"serviceName": "Pg_1", "servicePort": 5432}),
        (("spec", "rules", 0, "port"), 0),
        (("spec", "rules", 1), {"host": "a", "backend": {"serviceName": "a", "servicePort": 1}}),
        (("spec", "tls", 0), {"host": ["vault.example.com"], "secretName": "s"}),
        (("spec",), {"rule": []}),
    ]:
        typo = copy.deepcopy(ingress)
        parent = typo
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = value
        assert list(jsonschema.Draft7Validator(schema).iter_errors(typo)), (path, value)


def test_kongvault_crd_accepts_kic_fields_and_rejects_typos() -> None:
    schema = crd_schemas()["KongVault"]
    kong_vault = {
        "apiVersion": f"{CR_GROUP}/v1alpha1",
        "kind": "KongVault",
        "metadata": {"name": "env", "annotations": {"kubernetes.io/ingress.class": "kong"}},
        "spec": {
            "backend": "env",
            "prefix": "my-env",
            "description": "environment variables",
            "config": {"prefix": "APP_"},
            "tags": ["team-a"],
        },
    }
    assert not list(jsonschema.Draft7Validator(schema).iter_errors(kong_vault))
    for spec in [
        {"prefix": "my-env"},  # no backend
        {"backend": "env"},  # no prefix
        {"backend": "env", "prefix": ""},
        {"backend": "env", "prefix": "p", "configs": {}},  # a typo
        {"backend": "env", "prefix": "p", "tags": ["x"] * 21},
    ]:
        typo = copy.deepcopy(kong_vault)
        typo["spec"] = spec
        assert list(jsonschema.Draft7Validator(schema).iter_errors(typo)), spec


def test_udpingress_crd_accepts_kic_fields_and_rejects_typos() -> None:
    schema = crd_schemas()["UDPIngress"]
    ingress = {
        "apiVersion": f"{CR_GROUP}/v1beta1",
        "kind": "UDPIngress",
        "metadata": {"name": "u", "annotations": {"kubernetes.io/ingress.class": "kong"}},
        "spec": {"rules": [{"port": 9999, "backend": {"serviceName": "dns", "servicePort": 53}}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}},
    }
    assert not list(jsonschema.Draft7Validator(schema).iter_errors(ingress))
    for rule in [
        {"port": 9999, "backend": {"serviceName": "dns", "serivcePort": 53}},
        {"port": 9999, "backend": {"serviceName": "dns"}},
        {"port": 70000, "backend": {"serviceName": "dns", "servicePort": 53}},
        # TCPIngress's fields are not UDPIngress's.
        {"host": "a", "port": 9999, "backend": {"serviceName": "dns", "servicePort": 53}},
    ]:
        typo = copy.deepcopy(ingress)
        typo["spec"]["rules"] = [rule]
        assert list(jsonschema.Draft7Validator(schema).iter_errors(typo)), rule
    typo = copy.deepcopy(ingress)
    typo["spec"]["tls"] = [{"hosts": ["a"], "secretName": "s"}]
    assert list(jsonschema.Draft7Validator(schema).iter_errors(typo))


def test_the_gateway_api_example_is_valid_and_translates() -> None:
    schemas = gateway_api_schemas()
    objs = load_objects(GATEWAY_EXAMPLE)
    assert sorted(o["kind"] for o in objs) == ["Gateway", "GatewayClass", "HTTPRoute"]
    for obj in objs:
        errors = list(jsonschema.Draft7Validator(schemas[obj["kind"]]).iter_errors(obj))
        assert not errors, errors[0]
    services = [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": n, "namespace": "default"}}
        | {"spec": {"ports": [{"port": 80}]}}
        for n in ("echo", "echo-canary")
    ]
    result = translate(objs + services)
    assert result.problems == []
    routes = [r for s in result.config["services"] for r in s["routes"]]
    assert {r["name"] for r in routes} == {
        "httproute.default.echo.0.0",
        "httproute.default.echo.1.0",
    }
    assert all(r["hosts"] == ["echo.example.com"] for r in routes)


def test_the_acme_example_is_valid_and_makes_a_global_acme_plugin() -> None:
    objs = load_objects(ACME_EXAMPLE)
    assert sorted(o["kind"] for o in objs) == ["Ingress", "KongClusterPlugin"]
    schemas = crd_schemas()
    for obj in objs:
        if obj["kind"] in schemas:
            errors = list(jsonschema.Draft7Validator(schemas[obj["kind"]]).iter_errors(obj))
            assert not errors, errors[0]
        else:
            check_builtin(obj)
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "shop"}}
    service["metadata"]["namespace"] = "default"
    service["spec"] = {"ports": [{"port": 80}]}
    result = translate([*objs, service])
    assert result.problems == []
    (plugin,) = result.config["plugins"]
    assert plugin["name"] == "acme" and "route" not in plugin and "service" not in plugin
    assert plugin["config"]["storage"] == "redis"
    (route,) = [r for s in result.config["services"] for r in s["routes"]]
    # the Ingress's "/" rule is the route the CA's challenge request takes
    assert route["hosts"] == ["shop.example.com"] and "/" in route["paths"]


def _rules(objs: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    (role,) = [o for o in objs if o["kind"] == "ClusterRole"]
    return [
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    ]


def test_cluster_role_covers_what_the_controller_reads_and_writes(
    renderings: list[tuple[str, list[dict[str, Any]]]],
) -> None:
    for label, objs in renderings:
        if not any(o["kind"] == "ClusterRole" for o in objs):
            continue  # rbac.create: false
        granted = set(_rules(objs))
        for res in RESOURCES:
            for verb in ("list", "watch"):
                assert (res.group, res.plural, verb) in granted, (label, res, verb)
        for plural in (
            "gatewayclasses",
            "gateways",
            "httproutes",
            "tcproutes",
            "tlsroutes",
            "udproutes",
            "backendtlspolicies",
        ):
            assert ("gateway.networking.k8s.io", f"{plural}/status", "update") in granted, label
        # The stream routes, named here as well until fastkong.k8s.watch.RESOURCES has them.
        for group, plural in [
            (GATEWAY_GROUP, "tcproutes"),
            (GATEWAY_GROUP, "tlsroutes"),
            (CR_GROUP, "tcpingresses"),
        ]:
            for verb in ("get", "list", "watch"):
                assert (group, plural, verb) in granted, (label, plural, verb)
        # The Ingress status (loadBalancer) of our Ingresses, TCPIngresses and UDPIngresses.
        for group, plural in [
            ("networking.k8s.io", "ingresses"),
            (CR_GROUP, "tcpingresses"),
            (CR_GROUP, "udpingresses"),
        ]:
            assert (group, f"{plural}/status", "patch") in granted, (label, plural)
        # The Programmed condition of Kong's CRDs (fastkong/k8s/programmed.py): a PUT.
        for plural in ("kongplugins", "kongclusterplugins", "kongconsumers", "kongvaults"):
            assert (CR_GROUP, f"{plural}/status", "update") in granted, (label, plural)


# -- the image ---------------------------------------------------------------------------------
def test_dockerfile_is_multi_stage_non_root_and_matches_the_manifests() -> None:
    text = (REPO / "Dockerfile").read_text()
    froms = [line.split()[1] for line in text.splitlines() if line.startswith("FROM ")]
    assert froms == ["python:3.11-slim", "python:3.11-slim"]
    assert "pip wheel" in text and "from=builder" in text
    assert "USER 10001:10001" in text
    assert 'ENTRYPOINT ["fastkong"]' in text and 'CMD ["start"]' in text
    pod = gateway_pod(kustomize(BASE))
    assert pod["securityContext"]["runAsUser"] == 10001


def _webhook_objects(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        o["kind"]: o
        for o in objs
        if o["kind"] == "ValidatingWebhookConfiguration"
        or "validation-webhook" in o["metadata"]["name"]
    }


async def test_chart_admission_webhook_fits_together(tmp_path: Path) -> None:
    """The chart's webhook pieces name each other, and the certificate it makes is served by
    the controller's webhook server and verifies against the configuration's caBundle under
    the Service's name, as the API server would call it."""
    objs = render_chart(CHART_VALUES["deployment-with-controller"])
    hooks = _webhook_objects(objs)
    assert set(hooks) == {"Secret", "Service", "ValidatingWebhookConfiguration"}
    controller = next(
        o
        for o in objs
        if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-controller")
    )
    pod = controller["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert env["CONTROLLER_ADMISSION_WEBHOOK_LISTEN"] == f"0.0.0.0:{ports['webhook']}"
    service = hooks["Service"]
    assert service["spec"]["ports"][0]["targetPort"] == "webhook"
    labels = controller["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    # The Secret is mounted where the controller reads its pair by default.
    mount = next(m for m in container["volumeMounts"] if m["name"] == "webhook-cert")
    volume = next(v for v in pod["volumes"] if v["name"] == "webhook-cert")
    assert volume["secret"]["secretName"] == hooks["Secret"]["metadata"]["name"]
    defaults = ControllerOptions()
    assert Path(defaults.admission_cert_file).parent == Path(mount["mountPath"])
    # Every resource the webhooks send is one the controller watches.
    watched = {(r.group, r.plural) for r in RESOURCES}
    configuration = hooks["ValidatingWebhookConfiguration"]
    for hook in configuration["webhooks"]:
        assert hook["clientConfig"]["service"] == {
            "name": service["metadata"]["name"],
            "namespace": "fastkong",
            "port": 443,
            "path": "/",
        }
        assert hook["admissionReviewVersions"] == ["v1"] and hook["sideEffects"] == "None"
        for rule in hook["rules"]:
            for plural in rule["resources"]:
                assert (rule["apiGroups"][0], plural) in watched, plural
    selectors = [h.get("objectSelector") for h in configuration["webhooks"]]
    assert {s["matchExpressions"][0]["key"] for s in selectors if s} == {
        "konghq.com/credential",
        "konghq.com/validate",
        "konghq.com/ca-cert",
    }

    # The pair, served by the webhook server, verifies for the Service's DNS name.
    data = hooks["Secret"]["data"]
    (tmp_path / "tls.crt").write_bytes(base64.b64decode(data["tls.crt"]))
    (tmp_path / "tls.key").write_bytes(base64.b64decode(data["tls.key"]))
    ca = base64.b64decode(configuration["webhooks"][0]["clientConfig"]["caBundle"]).decode()
    server = AdmissionServer(
        Reviewer(lambda objects: translate(objects), ["fastkong"]),
        lambda: ([], 0, True),
        "127.0.0.1:0",
        str(tmp_path / "tls.crt"),
        str(tmp_path / "tls.key"),
    )
    await server.start()
    try:
        context = ssl.create_default_context(cadata=ca)
        reader, writer = await asyncio.open_connection(
            "127.0.0.1",
            server.port,
            ssl=context,
            server_hostname=f"{service['metadata']['name']}.fastkong.svc",
        )
        writer.close()
        await writer.wait_closed()
    finally:
        await server.stop()


def test_chart_admission_webhook_switches() -> None:
    values = copy.deepcopy(CHART_VALUES["deployment-with-controller"])
    values["ingressController"]["admissionWebhook"] = {"enabled": False}
    objs = render_chart(values)
    assert _webhook_objects(objs) == {}
    controller = next(o for o in objs if o["metadata"]["name"].endswith("-controller"))
    env = [e["name"] for e in controller["spec"]["template"]["spec"]["containers"][0]["env"]]
    assert "CONTROLLER_ADMISSION_WEBHOOK_LISTEN" not in env

    provided = {"provided": True, "secretName": "from-cert-manager", "caBundle": "Q0E="}
    values["ingressController"]["admissionWebhook"] = {"enabled": True, "certificate": provided}
    objs = render_chart(values)
    hooks = _webhook_objects(objs)
    assert "Secret" not in hooks
    hook = hooks["ValidatingWebhookConfiguration"]["webhooks"][0]
    assert hook["clientConfig"]["caBundle"] == "Q0E="
    controller = next(o for o in objs if o["metadata"]["name"].endswith("-controller"))
    volumes = controller["spec"]["template"]["spec"]["volumes"]
    assert {"name": "webhook-cert", "secret": {"secretName": "from-cert-manager"}} in volumes
    values["ingressController"]["admissionWebhook"]["certificate"] = {"provided": True}
    with pytest.raises(Exception, match="needs secretName and caBundle"):
        render_chart(values)


def test_chart_operations_objects_fit_together() -> None:
    """The disruption budgets, the autoscaler and the ServiceMonitor select what they mean to:
    the gateway pods, the gateway Deployment, every gateway's metrics."""
    assert not {"PodDisruptionBudget", "HorizontalPodAutoscaler", "ServiceMonitor"} & {
        o["kind"] for o in render_chart({})
    }
    values: dict[str, Any] = {
        "deployment": {"daemonset": False, "replicaCount": 3},
        "autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 9},
        "podDisruptionBudget": {"enabled": True},
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "ingressController": {"enabled": True},
    }
    objs = render_chart(values)
    for obj in objs:
        if obj["kind"] != "ServiceMonitor":  # (a CRD's kind: checked below)
            check_builtin(obj)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for obj in objs:
        by_kind.setdefault(obj["kind"], []).append(obj)
    gateway, controller = sorted(by_kind["Deployment"], key=lambda d: d["metadata"]["name"])
    assert "replicas" not in gateway["spec"]  # the autoscaler owns it
    (hpa,) = by_kind["HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": gateway["metadata"]["name"],
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 9)
    pod_labels = {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
        for d in (gateway, controller)
    }
    budgets = by_kind["PodDisruptionBudget"]
    for pdb in budgets:
        selected = [
            name
            for name, labels in pod_labels.items()
            if pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        assert len(selected) == 1, pdb
    assert len(budgets) == 2  # the gateway's and the controller's (2 replicas)

    (monitor,) = by_kind["ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    wanted = monitor["spec"]["selector"]["matchLabels"]
    (service,) = [
        s for s in by_kind["Service"] if wanted.items() <= s["metadata"]["labels"].items()
    ]
    assert service["spec"]["selector"].items() <= pod_labels[gateway["metadata"]["name"]].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    port = next(p for p in service["spec"]["ports"] if p["name"] == endpoint["port"])
    container = gateway["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KONG_STATUS_LISTEN"].endswith(f":{ports[port['targetPort']]}")
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["fastkong"]}

    values["deployment"]["daemonset"] = True
    with pytest.raises(Exception, match="autoscaling needs deployment.daemonset: false"):
        render_chart(values)
    chart = Chart.load(str(CHART))
    with pytest.raises(Exception, match="fastkong"):
        chart.validate_schema({"serviceMonitor": {"interval": "soon"}})


WEBHOOK_EXAMPLE = REPO / "configs" / "kubernetes" / "examples" / "admission-webhook"


def test_the_kustomize_webhook_example_matches_the_chart() -> None:
    """The cert-manager example for kustomize users: valid objects, the same webhooks as the
    chart's, and a certificate for the Service's name in the Secret the controller mounts."""
    objs = kustomize(WEBHOOK_EXAMPLE)
    for obj in objs:
        if not obj["apiVersion"].startswith("cert-manager.io/"):
            check_builtin(obj)
    by_kind = {
        o["kind"]: o for o in objs if o["kind"] != "Service" or "webhook" in o["metadata"]["name"]
    }
    example = by_kind["ValidatingWebhookConfiguration"]
    chart = _webhook_objects(render_chart(CHART_VALUES["deployment-with-controller"]))
    chart_config = chart["ValidatingWebhookConfiguration"]

    def hooks(config: dict[str, Any]) -> list[Any]:
        return [
            (h["name"], h["rules"], h.get("objectSelector"), h["failurePolicy"])
            for h in config["webhooks"]
        ]

    assert hooks(example) == hooks(chart_config)
    assert example["metadata"]["name"] == chart_config["metadata"]["name"]
    certificate = by_kind["Certificate"]
    namespace, name = example["metadata"]["annotations"]["cert-manager.io/inject-ca-from"].split(
        "/"
    )
    assert (namespace, name) == ("fastkong", certificate["metadata"]["name"])
    service = by_kind["Service"]
    assert f"{service['metadata']['name']}.fastkong.svc" in certificate["spec"]["dnsNames"]
    controller = next(
        o
        for o in objs
        if o["kind"] == "Deployment" and o["metadata"]["name"] == "fastkong-controller"
    )
    pod = controller["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "webhook-cert")
    assert volume["secret"]["secretName"] == certificate["spec"]["secretName"]
    container = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert env["CONTROLLER_ADMISSION_WEBHOOK_LISTEN"] == f"0.0.0.0:{ports['webhook']}"
    assert service["spec"]["selector"].items() <= pod_labels(controller).items()


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels
