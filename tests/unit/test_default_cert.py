"""Kong's default certificates (fastkong/control/default_cert.py): an ECDSA and an RSA pair under
Kong's names, generated once and reused; an older fastkong's single ECDSA pair under the RSA
names is moved, not lost."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from fastkong.control.default_cert import default_certificates


def load(pair: tuple[Path, Path]) -> tuple[x509.Certificate, object]:
    cert = x509.load_pem_x509_certificate(pair[0].read_bytes())
    key = serialization.load_pem_private_key(pair[1].read_bytes(), None)
    return cert, key


def test_an_ecdsa_and_an_rsa_pair_as_kong_generates_them(tmp_path: Path) -> None:
    ecdsa_pair, rsa_pair = default_certificates(tmp_path)
    assert [p.name for p in (*ecdsa_pair, *rsa_pair)] == [
        "kong-default-ecdsa.crt",
        "kong-default-ecdsa.key",
        "kong-default.crt",
        "kong-default.key",
    ]
    for pair, key_type in ((ecdsa_pair, ec.EllipticCurvePrivateKey), (rsa_pair, rsa.RSAPrivateKey)):
        cert, key = load(pair)
        assert isinstance(key, key_type)
        assert cert.public_key() == key.public_key()  # type: ignore[attr-defined]
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
        assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days >= 20 * 365
        assert pair[1].stat().st_mode & 0o777 == 0o600
    rsa_key = load(rsa_pair)[1]
    assert isinstance(rsa_key, rsa.RSAPrivateKey) and rsa_key.key_size == 2048
    # A later start serves the same files.
    before = [p.read_bytes() for p in (*ecdsa_pair, *rsa_pair)]
    again = default_certificates(tmp_path)
    assert [p.read_bytes() for pair in again for p in pair] == before


def test_an_older_single_ecdsa_pair_is_moved_to_the_ecdsa_names(tmp_path: Path) -> None:
    # What fastkong wrote before: its ECDSA pair under Kong's RSA names.
    ecdsa_pair, _ = default_certificates(tmp_path / "fresh")
    ssl_dir = tmp_path / "ssl"
    ssl_dir.mkdir()
    old_cert, old_key = ecdsa_pair[0].read_bytes(), ecdsa_pair[1].read_bytes()
    (ssl_dir / "kong-default.crt").write_bytes(old_cert)
    (ssl_dir / "kong-default.key").write_bytes(old_key)
    moved, rsa_pair = default_certificates(tmp_path)
    assert (moved[0].read_bytes(), moved[1].read_bytes()) == (old_cert, old_key)
    assert isinstance(load(rsa_pair)[1], rsa.RSAPrivateKey)
