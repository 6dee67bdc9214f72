"""Stream routes from Kubernetes, served: TCPRoute, TLSRoute (Passthrough and Terminate) and a
TCPIngress are translated, and the config is loaded by ``fastkong start --stream-listen`` on
the Gateway listeners' ports, in front of real TCP and TLS servers on loopback (the
EndpointSlices point there). Each connection must reach the backend its route names."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fastkong.k8s import translate
from tests.helpers import (
    Gateway,
    TaggedEcho,
    free_port,
    tag_and_echo,
    tls_server_context,
    wait_port,
)
from tests.k8s.kube import (
    backend_ref,
    endpoint_slice,
    gateway,
    gateway_class,
    listener,
    service,
    tcp_ingress,
    tcp_rule,
    tls_secret,
)
from tests.pki import Pki

ALPHA = "gateway.networking.k8s.io/v1alpha2"


def _route(kind: str, name: str, section: str, backend: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": ALPHA,
        "kind": kind,
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "parentRefs": [{"name": "main", "sectionName": section}],
            "rules": [{"backendRefs": [backend_ref(backend, 80)]}],
            **spec,
        },
    }


class Cluster:
    """Backends on loopback, the objects that name them, and the gateway serving the result."""

    def __init__(self, tmp: Path) -> None:
        self.pki = Pki("k8s stream CA")
        term_cert, term_key = self.pki.issue("term.example.test", dns="term.example.test")
        up_cert, up_key = self.pki.issue("pass.example.test", dns="pass.example.test")
        self.tcp_backend, self.term_backend, self.ingress_backend = (
            TaggedEcho(tag).start() for tag in ("tcp", "term", "ingress")
        )
        self.pass_backend = TaggedEcho("pass", tls_server_context(up_cert, up_key, tmp)).start()
        self.tcp_port, self.tls_port, self.ingress_port = free_port(), free_port(), free_port()
        objects: list[dict[str, Any]] = [
            gateway_class(),
            gateway(
                "main",
                listener("db", "TCP", self.tcp_port),
                listener(
                    "pass",
                    "TLS",
                    self.tls_port,
                    hostname="pass.example.test",
                    tls={"mode": "Passthrough"},
                ),
                listener(
                    "term",
                    "TLS",
                    self.tls_port,
                    hostname="term.example.test",
                    tls={"mode": "Terminate", "certificateRefs": [{"name": "term"}]},
                ),
            ),
            tls_secret("term", term_cert, term_key),
            _route("TCPRoute", "db", "db", "tcp-backend"),
            _route("TLSRoute", "pass", "pass", "pass-backend"),
            _route("TLSRoute", "term", "term", "term-backend"),
            tcp_ingress("legacy", tcp_rule(self.ingress_port, "ingress-backend")),
        ]
        for name, server in (
            ("tcp-backend", self.tcp_backend),
            ("pass-backend", self.pass_backend),
            ("term-backend", self.term_backend),
            ("ingress-backend", self.ingress_backend),
        ):
            objects.append(service(name, 80))
            objects.append(endpoint_slice(f"{name}-1", name, "127.0.0.1", server.port))
        result = translate(objects)
        assert not result.problems, result.problems
        self.gateway = Gateway(
            tmp,
            result.to_yaml(),
            1,
            "--stream-listen",
            f"127.0.0.1:{self.tcp_port}, 127.0.0.1:{self.tls_port} ssl, "
            f"127.0.0.1:{self.ingress_port}",
        )

    def start(self) -> None:
        self.gateway.start()
        for port in (self.tcp_port, self.tls_port, self.ingress_port):
            wait_port(port, proc=self.gateway.proc)

    def stop(self) -> None:
        self.gateway.stop()
        for server in (
            self.tcp_backend,
            self.pass_backend,
            self.term_backend,
            self.ingress_backend,
        ):
            server.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("k8s-stream"))
    c.start()
    try:
        yield c
    finally:
        c.stop()


def test_tcproute_and_tcp_ingress_reach_their_backends(cluster: Cluster) -> None:
    for port, tag in ((cluster.tcp_port, b"tcp"), (cluster.ingress_port, b"ingress")):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            assert tag_and_echo(sock) == (tag, b"ping")


def test_tlsroutes_pass_through_and_terminate(cluster: Cluster) -> None:
    ctx = ssl.create_default_context(cadata=cluster.pki.pem)
    for host, tag in (("pass.example.test", b"pass"), ("term.example.test", b"term")):
        with socket.create_connection(("127.0.0.1", cluster.tls_port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname=host) as sock:
                # The client verified the certificate for ``host``: the backend's own
                # when passed through, the listener's Secret when terminated.
                assert tag_and_echo(sock) == (tag, b"ping")


def test_an_sni_no_route_names_is_closed(cluster: Cluster) -> None:
    ctx = ssl.create_default_context(cadata=cluster.pki.pem)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", cluster.tls_port), timeout=10) as raw:
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            with ctx.wrap_socket(raw, server_hostname="other.example.test") as sock:
                sock.sendall(b"x")
                if sock.recv(10) == b"":
                    raise ConnectionError("closed")
