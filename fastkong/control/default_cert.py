"""Kong's default proxy certificate.

With an ``ssl`` proxy listener and no ``ssl_cert``, Kong does not refuse to start: it generates a
self-signed certificate under its prefix (``ssl/kong-default.crt`` and ``.key``, subject
``CN=localhost`` of "Kong, IT Department, San Francisco", valid twenty years) and serves it, and
reuses the pair on later starts. fastkong does the same under its state directory (the prefix
when one is set), so a Kong manifest's default ``proxy_listen`` answers on 8443 as Kong's would.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CERT_NAME = "kong-default.crt"
KEY_NAME = "kong-default.key"
_VALIDITY = datetime.timedelta(days=20 * 365)


def default_certificate(directory: Path) -> tuple[Path, Path]:
    """The (certificate, key) paths under ``directory/ssl``, generated on first use."""
    ssl_dir = directory / "ssl"
    cert_path, key_path = ssl_dir / CERT_NAME, ssl_dir / KEY_NAME
    if cert_path.is_file() and key_path.is_file():
        return cert_path, key_path
    ssl_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
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
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # The key is written readable by its owner alone, and both files are renamed into place so a
    # concurrent start never reads half of one.
    _write(key_path, key_pem, 0o600)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert_path, key_path


def _write(path: Path, data: bytes, mode: int) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    os.replace(partial, path)
