"""Kong's default proxy certificates.

With an ``ssl`` proxy listener and no ``ssl_cert``, Kong does not refuse to start: it generates
two self-signed certificates under its prefix and serves both, as nginx serves several
``ssl_certificate`` lines: an RSA 2048 pair (``ssl/kong-default.crt`` and ``.key``) and an ECDSA
P-256 pair (``ssl/kong-default-ecdsa.crt`` and ``.key``), subject ``CN=localhost`` of "Kong, IT
Department, San Francisco", valid twenty years, not a CA, for server and client auth. Each
client gets the pair whose key type it supports; later starts reuse the files. fastkong does the
same under its state directory (the prefix when one is set), so a Kong manifest's default
``proxy_listen`` answers on 8443 as Kong's would, old RSA-only clients included.

The ECDSA pair comes first in the list: Granian's own TLS (``ssl_termination = granian``) serves
one certificate only, and every current client takes ECDSA, whose handshakes cost the server a
fraction of an RSA signature.

fastkong before this version wrote one ECDSA pair under the RSA pair's names. Such a pair is
moved to the ECDSA names (a pinned certificate stays the same), and an RSA pair is generated.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

RSA_NAMES = ("kong-default.crt", "kong-default.key")
ECDSA_NAMES = ("kong-default-ecdsa.crt", "kong-default-ecdsa.key")
_VALIDITY = datetime.timedelta(days=20 * 365)

Pair = tuple[Path, Path]


def default_certificates(directory: Path) -> list[Pair]:
    """The (certificate, key) paths of the ECDSA and the RSA pair under ``directory/ssl``,
    in that order, each generated on first use."""
    ssl_dir = directory / "ssl"
    ssl_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    rsa_pair = (ssl_dir / RSA_NAMES[0], ssl_dir / RSA_NAMES[1])
    ecdsa_pair = (ssl_dir / ECDSA_NAMES[0], ssl_dir / ECDSA_NAMES[1])
    if _exists(rsa_pair) and not _is_rsa(rsa_pair[1]):
        # An older fastkong's one ECDSA pair, under the RSA names.
        if not _exists(ecdsa_pair):
            os.replace(rsa_pair[1], ecdsa_pair[1])
            os.replace(rsa_pair[0], ecdsa_pair[0])
        else:
            rsa_pair[0].unlink()
    for pair, new_key in ((ecdsa_pair, _ecdsa_key), (rsa_pair, _rsa_key)):
        if not _exists(pair):
            _generate(pair, new_key())
    return [ecdsa_pair, rsa_pair]


def _exists(pair: Pair) -> bool:
    return pair[0].is_file() and pair[1].is_file()


def _is_rsa(key_path: Path) -> bool:
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    return isinstance(key, rsa.RSAPrivateKey)


def _ecdsa_key() -> CertificateIssuerPrivateKeyTypes:
    return ec.generate_private_key(ec.SECP256R1())


def _rsa_key() -> CertificateIssuerPrivateKeyTypes:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _generate(pair: Pair, key: CertificateIssuerPrivateKeyTypes) -> None:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "California"),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "San Francisco"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Kong"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "IT Department"),
            x509.NameAttribute(NameOID.COMMON_NAME, "localhost"),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        # Kong sets no subjectAltName; with it a client that checks names accepts "localhost".
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # The key is written readable by its owner alone, and both files are renamed into place so a
    # concurrent start never reads half of one.
    cert_path, key_path = pair
    _write(key_path, key_pem, 0o600)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _write(path: Path, data: bytes, mode: int) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    os.replace(partial, path)
