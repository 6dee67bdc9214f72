"""Micro-benchmark of the edge's certificate choice with the acme plugin configured.

What a TLS handshake on an ``ssl`` proxy listener pays in the SNI callback
(:meth:`fastkong.stream.certs.CertificateSet.find`): a name the config's ``snis`` serve,
without and with an acme plugin; a name neither serves (the default certificate: the acme
plugin checks its domains); a name whose certificate the plugin stored (a cache hit); and the
refresh of that name once its cache entry has expired (once an hour per name and process: a
read of the node store's file, the certificate unchanged, so the server context is kept).
Best of 3 runs of ``timeit``; the store is a temporary ``shm`` directory.

Run: ``python bench/micro_acme_sni.py``
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    os.environ["FASTKONG_STATE_FILE"] = str(Path(tempfile.mkdtemp()) / "state")
    from fastkong.acme.certs import AcmeCache, acme_source
    from fastkong.config import load_config
    from fastkong.stream.certs import CertificateSet, server_context
    from tests.pki import Pki

    pki = Pki("Bench CA")
    cert, key = pki.issue("config.example", dns="config.example")
    acme = {"account_email": "ops@example.com", "domains": ["*.apps.example"]}
    doc = {
        "_format_version": "3.0",
        "certificates": [{"cert": cert, "key": key, "snis": [{"name": "config.example"}]}],
        "plugins": [{"name": "acme", "config": acme}],
    }
    config = load_config(json.dumps(doc)).config
    cache = AcmeCache()
    source = acme_source(config, cache)
    assert source is not None
    stored, stored_key = pki.issue("a.apps.example", dns="a.apps.example")
    record = json.dumps({"cert": stored, "key": stored_key})
    asyncio.run(source.manager.storage.set("kong_acme:cert_key:a.apps.example", record))
    alpn = ("h2", "http/1.1")
    with_acme = CertificateSet(server_context(), config.certificates, config.snis, alpn=alpn,
                               acme=source)  # fmt: skip
    without = CertificateSet(server_context(), config.certificates, config.snis, alpn=alpn)
    with_acme.find("a.apps.example")
    slot = (source.key, "a.apps.example")

    def refresh() -> None:
        cache.entries[slot] = (0.0, cache.entries[slot][1])
        with_acme.find("a.apps.example")

    cases = [
        ("config sni, no acme plugin", lambda: without.find("config.example"), 200_000),
        ("config sni, acme plugin", lambda: with_acme.find("config.example"), 200_000),
        ("default certificate, acme plugin", lambda: with_acme.find("other.example"), 200_000),
        ("acme certificate, cached", lambda: with_acme.find("a.apps.example"), 200_000),
        ("acme certificate, expired entry re-read", refresh, 20_000),
    ]
    for label, fn, n in cases:
        best = min(timeit.repeat(fn, number=n, repeat=3)) / n * 1e6
        print(f"{label:42} {best:8.2f} us")


if __name__ == "__main__":
    main()
