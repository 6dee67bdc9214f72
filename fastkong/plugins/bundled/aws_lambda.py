"""aws-lambda: answer a request by invoking an AWS Lambda function
(Kong 3.9's ``kong/plugins/aws-lambda/{schema,handler,request-util}.lua``).

Priority 750, access phase. The plugin answers the request itself: the route's service, if it
has one, is never contacted. Per request:

1. the region is ``aws_region``, else ``AWS_REGION``/``AWS_DEFAULT_REGION`` of the node (none:
   Kong's 500 and "no region specified" in the log), the endpoint ``host`` (default
   ``lambda.<region>.amazonaws.com``) on ``port`` (443), ``https`` unless ``disable_https``;
2. the payload is built from the request (:mod:`._aws_lambda_payload`: Kong's original shape,
   the ``forward_request_*`` fields, or an API Gateway event with ``awsgateway_compatible``);
3. credentials come from the config, the node's environment, files and metadata services, and
   optionally an assumed role (:mod:`._aws_credentials`), temporary ones cached until shortly
   before they expire;
4. ``POST /2015-03-31/functions/<function_name>/invocations[?Qualifier=<qualifier>]`` is signed
   with SigV4 for service ``lambda`` (:mod:`._aws_sigv4`) and sent with
   ``X-Amz-Invocation-Type`` and ``X-Amz-Log-Type`` (:mod:`._aws_http`: ``timeout`` ms for
   connecting, sending and each read; connections kept ``keepalive`` ms; through ``proxy_url``
   when set, a CONNECT tunnel for https);
5. the client gets the invocation's answer (:mod:`._aws_lambda_response`).

As in Kong, whatever fails before an answer arrives (no region, no credentials, an unreachable
or slow endpoint, a Lambda API error such as an unknown function or throttling: any status of
400 or more) is Kong's 500 "An unexpected error occurred" to the client, with the reason in the
gateway's error log; a malformed proxy-integration answer is a 502. The time spent waiting for
Lambda counts as the request's proxy latency, not the gateway's (``X-Kong-Response-Latency``
and the log plugins' ``latencies.kong`` leave it out, as in Kong since 3.7).

Where fastkong differs: the endpoint's certificate is verified against the node's trusted roots
(``lua_ssl_trusted_certificate``; Kong 3.9 does not verify it); a ``proxy_url`` with user info
sends it as ``Proxy-Authorization``.

Secrets (``aws_key``, ``aws_secret``, session tokens, a proxy's credentials) never appear in the
gateway's log lines.
"""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal
from urllib.parse import quote

import msgspec

from fastkong._core import load
from fastkong.config.schema import REFERENCEABLE, Host, Port, Url
from fastkong.kong_conf import DEFAULT_CLIENT_BODY_BUFFER, client_body_buffer_size, parse_size
from fastkong.plugins.base import REQUIRED, Exit, Plugin, kong_error
from fastkong.plugins.bundled import _aws_credentials as creds
from fastkong.plugins.bundled import _aws_http, _aws_lambda_payload
from fastkong.plugins.bundled._aws_lambda_response import ResponseError, client_answer
from fastkong.plugins.bundled._aws_sigv4 import sign
from fastkong.plugins.context import BodyTooLarge
from fastkong.plugins.registry import register_plugin
from fastkong.proxy.kong_headers import DEFAULT_HEADERS, DEFAULT_HEADERS_UPSTREAM, HeaderSettings
from fastkong.proxy.tracing import trace_of
from fastkong.proxy.upstream import SERVER

if TYPE_CHECKING:
    from fastkong._core import _uri_py as uri
    from fastkong.plugins.context import RequestContext
    from fastkong.runtime import Runtime
else:
    uri = load("uri")

log = logging.getLogger("fastkong.plugins.aws-lambda")

#: The config-check sub-path of an entity-level error (Kong's ``@entity``).
ENTITY: Final = ""
ERR_KEY_SECRET: Final = (
    "all or none of these fields must be set: 'config.aws_key', 'config.aws_secret'"
)
ERR_PROXY_SCHEME: Final = "proxy_url scheme must be http"
UNEXPECTED: Final = "An unexpected error occurred"
#: Kong keeps this many Lambda service objects (endpoint and credentials) per worker.
SERVICE_CACHE_SIZE: Final = 1000
_LAMBDA_PATH: Final = "/2015-03-31/functions/{}/invocations"
#: ``ctx.plugin_data`` key of the time spent waiting for Lambda (seconds).
WAIT_KEY: Final = "aws-lambda:wait"


class AwsLambdaConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    timeout: Annotated[float, REQUIRED] = 60000
    keepalive: Annotated[float, REQUIRED] = 60000
    aws_key: Annotated[str, REFERENCEABLE] | None = None
    aws_secret: Annotated[str, REFERENCEABLE] | None = None
    aws_assume_role_arn: Annotated[str, REFERENCEABLE] | None = None
    aws_role_session_name: str = "kong"
    aws_sts_endpoint_url: Url | None = None
    aws_region: Host | None = None
    #: Not required by Kong 3.9's schema either: an invocation without one fails (a 500).
    function_name: str | None = None
    qualifier: str | None = None
    invocation_type: Annotated[Literal["RequestResponse", "Event", "DryRun"], REQUIRED] = (
        "RequestResponse"
    )
    log_type: Annotated[Literal["Tail", "None"], REQUIRED] = "Tail"
    host: Host | None = None
    port: Port = 443
    disable_https: bool = False
    unhandled_status: Annotated[int, msgspec.Meta(ge=100, le=999)] | None = None
    forward_request_method: bool = False
    forward_request_uri: bool = False
    forward_request_headers: bool = False
    forward_request_body: bool = False
    is_proxy_integration: bool = False
    awsgateway_compatible: bool = False
    #: Kong 3.12's: the API Gateway event format (``2.0``: the HTTP API one).
    awsgateway_compatible_payload_version: Literal["1.0", "2.0"] = "1.0"
    proxy_url: Url | None = None
    skip_large_bodies: bool = True
    base64_encode_body: bool = True
    aws_imds_protocol_version: Annotated[Literal["v1", "v2"], REQUIRED] = "v1"
    empty_arrays_mode: Annotated[Literal["legacy", "correct"], REQUIRED] = "legacy"


class NodeSettings:
    """What the plugin reads of the node's environment, once per worker (as Kong reads
    ``AWS_REGION`` when its handler loads)."""

    __slots__ = ("region", "body_buffer", "via")

    def __init__(self, environ: Any) -> None:
        self.region: str | None = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
        try:
            self.body_buffer = client_body_buffer_size(environ)
        except ValueError:  # refused by ``fastkong start``; a worker started otherwise falls back
            self.body_buffer = parse_size(DEFAULT_CLIENT_BODY_BUFFER, "client_body_buffer_size")
        try:
            shown = HeaderSettings.parse(
                environ.get("FASTKONG_HEADERS") or DEFAULT_HEADERS,
                environ.get("FASTKONG_HEADERS_UPSTREAM") or DEFAULT_HEADERS_UPSTREAM,
            )
        except ValueError:
            shown = HeaderSettings.parse()
        #: Kong's handler adds its Via token when ``headers`` shows ``Via``.
        self.via = "via" in shown.names

    def __repr__(self) -> str:
        return f"<NodeSettings region={self.region} client_body_buffer={self.body_buffer}>"


_SETTINGS: list[NodeSettings] = []


def node_settings() -> NodeSettings:
    if not _SETTINGS:
        _SETTINGS.append(NodeSettings(os.environ))
    return _SETTINGS[0]


class LambdaService:
    """Where a config's invocations go and with which credentials (Kong's cached "Lambda
    service" object: shared by plugin instances with the same settings, so temporary
    credentials outlive config reloads)."""

    __slots__ = ("region", "scheme", "host", "port", "timeout", "keepalive", "proxy", "credentials")

    def __init__(self, config: AwsLambdaConfig, region: str) -> None:
        self.region = region
        self.scheme = "http" if config.disable_https else "https"
        self.host = config.host or f"lambda.{region}.{creds.region_suffix(region)}"
        self.port = config.port
        self.timeout = config.timeout / 1000
        self.keepalive = config.keepalive
        self.proxy = _aws_http.Proxy.parse(config.proxy_url) if config.proxy_url else None
        base: creds.Provider
        if config.aws_key and config.aws_secret:
            base = creds.Static(config.aws_key, config.aws_secret)
        elif config.proxy_url and creds.has_web_identity():
            # Kong: EKS IRSA through the plugin's proxy (the node's chain would go direct).
            base = creds.WebIdentity(region, self.proxy)
        else:
            base = creds.default_chain()
        if config.aws_assume_role_arn:
            endpoint = creds.StsEndpoint.resolve(region, config.aws_sts_endpoint_url)
            base = creds.AssumeRole(
                base, config.aws_assume_role_arn, config.aws_role_session_name, endpoint, self.proxy
            )
        self.credentials = base

    def __repr__(self) -> str:
        return f"<LambdaService {self.scheme}://{self.host}:{self.port} {self.region}>"


_SERVICES: OrderedDict[tuple[Any, ...], LambdaService] = OrderedDict()


def lambda_service(config: AwsLambdaConfig, region: str) -> LambdaService:
    """The cached service for these settings (Kong's ``build_cache_key`` fields)."""
    key = (
        config.timeout,
        config.keepalive,
        config.aws_key,
        config.aws_secret,
        config.aws_assume_role_arn,
        config.aws_role_session_name,
        config.aws_sts_endpoint_url,
        region,
        config.host,
        config.port,
        config.disable_https,
        config.proxy_url,
        config.aws_imds_protocol_version,
    )
    service = _SERVICES.get(key)
    if service is None:
        service = _SERVICES[key] = LambdaService(config, region)
        if len(_SERVICES) > SERVICE_CACHE_SIZE:
            _SERVICES.popitem(last=False)
    else:
        _SERVICES.move_to_end(key)
    return service


class InvocationError(Exception):
    """The invocation failed before an answer came (Kong's ``error()``: a 500)."""


@register_plugin
class AwsLambda(Plugin):
    name = "aws-lambda"
    priority = 750
    Config = AwsLambdaConfig

    def __init__(self, config: AwsLambdaConfig, runtime: Runtime, entity: Any) -> None:
        super().__init__(config, runtime, entity)
        settings = node_settings()
        self.settings = settings
        self.region = config.aws_region or settings.region
        self.service = lambda_service(config, self.region) if self.region else None
        self.function = config.function_name
        target = ""
        if config.function_name is not None:
            target = _LAMBDA_PATH.format(quote(config.function_name, safe=":"))
        self.path = target
        self.query = [("Qualifier", config.qualifier)] if config.qualifier else []
        if self.query:
            target += "?Qualifier=" + quote(config.qualifier or "", safe="")
        self.target = target
        self.invocation_headers: list[tuple[str, str]] = [
            ("X-Amz-Invocation-Type", config.invocation_type),
            ("X-Amz-Log-Type", config.log_type),
        ]
        self.uses_body = config.awsgateway_compatible or config.forward_request_body
        self.forwards = (
            config.forward_request_body
            or config.forward_request_headers
            or config.forward_request_method
            or config.forward_request_uri
        )

    def __repr__(self) -> str:
        return f"<AwsLambda priority={self.priority} id={self.id} function={self.function}>"

    @classmethod
    def check(cls, config: Any) -> list[tuple[str, str]]:
        out = []
        if (config.aws_key is None) != (config.aws_secret is None):
            out.append((ENTITY, ERR_KEY_SECRET))
        proxy_url = config.proxy_url
        if proxy_url is not None and "://" in proxy_url:
            scheme = proxy_url.partition("://")[0]
            if scheme and ":" not in scheme and scheme != "http":
                out.append((ENTITY, ERR_PROXY_SCHEME))
        return out

    async def access(self, ctx: RequestContext) -> Exit | None:
        started = time.monotonic()
        try:
            return await self._invoke(ctx)
        except InvocationError as exc:
            log.error("[aws-lambda] %s", exc)
            return kong_error(500, UNEXPECTED)
        finally:
            # Kong's KONG_WAITING_TIME: the whole wait on Lambda is the request's proxy time.
            waited = time.monotonic() - started
            ctx.plugin_data[WAIT_KEY] = waited
            ctx.upstream_started = started
            ctx.upstream_latency = waited

    def response(
        self, ctx: RequestContext, status: int, headers: list[tuple[bytes, bytes]]
    ) -> None:
        """Kong's ``header_filter``: the response latency leaves out the wait on Lambda."""
        waited = ctx.plugin_data.get(WAIT_KEY)
        if waited is None:
            return
        for i, (name, value) in enumerate(headers):
            if name == b"x-kong-response-latency" and value.isdigit():
                headers[i] = (name, b"%d" % max(0, int(value) - int(waited * 1000)))

    async def _invoke(self, ctx: RequestContext) -> Exit:
        service = self.service
        if service is None:
            raise InvocationError("no region specified")
        if self.function is None:
            raise InvocationError("no function_name configured")
        config: AwsLambdaConfig = self.config
        view = await self._view(ctx)
        payload = _aws_lambda_payload.build(view, config)
        try:
            credentials = await service.credentials.get()
        except creds.CredentialsError as exc:
            raise InvocationError(f"failed to get credentials: {exc}") from None
        host = _aws_http.host_header(service.host, service.port, service.scheme)
        headers = sign(
            method="POST",
            host=host,
            path=self.path,
            query=self.query,
            headers=self.invocation_headers,
            body=payload,
            credentials=credentials,
            region=service.region,
            service="lambda",
        )
        try:
            res = await _aws_http.request(
                "POST",
                service.scheme,
                service.host,
                service.port,
                self.target,
                headers,
                payload,
                timeout=service.timeout,
                keepalive_ms=service.keepalive,
                proxy=service.proxy,
                trace=trace_of(ctx),
            )
        except _aws_http.AwsHttpError as exc:
            raise InvocationError(f"Lambda:invoke() of {self.function}: {exc}") from None
        if res.status >= 400:
            raise InvocationError(
                f"Lambda:invoke() of {self.function} answered {res.status}: {_message(res)}"
            )
        via = None
        if self.settings.via:
            version = ctx.scope.get("http_version", "1.1")
            via = (b"2 " if version.startswith("2") else b"1.1 ") + SERVER
        try:
            return client_answer(
                res,
                proxy_integration=config.is_proxy_integration,
                unhandled_status=config.unhandled_status,
                legacy_arrays=config.empty_arrays_mode == "legacy",
                via=via,
            )
        except ResponseError as exc:
            raise InvocationError(f"{self.function}'s answer cannot be sent: {exc}") from None

    async def _view(self, ctx: RequestContext) -> _aws_lambda_payload.RequestView:
        """The request as the payload builder reads it; the body read as Kong would hold it."""
        config: AwsLambdaConfig = self.config
        body: bytes | None = b""
        large = False
        content_type = ctx.header("content-type")
        legacy_body = not config.awsgateway_compatible and not self.forwards
        if self.uses_body or (legacy_body and content_type is not None):
            whole = self.uses_body and not config.skip_large_bodies
            body, large = await _read_body(ctx, self.settings.body_buffer, whole)
        match = ctx.match
        resource = match.path[1:] if match.path and match.path.startswith("~") else match.path
        upstream_path = ctx.upstream_path
        if upstream_path is None:
            service = ctx.service
            route = ctx.route
            upstream_path = uri.upstream_path(
                service.path if service is not None else None,
                ctx.path,
                match.matched_len,
                route.strip_path,
                route.path_handling,
            )
        target = ctx.raw_path + (b"?" + ctx.query_string if ctx.query_string else b"")
        return _aws_lambda_payload.RequestView(
            method=ctx.method,
            path_with_query=target.decode("utf-8", "surrogateescape"),
            query_string=ctx.query_string.decode("utf-8", "surrogateescape"),
            headers=[(name, [_utf8(v) for v in values]) for name, values in ctx.headers.items()],
            body=body,
            large=large,
            upstream_path=upstream_path,
            http_version=ctx.scope.get("http_version", "1.1"),
            host=ctx.host,
            client_ip=ctx.client_ip,
            request_id=ctx.request_id,
            started=time.time() - (time.monotonic() - ctx.started),
            resource=resource,
            captures=dict(match.captures or {}),
        )


async def _read_body(ctx: RequestContext, buffer: int, whole: bool) -> tuple[bytes | None, bool]:
    """``(body, larger than the client body buffer)``. A larger body is read whole only when
    ``whole`` (else it is None, as Kong's readers skip a body nginx put in a file); reading
    whole stops at fastkong's plugin body limit (8 MB, above Lambda's 6 MB payload limit: 413)."""
    declared = ctx.header("content-length")
    if declared is not None and declared.isdigit() and int(declared) > buffer:
        return (await ctx.read_body() if whole else None), True
    if whole:
        body = await ctx.read_body()
        return body, len(body) > buffer
    try:
        return await ctx.read_body(limit=buffer), False
    except BodyTooLarge:
        return None, True


def _utf8(value: str) -> str:
    """A header value (latin-1 text of its bytes) as the UTF-8 text it usually is."""
    return value if value.isascii() else value.encode("latin-1").decode("utf-8", "surrogateescape")


def _message(res: _aws_http.Response) -> str:
    """The Lambda API's error message (its JSON ``Message``), else the start of the body."""
    try:
        data = msgspec.json.decode(res.body)
    except msgspec.DecodeError:
        data = None
    if isinstance(data, dict):
        for key in ("Message", "message"):
            if isinstance(data.get(key), str):
                return str(data[key])
    return res.body[:300].decode("utf-8", "replace")
