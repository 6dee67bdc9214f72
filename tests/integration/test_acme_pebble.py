"""The ACME client against a real CA: Let's Encrypt's test server pebble, on loopback.

pebble resolves every name to 127.0.0.1 (:class:`tests.acme_server.LoopbackDns`) and fetches
each http-01 key authorization from :class:`Responder`, a real HTTP server on the port pebble
validates on. Certificates are checked as a TLS client would: the leaf names what was ordered
and every certificate of the chain is signed by the next, up to pebble's issuing root.
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from fastkong.acme.protocol import AcmeClient, AcmeError, new_private_key
from fastkong.proxy.upstream_tls import TlsProfile
from tests.acme_server import LoopbackDns, Pebble
from tests.helpers import LoopServer, read_request

pytestmark = pytest.mark.integration

CHALLENGE_PATH = "/.well-known/acme-challenge/"
#: An external account the EAB test's pebble knows: a key id and a base64url MAC key.
EAB_KID = "kid-1"
EAB_KEY = secrets.token_urlsafe(48)


class Responder(LoopServer):
    """The http-01 side: serves what :meth:`publish` put up, notes every call and request."""

    def __init__(self) -> None:
        super().__init__()
        self.published: dict[str, str] = {}
        self.publishes: list[str] = []
        self.withdrawals: list[str] = []
        #: (target, Host) of each request pebble made.
        self.requests: list[tuple[str, str]] = []

    async def publish(self, token: str, key_authorization: str) -> None:
        self.publishes.append(token)
        self.published[token] = key_authorization

    async def withdraw(self, token: str) -> None:
        self.withdrawals.append(token)
        self.published.pop(token, None)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await read_request(reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        self.requests.append((request.target, request.lowered.get("host", "")))
        token = request.target.removeprefix(CHALLENGE_PATH)
        found = self.published.get(token) if request.target.startswith(CHALLENGE_PATH) else None
        if found is None:
            writer.write(
                b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
        else:
            body = found.encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(body), body)
            )
        await writer.drain()
        writer.close()

    def reset(self) -> None:
        self.publishes.clear()
        self.withdrawals.clear()
        self.requests.clear()


class WrongResponder(Responder):
    """Publishes a key authorization made with some other account's key."""

    async def publish(self, token: str, key_authorization: str) -> None:
        await super().publish(token, f"{token}.not-this-accounts-thumbprint")


@pytest.fixture(autouse=True)
async def tls_shutdowns_done() -> AsyncIterator[None]:
    """After a test, wait for the client's last TLS connections to finish closing.

    Closing a TLS connection waits for the peer's close_notify, then closes the socket a
    loop turn or two later; pytest-asyncio closes the test's loop right after the test, and a
    socket left open then is a ResourceWarning (an error here) in whichever test collects it.
    A closing socket is in the loop's selector until then: wait until only the loop's own
    wake-up pipe is (a private attribute, for want of a public list of a loop's sockets)."""
    yield
    loop = asyncio.get_running_loop()
    selector = getattr(loop, "_selector", None)
    deadline = loop.time() + 5
    while selector is not None and len(selector.get_map()) > 1 and loop.time() < deadline:
        await asyncio.sleep(0.01)
    for _ in range(3):  # the socket itself is closed a turn after it leaves the selector
        await asyncio.sleep(0)


@pytest.fixture(scope="module")
def dns() -> Iterator[LoopbackDns]:
    with LoopbackDns() as server:
        yield server


@pytest.fixture(scope="module")
def responder() -> Iterator[Responder]:
    server = Responder().start()
    yield server
    server.stop()


@pytest.fixture
def challenges(responder: Responder) -> Responder:
    responder.reset()
    return responder


@pytest.fixture(scope="module")
def pebble(
    tmp_path_factory: pytest.TempPathFactory, dns: LoopbackDns, responder: Responder
) -> Iterator[Pebble]:
    with Pebble(tmp_path_factory.mktemp("pebble"), dns, responder.port) as server:
        yield server


def client(pebble: Pebble, account_key: str | None = None, **options: Any) -> AcmeClient:
    """A client of ``pebble`` trusting its listener, polling fast; ``options`` are the
    client's (``email``, ``eab_kid``, ...)."""
    key = account_key or new_private_key("ecc")
    tls = TlsProfile(True, ca_pems=[pebble.ca_pem])
    return AcmeClient(
        pebble.directory_url,
        key,
        tls=tls,
        timeout=5,
        poll_interval=0.05,
        poll_timeout=20,
        **options,
    )


def certificates(pem: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem.encode())


def common_name(name: x509.Name) -> str:
    return str(name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def assert_chains_to(chain: list[x509.Certificate], root_pem: str) -> None:
    """Each certificate is signed by the next one, the last by ``root_pem``."""
    root = x509.load_pem_x509_certificate(root_pem.encode())
    for cert, issuer in zip(chain, [*chain[1:], root], strict=True):
        assert cert.issuer == issuer.subject
        cert.verify_directly_issued_by(issuer)


def public_key(key_pem: str) -> object:
    return serialization.load_pem_private_key(key_pem.encode(), None).public_key()


def san(cert: x509.Certificate) -> x509.SubjectAlternativeName:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


async def test_an_ecc_certificate_is_issued_through_http01(
    pebble: Pebble, challenges: Responder, dns: LoopbackDns
) -> None:
    acme = client(pebble, email="ops@example.test")
    key = new_private_key("ecc")

    pem = await acme.order_certificate("a.example.test", key, challenges)

    chain = certificates(pem)
    leaf = chain[0]
    assert san(leaf).get_values_for_type(x509.DNSName) == ["a.example.test"]
    assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)
    assert leaf.public_key() == public_key(key)  # the key we gave, in the CSR
    assert_chains_to(chain, pebble.issuer_roots().root)
    # pebble resolved the name through our DNS and fetched the one token we published.
    assert ("a.example.test", 1) in dns.questions
    assert len(challenges.publishes) == 1
    token = challenges.publishes[0]
    assert (f"{CHALLENGE_PATH}{token}", f"a.example.test:{challenges.port}") in challenges.requests
    assert challenges.withdrawals == [token]
    assert challenges.published == {}
    assert "account=https://127.0.0.1" in repr(acme)


async def test_an_rsa_certificate_with_an_rsa_account_key(
    pebble: Pebble, challenges: Responder
) -> None:
    acme = client(pebble, new_private_key("rsa", 2048))
    key = new_private_key("rsa", 2048)

    pem = await acme.order_certificate("rsa.example.test", key, challenges)

    leaf, *rest = certificates(pem)
    assert "alg=RS256" in repr(acme)
    assert isinstance(leaf.public_key(), rsa.RSAPublicKey)
    assert leaf.public_key() == public_key(key)
    assert common_name(leaf.subject) == "rsa.example.test"
    assert_chains_to([leaf, *rest], pebble.issuer_roots().root)
    assert len(challenges.withdrawals) == 1


async def test_an_ip_address_certificate(pebble: Pebble, challenges: Responder) -> None:
    # RFC 8738: pebble validates http://127.0.0.1:<httpPort>/... itself, no DNS.
    pem = await client(pebble).order_certificate("127.0.0.1", new_private_key("ecc"), challenges)

    leaf = certificates(pem)[0]
    assert san(leaf).get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert challenges.requests[0][1] == f"127.0.0.1:{challenges.port}"


async def test_registering_again_finds_the_same_account(pebble: Pebble) -> None:
    key = new_private_key("ecc")
    first = client(pebble, key)
    assert "account=unregistered" in repr(first)
    url = await first.register()
    assert url.startswith(f"https://127.0.0.1:{pebble.port}/")
    assert await first.register() == url  # cached

    # Another client with the same key: newAccount answers with the existing account.
    assert await client(pebble, key).register() == url
    assert await client(pebble).register() != url


async def test_a_wrong_key_authorization_fails_the_order(pebble: Pebble, dns: LoopbackDns) -> None:
    wrong = WrongResponder().start()
    try:
        # This pebble validates on the wrong responder's port.
        async_pebble = Pebble(pebble.workdir / "wrong", dns, wrong.port)
        with async_pebble:
            with pytest.raises(AcmeError) as info:
                await client(async_pebble).order_certificate(
                    "wrong.example.test", new_private_key("ecc"), wrong
                )
    finally:
        wrong.stop()

    error = info.value
    assert error.type == "urn:ietf:params:acme:error:unauthorized"
    assert error.status is None  # the challenge's error, not an HTTP answer's
    assert str(error).startswith(
        "authorization wrong.example.test: invalid: urn:ietf:params:acme:error:unauthorized: "
    )
    assert len(wrong.publishes) == 1
    assert wrong.withdrawals == wrong.publishes  # withdrawn although the order failed
    assert wrong.requests  # pebble did fetch it


async def test_a_wildcard_needs_dns01_which_is_not_offered(
    pebble: Pebble, challenges: Responder
) -> None:
    with pytest.raises(AcmeError) as info:
        await client(pebble).order_certificate("*.example.test", new_private_key("ecc"), challenges)
    assert str(info.value) == "authorization *.example.test: no http-01 challenge (offered: dns-01)"
    assert challenges.publishes == []


async def test_a_reused_authorization_skips_the_challenge(
    tmp_path: Path, dns: LoopbackDns, challenges: Responder
) -> None:
    with Pebble(tmp_path, dns, challenges.port, authz_reuse=100) as reusing:
        acme = client(reusing)
        await acme.order_certificate("again.example.test", new_private_key("ecc"), challenges)
        assert len(challenges.publishes) == 1
        pem = await acme.order_certificate("again.example.test", new_private_key("ecc"), challenges)
    assert len(challenges.publishes) == 1  # the second order came with a valid authorization
    assert common_name(certificates(pem)[0].subject) == "again.example.test"


async def test_bad_nonces_are_retried(
    tmp_path: Path, dns: LoopbackDns, challenges: Responder
) -> None:
    with Pebble(tmp_path, dns, challenges.port, nonce_reject=60) as rejecting:
        acme = client(rejecting)
        # pebble refuses each good nonce at random; with five retries an issuance of about a
        # dozen requests would fail one run in three (0.6 ** 6 per request). More retries
        # here make that about never; the bound itself is the next test's.
        acme.bad_nonce_retries = 40
        # Two issuances (16 signed requests): that none was refused is 0.4 ** 16, never.
        pems = [
            await acme.order_certificate(
                f"nonce{n}.example.test", new_private_key("ecc"), challenges
            )
            for n in range(2)
        ]
    assert [common_name(certificates(pem)[0].subject) for pem in pems] == [
        "nonce0.example.test",
        "nonce1.example.test",
    ]
    assert acme.bad_nonces > 0
    assert f"bad_nonces={acme.bad_nonces}" in repr(acme)


async def test_bad_nonce_retries_are_bounded(
    tmp_path: Path, dns: LoopbackDns, challenges: Responder
) -> None:
    with Pebble(tmp_path, dns, challenges.port, nonce_reject=100) as refusing:
        acme = client(refusing)
        with pytest.raises(AcmeError) as info:
            await acme.register()
    assert info.value.type == "urn:ietf:params:acme:error:badNonce"
    assert info.value.status == 400
    assert str(info.value).startswith("newAccount: 400 urn:ietf:params:acme:error:badNonce")
    assert acme.bad_nonces == 5
    assert acme.account_url is None


async def test_external_account_binding(
    tmp_path: Path, dns: LoopbackDns, challenges: Responder
) -> None:
    with Pebble(tmp_path, dns, challenges.port, eab_keys={EAB_KID: EAB_KEY}) as binding:
        with pytest.raises(AcmeError) as missing:
            await client(binding).register()
        other_key = "A" * 64
        with pytest.raises(AcmeError) as wrong:
            await client(binding, eab_kid=EAB_KID, eab_hmac_key=other_key).register()
        acme = client(binding, eab_kid=EAB_KID, eab_hmac_key=EAB_KEY)
        url = await acme.register()
        pem = await acme.order_certificate("eab.example.test", new_private_key("ecc"), challenges)

    assert missing.value.type == "urn:ietf:params:acme:error:externalAccountRequired"
    assert wrong.value.type == "urn:ietf:params:acme:error:unauthorized"
    assert url.startswith(f"https://127.0.0.1:{binding.port}/")
    assert common_name(certificates(pem)[0].subject) == "eab.example.test"


@pytest.fixture(scope="module")
def two_roots(
    tmp_path_factory: pytest.TempPathFactory, dns: LoopbackDns, responder: Responder
) -> Iterator[Pebble]:
    with Pebble(tmp_path_factory.mktemp("pebble"), dns, responder.port, alternate_roots=1) as ca:
        yield ca


@pytest.mark.parametrize("preferred", ["alternate", "default", "unknown", None])
async def test_preferred_chain(
    two_roots: Pebble, challenges: Responder, preferred: str | None
) -> None:
    default, alternate = two_roots.issuer_roots(0), two_roots.issuer_roots(1)
    names = {
        "alternate": common_name(x509.load_pem_x509_certificate(alternate.root.encode()).subject),
        "default": common_name(x509.load_pem_x509_certificate(default.root.encode()).subject),
        "unknown": "No Such Root CA",
    }
    acme = client(two_roots, preferred_chain=names[preferred] if preferred else None)

    pem = await acme.order_certificate(
        f"{preferred}.chain.example.test", new_private_key("ecc"), challenges
    )

    # Without a preference, or one no chain has, the default chain is kept.
    wanted = "alternate" if preferred == "alternate" else "default"
    chain = certificates(pem)
    assert common_name(chain[-1].issuer) == names[wanted]
    assert_chains_to(chain, (alternate if wanted == "alternate" else default).root)
    assert names["alternate"] != names["default"]
