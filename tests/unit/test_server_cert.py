"""``ssl_cert``/``ssl_cert_key`` read as Kong reads them (fastkong/control/server_cert.py):
lists, paths or PEM text or base64, every problem named at once, each pair loaded as a server
pair would be."""

from __future__ import annotations

import base64
import ssl
from pathlib import Path

import pytest

from fastkong.control.server_cert import ServedCertificate, server_certificates
from tests.helpers import KubeletVolume
from tests.pki import Pki


@pytest.fixture(scope="module")
def pairs() -> list[tuple[str, str]]:
    pki = Pki("server-cert-ca")
    return [pki.issue("one.test", dns="one.test"), pki.issue("two.test", dns="two.test")]


def loaded_certificate(cert_path: str, key_path: str) -> str:
    """The certificate's text, after the pair loaded as the TLS server will load it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return Path(cert_path).read_text()


def test_paths_text_and_base64_each_become_a_checked_file(
    tmp_path: Path, pairs: list[tuple[str, str]]
) -> None:
    (cert_one, key_one), (cert_two, key_two) = pairs
    (tmp_path / "one.crt").write_text(cert_one)
    (tmp_path / "one.key").write_text(key_one)
    b64 = base64.b64encode(cert_two.encode()).decode()
    found = server_certificates(
        f"{tmp_path / 'one.crt'}, {b64}", f"{tmp_path / 'one.key'},{key_two}", tmp_path / "state"
    )
    assert found[0] == (str(tmp_path / "one.crt"), str(tmp_path / "one.key"))
    assert loaded_certificate(*found[1]) == cert_two
    assert Path(found[1][1]).read_text() == key_two.strip()
    assert oct(Path(found[1][1]).stat().st_mode)[-3:] == "600"


def test_every_problem_is_named_at_once(tmp_path: Path, pairs: list[tuple[str, str]]) -> None:
    (cert_one, _), (_, key_two) = pairs
    with pytest.raises(ValueError) as raised:
        server_certificates("/nowhere/cert.pem", "/nowhere/key.pem", tmp_path)
    # Kong's conf loader's own words.
    assert str(raised.value).splitlines() == [
        "ssl_cert: failed loading certificate from /nowhere/cert.pem",
        "ssl_cert_key: failed loading key from /nowhere/key.pem",
    ]
    with pytest.raises(ValueError, match="^ssl_cert was specified 2 times while ssl_cert_key "):
        server_certificates("a.pem, b.pem", "a.key", tmp_path)
    # A key that is not the certificate's: refused here, not by a listener that dies later.
    with pytest.raises(ValueError) as raised:
        server_certificates(cert_one, key_two, tmp_path)
    assert str(raised.value).startswith(
        "ssl_cert: cannot use entry 1 (PEM text) with the key entry 1 (PEM text): "
    )


def test_the_served_pair_is_a_stable_copy_that_follows_a_secret_volume(
    tmp_path: Path, pairs: list[tuple[str, str]]
) -> None:
    (cert_one, key_one), (cert_two, key_two) = pairs
    volume = KubeletVolume(tmp_path / "secret", "tls.crt")
    volume.write_files({"tls.crt": cert_one, "tls.key": key_one})
    served = ServedCertificate(
        str(volume.file("tls.crt")), str(volume.file("tls.key")), tmp_path / "state"
    )
    assert served.load() is True
    # Granian is given these: plain files of fastkong's, so a path it resolved stays valid.
    assert not served.cert_path.is_symlink() and served.cert_path.resolve() == served.cert_path
    assert loaded_certificate(str(served.cert_path), str(served.key_path)) == cert_one
    assert oct(served.key_path.stat().st_mode)[-3:] == "600"
    assert served.refresh() is False  # nothing changed: the workers stay

    volume.write_files({"tls.crt": cert_two, "tls.key": key_two})  # a renewal
    assert served.refresh() is True
    assert loaded_certificate(str(served.cert_path), str(served.key_path)) == cert_two
    assert served.reloads == {"success": 1, "failure": 0}

    volume.write_files({"tls.crt": cert_two, "tls.key": key_two})  # another key of the Secret
    assert served.refresh() is False  # the same pair: no need to replace the workers

    volume.write_files({"tls.crt": cert_one, "tls.key": key_two})  # a pair that does not load
    assert served.refresh() is False
    assert served.last_error is not None and "KEY_VALUES_MISMATCH" in served.last_error[0]
    assert served.reloads == {"success": 1, "failure": 1}
    assert loaded_certificate(str(served.cert_path), str(served.key_path)) == cert_two  # kept
    assert served.refresh() is False  # reported once, not on every look

    volume.write_files({"tls.crt": cert_one, "tls.key": key_one})  # fixed
    assert served.refresh() is True and served.last_error is None
    assert loaded_certificate(str(served.cert_path), str(served.key_path)) == cert_one


def test_every_given_pair_is_served_and_followed(
    tmp_path: Path, pairs: list[tuple[str, str]]
) -> None:
    """Kong's RSA and ECDSA pairs side by side: each has its own served copy, and a change to
    the second alone is a change of what is served."""
    (cert_one, key_one), (cert_two, key_two) = pairs
    (tmp_path / "two.crt").write_text(cert_two)
    (tmp_path / "two.key").write_text(key_two)
    served = ServedCertificate(
        f"{cert_one},{tmp_path / 'two.crt'}", f"{key_one},{tmp_path / 'two.key'}", tmp_path / "s"
    )
    assert served.load() is True
    assert served.pairs[0] == (str(served.cert_path), str(served.key_path))
    texts = [loaded_certificate(*pair).strip() for pair in served.pairs]
    assert texts == [cert_one.strip(), cert_two.strip()]
    assert served.refresh() is False

    (tmp_path / "two.crt.new").write_text(cert_one)
    (tmp_path / "two.key.new").write_text(key_one)
    (tmp_path / "two.crt.new").replace(tmp_path / "two.crt")
    (tmp_path / "two.key.new").replace(tmp_path / "two.key")
    assert served.refresh() is True
    texts = [loaded_certificate(*pair).strip() for pair in served.pairs]
    assert texts == [cert_one.strip(), cert_one.strip()]
