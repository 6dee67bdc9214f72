"""Kong's bundled ``env`` vault through a running DB-less gateway:
``spec/02-integration/13-vaults/02-env_vault_spec.lua`` (all six ``it``, lines 18-77) and what
of ``spec/02-integration/13-vaults/01-vault_spec.lua`` applies to the ``env`` vault without a
database (lines 69-124: a certificate whose ``cert`` and ``key`` are references through a
``vaults`` entity ``test-vault``, its ``cert_alt``/``key_alt`` references to an unknown vault).

02-env_vault_spec calls ``kong.vault.get(reference)`` in the test process. Here each reference
is the ``apikey`` (or ``clientid``) of an ``azure-functions`` plugin (fields Kong marks
``referenceable``) whose function host is the echo upstream: the plugin sends the resolved
value as ``x-functions-key`` (``x-functions-clientid``) and answers with the function's answer,
so the echo's view of that header is the value ``kong.vault.get`` returned. The variables are in
the gateway's environment, set before it starts (Kong's env vault reads ``environ`` at init).

A reference that does not resolve, or whose value fails the field's own checks (the empty
value: Kong's strings need at least one character), is where fastkong differs on purpose: Kong
loads it and leaves the field without a value, or with the unchecked one; fastkong refuses the
config (with Kong's "could not get value from external vault" for the former) and keeps the
last good one (README.md "Deliberate differences", docs/plugins.md "Secret references"). Those
cases post the config to ``POST /config`` and assert the refusal.

Covered elsewhere: parsing, prefixes, versions and JSON subfields of references as functions
(``tests/unit/test_vault.py``).

Left out:

- 01-vault_spec ``POST /certificates`` and ``db.certificates:select`` (``$refs``, the
  ``nulls`` option): admin API writes and the DAO need a database; here the certificate is in
  the declarative config, served by its SNI, and read back with ``GET /certificates/{id}``.
- 01-vault_spec "... using mock vault" (line 126) and ``vaults = "env,mock"``: ``mock`` is a
  custom Lua vault from ``spec/fixtures/custom_vaults``.
- 01-vault_spec "generate correct cache key" (line 179): ``db.vaults:cache_key``, a Kong
  internal (DAO cache keys).
"""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
from cryptography import x509

from tests.helpers import Echo, Gateway, echoed_headers, eventually, free_port
from tests.pki import Pki

pytestmark = pytest.mark.integration

CERT_ID = "ce470000-0000-4000-8000-000000000001"

#: The gateway's environment (02-env_vault_spec's ``helpers.setenv``); TEST_ENV_NA stays unset.
ENVIRONMENT = {
    "TEST_ENV": "test",
    "TEST_ENV_EMPTY": "",
    "TEST_ENV_JSON": '{"username":"user", "password":"pass"}',
}

#: route path -> (apikey, clientid) of its azure-functions plugin.
REFERENCES: dict[str, tuple[str, str | None]] = {
    "/text": ("{vault://env/test_env}", None),
    "/prefix-underscore": ("{vault://env/env?prefix=test_}", None),
    "/prefix-dash": ("{vault://env/env?prefix=test-}", None),
    "/json": ("{vault://env/test_env_json/username}", "{vault://env/test_env_json/password}"),
}


class Node(NamedTuple):
    gw: Gateway
    echo: Echo
    cert: str
    config: dict[str, Any]


def azure(echo: Echo, apikey: str, clientid: str | None) -> dict[str, Any]:
    """azure-functions calling the echo upstream (appname ``127.0.0`` + hostdomain
    ``1:<port>`` is ``127.0.0.1:<port>``, as in test_kong_azure_functions_spec)."""
    config = {
        "https": False,
        "appname": "127.0.0",
        "hostdomain": f"1:{echo.port}",
        "functionname": "fn",
        "apikey": apikey,
    }
    if clientid is not None:
        config["clientid"] = clientid
    return {"name": "azure-functions", "config": config}


def build(
    echo: Echo, references: dict[str, tuple[str, str | None]], certificate: bool = False
) -> dict[str, Any]:
    """The routes of ``references``; with ``certificate``, 01-vault_spec's ``test-vault`` and a
    certificate whose ``cert`` and ``key`` are references through it, for SNI ``vault.test``."""
    routes = [
        {"name": path.strip("/"), "paths": [path], "plugins": [azure(echo, *refs)]}
        for path, refs in references.items()
    ]
    config: dict[str, Any] = {
        "_format_version": "3.0",
        "services": [{"name": "echo", "url": echo.url, "routes": routes}],
    }
    if certificate:
        config["vaults"] = [{"name": "env", "prefix": "test-vault"}]
        config["certificates"] = [
            {
                "id": CERT_ID,
                "cert": "{vault://test-vault/cert}",
                "key": "{vault://test-vault/key}",
                "snis": [{"name": "vault.test"}],
            }
        ]
    return config


def start(tmp: Path, echo: Echo, config: dict[str, Any], environment: dict[str, str]) -> Gateway:
    """A gateway with an ``ssl`` listener, ``environment`` in its environment (TEST_ENV_NA
    unset), not waited for ready (the test says whether it must be)."""
    gw = Gateway(tmp, json.dumps(config), 1, "--prefix", str(tmp / "prefix"))
    gw.ssl_port = free_port()
    with pytest.MonkeyPatch.context() as mp:
        for name, value in environment.items():
            mp.setenv(name, value)
        mp.delenv("TEST_ENV_NA", raising=False)
        gw.start(wait_ready=False)
    return gw


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[Node]:
    """02-env_vault_spec's variables, a route per reference."""
    tmp = tmp_path_factory.mktemp("env-vault")
    config = build(echo, REFERENCES)
    gw = start(tmp, echo, config, ENVIRONMENT)
    try:
        gw.wait_ready()
        yield Node(gw, echo, "", config)
    finally:
        gw.stop()


@pytest.fixture(scope="module")
def cert_node(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[Node]:
    """01-vault_spec's lazy_setup: CERT and KEY in the environment, the ``test-vault`` vault
    entity, and the certificate referencing it (plus the routes of :data:`REFERENCES`)."""
    tmp = tmp_path_factory.mktemp("cert-vault")
    cert, key = Pki("vault spec CA").issue("vault.test", dns="vault.test")
    config = build(echo, REFERENCES, certificate=True)
    gw = start(tmp, echo, config, {**ENVIRONMENT, "CERT": cert, "KEY": key})
    try:
        yield Node(gw, echo, cert, config)
    finally:
        gw.stop()


def ready(node: Node) -> None:
    """The gateway serves its config (every listener loaded it)."""

    def check() -> bool:
        return httpx.get(node.gw.status_url("/status/ready")).status_code == 200

    eventually(check, timeout=10)


def function_headers(node: Node, path: str) -> dict[str, list[str]]:
    """The request headers the azure function (the echo) got through ``path``."""
    r = httpx.get(node.gw.url(path), timeout=30)
    assert r.status_code == 200, r.text
    return echoed_headers(r.json())


@pytest.mark.parametrize(
    ("path", "line"),
    [("/text", 35), ("/prefix-underscore", 45), ("/prefix-dash", 55)],
)
def test_get_text(node: Node, path: str, line: int) -> None:
    """02-env_vault_spec.lua:35 "get text", :45 "... with prefix (underscore)", :55 "... with
    prefix (dash)": TEST_ENV's value ``test``."""
    assert function_headers(node, path)["x-functions-key"] == ["test"]


def test_get_json(node: Node) -> None:
    """02-env_vault_spec.lua:65: JSON subfields ``username`` and ``password``."""
    seen = function_headers(node, "/json")
    assert seen["x-functions-key"] == ["user"]
    assert seen["x-functions-clientid"] == ["pass"]


def admin(node: Node, path: str) -> str:
    return f"http://127.0.0.1:{node.gw.admin_port}{path}"


def refused(node: Node, config: dict[str, Any]) -> str:
    """Post ``config``: it must be refused (400) and the config in service kept; the error
    body's text."""
    before = node.gw.status()["configuration_hash"]
    r = httpx.post(admin(node, "/config"), content=json.dumps(config), timeout=30)
    assert r.status_code == 400, r.text
    assert node.gw.status()["configuration_hash"] == before
    assert function_headers(node, "/text")["x-functions-key"] == ["test"]
    return r.text


def test_get_undefined(node: Node) -> None:
    """02-env_vault_spec.lua:18: TEST_ENV_NA unset, "could not get value from external vault".
    fastkong refuses such a config (docs/plugins.md "Secret references"; Kong would load it
    and leave ``apikey`` without a value)."""
    config = build(node.echo, {**REFERENCES, "/na": ("{vault://env/test_env_na}", None)})
    body = refused(node, config)
    assert "unable to resolve reference {vault://env/test_env_na}" in body
    assert "could not get value from external vault" in body


def test_get_empty_value(node: Node) -> None:
    """02-env_vault_spec.lua:25: TEST_ENV_EMPTY set to "", ``get`` returns "" without error.
    The env vault finds the value (no "could not get value"); fastkong then checks it as the
    field's own value, and an empty ``apikey`` fails Kong's string rule (``len_min = 1``,
    ``kong/db/schema/init.lua``), so the config is refused (docs/plugins.md "Secret
    references": a value that fails the field's checks is a config error; Kong does not check
    a referenced value and would send an empty ``x-functions-key``)."""
    config = build(node.echo, {**REFERENCES, "/empty": ("{vault://env/test_env_empty}", None)})
    body = refused(node, config)
    assert "{vault://env/test_env_empty} is invalid" in body
    assert "could not get value from external vault" not in body


def served_certificate(port: int, server_name: str) -> str:
    """The PEM of the certificate the TLS handshake for ``server_name`` presents."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=30) as raw,
        ctx.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return ssl.DER_cert_to_PEM_cert(der)


def same_certificate(a: str, b: str) -> bool:
    return x509.load_pem_x509_certificate(a.encode()) == x509.load_pem_x509_certificate(b.encode())


def test_certificate_with_cert_and_key_as_secrets(cert_node: Node) -> None:
    """01-vault_spec.lua:69, DB-less: the certificate's ``cert`` and ``key`` are
    ``{vault://test-vault/...}`` (a ``vaults`` entity naming the env vault): the handshake for
    its SNI presents the secret certificate (Kong's ``select`` gives the secret, 90-91), and
    the admin API shows the references, never the secrets (115-124)."""
    node = cert_node
    ready(node)
    assert same_certificate(served_certificate(node.gw.ssl_port or 0, "vault.test"), node.cert)
    r = httpx.get(admin(node, f"/certificates/{CERT_ID}"), timeout=30)
    assert r.status_code == 200
    certificate = r.json()
    assert certificate["cert"] == "{vault://test-vault/cert}"
    assert certificate["key"] == "{vault://test-vault/key}"
    assert "$refs" not in certificate
    assert "BEGIN" not in r.text


def test_certificate_alternates_in_an_unknown_vault(cert_node: Node) -> None:
    """01-vault_spec.lua:69-97: ``cert_alt = {vault://unknown/cert}``, ``key_alt =
    {vault://unknown/missing-key}``. Kong stores them, resolves them to "" (92-97) and serves
    the certificate without alternates; fastkong refuses the config at those fields
    (docs/plugins.md "Secret references") and keeps serving the one it had."""
    node = cert_node
    ready(node)
    config = build(node.echo, REFERENCES, certificate=True)
    config["certificates"][0] |= {
        "cert_alt": "{vault://unknown/cert}",
        "key_alt": "{vault://unknown/missing-key}",
    }
    body = refused(node, config)
    assert "unable to resolve reference {vault://unknown/cert} (could not find vault" in body
    assert "unable to resolve reference {vault://unknown/missing-key}" in body
    served = served_certificate(node.gw.ssl_port or 0, "vault.test")
    assert same_certificate(served, node.cert)
