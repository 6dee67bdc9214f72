"""Where the ``aws-lambda`` plugin's AWS credentials come from, in Kong 3.9's order.

Kong's handler (``kong/plugins/aws-lambda/handler.lua``) over its AWS library (``lua-resty-aws``
1.5, the version Kong 3.9 ships):

1. the plugin's ``aws_key``/``aws_secret``;
2. else, when the plugin has a ``proxy_url`` and the node runs with EKS IRSA
   (``AWS_WEB_IDENTITY_TOKEN_FILE`` and ``AWS_ROLE_ARN``): web identity, through that proxy;
3. else the node's default chain, each link tried in turn until one gives credentials:
   ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``, the same with the
   ``AMAZON_`` prefix, the shared credentials file (``AWS_SHARED_CREDENTIALS_FILE``, else
   ``~/.aws/credentials``, profile ``AWS_PROFILE``; then ``~/.aws/config``), the container
   credentials endpoint (ECS, EKS Pod Identity: ``AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`` or
   ``..._FULL_URI``, with ``AWS_CONTAINER_AUTHORIZATION_TOKEN[_FILE]``), web identity (STS
   ``AssumeRoleWithWebIdentity`` with the token file's JWT, session ``AWS_ROLE_SESSION_NAME``),
   and the EC2 instance metadata service (an IMDSv2 token first, IMDSv1 when none is given;
   skipped when ``AWS_EC2_METADATA_DISABLED`` is set to anything but ``false``);
4. with ``aws_assume_role_arn``, what the steps above found signs an STS ``AssumeRole``
   (session ``aws_role_session_name``) and the role's temporary credentials are used.

Temporary credentials are kept until five minutes before they expire, then refreshed by one
request while the others wait; a failed refresh keeps the old ones while they have more than
15 s left (Kong's margin), so a brief STS outage is not an outage of every function behind it.

Endpoints. STS is ``sts.<region>.amazonaws.com`` (``AWS_STS_REGIONAL_ENDPOINTS`` ``regional``,
the default) or ``sts.amazonaws.com`` signed for ``us-east-1`` (``legacy``); the plugin's
``aws_sts_endpoint_url`` replaces it for ``AssumeRole``, and AWS's standard
``AWS_ENDPOINT_URL_STS`` (else ``AWS_ENDPOINT_URL``) for the node's own STS calls. The
metadata service is ``http://169.254.169.254`` unless ``AWS_EC2_METADATA_SERVICE_ENDPOINT``
names another. The web identity's STS region is ``AWS_REGION``/``AWS_DEFAULT_REGION``, else
(through a plugin's proxy) that plugin's region, else STS's global endpoint is used.
"""

from __future__ import annotations

import asyncio
import configparser
import json
import logging
import os
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Final
from urllib.parse import urlencode, urlsplit
from xml.etree import ElementTree

from fastkong.plugins.bundled import _aws_http
from fastkong.plugins.bundled._aws_sigv4 import Credentials, sign

log = logging.getLogger("fastkong.plugins.aws-lambda")

#: Refresh temporary credentials this long before they expire...
REFRESH_BEFORE: Final = 300.0
#: ...and, when refreshing fails, keep using them while they have this much left (Kong's).
MIN_LEFT: Final = 15.0
#: Kong's AWS library: credential endpoints get 5 s (instance metadata, containers).
METADATA_TIMEOUT: Final = 5.0
#: An STS call's timeout (the library's default for a service without one).
STS_TIMEOUT: Final = 60.0
IMDS_TOKEN_TTL: Final = 300
STS_VERSION: Final = "2011-06-15"
#: Kong's AWS library's session name for web identity when ``AWS_ROLE_SESSION_NAME`` is unset.
WEB_IDENTITY_SESSION: Final = "session@lua-resty-aws"
_ECS_HOST: Final = "169.254.170.2"
#: Plain-HTTP hosts a container credentials full URI may name.
_ECS_PLAIN_HOSTS: Final = frozenset(
    {"localhost", "127.0.0.1", "169.254.170.2", "169.254.170.23", "fd00:ec2::23"}
)


class CredentialsError(Exception):
    """No credentials: the message says which sources were tried and why each failed."""


def _environ() -> Mapping[str, str]:
    return os.environ


def region_suffix(region: str) -> str:
    """The DNS suffix of AWS's endpoints in ``region``."""
    return "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"


class StsEndpoint:
    """Where STS calls go, and the region they are signed for."""

    __slots__ = ("scheme", "host", "port", "path", "region")

    def __init__(self, url: str, region: str) -> None:
        parts = urlsplit(url)
        self.scheme = (parts.scheme or "https").lower()
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.scheme == "https" else 80)
        self.path = parts.path or "/"
        self.region = region

    def __repr__(self) -> str:
        return f"<StsEndpoint {self.scheme}://{self.host}:{self.port}{self.path} {self.region}>"

    @classmethod
    def resolve(cls, region: str | None, override: str | None = None) -> StsEndpoint:
        """``override`` (the plugin's ``aws_sts_endpoint_url``), else the standard endpoint
        variables, else the regional or global endpoint (see the module docstring)."""
        env = _environ()
        regional = env.get("AWS_STS_REGIONAL_ENDPOINTS", "regional") != "legacy"
        signing = region if regional and region else "us-east-1"
        url = override or env.get("AWS_ENDPOINT_URL_STS") or env.get("AWS_ENDPOINT_URL")
        if not url:
            if regional and region:
                url = f"https://sts.{region}.{region_suffix(region)}"
            else:
                url = "https://sts.amazonaws.com"
        return cls(url, signing)


class Provider:
    """A source of credentials, cached until shortly before they expire."""

    #: How the source is named in error messages.
    label = "credentials"

    def __init__(self) -> None:
        self._cached: Credentials | None = None
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"

    def _refresh_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    async def get(self) -> Credentials:
        """Fresh credentials; raises :class:`CredentialsError`."""
        cached = self._cached
        if cached is not None and cached.expires - REFRESH_BEFORE > time.time():
            return cached
        async with self._refresh_lock():
            cached = self._cached
            now = time.time()
            if cached is not None and cached.expires - REFRESH_BEFORE > now:
                return cached  # another request refreshed them while this one waited
            try:
                fresh = await self.refresh()
            except CredentialsError as exc:
                if cached is not None and cached.expires - MIN_LEFT > now:
                    log.warning(
                        "[aws-lambda] refreshing %s failed, the current ones are used until "
                        "they expire: %s",
                        self.label,
                        exc,
                    )
                    return cached
                raise
            self._cached = fresh
            return fresh

    async def refresh(self) -> Credentials:
        raise NotImplementedError


class Static(Provider):
    label = "the plugin's aws_key"

    def __init__(self, key: str, secret: str) -> None:
        super().__init__()
        self._cached = Credentials(key, secret)

    async def refresh(self) -> Credentials:  # pragma: no cover - static keys never expire
        assert self._cached is not None
        return self._cached


class Environment(Provider):
    """``<prefix>_ACCESS_KEY_ID``, ``<prefix>_SECRET_ACCESS_KEY``, ``<prefix>_SESSION_TOKEN``."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix
        self.label = f"environment ({prefix}_ACCESS_KEY_ID)"

    async def refresh(self) -> Credentials:
        env = _environ()
        key = env.get(f"{self.prefix}_ACCESS_KEY_ID")
        secret = env.get(f"{self.prefix}_SECRET_ACCESS_KEY")
        if not key or not secret:
            raise CredentialsError(
                f"{self.prefix}_ACCESS_KEY_ID and {self.prefix}_SECRET_ACCESS_KEY are not set"
            )
        return Credentials(key, secret, env.get(f"{self.prefix}_SESSION_TOKEN") or None)


class SharedFile(Provider):
    """The profile's keys in the shared credentials file, else in the config file."""

    label = "shared credentials file"

    async def refresh(self) -> Credentials:
        env = _environ()
        profile = env.get("AWS_PROFILE") or "default"
        home = env.get("HOME") or str(Path.home())
        files = (
            (env.get("AWS_SHARED_CREDENTIALS_FILE") or "~/.aws/credentials", profile),
            (
                env.get("AWS_CONFIG_FILE") or "~/.aws/config",
                profile if profile == "default" else f"profile {profile}",
            ),
        )
        for name, section in files:
            path = Path(home + name[1:]) if name.startswith("~") else Path(name)
            if not path.is_file():
                continue
            parser = configparser.ConfigParser(interpolation=None)
            try:
                parser.read(path, encoding="utf-8")
            except (OSError, configparser.Error) as exc:
                raise CredentialsError(f"cannot read {path}: {exc}") from None
            if not parser.has_section(section):
                continue
            values = parser[section]
            key = values.get("aws_access_key_id")
            secret = values.get("aws_secret_access_key")
            if key and secret:
                return Credentials(key, secret, values.get("aws_session_token") or None)
        raise CredentialsError(f"no keys for profile '{profile}'")


def _expiry(text: str | None) -> float:
    """An RFC 3339 time (``2024-01-01T00:00:00Z``) as Unix time."""
    if not text:
        raise CredentialsError("credentials without an expiration time")
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise CredentialsError(f"unreadable expiration time {text!r}") from None


def _from_json(body: bytes, where: str) -> Credentials:
    """Credentials from a container or instance metadata answer (``AccessKeyId``, ...)."""
    try:
        data = json.loads(body)
        return Credentials(
            data["AccessKeyId"],
            data["SecretAccessKey"],
            data.get("Token"),
            _expiry(data.get("Expiration")),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        raise CredentialsError(f"{where} sent no credentials") from None


async def _fetch(
    url: str, headers: list[tuple[str, str]], method: str = "GET", body: bytes = b""
) -> _aws_http.Response:
    """One request to a credentials endpoint (``http``/``https`` URL), without keep-alive."""
    parts = urlsplit(url)
    scheme = (parts.scheme or "http").lower()
    host = parts.hostname or ""
    port = parts.port or (443 if scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    head = [("Host", _aws_http.host_header(host, port, scheme)), *headers]
    try:
        return await _aws_http.request(
            method, scheme, host, port, target, head, body, timeout=METADATA_TIMEOUT
        )
    except _aws_http.AwsHttpError as exc:
        raise CredentialsError(str(exc)) from None


class Container(Provider):
    """The container credentials endpoint (ECS task roles, EKS Pod Identity)."""

    label = "container credentials endpoint"

    async def refresh(self) -> Credentials:
        env = _environ()
        relative = env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        full = env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        if relative:
            url = f"http://{_ECS_HOST}{relative}"
        elif full:
            parts = urlsplit(full)
            scheme = parts.scheme.lower()
            if scheme not in ("http", "https"):
                raise CredentialsError(
                    f"unsupported scheme in AWS_CONTAINER_CREDENTIALS_FULL_URI: {scheme}"
                )
            if scheme == "http" and parts.hostname not in _ECS_PLAIN_HOSTS:
                raise CredentialsError(
                    f"AWS_CONTAINER_CREDENTIALS_FULL_URI may name {parts.hostname} over https only"
                )
            url = full
        else:
            raise CredentialsError("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or _FULL_URI is not set")
        headers = []
        token = env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN")
        token_file = env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
        if token_file:
            try:
                token = Path(token_file).read_text().strip()
            except OSError as exc:
                raise CredentialsError(f"cannot read {token_file}: {exc.strerror}") from None
        if token:
            headers.append(("Authorization", token))
        res = await _fetch(url, headers)
        if res.status != 200:
            raise CredentialsError(f"{urlsplit(url).netloc} answered {res.status}")
        return _from_json(res.body, "the container credentials endpoint")


class InstanceMetadata(Provider):
    """The EC2 instance metadata service: an IMDSv2 session token when it gives one."""

    label = "EC2 instance metadata"

    async def refresh(self) -> Credentials:
        env = _environ()
        if env.get("AWS_EC2_METADATA_DISABLED", "false") != "false":
            raise CredentialsError("disabled by AWS_EC2_METADATA_DISABLED")
        base = (env.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") or "http://169.254.169.254").rstrip(
            "/"
        )
        headers: list[tuple[str, str]] = []
        try:
            res = await _fetch(
                f"{base}/latest/api/token",
                [("X-aws-ec2-metadata-token-ttl-seconds", str(IMDS_TOKEN_TTL))],
                "PUT",
            )
            if res.status == 200:
                headers.append(("X-aws-ec2-metadata-token", res.body.decode().strip()))
        except CredentialsError:
            pass  # IMDSv1: the requests below go without a token
        roles = await _fetch(f"{base}/latest/meta-data/iam/security-credentials/", headers)
        if roles.status != 200:
            raise CredentialsError(f"role name lookup answered {roles.status}")
        names = roles.body.decode("utf-8", "replace").split()
        if not names:
            raise CredentialsError("the instance has no IAM role")
        res = await _fetch(f"{base}/latest/meta-data/iam/security-credentials/{names[0]}", headers)
        if res.status != 200:
            raise CredentialsError(f"credentials of role {names[0]} answered {res.status}")
        return _from_json(res.body, "the instance metadata service")


def _sts_credentials(body: bytes, result: str) -> Credentials:
    """The ``Credentials`` of an STS XML answer (``<result>`` element), namespaces ignored."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as exc:
        raise CredentialsError(f"unreadable STS answer: {exc}") from None
    found: dict[str, str] = {}
    for element in root.iter():
        name = element.tag.rpartition("}")[2]
        if name in ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"):
            found.setdefault(name, (element.text or "").strip())
    if not found.get("AccessKeyId") or not found.get("SecretAccessKey"):
        raise CredentialsError(f"STS answer without {result} credentials")
    return Credentials(
        found["AccessKeyId"],
        found["SecretAccessKey"],
        found.get("SessionToken") or None,
        _expiry(found.get("Expiration")),
    )


async def _sts_call(
    endpoint: StsEndpoint,
    params: dict[str, str],
    signer: Credentials | None,
    proxy: _aws_http.Proxy | None,
) -> bytes:
    """POST one STS Query API action (form-encoded); the answer's body (200 only)."""
    body = urlencode({**params, "Version": STS_VERSION}).encode()
    host = _aws_http.host_header(endpoint.host, endpoint.port, endpoint.scheme)
    headers = [("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")]
    if signer is not None:
        headers = sign(
            method="POST",
            host=host,
            path=endpoint.path,
            query=[],
            headers=headers,
            body=body,
            credentials=signer,
            region=endpoint.region,
            service="sts",
        )
    else:
        headers = [("Host", host), *headers]
    try:
        res = await _aws_http.request(
            "POST",
            endpoint.scheme,
            endpoint.host,
            endpoint.port,
            endpoint.path,
            headers,
            body,
            timeout=STS_TIMEOUT,
            proxy=proxy,
        )
    except _aws_http.AwsHttpError as exc:
        raise CredentialsError(f"STS {params['Action']}: {exc}") from None
    if res.status != 200:
        detail = res.body[:300].decode("utf-8", "replace")
        raise CredentialsError(f"STS {params['Action']} answered {res.status}: {detail}")
    return res.body


class WebIdentity(Provider):
    """STS ``AssumeRoleWithWebIdentity`` with the JWT in ``AWS_WEB_IDENTITY_TOKEN_FILE``
    (read anew on each refresh: kubelet rotates it) for ``AWS_ROLE_ARN``."""

    label = "web identity"

    def __init__(self, region: str | None = None, proxy: _aws_http.Proxy | None = None) -> None:
        super().__init__()
        self.region = region
        self.proxy = proxy

    async def refresh(self) -> Credentials:
        env = _environ()
        token_file = env.get("AWS_WEB_IDENTITY_TOKEN_FILE")
        role = env.get("AWS_ROLE_ARN")
        if not token_file or not role:
            raise CredentialsError("AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN are not set")
        try:
            token = Path(token_file).read_text().strip()
        except OSError as exc:
            raise CredentialsError(f"cannot read {token_file}: {exc.strerror}") from None
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or self.region
        params = {
            "Action": "AssumeRoleWithWebIdentity",
            "RoleArn": role,
            "RoleSessionName": env.get("AWS_ROLE_SESSION_NAME") or WEB_IDENTITY_SESSION,
            "WebIdentityToken": token,
        }
        # Unsigned: the token is the proof (as in every AWS SDK).
        body = await _sts_call(StsEndpoint.resolve(region), params, None, self.proxy)
        return _sts_credentials(body, "AssumeRoleWithWebIdentity")


class Chain(Provider):
    """The first of several sources that gives credentials."""

    label = "the default credentials chain"

    def __init__(self, providers: list[Provider]) -> None:
        super().__init__()
        self.providers = providers

    async def refresh(self) -> Credentials:
        reasons = []
        for provider in self.providers:
            try:
                return await provider.get()
            except CredentialsError as exc:
                reasons.append(f"{provider.label}: {exc}")
        raise CredentialsError("no AWS credentials found (" + "; ".join(reasons) + ")")


class AssumeRole(Provider):
    """STS ``AssumeRole`` signed with another source's credentials."""

    def __init__(
        self,
        base: Provider,
        role_arn: str,
        session_name: str,
        endpoint: StsEndpoint,
        proxy: _aws_http.Proxy | None,
    ) -> None:
        super().__init__()
        self.base = base
        self.role_arn = role_arn
        self.session_name = session_name
        self.endpoint = endpoint
        self.proxy = proxy
        self.label = "the assumed role's credentials"  # (Kong keeps the role's ARN secret)

    async def refresh(self) -> Credentials:
        signer = await self.base.get()
        params = {
            "Action": "AssumeRole",
            "RoleArn": self.role_arn,
            "RoleSessionName": self.session_name,
        }
        body = await _sts_call(self.endpoint, params, signer, self.proxy)
        return _sts_credentials(body, "AssumeRole")


_DEFAULT: list[Chain] = []


def default_chain() -> Chain:
    """The node's chain (one per process, so what it caches is shared by every plugin)."""
    if not _DEFAULT:
        _DEFAULT.append(
            Chain(
                [
                    Environment("AWS"),
                    Environment("AMAZON"),
                    SharedFile(),
                    Container(),
                    WebIdentity(),
                    InstanceMetadata(),
                ]
            )
        )
    return _DEFAULT[0]


def has_web_identity() -> bool:
    env = _environ()
    return bool(env.get("AWS_WEB_IDENTITY_TOKEN_FILE") and env.get("AWS_ROLE_ARN"))
