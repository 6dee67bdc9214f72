"""What the edge's SNI callback serves with an acme plugin (fastkong/acme/certs.py): the stored
certificate for an allowed name the config has no certificate for, never over the config's own,
and an order started (once) for an allowed name with nothing stored."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from pathlib import Path

import msgspec
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from fastkong.acme.certs import AcmeCache, acme_source
from fastkong.acme.storage import FileStorage
from fastkong.config import load_config
from fastkong.stream.certs import CertificateSet, server_context
from tests.pki import Pki

PKI = Pki("Edge CA")


@pytest.fixture(autouse=True)
def prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FASTKONG_STATE_FILE", str(tmp_path / "state"))
    return tmp_path


def _config(tmp: Path, extra: dict | None = None) -> object:  # type: ignore[type-arg]
    cert, key = PKI.issue("config.example", dns="config.example")
    doc = {
        "_format_version": "3.0",
        "certificates": [{"cert": cert, "key": key, "snis": [{"name": "*"}]}],
        "plugins": [
            {
                "name": "acme",
                "config": {
                    "account_email": "ops@example.test",
                    # nothing listens there: an order fails at once
                    "api_uri": "https://127.0.0.1:1/directory",
                    "domains": ["shop.example", "*.apps.example"],
                    **(extra or {}),
                },
            }
        ],
    }
    return load_config(json.dumps(doc)).config


def _source(tmp: Path, cache: AcmeCache, extra: dict | None = None):  # type: ignore[no-untyped-def,type-arg]
    # the node's store is in the prefix of FASTKONG_STATE_FILE (the autouse fixture's)
    config = _config(tmp, extra)
    source = acme_source(config, cache)
    assert source is not None
    return config, source


def _seed(source, host: str) -> str:  # type: ignore[no-untyped-def]
    cert, key = PKI.issue(host, dns=host)
    storage = source.manager.storage
    assert isinstance(storage, FileStorage)
    record = json.dumps({"cert": cert, "key": key})
    asyncio.run(storage.set(f"kong_acme:cert_key:{host}", record))
    return cert


def _served_name(ctx: ssl.SSLContext) -> str:
    """The subject CN of the certificate a context serves (through a handshake in memory)."""
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    server = ctx.wrap_bio(s_in, s_out, server_side=True)
    peer = client.wrap_bio(c_in, c_out, server_hostname="x.invalid")
    for _ in range(10):
        for side in (peer, server):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    der = peer.getpeercert(binary_form=True)
    assert der is not None
    cert = x509.load_der_x509_certificate(der)
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def test_a_stored_certificate_is_served_for_an_allowed_name(tmp_path: Path) -> None:
    cache = AcmeCache()
    config, source = _source(tmp_path, cache)
    _seed(source, "a.apps.example")
    default = server_context()
    cert, key = PKI.issue("default.example", dns="default.example")
    chain = tmp_path / "default.pem"
    chain.write_text(cert + key)
    default.load_cert_chain(chain)
    # no catch-all sni here: the default certificate would be served
    certs = CertificateSet(default, (), (), alpn=("http/1.1",), acme=source)
    chosen = certs.find("A.Apps.Example")
    assert chosen is not default and _served_name(chosen) == "a.apps.example"
    assert certs.find("a.apps.example") is chosen  # one context per stored certificate
    assert chosen.minimum_version == default.minimum_version
    assert _served_name(certs.find("other.example")) == "default.example"  # not allowed
    assert not cache.tasks  # a stored certificate is read at once: nothing ran in background


def test_the_config_s_own_certificates_win(tmp_path: Path) -> None:
    cache = AcmeCache()
    config, source = _source(tmp_path, cache)
    _seed(source, "shop.example")
    certs = CertificateSet(
        server_context(),
        config.certificates,  # type: ignore[attr-defined]
        config.snis,  # type: ignore[attr-defined]
        acme=source,
    )
    # the config's catch-all `*` sni is not the default certificate: Kong's acme stays out
    assert _served_name(certs.find("shop.example")) == "config.example"


def test_a_missing_certificate_is_ordered_once_and_a_failure_backs_off(tmp_path: Path) -> None:
    async def run() -> None:
        cache = AcmeCache()
        _, source = _source(tmp_path, cache, {"fail_backoff_minutes": 2})
        assert source.lookup("shop.example") is None  # the default, while ordering
        assert source.lookup("shop.example") is None
        assert len(cache.tasks) == 1  # one read-then-order per name and process
        await asyncio.wait_for(asyncio.gather(*cache.tasks), 30)
        storage = source.manager.storage
        backoff = await storage.get("kong_acme:fail_backoff:shop.example")
        assert backoff is not None and backoff.isdigit()
        # the lock is released after a failure, and nothing was stored
        assert await storage.get("kong_acme:update_lock:shop.example") is None
        assert await storage.get("kong_acme:cert_key:shop.example") is None
        # within the negative TTL, no new read starts
        assert source.lookup("shop.example") is None and not cache.tasks
        ok, err = await source.manager.update_certificate("shop.example")
        assert not ok and err is not None and "because of previous failure" in err

    asyncio.run(run())


def test_sources_of_two_configs_share_the_process_cache_but_not_entries(tmp_path: Path) -> None:
    cache = AcmeCache()
    _, first = _source(tmp_path, cache)
    _, second = _source(tmp_path, cache, {"cert_type": "ecc"})
    assert first.key != second.key
    assert msgspec.to_builtins(first.allowed.plain) == msgspec.to_builtins(second.allowed.plain)


def test_an_expired_miss_reads_the_node_store_again_at_once(tmp_path: Path) -> None:
    """Another process of the node ordered the certificate: once this process's 5 s negative
    entry runs out, the next handshake reads the file and gets it (no background read)."""
    cache = AcmeCache()
    _, source = _source(tmp_path, cache)
    cache.entries[(source.key, "shop.example")] = (time.monotonic() - 1, None)
    _seed(source, "shop.example")
    found = source.lookup("shop.example")
    assert found is not None and "BEGIN CERTIFICATE" in found.cert
    assert not cache.tasks
    cache.entries[(source.key, "shop.example")] = (time.monotonic() + 60, None)
    assert source.lookup("shop.example") is None  # a fresh negative entry is believed


def test_an_unchanged_certificate_keeps_its_server_context_across_refreshes(
    tmp_path: Path,
) -> None:
    cache = AcmeCache()
    _, source = _source(tmp_path, cache)
    _seed(source, "shop.example")
    certs = CertificateSet(server_context(), (), (), acme=source)
    first = certs.find("shop.example")
    slot = (source.key, "shop.example")
    cache.entries[slot] = (time.monotonic() - 1, cache.entries[slot][1])  # the hour ran out
    assert certs.find("shop.example") is first  # re-read, unchanged: no new context
    renewed = _seed(source, "shop.example")  # a renewal stored a new certificate
    cache.entries[slot] = (time.monotonic() - 1, cache.entries[slot][1])
    second = certs.find("shop.example")
    assert second is not first and cache.entries[slot][1].cert == renewed
