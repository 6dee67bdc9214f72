"""TLS profiles for https services (fastkong/proxy/upstream_tls.py), without sockets."""

from __future__ import annotations

import ssl

import pytest

from fastkong.proxy import upstream_tls
from fastkong.proxy.upstream_tls import NO_VERIFY, PLAIN_VERIFY, ContextCache, TlsProfile
from tests.pki import Pki


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki("unit CA")


def test_profiles_compare_by_content(pki: Pki) -> None:
    cert, key = pki.issue("client")
    a = TlsProfile(True, [pki.pem], cert, key)
    assert a == TlsProfile(True, [pki.pem], cert, key)
    assert hash(a) == hash(TlsProfile(True, [pki.pem], cert, key))
    assert a != TlsProfile(False, [pki.pem], cert, key)
    rotated, rotated_key = pki.issue("client")
    assert a != TlsProfile(True, [pki.pem], rotated, rotated_key)
    assert repr(a) == "<TlsProfile verify=True ca_certificates=1 client_certificate=yes>"


def test_contexts(pki: Pki) -> None:
    plain = PLAIN_VERIFY.context()
    assert plain.verify_mode == ssl.CERT_REQUIRED and plain.check_hostname
    off = NO_VERIFY.context()
    assert off.verify_mode == ssl.CERT_NONE and not off.check_hostname
    private = TlsProfile(True, [pki.pem]).context()
    assert private.verify_mode == ssl.CERT_REQUIRED and private.check_hostname
    assert private.cert_store_stats()["x509_ca"] == 1  # only the service's CA
    # CA certificates without tls_verify change nothing (Kong).
    assert TlsProfile(False, [pki.pem]).context().verify_mode == ssl.CERT_NONE


def test_a_bad_key_fails_to_build(pki: Pki) -> None:
    cert, _ = pki.issue("client")
    _, other_key = pki.issue("other")
    with pytest.raises(ssl.SSLError):
        TlsProfile(False, (), cert, other_key).context()


def test_cache_builds_once_and_stays_bounded(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = ContextCache()
    assert cache.get(NO_VERIFY) is cache.get(TlsProfile(False))  # equal profiles, one context
    monkeypatch.setattr(upstream_tls, "CONTEXT_CACHE_LIMIT", 2)
    cache.get(PLAIN_VERIFY)
    assert len(cache.contexts) == 2
    third = cache.get(TlsProfile(True, [pki.pem]))  # a full cache starts over
    assert cache.contexts == {TlsProfile(True, [pki.pem]): third}
    assert repr(cache) == "<ContextCache contexts=1>"
