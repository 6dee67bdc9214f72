"""OAuth access tokens for a Google Cloud service account, for ai-proxy's Gemini driver with
``auth.gcp_use_service_account`` (what Kong 3.9 gets from ``lua-resty-gcp``'s
``credentials.accesstoken``).

The service account's JSON key (``auth.gcp_service_account_json``, else the node's
``GCP_SERVICE_ACCOUNT`` environment variable) names the account (``client_email``), its RSA
key (``private_key``, PEM) and the token endpoint (``token_uri``). A token is obtained with the
JWT bearer grant (RFC 7523, Google's "OAuth 2.0 for server to server applications"): a JWT
signed RS256 with the account's key (issuer the account, audience the token endpoint, scope
``cloud-platform``, valid an hour) is posted as ``assertion`` with ``grant_type
urn:ietf:params:oauth:grant-type:jwt-bearer``; the answer's ``access_token`` is kept until a
minute before its ``expires_in`` runs out, one request fetching a new one while the others wait.

Any failure (no or bad key, an unreachable endpoint, a refusal) is Kong's: the request is
answered ``500 {"error":{"message":"LLM request failed before proxying"}}`` and the reason
logged.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import time
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from fastkong.plugins.bundled import _aws_http
from fastkong.plugins.bundled._llm_shared import LlmError

log = logging.getLogger("fastkong.plugins.ai-proxy")

SCOPE: Final = "https://www.googleapis.com/auth/cloud-platform"
GRANT_TYPE: Final = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: What the client is told whatever went wrong (Kong's message).
FAILED: Final = "LLM request failed before proxying"
LIFETIME: Final = 3600
#: A token is renewed this long before it expires.
MARGIN: Final = 60.0
TIMEOUT: Final = 10.0


class AccountError(Exception):
    """A service account key that cannot be used; the message says why."""


def parse_key(text: str) -> tuple[str, str, str, rsa.RSAPrivateKey]:
    """``(client_email, token_uri, private_key_id, key)`` of a service account JSON key."""
    try:
        data = json.loads(text)
    except ValueError:
        raise AccountError("not valid JSON") from None
    if not isinstance(data, dict):
        raise AccountError("not a JSON object")
    fields = {}
    for name in ("client_email", "private_key", "token_uri"):
        value = data.get(name)
        if not isinstance(value, str) or not value:
            raise AccountError(f"'{name}' is missing")
        fields[name] = value
    if urlsplit(fields["token_uri"]).scheme not in ("http", "https"):
        raise AccountError("'token_uri' is not an http(s) URL")
    try:
        key = serialization.load_pem_private_key(fields["private_key"].encode(), None)
    except (ValueError, TypeError):
        raise AccountError("'private_key' is not a PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise AccountError("'private_key' is not an RSA key")
    key_id = data.get("private_key_id")
    return fields["client_email"], fields["token_uri"], key_id or "", key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def assertion(email: str, token_uri: str, key_id: str, key: rsa.RSAPrivateKey, now: int) -> str:
    """The signed JWT the token endpoint exchanges for an access token."""
    header: dict[str, Any] = {"alg": "RS256", "typ": "JWT"}
    if key_id:
        header["kid"] = key_id
    claims = {"iss": email, "scope": SCOPE, "aud": token_uri, "iat": now, "exp": now + LIFETIME}
    signing_input = (
        _b64(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + _b64(json.dumps(claims, separators=(",", ":")).encode())
    )
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64(signature)}"


class ServiceAccount:
    """One config's service account and its current token."""

    def __init__(self, text: str | None) -> None:
        self.text = text
        self.access_token: str | None = None
        self.expires = 0.0
        self._lock: asyncio.Lock | None = None

    @classmethod
    def from_config(cls, text: str | None) -> ServiceAccount:
        """The config's key, else (read now, as Kong reads it at start) the environment's."""
        return cls(text if text is not None else os.environ.get("GCP_SERVICE_ACCOUNT"))

    async def token(self) -> str:
        """A valid access token; :class:`LlmError` (Kong's message) when none can be had."""
        if self.access_token is not None and time.time() < self.expires - MARGIN:
            return self.access_token
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.access_token is None or time.time() >= self.expires - MARGIN:
                try:
                    self.access_token, lifetime = await self._fetch()
                except AccountError as exc:
                    log.error(
                        "error authenticating with gemini using native provider auth: %s", exc
                    )
                    raise LlmError(FAILED) from None
                self.expires = time.time() + lifetime
        return self.access_token

    async def _fetch(self) -> tuple[str, float]:
        if not self.text:
            raise AccountError(
                "no service account key (gcp_service_account_json, GCP_SERVICE_ACCOUNT)"
            )
        email, token_uri, key_id, key = parse_key(self.text)
        jwt = assertion(email, token_uri, key_id, key, int(time.time()))
        body = urlencode({"grant_type": GRANT_TYPE, "assertion": jwt}).encode()
        parts = urlsplit(token_uri)
        scheme = parts.scheme.lower()
        host = parts.hostname or ""
        port = parts.port or (443 if scheme == "https" else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = [
            ("Host", _aws_http.host_header(host, port, scheme)),
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Accept", "application/json"),
        ]
        try:
            answer = await _aws_http.request(
                "POST", scheme, host, port, target, headers, body, timeout=TIMEOUT
            )
        except _aws_http.AwsHttpError as exc:
            raise AccountError(f"token endpoint {token_uri}: {exc}") from None
        return _token_of(answer.status, answer.body, token_uri)


def _token_of(status: int, body: bytes, token_uri: str) -> tuple[str, float]:
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if status != 200 or not isinstance(data, dict):
        raise AccountError(f"token endpoint {token_uri} answered {status}")
    token = data.get("access_token")
    if not isinstance(token, str) or not token:
        raise AccountError(f"token endpoint {token_uri} sent no access_token")
    lifetime = data.get("expires_in")
    if not isinstance(lifetime, (int, float)) or isinstance(lifetime, bool) or lifetime <= 0:
        lifetime = LIFETIME
    return token, float(lifetime)
