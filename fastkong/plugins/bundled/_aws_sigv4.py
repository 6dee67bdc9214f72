"""AWS Signature Version 4 (header form) for the ``aws-lambda`` plugin's calls to AWS.

Written from AWS's specification ("Create a signed AWS API request", SigV4): a canonical
request (method, canonical URI, canonical query, canonical headers, signed header names, the
hex SHA-256 of the payload), a string to sign (``AWS4-HMAC-SHA256``, the request time, the
credential scope ``date/region/service/aws4_request``, the hex SHA-256 of the canonical
request), and a signature made with a key derived from the secret by an HMAC-SHA256 chain over
the date, region, service and ``aws4_request``.

Two choices the specification leaves to the client:

- the canonical URI is the path *as sent* with each segment URI-encoded again, which is how
  every AWS service but S3 reads it (a ``%3A`` on the wire is ``%253A`` in the canonical URI),
  so whatever a path escapes on the wire, the signature agrees with the server's reading;
- every header the request carries is signed except ``User-Agent`` and the hop-by-hop ones
  (Kong's AWS library signs all it sends; a proxy may rewrite ``User-Agent``).

Derived keys are kept per (secret, date, region, service): one HMAC chain per day instead of
four HMACs per request.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import quote

ALGORITHM: Final = "AWS4-HMAC-SHA256"
#: Headers never signed: a proxy may change them on the way.
_UNSIGNED: Final = frozenset({"user-agent", "connection", "keep-alive", "proxy-authorization"})
#: Derived keys kept (a handful of credentials and regions per day in practice).
_KEY_CACHE_LIMIT: Final = 64
_KEYS: dict[tuple[str, str, str, str], bytes] = {}


@dataclass(frozen=True, slots=True)
class Credentials:
    """An access key, its secret, the session token of temporary credentials, and when they
    expire (Unix time; static keys never do). The secret parts stay out of ``repr``."""

    access_key: str
    secret_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)
    expires: float = math.inf


def uri_encode(text: str, *, keep_slash: bool = False) -> str:
    """AWS's ``UriEncode``: every byte but ``A-Z a-z 0-9 - _ . ~`` as ``%XX`` (upper-case hex,
    UTF-8 first); ``/`` kept when encoding a path."""
    return quote(text, safe="/-_.~" if keep_slash else "-_.~")


def canonical_uri(path: str) -> str:
    """The canonical URI of a path as sent on the wire (each segment encoded once more)."""
    if not path:
        return "/"
    return "/".join(uri_encode(segment) for segment in path.split("/"))


def canonical_query(pairs: list[tuple[str, str]]) -> str:
    """The canonical query string of decoded ``(name, value)`` pairs: encoded, sorted by name
    then value."""
    encoded = sorted((uri_encode(k), uri_encode(v)) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in encoded)


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """The HMAC chain ``AWS4<secret>`` -> date -> region -> service -> ``aws4_request``."""
    cache_key = (secret, date, region, service)
    key = _KEYS.get(cache_key)
    if key is None:
        key = ("AWS4" + secret).encode()
        for part in (date, region, service, "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        if len(_KEYS) >= _KEY_CACHE_LIMIT:
            _KEYS.clear()
        _KEYS[cache_key] = key
    return key


def _canonical_headers(headers: list[tuple[str, str]]) -> tuple[str, str]:
    """``(canonical headers, signed header names)``: lower-case names sorted, values trimmed
    with inner runs of spaces collapsed, repeated names joined with ``,``."""
    merged: dict[str, list[str]] = {}
    for name, value in headers:
        lower = name.lower()
        if lower in _UNSIGNED:
            continue
        merged.setdefault(lower, []).append(" ".join(value.split()))
    names = sorted(merged)
    canonical = "".join(f"{name}:{','.join(merged[name])}\n" for name in names)
    return canonical, ";".join(names)


def string_to_sign(
    method: str,
    path: str,
    query: list[tuple[str, str]],
    headers: list[tuple[str, str]],
    payload_hash: str,
    amz_date: str,
    scope: str,
) -> tuple[str, str]:
    """``(string to sign, signed header names)`` of one request."""
    canonical_headers, signed = _canonical_headers(headers)
    request = "\n".join(
        (
            method,
            canonical_uri(path),
            canonical_query(query),
            canonical_headers,
            signed,
            payload_hash,
        )
    )
    digest = hashlib.sha256(request.encode()).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}", signed


def sign(
    *,
    method: str,
    host: str,
    path: str,
    query: list[tuple[str, str]],
    headers: list[tuple[str, str]],
    body: bytes,
    credentials: Credentials,
    region: str,
    service: str,
    now: float | None = None,
) -> list[tuple[str, str]]:
    """The headers to send for a signed request: ``Host`` (``host``, with the port when it is
    not the scheme's), ``X-Amz-Date``, ``X-Amz-Security-Token`` for temporary credentials,
    ``headers``, and ``Authorization``.

    ``path`` is the path as it goes on the wire, ``query`` the decoded query arguments.
    """
    stamp = time.gmtime(time.time() if now is None else now)
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", stamp)
    date = amz_date[:8]
    out = [("Host", host), ("X-Amz-Date", amz_date)]
    if credentials.session_token:
        out.append(("X-Amz-Security-Token", credentials.session_token))
    out.extend(headers)
    scope = f"{date}/{region}/{service}/aws4_request"
    payload_hash = hashlib.sha256(body).hexdigest()
    text, signed = string_to_sign(method, path, query, out, payload_hash, amz_date, scope)
    key = signing_key(credentials.secret_key, date, region, service)
    signature = hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
    out.append(
        (
            "Authorization",
            f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}",
        )
    )
    return out
