"""The certificate a ``tls`` stream route's connection is terminated with, by its SNI.

Kong's ``kong/runloop/certificate.lua`` (``find_certificate``): the ``snis`` entity named as the
client's server name, else the one named by its leftmost label turned into ``*``
(``*.example.com`` for ``a.example.com``; only for names of three labels or more), else the one
named by its last label turned into ``*`` (``www.example.*``), else the catch-all sni ``*``,
else, on the edge's HTTP listeners, a certificate the acme plugin stored for the name
(:mod:`fastkong.acme.certs`), else the node's default certificate (``ssl_cert``/
``ssl_cert_key``, or Kong's generated one).

Unlike the HTTP listeners (Granian serves one certificate per listener), a stream listener's TLS
is Python's own, so every certificate in the config is served by name: one server context per
certificate, chosen in the handshake's SNI callback. A certificate's ``cert_alt``/``key_alt``
(Kong's second, usually ECDSA, pair) is loaded into the same context, and OpenSSL picks the one
the client supports.
"""

from __future__ import annotations

import logging
import re
import ssl
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final

from fastkong.config import vault
from fastkong.proxy.upstream_tls import load_chain

if TYPE_CHECKING:
    from fastkong.acme.certs import AcmeSource

log = logging.getLogger("fastkong.stream")

_WILD_PREFIX: Final = re.compile(r"([^.]+)(\.[^.]+\.\S+)")
_WILD_SUFFIX: Final = re.compile(r"([^.]+\.)([^.]+)$")
CATCH_ALL: Final = "*"


def wildcard_names(sni: str) -> tuple[str | None, str | None]:
    """Kong's ``produce_wild_snis``: the ``*.rest`` and ``first.*`` names to look up."""
    star = sni.find("*")
    prefix = suffix = None
    if star == 0:
        prefix = sni
    elif star < 0:
        found = _WILD_PREFIX.search(sni)
        if found is not None:
            prefix = sni[: found.start()] + "*" + found.group(2) + sni[found.end() :]
    if star == len(sni) - 1:
        suffix = sni
    elif star < 0:
        found = _WILD_SUFFIX.search(sni)
        if found is not None:
            suffix = sni[: found.start()] + found.group(1) + "*"
    return prefix, suffix


def server_context(minimum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = minimum
    return ctx


class CertificateSet:
    """The server contexts of one config snapshot, by SNI name (see the module docstring)."""

    __slots__ = ("default", "by_name", "contexts", "alpn", "acme")

    def __init__(
        self,
        default: ssl.SSLContext,
        certificates: Iterable[Any] = (),
        snis: Iterable[Any] = (),
        minimum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
        alpn: Sequence[str] = (),
        acme: AcmeSource | None = None,
    ) -> None:
        self.default = default
        self.alpn = tuple(alpn)
        #: The acme plugin's stored certificates, for names that would get the default.
        self.acme = acme
        self.contexts: dict[str, ssl.SSLContext] = {}
        for cert in certificates:
            ctx = server_context(minimum)
            load_chain(
                ctx, vault.resolve_fields(cert.cert, True), vault.resolve_fields(cert.key, True)
            )
            if cert.cert_alt and cert.key_alt:
                load_chain(
                    ctx,
                    vault.resolve_fields(cert.cert_alt, True),
                    vault.resolve_fields(cert.key_alt, True),
                )
            self.contexts[str(cert.id)] = ctx
        self.by_name: dict[str, ssl.SSLContext] = {}
        for sni in snis:
            named = self.contexts.get(str(sni.certificate))
            if named is not None:
                self.by_name[sni.name.lower()] = named
        # Every context sends its handshakes through the same chooser, and offers the same
        # protocols (the edge's HTTP listeners: h2 and http/1.1; stream listeners: none).
        for ctx in (default, *self.contexts.values()):
            ctx.sni_callback = self._choose
            if alpn:
                ctx.set_alpn_protocols(list(alpn))

    def __repr__(self) -> str:
        return f"<CertificateSet certificates={len(self.contexts)} names={len(self.by_name)}>"

    def find(self, sni: str | None) -> ssl.SSLContext:
        """The context for ``sni`` (Kong's lookup order), the default one when none is named."""
        if not sni:
            return self.default
        sni = sni.lower()
        prefix, suffix = wildcard_names(sni)
        for name in (sni, prefix, suffix, CATCH_ALL):
            if name is not None:
                found = self.by_name.get(name)
                if found is not None:
                    return found
        if self.acme is not None:
            certkey = self.acme.lookup(sni)
            if certkey is not None:
                return self.acme.context(sni, certkey, self.default, self.alpn)
        return self.default

    def _choose(self, conn: ssl.SSLObject | ssl.SSLSocket, name: str | None, _: Any) -> None:
        chosen = self.find(name)
        if conn.context is not chosen:
            conn.context = chosen


__all__ = ["CATCH_ALL", "CertificateSet", "server_context", "wildcard_names"]
