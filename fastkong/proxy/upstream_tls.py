"""How the gateway talks TLS to an ``https`` service: Kong's ``tls_verify``, ``ca_certificates``
and ``client_certificate`` (``kong/runloop/upstream_ssl.lua``).

Kong's defaults: no verification of the upstream's certificate (nginx ``proxy_ssl_verify off``)
unless the service sets ``tls_verify: true``; then the certificate must chain to the service's
``ca_certificates`` when it lists some (only those: they replace the trusted store), else to the
system's trusted roots, and must name the TLS server name (the Host sent, see
:mod:`fastkong.proxy.app`). ``ca_certificates`` without ``tls_verify`` changes nothing, as in
Kong. ``client_certificate`` (the service's, else its upstream's) is presented to an upstream
that asks for one (mutual TLS). ``tls_verify_depth`` is accepted and not enforced: Python's
``ssl`` has no verify depth, so a chain is followed to a trusted root however long it is.

Which roots "the system's" are is Kong's ``lua_ssl_trusted_certificate`` (``system`` by default;
a comma-separated list of PEM files, with ``system`` among them to keep the system's roots too),
read once per process (:func:`trust_store`); an unreadable file stops ``fastkong start``.

A :class:`TlsProfile` is built per service at config load; it is compared and hashed by the
digest of everything it contains (PEM text included), so a certificate rotated under the same
entity id is a different profile: its connections are not reused and its SSL context is built
anew. Contexts are built once per profile per worker (:class:`ContextCache`): loading a chain
and key costs milliseconds, which a request must not pay.
"""

from __future__ import annotations

import hashlib
import os
import ssl
import tempfile
from collections.abc import Iterable, Mapping

from fastkong.kong_conf import pem_text

#: Contexts kept per worker; a node sees a handful of profiles, rotations add a few more.
CONTEXT_CACHE_LIMIT = 256


class TlsProfile:
    """What one service's TLS connections are made with (immutable)."""

    __slots__ = ("verify", "ca_pems", "client_cert", "client_key", "digest")

    def __init__(
        self,
        verify: bool,
        ca_pems: Iterable[str] = (),
        client_cert: str | None = None,
        client_key: str | None = None,
    ) -> None:
        self.verify = verify
        self.ca_pems = tuple(ca_pems)
        self.client_cert = client_cert
        self.client_key = client_key
        h = hashlib.sha256(b"v" if verify else b"n")
        for part in (*self.ca_pems, "\0", client_cert or "", "\0", client_key or ""):
            h.update(part.encode())
        self.digest = h.digest()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TlsProfile) and self.digest == other.digest

    def __hash__(self) -> int:
        return hash(self.digest)

    def __repr__(self) -> str:
        return (
            f"<TlsProfile verify={self.verify} ca_certificates={len(self.ca_pems)} "
            f"client_certificate={'yes' if self.client_cert else 'no'}>"
        )

    def context(self) -> ssl.SSLContext:
        """A new client SSL context for this profile."""
        if self.verify and self.ca_pems:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies, checks names; no roots
            ctx.load_verify_locations(cadata="\n".join(self.ca_pems))
        elif self.verify:
            ctx = verifying_context()
        else:
            ctx = ssl.create_default_context()
            if not self.verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
        if self.client_cert and self.client_key:
            load_chain(ctx, self.client_cert, self.client_key)
        return ctx


class TrustStore:
    """Kong's ``lua_ssl_trusted_certificate``: the system's roots and/or the given PEM files."""

    __slots__ = ("system", "pems", "files")

    def __init__(self, setting: str | None) -> None:
        entries = [x.strip() for x in (setting or "system").split(",") if x.strip()]
        self.system = "system" in entries
        pems = []
        files = []
        for path in entries:
            if path == "system":
                continue
            given = None if os.path.isfile(path) else pem_text(path)
            if given is not None:  # the PEM text itself, or base64 of it, as Kong reads it
                pems.append(given.decode("latin-1"))
                continue
            files.append(path)
            try:
                with open(path, encoding="latin-1") as f:
                    text = f.read()
            except OSError as exc:
                raise ValueError(
                    f"lua_ssl_trusted_certificate: cannot read {path}: {exc.strerror or exc}"
                ) from None
            if "-----BEGIN CERTIFICATE-----" not in text:
                raise ValueError(f"lua_ssl_trusted_certificate: no PEM certificate in {path}")
            pems.append(text)
        #: The files read (entries given as PEM text are not named in messages).
        self.files = tuple(files)
        self.pems = "\n".join(pems)
        if self.pems:
            try:
                ssl.create_default_context(cadata=self.pems)
            except ssl.SSLError as exc:
                named = ", ".join(self.files) or "the PEM text given"
                raise ValueError(
                    f"lua_ssl_trusted_certificate: unreadable certificate in {named}: "
                    f"{exc.reason or exc}"
                ) from None

    def __repr__(self) -> str:
        return f"<TrustStore system={self.system} files={list(self.files)}>"

    def load_into(self, ctx: ssl.SSLContext) -> None:
        if self.system:
            ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
        if self.pems:
            ctx.load_verify_locations(cadata=self.pems)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> TrustStore:
        return cls(
            environ.get("FASTKONG_LUA_SSL_TRUSTED_CERTIFICATE")
            or environ.get("KONG_LUA_SSL_TRUSTED_CERTIFICATE")
        )


_TRUST: list[TrustStore] = []


def trust_store() -> TrustStore:
    """This process's trusted roots for verified connections (read from the environment once)."""
    if not _TRUST:
        _TRUST.append(TrustStore.from_environ(os.environ))
    return _TRUST[0]


def verifying_context() -> ssl.SSLContext:
    """A client context that verifies the peer against :func:`trust_store` and checks names."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    trust_store().load_into(ctx)
    return ctx


def load_chain(ctx: ssl.SSLContext, cert: str, key: str) -> None:
    """``load_cert_chain`` from PEM text: Python's ssl reads chains only from files, so they go
    through a private temporary directory, removed at once."""
    with tempfile.TemporaryDirectory(prefix="fastkong-tls-") as directory:
        os.chmod(directory, 0o700)
        cert_path = os.path.join(directory, "cert.pem")
        key_path = os.path.join(directory, "key.pem")
        for path, text in ((cert_path, cert), (key_path, key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(text)
        ctx.load_cert_chain(cert_path, key_path)


PLAIN_VERIFY = TlsProfile(True)
NO_VERIFY = TlsProfile(False)


class ContextCache:
    """One worker's SSL contexts, by profile."""

    __slots__ = ("contexts",)

    def __init__(self) -> None:
        self.contexts: dict[TlsProfile, ssl.SSLContext] = {}

    def __repr__(self) -> str:
        return f"<ContextCache contexts={len(self.contexts)}>"

    def get(self, profile: TlsProfile) -> ssl.SSLContext:
        ctx = self.contexts.get(profile)
        if ctx is None:
            if len(self.contexts) >= CONTEXT_CACHE_LIMIT:
                self.contexts.clear()  # old profiles from earlier configs; rebuilt on demand
            ctx = self.contexts[profile] = profile.context()
        return ctx
