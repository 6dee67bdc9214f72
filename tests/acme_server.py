"""A real ACME CA on loopback for the acme tests: Let's Encrypt's test server ``pebble``, and
the tiny DNS server it resolves challenge names with.

pebble validates an ``http-01`` challenge by resolving the order's name and fetching
``http://<name>:<httpPort>/.well-known/acme-challenge/<token>``. Names like ``a.example.test``
resolve nowhere, so pebble is pointed (``-dnsserver``) at :class:`LoopbackDns`, which answers
every ``A`` query with 127.0.0.1 and everything else with an empty answer: every name is this
machine, where the test's challenge responder listens on ``httpPort``.

pebble's own HTTPS listener (the ACME API) and its management interface (the CA's roots) use a
certificate made here by :class:`tests.pki.Pki` (Debian's package ships no test certificates);
a client trusts :attr:`Pebble.ca_pem`. The issuing CA pebble makes itself, afresh at every
start: :meth:`Pebble.issuer_roots` fetches it.

The tests fail, never skip, when pebble is missing: ``scripts/test.sh`` installs Debian's
``pebble`` (``apt-get install pebble``). pebble runs as the user running the tests, with
``PEBBLE_VA_NOSLEEP=1`` (no random waits before validating), started and stopped by its pid.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import struct
import subprocess
import threading
from pathlib import Path
from types import TracebackType
from typing import NamedTuple, Self

import httpx

from tests.helpers import free_port, stop, wait_port
from tests.pki import Pki

PEBBLE = "/usr/bin/pebble"
MISSING = (
    "pebble is not installed: the acme tests need Let's Encrypt's test CA (apt-get install pebble)"
)

_TYPE_A = 1
_CLASS_IN = 1
_LOOPBACK = bytes([127, 0, 0, 1])


def _question(packet: bytes) -> tuple[str, int, int, int]:
    """The first question of a DNS query: name, type, class, and where the question ends."""
    labels = []
    at = 12  # after the header
    while True:
        length = packet[at]
        if length == 0:
            at += 1
            break
        if length & 0xC0:  # a compression pointer: queries do not use them
            raise ValueError("compressed name in a question")
        labels.append(packet[at + 1 : at + 1 + length].decode("ascii", "replace"))
        at += 1 + length
    qtype, qclass = struct.unpack_from("!HH", packet, at)
    return ".".join(labels), qtype, qclass, at + 4


def dns_answer(query: bytes) -> bytes | None:
    """The answer to one DNS query (RFC 1035 section 4.1): ``A`` is 127.0.0.1 (TTL 0), any
    other type an empty NOERROR answer; None for what is not a query with one question."""
    if len(query) < 12:
        return None
    ident, flags, qdcount = struct.unpack_from("!HHH", query)
    if flags & 0x8000 or qdcount != 1:  # a response, or not one question
        return None
    try:
        _, qtype, qclass, end = _question(query)
    except (IndexError, ValueError, struct.error):
        return None
    # QR=1, the query's opcode and RD, RA=1, RCODE 0 (NOERROR).
    reply_flags = 0x8000 | (flags & 0x7900) | 0x0080
    answers = 1 if qtype == _TYPE_A and qclass == _CLASS_IN else 0
    header = struct.pack("!HHHHHH", ident, reply_flags, 1, answers, 0, 0)
    packet = header + query[12:end]  # the question, as asked (EDNS records dropped)
    if answers:
        # The name as a pointer to the question's (offset 12), type A, class IN, TTL 0.
        packet += struct.pack("!HHHIH", 0xC00C, _TYPE_A, _CLASS_IN, 0, 4) + _LOOPBACK
    return packet


class _Started:
    """``with server:`` starts it and stops it by its own ``start``/``stop``."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class LoopbackDns(_Started):
    """A UDP DNS server on 127.0.0.1 answering every name with 127.0.0.1, in a thread; keeps
    the questions it was asked (name, type)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.questions: list[tuple[str, int]] = []
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._running = False

    def __repr__(self) -> str:
        return f"<LoopbackDns 127.0.0.1:{self.port} questions={len(self.questions)}>"

    def start(self) -> Self:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", self.port))
        sock.settimeout(0.2)  # how soon the thread notices stop()
        self._sock, self._running = sock, True
        self._thread = threading.Thread(target=self._run, args=(sock,), daemon=True)
        self._thread.start()
        return self

    def _run(self, sock: socket.socket) -> None:
        while self._running:
            try:
                query, peer = sock.recvfrom(512)
            except TimeoutError:
                continue
            except OSError:
                return
            answer = dns_answer(query)
            if answer is None:
                continue
            name, qtype, _, _ = _question(query)
            self.questions.append((name, qtype))
            sock.sendto(answer, peer)

    def stop(self) -> None:
        self._running = False
        if self._thread is not None:
            self._thread.join(5)
        if self._sock is not None:
            self._sock.close()


class IssuerCerts(NamedTuple):
    """One of pebble's issuing chains, PEM: its root and its intermediate."""

    root: str
    intermediate: str


class Pebble(_Started):
    """pebble on free loopback ports, validating http-01 challenges on ``http_port`` of the
    addresses ``dns`` gives; its API at :attr:`directory_url`, trusted through :attr:`ca_pem`.

    ``nonce_reject`` is the percentage of good nonces it refuses as ``badNonce``;
    ``eab_keys`` (kid -> base64url MAC key) makes External Account Binding required;
    ``alternate_roots`` adds that many alternate issuing chains; ``chain_length`` is
    ``PEBBLE_CHAIN_LENGTH`` (intermediates in a chain); ``authz_reuse`` is the percentage of
    orders given an account's earlier valid authorization for the name (pebble's default is
    50, which would make a test's challenge happen or not at random: 0 here)."""

    def __init__(
        self,
        workdir: Path,
        dns: LoopbackDns,
        http_port: int,
        *,
        nonce_reject: int = 0,
        eab_keys: dict[str, str] | None = None,
        alternate_roots: int | None = None,
        chain_length: int | None = None,
        authz_reuse: int = 0,
    ) -> None:
        self.workdir = workdir
        self.dns = dns
        self.http_port = http_port
        self.nonce_reject = nonce_reject
        self.eab_keys = eab_keys
        self.alternate_roots = alternate_roots
        self.chain_length = chain_length
        self.authz_reuse = authz_reuse
        self.port = free_port()
        self.management_port = free_port()
        self.tls_port = free_port()
        self.pki = Pki("pebble listener CA")
        self.proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        pid = self.proc.pid if self.proc is not None else None
        return (
            f"<Pebble {self.directory_url} management={self.management_port} "
            f"http-01={self.http_port} dns={self.dns.port} pid={pid}>"
        )

    @property
    def directory_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    @property
    def ca_pem(self) -> str:
        """The CA of pebble's own HTTPS listeners (not of the certificates it issues)."""
        return self.pki.pem

    @property
    def log(self) -> str:
        path = self.workdir / "pebble.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _configure(self) -> Path:
        cert, key = self.pki.issue("localhost", dns="localhost", ip="127.0.0.1")
        (self.workdir / "cert.pem").write_text(cert)
        (self.workdir / "key.pem").write_text(key)
        settings: dict[str, object] = {
            "listenAddress": f"127.0.0.1:{self.port}",
            "managementListenAddress": f"127.0.0.1:{self.management_port}",
            "certificate": str(self.workdir / "cert.pem"),
            "privateKey": str(self.workdir / "key.pem"),
            "httpPort": self.http_port,
            "tlsPort": self.tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": self.eab_keys is not None,
        }
        if self.eab_keys is not None:
            settings["externalAccountMACKeys"] = self.eab_keys
        path = self.workdir / "pebble.json"
        path.write_text(json.dumps({"pebble": settings}, indent=2))
        return path

    def _env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("PEBBLE_")}
        env["PEBBLE_VA_NOSLEEP"] = "1"
        env["PEBBLE_WFE_NONCEREJECT"] = str(self.nonce_reject)
        env["PEBBLE_AUTHZREUSE"] = str(self.authz_reuse)
        if self.alternate_roots is not None:
            env["PEBBLE_ALTERNATE_ROOTS"] = str(self.alternate_roots)
        if self.chain_length is not None:
            env["PEBBLE_CHAIN_LENGTH"] = str(self.chain_length)
        return env

    def start(self) -> Self:
        binary = shutil.which("pebble") or PEBBLE
        if not os.access(binary, os.X_OK):
            raise RuntimeError(MISSING)
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self._configure()
        log = (self.workdir / "pebble.log").open("ab")
        self.proc = subprocess.Popen(
            [binary, "-config", str(config), "-dnsserver", f"127.0.0.1:{self.dns.port}"],
            stdout=log,
            stderr=log,
            env=self._env(),
            cwd=self.workdir,
        )
        log.close()
        try:
            wait_port(self.port, proc=self.proc)
            wait_port(self.management_port, proc=self.proc)
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            raise RuntimeError(f"pebble did not start: {exc}\n{self.log[-4000:]}") from None
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    def _management(self, path: str) -> str:
        context = ssl.create_default_context(cadata=self.ca_pem)
        url = f"https://127.0.0.1:{self.management_port}{path}"
        response = httpx.get(url, verify=context, timeout=10)
        response.raise_for_status()
        return response.text

    def issuer_roots(self, chain: int = 0) -> IssuerCerts:
        """Issuing chain ``chain`` (0 the default, 1... the alternates): root, intermediate."""
        return IssuerCerts(
            self._management(f"/roots/{chain}"), self._management(f"/intermediates/{chain}")
        )
