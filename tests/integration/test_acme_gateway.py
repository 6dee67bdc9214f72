"""The acme plugin in a running gateway, against Let's Encrypt's test CA (pebble) on loopback.

A real ``fastkong start`` with a plain listener (where pebble fetches the http-01 challenges:
its ``httpPort`` is the gateway's port) and an ``ssl`` listener (the edge, which serves the
ordered certificates by SNI); pebble resolves every name to 127.0.0.1 and is trusted through
``lua_ssl_trusted_certificate``. Nothing is mocked: the certificate a client gets is the one
pebble signed after fetching the key authorization through the gateway's own route.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fastkong.acme.storage import FileStorage, node_directory
from tests.acme_server import LoopbackDns, Pebble
from tests.helpers import Echo, Gateway, eventually, free_port, in_own_network
from tests.pki import Pki
from tests.redis_server import RedisServer

pytestmark = pytest.mark.integration

SHOP = "shop.example.test"


def peer_certificate(port: int, sni: str) -> x509.Certificate:
    """The leaf the gateway's ssl listener serves for ``sni`` (nothing verified)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni) as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def issuer_cn(cert: x509.Certificate) -> str:
    return str(cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def from_pebble(cert: x509.Certificate) -> bool:
    return issuer_cn(cert).startswith("Pebble Intermediate CA")


def names(cert: x509.Certificate) -> list[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.DNSName)


def acme_config(echo: Echo, pebble: Pebble, **fields: Any) -> str:
    plugin = {
        "account_email": "ops@example.test",
        "api_uri": pebble.directory_url,
        "domains": [SHOP, "*.apps.example.test"],
        "cert_type": "ecc",
        "fail_backoff_minutes": 1,
        **fields,
    }
    return json.dumps(
        {
            "_format_version": "3.0",
            "services": [
                {
                    "name": "echo",
                    "url": echo.url,
                    "routes": [{"name": "all", "paths": ["/"]}],
                }
            ],
            "plugins": [{"name": "acme", "config": plugin}],
        }
    )


@pytest.fixture
def storage() -> str:
    """The plugin's ``storage`` (a test parametrizes it to run over both)."""
    return "shm"


@pytest.fixture
def world(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, storage: str
) -> Iterator[dict[str, Any]]:
    redis = RedisServer().start() if storage == "redis" else None
    fields: dict[str, Any] = {}
    if redis is not None:
        fields = {"storage": "redis", "storage_config": {"redis": {"host": "127.0.0.1",
                  "port": redis.port, "extra_options": {"namespace": "edge"}}}}  # fmt: skip
    echo = Echo().start()
    dns = LoopbackDns().start()
    gateway = Gateway(tmp_path, None, 1, "--prefix", str(tmp_path / "prefix"))
    gateway.ssl_port = free_port()
    gateway.stderr_path = tmp_path / "gateway.log"
    pebble = Pebble(tmp_path / "pebble", dns, gateway.port)
    pebble.start()
    ca = tmp_path / "pebble-listener-ca.pem"
    ca.write_text(pebble.ca_pem)
    monkeypatch.setenv("KONG_LUA_SSL_TRUSTED_CERTIFICATE", f"system,{ca}")
    gateway.config_path.write_text(acme_config(echo, pebble, **fields))
    gateway.has_config = True
    try:
        yield {"gateway": gateway, "pebble": pebble, "echo": echo, "tmp": tmp_path, "redis": redis}
    finally:
        gateway.stop()
        pebble.stop()
        dns.stop()
        echo.stop()
        if redis is not None:
            redis.stop()


@pytest.mark.parametrize("storage", ["shm", "redis"])
def test_first_handshake_orders_then_the_certificate_is_served_and_survives_a_restart(
    world: dict[str, Any], storage: str
) -> None:
    gateway: Gateway = world["gateway"]
    pebble: Pebble = world["pebble"]
    gateway.start()
    first = peer_certificate(gateway.ssl_port, SHOP)  # type: ignore[arg-type]
    assert not from_pebble(first)  # the default certificate while the order runs
    served: list[x509.Certificate] = []

    def ordered() -> bool:
        served[:] = [peer_certificate(gateway.ssl_port, SHOP)]  # type: ignore[arg-type]
        return from_pebble(served[0])

    eventually(ordered, timeout=60)
    assert names(served[0]) == [SHOP]
    # a client that trusts pebble's root only gets through, the chain sent whole
    roots = pebble.issuer_roots()
    ctx = ssl.create_default_context(cadata=roots.root)
    with socket.create_connection(("127.0.0.1", gateway.ssl_port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=SHOP) as tls:
            tls.sendall(
                f"GET /hello HTTP/1.1\r\nHost: {SHOP}\r\nConnection: close\r\n\r\n".encode()
            )
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 ")
    # a name outside `domains` keeps the default certificate and orders nothing
    other = peer_certificate(gateway.ssl_port, "other.example.test")  # type: ignore[arg-type]
    assert not from_pebble(other)
    admin = f"http://127.0.0.1:{gateway.admin_port}"
    rows = httpx.get(f"{admin}/acme/certificates").json()["data"]
    assert [r["host"] for r in rows] == [SHOP]
    assert rows[0]["valid"] is True and rows[0]["issuer_cn"] == issuer_cn(served[0])
    assert rows[0]["pubkey_type"] == "id-ecPublicKey"
    serial = served[0].serial_number
    assert int(rows[0]["serial_number"].replace(":", ""), 16) == serial

    if storage == "redis":
        # lua-resty-acme's layout, so a Kong node on the same Redis reads it too
        stored = json.loads(world["redis"].cli("GET", f"edge::kong_acme:cert_key:{SHOP}"))
        assert x509.load_pem_x509_certificate(stored["cert"].encode()).serial_number == serial
    # Kong's shm store is lost with the node; the prefix's is not: the restarted gateway serves
    # the stored certificate from its first handshake, and orders nothing again. (From Redis,
    # the edge reads the stored certificates when it installs the config: from its first
    # handshakes, give or take that read.)
    gateway.stop()
    gateway.start()
    if storage == "redis":
        eventually(lambda: from_pebble(peer_certificate(gateway.ssl_port, SHOP)), timeout=5)  # type: ignore[arg-type]
    again = peer_certificate(gateway.ssl_port, SHOP)  # type: ignore[arg-type]
    assert from_pebble(again) and again.serial_number == serial


def test_admin_api_orders_lists_and_explains(world: dict[str, Any]) -> None:
    gateway: Gateway = world["gateway"]
    gateway.start()
    admin = f"http://127.0.0.1:{gateway.admin_port}"
    host = "a.apps.example.test"
    created = httpx.post(f"{admin}/acme", json={"host": host}, timeout=60)
    assert created.status_code == 201, created.text
    assert created.json() == {"message": f"certificate for host {host} is created"}
    # stored before the edge ever saw the name: its first handshake gets it
    cert = peer_certificate(gateway.ssl_port, host)  # type: ignore[arg-type]
    assert from_pebble(cert) and names(cert) == [host]
    one = httpx.get(f"{admin}/acme/certificates/{host}")
    assert one.status_code == 200 and one.json()["data"]["host"] == host
    missing = httpx.get(f"{admin}/acme/certificates/nope.example.test")
    assert missing.status_code == 404
    assert missing.json() == {
        "message": "Certificate for host nope.example.testnot found in storage"
    }
    assert httpx.get(f"{admin}/acme/certificates", params={"invalid_only": "true"}).json() == {
        "data": []
    }

    bad = [
        ({}, "host must be provided and containing a single domain"),
        ({"host": "x.example.test:8443"}, "port is not allowed in host"),
        (
            {"host": "unlisted.example.test", "test_http_challenge_flow": True},
            "problem found running sanity check for unlisted.example.test: host is not "
            "included in plugin config.domains",
        ),
    ]
    for body, message in bad:
        answer = httpx.post(f"{admin}/acme", json=body)
        assert (answer.status_code, answer.json()) == (400, {"message": message})

    # an order the CA refuses: a 500 with its reason, then Kong's backoff for the host
    refused = httpx.post(f"{admin}/acme", json={"host": "bad_name.apps.example.test"}, timeout=60)
    assert refused.status_code == 500
    assert refused.json()["message"].startswith(
        "failed to update certificate: could not create certificate for host: "
        "bad_name.apps.example.test err: "
    )
    backoff = httpx.post(f"{admin}/acme", json={"host": "bad_name.apps.example.test"})
    assert backoff.status_code == 500
    assert (
        "because of previous failure; this is configurable with config.fail_backoff_minutes"
        in (backoff.json()["message"])
    )
    renew = httpx.patch(f"{admin}/acme")
    assert (renew.status_code, renew.json()) == (
        202,
        {"message": "Renewal process started successfully"},
    )


def test_challenge_path_on_the_proxy(world: dict[str, Any]) -> None:
    gateway: Gateway = world["gateway"]
    gateway.start()
    path = "/.well-known/acme-challenge/"
    sanity = httpx.get(gateway.url(path + "x"), headers={"host": SHOP})
    assert (sanity.status_code, sanity.content) == (404, b"Not found\n")
    unknown = httpx.get(gateway.url(path + "no-such-token-0123456789"), headers={"host": SHOP})
    assert unknown.status_code == 404 and unknown.json()["message"] == "Not found"
    # a host outside `domains`: the plugin stays out of the way, the route proxies
    proxied = httpx.get(gateway.url(path + "x"), headers={"host": "elsewhere.example.test"})
    assert proxied.status_code == 200
    # a pending challenge's key authorization, as an order stores it, is answered as
    # lua-resty-acme answers (the value and a newline), in plain text
    token = "tok-0123456789abcdefghij"
    asyncio.run(_store(world["tmp"]).set(token + "#http-01", token + ".thumb", 60))
    answer = httpx.get(gateway.url(path + token), headers={"host": "a.apps.example.test"})
    assert (answer.status_code, answer.text) == (200, token + ".thumb\n")
    assert answer.headers["content-type"].startswith("text/plain")
    # and over TLS it is not served: http-01 is plain HTTP only (Kong checks the protocol)


def _store(tmp: Path) -> FileStorage:
    """The gateway's ``shm`` store (its prefix's ``acme/<zone>``), as its processes open it."""
    return FileStorage(node_directory("kong", tmp / "prefix"))


def test_renewal_orders_a_due_certificate_again_with_its_key(world: dict[str, Any]) -> None:
    gateway: Gateway = world["gateway"]
    tmp: Path = world["tmp"]
    # A stored certificate from another CA that expires within the threshold (it lives a day;
    # the threshold is 14 days), as a certificate ordered 80 days ago would.
    cert, key = Pki("Old CA").issue(SHOP, dns=SHOP)
    store = _store(tmp)

    async def seed() -> None:
        await store.set(f"kong_acme:cert_key:{SHOP}", json.dumps({"cert": cert, "key": key}))
        record = {"host": SHOP, "expire_at": int(time.time()) + 86400}
        await store.set(f"kong_acme:renew_config:{SHOP}", json.dumps(record))

    asyncio.run(seed())
    gateway.start()
    assert issuer_cn(peer_certificate(gateway.ssl_port, SHOP)) == "Old CA"  # type: ignore[arg-type]
    admin = f"http://127.0.0.1:{gateway.admin_port}"
    assert httpx.patch(f"{admin}/acme").status_code == 202

    def renewed() -> bool:
        row = httpx.get(f"{admin}/acme/certificates/{SHOP}").json()["data"]
        return str(row["issuer_cn"]).startswith("Pebble Intermediate CA")

    eventually(renewed, timeout=60)
    stored = json.loads(asyncio.run(store.get(f"kong_acme:cert_key:{SHOP}")) or "{}")
    assert stored["key"] == key  # a renewal keeps the certificate's key, as Kong's
    renewed_cert = x509.load_pem_x509_certificate(stored["cert"].encode())
    assert names(renewed_cert) == [SHOP]


def test_granian_termination_says_the_plugin_s_certificates_are_not_served(
    tmp_path: Path,
) -> None:
    echo = Echo()
    config = acme_config(echo, Pebble(tmp_path / "unused", LoopbackDns(), 1))
    gateway = Gateway(tmp_path, config, 1, "--ssl-termination", "granian")
    gateway.ssl_port = free_port()
    gateway.stderr_path = tmp_path / "gateway.log"
    try:
        gateway.start()
    finally:
        gateway.stop()
    log = gateway.stderr_path.read_text()
    assert "acme: with --ssl-termination granian the ssl listeners serve one certificate" in log


def test_sanity_check_of_the_challenge_path(tmp_path: Path) -> None:
    """``POST /acme`` with ``test_http_challenge_flow`` asks ``http://<host>/`` (port 80, as
    the CA will): the gateway listens on 127.0.0.1:80 in a network namespace of the test's
    own, where the port is free."""
    if not in_own_network(tmp_path):
        return
    echo = Echo().start()
    config = json.loads(acme_config(echo, Pebble(tmp_path / "unused", LoopbackDns(), 1)))
    config["plugins"][0]["config"]["domains"] = ["127.0.0.1", "127.0.0.2"]
    gateway = Gateway(tmp_path, json.dumps(config), 1, "--prefix", str(tmp_path / "prefix"))
    gateway.port = 80
    gateway.stderr_path = tmp_path / "gateway.log"
    admin = f"http://127.0.0.1:{gateway.admin_port}"

    def check(host: str) -> tuple[int, str]:
        body = {"host": host, "test_http_challenge_flow": "true"}
        answer = httpx.post(f"{admin}/acme", data=body, timeout=30)
        return answer.status_code, answer.json()["message"]

    problem = "problem found running sanity check for "
    try:
        gateway.start()
        assert check("127.0.0.1") == (200, "sanity test for host 127.0.0.1 passed")
        refused = check("127.0.0.2")  # in `domains`, nothing listens there
        assert refused[0] == 400 and refused[1].startswith(problem + "127.0.0.2: ")
        # No route catches the path any more. Kong would answer "no Route matched" (its docs
        # have users add a route for it); fastkong's plugin answers without one.
        config["services"][0]["routes"][0]["paths"] = ["/api"]
        posted = httpx.post(f"{admin}/config", json=config, timeout=30)
        assert posted.status_code == 201, posted.text
        eventually(lambda: "no Route matched" in httpx.get("http://127.0.0.1/other").text)
        challenge = "http://127.0.0.1/.well-known/acme-challenge/"
        assert httpx.get(challenge + "x").content == b"Not found\n"
        token = "tok-no-route-0123456789"
        asyncio.run(_store(tmp_path).set(token + "#http-01", token + ".thumb", 60))
        served = httpx.get(challenge + token)
        assert (served.status_code, served.text) == (200, token + ".thumb\n")
        # a host outside `domains` still gets Kong's 404, as does any other path
        other = httpx.get(challenge + token, headers={"host": "elsewhere.example"})
        assert other.status_code == 404 and "no Route matched" in other.text
        assert check("127.0.0.1") == (200, "sanity test for host 127.0.0.1 passed")
        # With the plugin kept off plain HTTP, nothing answers there: Kong's advice
        config["plugins"][0]["protocols"] = ["https"]
        posted = httpx.post(f"{admin}/config", json=config, timeout=30)
        assert posted.status_code == 201, posted.text
        eventually(lambda: "no Route matched" in httpx.get(challenge + "x").text)
        assert check("127.0.0.1") == (
            400,
            problem + "127.0.0.1: http://127.0.0.1/.well-known/acme-challenge/* doesn't map "
            "to a Route in Kong; please refer to docs on how to create dummy Route and Service",
        )
    finally:
        gateway.stop()
        echo.stop()


def test_account_key_from_the_config_s_keys(world: dict[str, Any]) -> None:
    """``account_key`` names a ``keys`` entity (``key_id`` its kid, ``key_set`` its set): the
    account is made with that key, and kept in the storage as Kong keeps it."""
    gateway: Gateway = world["gateway"]
    pebble: Pebble = world["pebble"]
    account = ec.generate_private_key(ec.SECP256R1())
    pem = account.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    config = json.loads(
        acme_config(world["echo"], pebble, account_key={"key_id": "acct", "key_set": "acme"})
    )
    config["key_sets"] = [
        {"name": "acme", "keys": [{"name": "account", "kid": "acct", "pem": {"private_key": pem}}]}
    ]
    gateway.config_path.write_text(json.dumps(config))
    gateway.start()
    admin = f"http://127.0.0.1:{gateway.admin_port}"
    created = httpx.post(f"{admin}/acme", json={"host": SHOP}, timeout=60)
    assert created.status_code == 201, created.text
    name = (
        f"kong_acme:account:{pebble.directory_url}:{base64.b64encode(b'ops@example.test').decode()}"
    )
    stored = json.loads(asyncio.run(_store(world["tmp"]).get(name)) or "{}")
    loaded = serialization.load_pem_private_key(stored["key"].encode(), None)
    assert loaded.private_numbers() == account.private_numbers()  # type: ignore[union-attr]
