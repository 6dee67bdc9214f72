"""Kong's acme specs, DB-less:

- ``spec/03-plugins/29-acme/03-access_spec.lua`` (lines 9-326), through a real gateway: the
  three ``describe`` blocks are three configs posted in turn to one node's ``POST /config``
  (the acme plugin is global and one per config). The challenge's key authorization is put in
  the node's ``shm`` store (``<prefix>/acme/``) before it starts, as the spec inserts it in
  ``acme_storage``.
- ``spec/03-plugins/29-acme/01-client_spec.lua``, its DB-less cases (``strategy == "off"``)
  against fastkong's ACME client (:class:`fastkong.acme.manager.AcmeManager` on a real
  :class:`~fastkong.acme.storage.FileStorage`): account creation (lines 95-251) and renewal
  (lines 343-455).

Differences from Kong's setup, each documented by fastkong:

- ``storage = "kong"`` is refused DB-less (docs/plugins.md "acme": "`kong` storage is refused
  (Kong refuses it DB-less)"): the plugin uses ``shm``, fastkong's default.
- ``api_uri`` is a closed loopback port instead of ``https://api.acme.org`` (the tests stay on
  loopback; serving a stored challenge does not reach the CA).
- The second block's plugin is added by ``POST /plugins`` in Kong (a database's Admin API):
  DB-less it is part of the posted config.
- Kong's ``/`` route has no service; fastkong's config has the same route, and nothing reaches
  an upstream (key-auth or the plugin answers first).

Left out:

- ``pending("serves default cert")`` (03-access_spec line 122): empty in Kong;
- ``client.new`` (01-client_spec lines 41-92): Lua constructor checks (``shm`` not defined),
  schema checks covered by ``test_acme_config.py``;
- ``client.save`` (lines 259-341): writes certificates and SNIs to a database;
- "calling handler.renew with a false argument" (line 457): a Lua call with a mocked function;
- ``02-kong_storage_spec``, ``05-redis_storage_spec``, ``06-hybrid_mode_spec``: not in this
  brief (``kong`` storage needs a database; Redis and hybrid are other files).
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from fastkong.acme.manager import AcmeManager
from fastkong.acme.storage import FileStorage, node_directory
from fastkong.config import load_config
from fastkong.plugins.bundled.acme import AcmeConfig
from tests.helpers import Gateway, eventually, free_port, plugin_config

DUMMY_ID = "ZR02iVO6PFywzFLj6igWHd6fnK2R07C-97dkQKC7vJo"
DO_DOMAIN = "acme.noatld"
SKIP_DOMAIN = "notacme.noatld"
IP_V4_DOMAIN = "10.42.0.42"
CHALLENGE = "/.well-known/acme-challenge/"
#: An ACME directory nothing answers (a closed loopback port).
API_URI = f"http://127.0.0.1:{free_port()}/directory"


# -- 03-access_spec: a gateway --------------------------------------------------------------


def access_config(**acme: Any) -> str:
    """The spec's ``lazy_setup``: a ``/`` route, the acme plugin and key-auth, both global."""
    plugin = {
        "account_email": "test@test.com",
        "api_uri": API_URI,
        "storage": "shm",  # Kong's "kong" is refused DB-less (see the module docstring)
        **acme,
    }
    return json.dumps(
        {
            "_format_version": "3.0",
            "routes": [{"name": "root", "paths": ["/"]}],
            "plugins": [{"name": "acme", "config": plugin}, {"name": "key-auth"}],
        }
    )


#: Lines 10-125: ``domains`` with a wildcard.
DOMAINS = access_config(domains=[DO_DOMAIN, "*.subdomain." + DO_DOMAIN])
#: Lines 127-227: ``allow_any_domain``, no ``domains``.
ANY_DOMAIN = access_config(allow_any_domain=True)
#: Lines 229-325: ``allow_any_domain`` but ``enable_ipv4_common_name = false``.
NO_IPV4 = access_config(
    allow_any_domain=True,
    enable_ipv4_common_name=False,
    domains=[DO_DOMAIN, "*.subdomain." + DO_DOMAIN],
)


class Node:
    def __init__(self, gateway: Gateway) -> None:
        self.admin = httpx.Client(base_url=f"http://127.0.0.1:{gateway.admin_port}", timeout=30)
        self.proxy = httpx.Client(base_url=f"http://127.0.0.1:{gateway.port}", timeout=10)
        self.status = httpx.Client(base_url=f"http://127.0.0.1:{gateway.status_port}", timeout=10)
        self.current = ""

    def serve(self, text: str) -> None:
        """Post ``text`` to ``/config`` (unless in service) and wait until every worker runs it."""
        if text == self.current:
            return
        res = self.admin.post("/config", json={"config": text})
        assert res.status_code == 201, res.text
        digest = hashlib.md5(text.encode()).hexdigest()

        def serving() -> bool:
            reported = self.status.get("/status").json()["configuration_hash"]
            return reported == digest and self.status.get("/status/ready").status_code == 200

        eventually(serving, timeout=20)
        self.current = text

    def get(self, path: str, host: str | None = None) -> httpx.Response:
        return self.proxy.get(path, headers={"host": host} if host is not None else {})

    def close(self) -> None:
        for client in (self.admin, self.proxy, self.status):
            client.close()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    tmp = tmp_path_factory.mktemp("acme-access")
    prefix = tmp / "prefix"
    # the spec's db.acme_storage:insert { key = dummy_id .. "#http-01", value = "isme" }
    store = FileStorage(node_directory("kong", prefix))
    asyncio.run(store.set(DUMMY_ID + "#http-01", "isme"))
    gw = Gateway(tmp, DOMAINS, 1, "--prefix", str(prefix))
    try:
        gw.start()
        n = Node(gw)
        n.current = DOMAINS
        yield n
        n.close()
    finally:
        gw.stop()


@pytest.mark.integration
@pytest.mark.parametrize("config", [DOMAINS, NO_IPV4], ids=["domains", "deny-ipv4"])
def test_terminates_validation_path(node: Node, config: str) -> None:
    """Lines 63 and 284: an unknown token is a 404, the stored one its value and a newline
    (key-auth does not run)."""
    node.serve(config)
    res = node.get(CHALLENGE + "yay", DO_DOMAIN)
    assert res.status_code == 404
    assert "Not found" in res.text
    res = node.get(CHALLENGE + DUMMY_ID, DO_DOMAIN)
    assert (res.status_code, res.text) == (200, "isme\n")


@pytest.mark.integration
def test_does_not_terminate_validation_path_with_host_not_in_whitelist(node: Node) -> None:
    """Line 89: key-auth takes over."""
    node.serve(DOMAINS)
    assert node.get(CHALLENGE + "yay", SKIP_DOMAIN).status_code == 401


@pytest.mark.integration
def test_dots_in_wildcard_in_domain_are_escaped(node: Node) -> None:
    """Line 100."""
    node.serve(DOMAINS)
    res = node.get(CHALLENGE + DUMMY_ID, "a.subdomain." + DO_DOMAIN)
    assert (res.status_code, res.text.strip()) == (200, "isme")
    assert node.get(CHALLENGE + DUMMY_ID, "asdsubdomain." + DO_DOMAIN).status_code == 401


@pytest.mark.integration
def test_allow_any_domain(node: Node) -> None:
    """Line 189 (the last request's ``headers = { skip_domain }`` sets no header in Kong: the
    client's own ``Host``, here ``127.0.0.1:<port>``)."""
    node.serve(ANY_DOMAIN)
    for host in ("a.subdomain." + DO_DOMAIN, "asdsubdomain." + DO_DOMAIN, None):
        res = node.get(CHALLENGE + DUMMY_ID, host)
        assert (res.status_code, res.text.strip()) == (200, "isme"), host


@pytest.mark.integration
def test_does_not_terminate_validation_path_with_host_an_ipv4(node: Node) -> None:
    """Line 310: key-auth takes over."""
    node.serve(NO_IPV4)
    assert node.get(CHALLENGE + "yay", IP_V4_DOMAIN).status_code == 401


# -- 01-client_spec, DB-less: fastkong's ACME client -----------------------------------------

#: The spec's ``proper_config`` (``api_uri`` on loopback).
PROPER_CONFIG = {
    "account_email": "someone@somedomain.com",
    "api_uri": API_URI,
    "storage": "shm",
    "storage_config": {"shm": {"shm_name": "kong"}},
    "renew_threshold_days": 30,
}
#: Kong's ``client._account_name``: ``kong_acme:account:<api_uri>:<base64(email)>``.
EMAIL_B64 = base64.b64encode(b"someone@somedomain.com").decode()
ACCOUNT_NAME = f"kong_acme:account:{API_URI}:{EMAIL_B64}"
KEY_ID = "123"
KEY_SET_NAME = "key_set_foo"


def acme_config(**fields: Any) -> AcmeConfig:
    return msgspec.convert(plugin_config("acme", {**PROPER_CONFIG, **fields}), AcmeConfig)


def rsa_pem() -> tuple[str, str]:
    """Kong's ``helpers.generate_keys("PEM")``: an RSA pair, public and private (PKCS#8) PEM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return public, private


def keys_entities(public: str, private: str, in_set: bool) -> Any:
    """A config holding the spec's ``keys`` entity (and ``key_sets`` one, ``in_set``)."""
    key: dict[str, Any] = {
        "name": "Test PEM",
        "kid": KEY_ID,
        "pem": {"private_key": private, "public_key": public},
    }
    doc: dict[str, Any] = {"_format_version": "3.0", "keys": [key]}
    if in_set:
        doc["key_sets"] = [{"name": KEY_SET_NAME}]
        key["set"] = KEY_SET_NAME
    return load_config(json.dumps(doc)).config


def stored_account_key(store: FileStorage) -> str:
    raw = asyncio.run(store.get(ACCOUNT_NAME))
    assert raw is not None
    return str(json.loads(raw)["key"])


@pytest.mark.parametrize("in_set", [True, False], ids=["with-key-set", "without-key-set"])
def test_create_with_preconfigured_account_key(tmp_path: Path, in_set: bool) -> None:
    """Lines 111-205: the first call persists the account with the ``keys`` entity's private
    key; the second (with key_set) is a no-op that keeps it."""
    public, private = rsa_pem()
    account_key = {"key_id": KEY_ID, **({"key_set": KEY_SET_NAME} if in_set else {})}
    store = FileStorage(tmp_path)
    manager = AcmeManager(
        acme_config(account_key=account_key), store, keys_entities(public, private, in_set)
    )
    assert asyncio.run(manager.account_key()) == private
    assert stored_account_key(store) == private
    assert asyncio.run(manager.account_key()) == private
    assert stored_account_key(store) == private


def test_create_with_generated_account_key(tmp_path: Path) -> None:
    """Lines 207-250: a key is made and persisted; the second call keeps it."""
    store = FileStorage(tmp_path)
    manager = AcmeManager(acme_config(), store)
    made = asyncio.run(manager.account_key())
    assert made.startswith("-----BEGIN") and stored_account_key(store) == made
    assert asyncio.run(manager.account_key()) == made
    assert stored_account_key(store) == made


def cert_key_pair(not_after: datetime.datetime) -> tuple[str, str]:
    """The spec's ``new_cert_key_pair(expire)``: a self-signed EC P-256 certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "acme test")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_after - datetime.timedelta(days=400))
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return key_pem, cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture
def renewing(tmp_path: Path) -> tuple[AcmeManager, FileStorage]:
    """A manager whose account is already in the store (the spec's first ``lazy_setup``)."""
    store = FileStorage(tmp_path)
    account, _ = cert_key_pair(datetime.datetime.now(datetime.UTC))
    asyncio.run(store.set(ACCOUNT_NAME, json.dumps({"key": account})))
    return AcmeManager(acme_config(), store, timeout=5), store


def due_renew_config(store: FileStorage, host: str) -> str:
    """A renew record due for renewal (``expire_at`` in the past), as the spec writes it."""
    now = datetime.datetime.now(datetime.UTC).timestamp()
    key = "kong_acme:renew_config:" + host
    asyncio.run(store.set(key, json.dumps({"host": host, "expire_at": int(now) - 23333})))
    return key


def test_deletes_renew_config_if_cert_is_deleted(
    renewing: tuple[AcmeManager, FileStorage],
) -> None:
    """Line 390: a renew record whose certificate is not stored is deleted by the renewal."""
    manager, store = renewing
    key = due_renew_config(store, "dne.konghq.com")
    assert asyncio.run(manager.renew()) == []
    assert asyncio.run(store.get(key)) is None


@pytest.mark.parametrize(
    ("seconds", "renewed"),
    [
        (-23333, True),  # line 411: renews a certificate when it's expired
        (365 * 86400, False),  # line 434: does not renew a certificate when it's not expired
    ],
)
def test_renews_a_certificate_only_when_it_expires_within_the_threshold(
    renewing: tuple[AcmeManager, FileStorage], seconds: int, renewed: bool
) -> None:
    """Kong checks ``_check_expire(certkey.cert, 30 * 86400)``; here the renewal itself runs:
    a certificate due is ordered again (the CA is unreachable, so the order fails and starts
    Kong's backoff, which shows it was tried), one not due is left alone."""
    manager, store = renewing
    host = "test1.test"
    not_after = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)
    key, cert = cert_key_pair(not_after)
    asyncio.run(store.set("kong_acme:cert_key:" + host, json.dumps({"cert": cert, "key": key})))
    due_renew_config(store, host)
    certkey = asyncio.run(manager.load_certkey(host))
    assert certkey is not None and certkey.cert and certkey.key
    assert asyncio.run(manager.renew()) == []  # nothing ordered successfully either way
    tried = asyncio.run(store.get("kong_acme:fail_backoff:" + host)) is not None
    assert tried is renewed
    # the stored certificate is kept either way
    assert json.loads(asyncio.run(store.get("kong_acme:cert_key:" + host)) or "{}")["cert"] == cert
