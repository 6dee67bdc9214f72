"""An ACME v2 client (RFC 8555): an account, an order, its http-01 challenges, a certificate.

Kong's acme plugin drives lua-resty-acme; this is fastkong's own client, written from the RFC,
on the gateway's one-exchange HTTP client (:mod:`fastkong.plugins.bundled._aws_http`) so that
ordering a certificate needs no dependency beyond ``cryptography``. It does what the plugin
needs and no more: register an account, order a certificate for one name by ``http-01``,
download the chain. Revocation, key rollover, ``dns-01`` and ``tls-alpn-01`` are not here.

Theory of operation. Every request but two is a JWS (RFC 7515, flattened JSON) POSTed with
``Content-Type: application/jose+json``, signed by the account key, whose protected header
names the algorithm, a fresh nonce, the URL it is sent to, and either the account's public key
(``jwk``: ``newAccount`` only) or the account URL (``kid``: everything after). Reading a
resource is a POST too, with an empty payload ("POST-as-GET"), so that every read is
authenticated. The two unsigned requests are ``GET`` of the directory (the server's map of
URLs, fetched once and cached) and ``HEAD`` of its ``newNonce``.

An issuance is, in order::

    newAccount  -> account URL (Location; 201 new, 200 the key's existing account)
    newOrder    -> order URL, its authorizations, its finalize URL
    for each authorization (POST-as-GET):
        publish the key authorization where the CA will GET it, POST {} to the challenge,
        poll the authorization until valid or invalid, withdraw the key authorization
    finalize    -> POST the CSR; poll the order until valid
    certificate -> POST-as-GET with Accept: application/pem-certificate-chain

Nonces. Each response carries a ``Replay-Nonce`` that the next request may use once; the
client keeps the latest and asks ``newNonce`` only when it holds none (the first request, or
after a response without one). A nonce the server refuses (``badNonce``, which a CA may send
for any nonce at any time) costs one retry with the nonce that refusal carried, up to
:data:`BAD_NONCE_RETRIES` times. A nonce is taken out of the client before it is used, so two
exchanges running at once never send the same one.

Polling waits the server's ``Retry-After`` when it gives one (capped: a CA that says "an hour"
would stall a gateway's renewal loop; we keep asking, which RFC 8555 allows), else
``poll_interval``, and gives up after ``poll_timeout``.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import email.utils
import hashlib
import hmac
import ipaddress
import json
import re
from typing import Any, Final, Protocol
from urllib.parse import urljoin, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from fastkong.plugins.bundled import _aws_http
from fastkong.proxy.upstream_tls import PLAIN_VERIFY, TlsProfile

#: How many times one request is sent again after a ``badNonce`` refusal.
BAD_NONCE_RETRIES: Final = 5
#: The longest wait between two polls, whatever ``Retry-After`` says.
MAX_RETRY_AFTER: Final = 5.0
_BAD_NONCE: Final = "urn:ietf:params:acme:error:badNonce"
_JOSE: Final = "application/jose+json"
#: Statuses that mean "ask again later" (RFC 8555 section 7.1.6).
_AUTHZ_WAITING: Final = frozenset({"pending"})
_ORDER_WAITING: Final = frozenset({"pending", "ready", "processing"})
_PEM_CHAIN: Final = "application/pem-certificate-chain"
#: X.520's upper bound on a common name; a longer name goes in the SAN only.
_MAX_CN: Final = 64
#: One ``<url>; params`` entry of a ``Link`` header (RFC 8288).
_LINK: Final = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]*)*)")
_REL_ALTERNATE: Final = re.compile(r";\s*rel\s*=\s*\"?alternate\"?(?:\s|;|$)", re.IGNORECASE)


class AcmeError(Exception):
    """An ACME exchange failed: what was being done, the server's problem document (RFC 7807)
    if it sent one, and the HTTP status if there was an answer."""

    def __init__(
        self, message: str, problem: dict[str, Any] | None = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.problem = problem
        self.status = status

    @property
    def type(self) -> str | None:
        """The problem's type URN (``urn:ietf:params:acme:error:...``), or None."""
        kind = (self.problem or {}).get("type")
        return kind if isinstance(kind, str) else None

    def __str__(self) -> str:
        text = self.message
        head = " ".join(part for part in (_opt(self.status), self.type) if part)
        if head:
            text += f": {head}"
        problem = self.problem or {}
        if detail := problem.get("detail"):
            text += f": {detail}"
        for sub in problem.get("subproblems") or ():
            if isinstance(sub, dict):
                who = (sub.get("identifier") or {}).get("value", "")
                text += f"; {who} {sub.get('type', '')}: {sub.get('detail', '')}"
        return " ".join(text.split())  # one line, whatever the server put in its detail


def _opt(value: int | None) -> str:
    return "" if value is None else str(value)


class ChallengeResponder(Protocol):
    """Serves ``key_authorization`` at ``/.well-known/acme-challenge/<token>`` while published."""

    async def publish(self, token: str, key_authorization: str) -> None: ...

    async def withdraw(self, token: str) -> None: ...


# -- keys, JWK, JWS ---------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    """base64url without padding (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _uint(value: int, size: int | None = None) -> str:
    """An unsigned integer as JWK writes it: big-endian, minimal unless ``size`` is fixed."""
    length = size if size is not None else max(1, (value.bit_length() + 7) // 8)
    return _b64(value.to_bytes(length, "big"))


_CURVES: Final[dict[str, tuple[str, int, str]]] = {
    # curve name -> JWK crv, coordinate bytes, JWS alg
    "secp256r1": ("P-256", 32, "ES256"),
    "secp384r1": ("P-384", 48, "ES384"),
}


def public_jwk(key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> dict[str, str]:
    """The JWK (RFC 7517) of a public key: only the members RFC 7638 hashes."""
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        return {"e": _uint(numbers.e), "kty": "RSA", "n": _uint(numbers.n)}
    crv, size, _ = _curve(key.curve)
    point = key.public_numbers()
    return {"crv": crv, "kty": "EC", "x": _uint(point.x, size), "y": _uint(point.y, size)}


def _curve(curve: ec.EllipticCurve) -> tuple[str, int, str]:
    found = _CURVES.get(curve.name)
    if found is None:
        raise AcmeError(f"unsupported account key curve {curve.name} (use P-256 or P-384)")
    return found


def jwk_thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638: SHA-256 of the required members, keys sorted, no whitespace; base64url."""
    canonical = json.dumps(jwk, sort_keys=True, separators=(",", ":"))
    return _b64(hashlib.sha256(canonical.encode()).digest())


class _Signer:
    """An account key: its JWK, its JWS algorithm, and signatures in JWS form."""

    __slots__ = ("key", "jwk", "alg", "thumbprint")

    def __init__(self, key_pem: str) -> None:
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
        if isinstance(key, rsa.RSAPrivateKey):
            self.alg = "RS256"
        elif isinstance(key, ec.EllipticCurvePrivateKey):
            self.alg = _curve(key.curve)[2]
        else:
            raise AcmeError(f"unsupported account key type {type(key).__name__} (use RSA or EC)")
        self.key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = key
        self.jwk = public_jwk(key.public_key())
        self.thumbprint = jwk_thumbprint(self.jwk)

    def sign(self, data: bytes) -> bytes:
        if isinstance(self.key, rsa.RSAPrivateKey):
            return self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        _, size, alg = _curve(self.key.curve)
        digest = hashes.SHA256() if alg == "ES256" else hashes.SHA384()
        # cryptography gives DER (a SEQUENCE of two INTEGERs); JWS wants r || s, each
        # left-padded to the curve's size (RFC 7518 section 3.4).
        r, s = decode_dss_signature(self.key.sign(data, ec.ECDSA(digest)))
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")

    def jws(self, protected: dict[str, Any], payload: dict[str, Any] | None) -> dict[str, str]:
        """A flattened JWS; ``payload`` None is POST-as-GET's empty payload."""
        head = _b64(json.dumps(protected, separators=(",", ":")).encode())
        body = "" if payload is None else _b64(json.dumps(payload).encode())
        signature = self.sign(f"{head}.{body}".encode("ascii"))
        return {"protected": head, "payload": body, "signature": _b64(signature)}


def key_authorization(token: str, account_key_pem: str) -> str:
    """What the http-01 challenge serves: ``token.thumbprint`` (RFC 8555 section 8.1)."""
    return f"{token}.{_Signer(account_key_pem).thumbprint}"


def new_private_key(cert_type: str, rsa_key_size: int = 4096) -> str:
    """A new private key (PKCS#8 PEM, unencrypted): ``rsa`` of ``rsa_key_size`` bits or
    ``ecc`` (P-256), Kong's ``cert_type`` values."""
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if cert_type == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_key_size)
    elif cert_type == "ecc":
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        raise ValueError(f"unknown cert_type {cert_type!r} (rsa or ecc)")
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _ip(domain: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(domain)
    except ValueError:
        return None


def csr_der(domain: str, key_pem: str) -> bytes:
    """A CSR (DER) for ``domain`` signed by ``key_pem``: the name as common name when it fits,
    and as the subject alternative name (an IP address for an address literal, RFC 8738)."""
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError(f"unsupported certificate key type {type(key).__name__}")
    address = _ip(domain)
    name: x509.GeneralName = x509.DNSName(domain) if address is None else x509.IPAddress(address)
    text = domain if address is None else str(address)
    subject = [x509.NameAttribute(NameOID.COMMON_NAME, text)] if len(text) <= _MAX_CN else []
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name(subject))
        .add_extension(x509.SubjectAlternativeName([name]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.DER)


# -- the client -------------------------------------------------------------------------------


def _json(response: _aws_http.Response, what: str) -> dict[str, Any]:
    try:
        value = json.loads(response.body)
    except ValueError:
        raise AcmeError(f"{what}: the answer is not JSON", status=response.status) from None
    if not isinstance(value, dict):
        raise AcmeError(f"{what}: the answer is not a JSON object", status=response.status)
    return value


def _problem(response: _aws_http.Response, what: str) -> AcmeError:
    """The error a non-2xx answer stands for, with its problem document when it has one."""
    try:
        problem = json.loads(response.body)
    except ValueError:
        problem = None
    if isinstance(problem, dict):
        return AcmeError(what, problem, response.status)
    excerpt = response.body[:200].decode("utf-8", "replace")
    return AcmeError(f"{what}: {excerpt}" if excerpt else what, None, response.status)


def _retry_after(response: _aws_http.Response) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), or None."""
    value = response.header("Retry-After")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, (when - datetime.datetime.now(datetime.UTC)).total_seconds())


def _chain_top_issuer(pem: str) -> str | None:
    """The issuer common name of the last (topmost) certificate of a PEM chain; None when
    ``pem`` holds no certificate ("" when that issuer has no common name)."""
    try:
        certs = x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        return None
    names = certs[-1].issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def _alternate_links(response: _aws_http.Response, base: str) -> list[str]:
    """The URLs of ``Link: <url>;rel="alternate"`` headers (RFC 8555 section 7.4.2)."""
    urls = []
    for name, value in response.headers:
        if name.lower() != "link":
            continue
        for match in _LINK.finditer(value):
            if _REL_ALTERNATE.search(match.group(2) + ";"):
                urls.append(urljoin(base, match.group(1)))
    return urls


class AcmeClient:
    """One account at one ACME CA (its directory URL), signing with ``account_key_pem``.

    ``email`` becomes the account's contact; ``eab_kid`` and ``eab_hmac_key`` (base64url) bind
    the account to one the CA knows (External Account Binding, as ZeroSSL requires);
    ``preferred_chain`` picks among the chains the CA offers by the topmost issuer's name.
    ``timeout`` bounds each exchange, ``tls`` is how the CA's certificate is checked.
    """

    #: Retries after a ``badNonce`` refusal, per request (a test may raise it).
    bad_nonce_retries: int = BAD_NONCE_RETRIES

    def __init__(
        self,
        directory_url: str,
        account_key_pem: str,
        *,
        email: str | None = None,
        eab_kid: str | None = None,
        eab_hmac_key: str | None = None,
        preferred_chain: str | None = None,
        timeout: float = 10.0,
        tls: TlsProfile = PLAIN_VERIFY,
        poll_interval: float = 0.5,
        poll_timeout: float = 90.0,
    ) -> None:
        self.directory_url = directory_url
        self.email = email
        self.eab_kid = eab_kid
        self.eab_hmac_key = eab_hmac_key
        self.preferred_chain = preferred_chain
        self.timeout = timeout
        self.tls = tls
        self.poll_interval = poll_interval
        self.poll_timeout = poll_timeout
        self._signer = _Signer(account_key_pem)
        self._directory: dict[str, Any] | None = None
        self._nonce: str | None = None
        self.account_url: str | None = None
        #: ``badNonce`` refusals met so far (each cost one retry).
        self.bad_nonces = 0

    def __repr__(self) -> str:
        account = self.account_url or "unregistered"
        return (
            f"<AcmeClient {self.directory_url} account={account} alg={self._signer.alg} "
            f"nonce={'held' if self._nonce else 'none'} bad_nonces={self.bad_nonces}>"
        )

    @property
    def thumbprint(self) -> str:
        """The account key's RFC 7638 thumbprint (the second half of key authorizations)."""
        return self._signer.thumbprint

    # -- transport --

    async def _exchange(
        self, method: str, url: str, headers: list[tuple[str, str]], body: bytes, what: str
    ) -> _aws_http.Response:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise AcmeError(f"{what}: not an http(s) URL: {url!r}")
        port = parts.port or (443 if scheme == "https" else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = _aws_http.host_header(parts.hostname, port, scheme)
        try:
            # No keep-alive: an issuance is a dozen exchanges every couple of months, not
            # worth a connection held in a pool bound to whichever event loop ran it.
            response = await _aws_http.request(
                method,
                scheme,
                parts.hostname,
                port,
                target,
                [("Host", host), *headers],
                body,
                timeout=self.timeout,
                tls=self.tls,
            )
        except _aws_http.AwsHttpError as exc:
            raise AcmeError(f"{what}: {exc}") from None
        if nonce := response.header("Replay-Nonce"):
            self._nonce = nonce
        return response

    async def directory(self) -> dict[str, Any]:
        """The CA's directory (fetched once)."""
        if self._directory is None:
            response = await self._exchange(
                "GET", self.directory_url, [("Accept", "application/json")], b"", "directory"
            )
            if response.status != 200:
                raise _problem(response, "directory")
            found = _json(response, "directory")
            for name in ("newNonce", "newAccount", "newOrder"):
                if not isinstance(found.get(name), str):
                    raise AcmeError(f"directory: no {name} URL", status=response.status)
            self._directory = found
        return self._directory

    async def _take_nonce(self) -> str:
        if self._nonce is None:
            url = (await self.directory())["newNonce"]
            response = await self._exchange("HEAD", url, [], b"", "newNonce")
            if response.status >= 400:
                raise _problem(response, "newNonce")
            if self._nonce is None:
                raise AcmeError("newNonce: no Replay-Nonce in the answer", status=response.status)
        nonce, self._nonce = self._nonce, None
        return nonce

    async def _post(
        self,
        url: str,
        payload: dict[str, Any] | None,
        what: str,
        *,
        jwk: bool = False,
        accept: str | None = None,
    ) -> _aws_http.Response:
        """A signed POST (``payload`` None: POST-as-GET); AcmeError on an error answer."""
        if not jwk and self.account_url is None:
            raise AcmeError(f"{what}: no account (register first)")
        headers = [("Content-Type", _JOSE)]
        if accept is not None:
            headers.append(("Accept", accept))
        attempt = 0
        while True:
            protected: dict[str, Any] = {"alg": self._signer.alg, "nonce": await self._take_nonce()}
            protected["url"] = url
            if jwk:
                protected["jwk"] = self._signer.jwk
            else:
                protected["kid"] = self.account_url
            body = json.dumps(self._signer.jws(protected, payload)).encode()
            response = await self._exchange("POST", url, headers, body, what)
            if response.status < 400:
                return response
            error = _problem(response, what)
            if error.type == _BAD_NONCE and attempt < self.bad_nonce_retries:
                # The refusal carried a fresh nonce (taken by _exchange); send it again.
                self.bad_nonces += 1
                attempt += 1
                continue
            raise error

    # -- the account --

    async def register(self) -> str:
        """The account URL: created, or found for this key (``newAccount`` answers 200 then)."""
        if self.account_url is not None:
            return self.account_url
        url = (await self.directory())["newAccount"]
        payload: dict[str, Any] = {"termsOfServiceAgreed": True}
        if self.email:
            payload["contact"] = [f"mailto:{self.email}"]
        if self.eab_kid and self.eab_hmac_key:
            payload["externalAccountBinding"] = self._eab(url)
        response = await self._post(url, payload, "newAccount", jwk=True)
        location = response.header("Location")
        if not location:
            raise AcmeError("newAccount: no Location in the answer", status=response.status)
        status = _json(response, "newAccount").get("status")
        if status not in (None, "valid"):
            raise AcmeError(f"newAccount: the account is {status}", status=response.status)
        self.account_url = urljoin(url, location)
        return self.account_url

    def _eab(self, url: str) -> dict[str, str]:
        """External Account Binding (RFC 8555 section 7.3.4): the account's JWK, MACed by the
        key the CA gave out with ``eab_kid``."""
        assert self.eab_kid is not None and self.eab_hmac_key is not None
        try:
            mac_key = _b64decode(self.eab_hmac_key.strip())
        except ValueError:
            raise AcmeError("newAccount: eab_hmac_key is not base64url") from None
        protected = {"alg": "HS256", "kid": self.eab_kid, "url": url}
        head = _b64(json.dumps(protected, separators=(",", ":")).encode())
        body = _b64(json.dumps(self._signer.jwk, separators=(",", ":")).encode())
        mac = hmac.new(mac_key, f"{head}.{body}".encode("ascii"), hashlib.sha256).digest()
        return {"protected": head, "payload": body, "signature": _b64(mac)}

    # -- an order --

    async def order_certificate(
        self, domain: str, key_pem: str, responder: ChallengeResponder
    ) -> str:
        """The PEM chain (leaf first) of a new certificate for ``domain`` with key ``key_pem``,
        its http-01 challenges served through ``responder``."""
        await self.register()
        address = _ip(domain)
        identifier = (
            {"type": "dns", "value": domain}
            if address is None
            else {"type": "ip", "value": str(address)}
        )
        new_order = (await self.directory())["newOrder"]
        response = await self._post(new_order, {"identifiers": [identifier]}, "newOrder")
        location = response.header("Location")
        if not location:
            raise AcmeError("newOrder: no Location in the answer", status=response.status)
        order_url = urljoin(new_order, location)
        order = _json(response, "newOrder")
        for authz_url in order.get("authorizations") or ():
            await self._authorize(urljoin(order_url, authz_url), responder)

        finalize = order.get("finalize")
        if not isinstance(finalize, str):
            raise AcmeError("newOrder: no finalize URL", status=response.status)
        csr = {"csr": _b64(csr_der(domain, key_pem))}
        response = await self._post(urljoin(order_url, finalize), csr, "finalize")
        order = _json(response, "finalize")
        if order.get("status") in _ORDER_WAITING:
            order = await self._poll(order_url, "order", _ORDER_WAITING, response)
        if order.get("status") != "valid":
            raise AcmeError(f"order: {order.get('status')}", order.get("error"))
        certificate = order.get("certificate")
        if not isinstance(certificate, str):
            raise AcmeError("order: valid without a certificate URL")
        return await self._download(urljoin(order_url, certificate))

    async def _authorize(self, url: str, responder: ChallengeResponder) -> None:
        response = await self._post(url, None, "authorization")
        authz = _json(response, "authorization")
        name = (authz.get("identifier") or {}).get("value", url)
        if authz.get("wildcard"):
            name = f"*.{name}"  # the identifier of a wildcard's authorization is the base name
        status = authz.get("status")
        if status == "valid":
            return  # the CA remembers this account proved the name recently
        if status != "pending":
            raise AcmeError(f"authorization {name}: {status}", authz.get("error"))
        challenge = next(
            (c for c in authz.get("challenges") or () if c.get("type") == "http-01"), None
        )
        if challenge is None:
            offered = ", ".join(str(c.get("type")) for c in authz.get("challenges") or ())
            raise AcmeError(f"authorization {name}: no http-01 challenge (offered: {offered})")
        token = str(challenge["token"])
        await responder.publish(token, f"{token}.{self._signer.thumbprint}")
        try:
            await self._post(urljoin(url, challenge["url"]), {}, "challenge")
            authz = await self._poll(url, "authorization", _AUTHZ_WAITING, None)
        finally:
            await responder.withdraw(token)
        if authz.get("status") != "valid":
            # The challenge's own error says why (the file was missing, did not match, ...).
            errors = [c["error"] for c in authz.get("challenges") or () if c.get("error")]
            problem = errors[0] if errors else authz.get("error")
            raise AcmeError(f"authorization {name}: {authz.get('status')}", problem)

    async def _poll(
        self, url: str, what: str, waiting: frozenset[str], last: _aws_http.Response | None
    ) -> dict[str, Any]:
        """POST-as-GET ``url`` until its status leaves ``waiting``; ``last`` is the answer
        that said it was waiting, if there was one (its ``Retry-After`` is honoured)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.poll_timeout
        status: Any = None
        while True:
            if last is not None:
                delay = _retry_after(last)
                delay = self.poll_interval if delay is None else min(delay, MAX_RETRY_AFTER)
                if loop.time() + delay > deadline:
                    raise AcmeError(f"{what}: still {status} after {self.poll_timeout:g} s")
                await asyncio.sleep(delay)
            last = await self._post(url, None, what)
            found = _json(last, what)
            status = found.get("status")
            if status not in waiting:
                return found

    async def _download(self, url: str) -> str:
        response = await self._post(url, None, "certificate", accept=_PEM_CHAIN)
        chain = response.body.decode("utf-8", "replace")
        top_issuer = _chain_top_issuer(chain)
        if top_issuer is None:
            raise AcmeError("certificate: the answer is not a PEM chain", status=response.status)
        wanted = self.preferred_chain
        if not wanted or top_issuer == wanted:
            return chain
        # As lua-resty-acme: the first alternate chain whose topmost issuer is the one asked
        # for; none such keeps the default chain.
        for alternate in _alternate_links(response, url):
            other = await self._post(alternate, None, "certificate", accept=_PEM_CHAIN)
            text = other.body.decode("utf-8", "replace")
            if _chain_top_issuer(text) == wanted:
                return text
        return chain
