"""Kong's DB-less Admin API, served by the supervisor.

``GET /``, ``GET /status``, ``GET /config``, ``POST /config`` (raw YAML/JSON body, a
``config=`` form field, or a JSON object; ``check_hash``; ``flatten_errors``), read-only ``GET``
of services, routes, upstreams, targets, consumers and plugins in Kong's paged shape, and 405
with Kong's message for every write. A config accepted here is persisted in the prefix so a
restarted node comes back configured.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import msgspec

from fastkong.config import ConfigError, load_config
from fastkong.config.loader import parse
from fastkong.control.httpserver import Request, Response

if TYPE_CHECKING:
    from fastkong.control.supervisor import Supervisor

ENTITIES = ("services", "routes", "upstreams", "targets", "consumers", "plugins")
SINGULAR = {
    "services": "service",
    "routes": "route",
    "upstreams": "upstream",
    "targets": "target",
    "consumers": "consumer",
    "plugins": "plugin",
}
#: Entities reachable under a parent: /services/{s}/routes, /upstreams/{u}/targets, ...
NESTED = {
    ("services", "routes"): "service",
    ("services", "plugins"): "service",
    ("routes", "plugins"): "route",
    ("consumers", "plugins"): "consumer",
    ("upstreams", "targets"): "upstream",
}
DEFAULT_PAGE = 100
MAX_PAGE = 1000


def lua_table(value: Any) -> str:
    """Kong renders error trees as Lua tables in ``message`` (``pl.pretty.write(t, "")``)."""
    if isinstance(value, dict):
        items = [f"{k}={lua_table(v)}" for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))]
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "{" + ",".join("nil" if v is None else lua_table(v) for v in value) + "}"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


def _truthy(query: dict[str, list[str]], name: str) -> bool:
    values = query.get(name)
    if not values:
        return False
    return values[-1].lower() not in ("", "0", "false", "off", "no")


class AdminApi:
    """Request handling of the admin listener (state lives in the :class:`Supervisor`)."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.loading = asyncio.Lock()

    async def handle(self, request: Request) -> Response:
        path = request.path.rstrip("/") or "/"
        if path in ("/", "/status", "/status/ready", "/metrics"):
            return await self.supervisor.handle_status(request)
        if path == "/config":
            if request.method == "GET":
                return self.get_config()
            if request.method == "POST":
                return await self.post_config(request)
            return self.method_not_allowed()
        parts = [p for p in path.split("/") if p]
        if parts and parts[0] in ENTITIES:
            if (
                request.method == "POST"
                and len(parts) in (5, 6)
                and parts[0] == "upstreams"
                and parts[2] == "targets"
                and parts[-1] in ("healthy", "unhealthy")
            ):
                # Health is node state, not config: these work in DB-less mode (Kong #15001).
                address = parts[4] if len(parts) == 6 else None
                healthy = parts[-1] == "healthy"
                return self.supervisor.set_target_health(parts[1], parts[3], address, healthy)
            if request.method not in ("GET", "HEAD"):
                return self.write_refused(request.method, parts)
            return self.read_entities(parts, request.query)
        return Response.json(404, {"message": "Not found"})

    # -- /config -----------------------------------------------------------------------------

    def get_config(self) -> Response:
        raw = self.supervisor.config_text()
        return Response.json(200, {"config": raw})

    async def post_config(self, request: Request) -> Response:
        if self.supervisor.draining:
            return Response.json(503, {"message": "Kong currently exiting"})
        if self.loading.locked():
            return Response.json(
                429, {"message": "Currently loading previous configuration"}, **{"retry-after": "1"}
            )
        raw = self._declarative_body(request)
        if raw is None or not raw.strip():
            return Response.json(400, {"message": "expected a declarative configuration"})
        async with self.loading:
            try:
                loaded = await self.supervisor.in_loader(load_config, raw)
            except ConfigError as exc:
                self.supervisor.config.reloads["failure"] += 1
                self.supervisor.config.last_error = [f"{e.path}: {e.message}" for e in exc.errors]
                return self.invalid(exc, raw, _truthy(request.query, "flatten_errors"))
            if _truthy(request.query, "check_hash") and loaded.hash == self.supervisor.config.hash:
                return Response(304)
            await self.supervisor.in_loader(self.supervisor.accept_posted, loaded, raw)
            # Kong answers with the whole config: megabytes of JSON for a large one, encoded on
            # the loader thread, not on the event loop that answers probes.
            body = await self.supervisor.in_loader(_config_json, loaded.config)
        return Response(201, body, {"content-type": "application/json; charset=utf-8"})

    def _declarative_body(self, request: Request) -> bytes | None:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        body = request.body
        if ctype == "application/x-www-form-urlencoded":
            form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
            config = form.get("config")
            return config[-1].encode() if config else None
        if ctype == "multipart/form-data":
            return _multipart_field(body, request.headers.get("content-type", ""), "config")
        if ctype == "application/json" and body.strip().startswith(b"{"):
            try:
                parsed = json.loads(body)
            except ValueError:
                return body
            if isinstance(parsed, dict) and "_format_version" not in parsed:
                inner = parsed.get("config")
                if isinstance(inner, str):
                    return inner.encode()
                if isinstance(inner, dict):
                    return json.dumps(inner).encode()
        return body

    def invalid(self, exc: ConfigError, raw: bytes, flatten: bool) -> Response:
        fields = exc.fields()
        payload: dict[str, Any] = {
            "code": 14,
            "name": "invalid declarative configuration",
            "message": f"declarative config is invalid: {lua_table(fields)}",
            "fields": fields,
        }
        if flatten:
            try:
                parsed = load_raw(raw)
            except Exception:
                parsed = None
            payload["flattened_errors"] = exc.flattened(parsed)
        return Response.json(400, payload)

    # -- entities ----------------------------------------------------------------------------

    def method_not_allowed(self) -> Response:
        return Response.json(405, {"message": "Method not allowed"})

    def write_refused(self, method: str, parts: list[str]) -> Response:
        entity = parts[-1] if len(parts) % 2 == 1 else parts[-2]
        verb = {"POST": "create", "PUT": "create or update", "PATCH": "update", "DELETE": "delete"}
        action = verb.get(method, "update")
        return Response.json(
            405,
            {
                "code": 12,
                "name": "operation unsupported",
                "message": f"cannot {action} '{entity}' entities when not using a database",
            },
        )

    def read_entities(self, parts: list[str], query: dict[str, list[str]]) -> Response:
        config = self.supervisor.current_config()
        if config is None:
            rows: dict[str, list[dict[str, Any]]] = {name: [] for name in ENTITIES}
        else:
            rows = {name: [_kong_shape(e) for e in getattr(config, name)] for name in ENTITIES}
        kind = parts[0]
        if len(parts) == 1:
            return self.page(rows[kind], query, f"/{kind}")
        found = _find(rows[kind], parts[1], kind)
        if found is None:
            return Response.json(404, {"message": "Not found"})
        if len(parts) == 2:
            return Response.json(200, found)
        if len(parts) == 3 and kind == "upstreams" and parts[2] == "health":
            targets = [
                r for r in rows["targets"] if (r.get("upstream") or {}).get("id") == found["id"]
            ]
            balancer = (query.get("balancer_health") or [""])[-1] == "1"
            return self.supervisor.upstream_health(found, targets, balancer)
        if len(parts) >= 3 and (kind, parts[2]) in NESTED:
            child = parts[2]
            fk = NESTED[(kind, child)]
            children = [r for r in rows[child] if (r.get(fk) or {}).get("id") == found["id"]]
            if len(parts) == 3:
                return self.page(children, query, f"/{kind}/{parts[1]}/{child}")
            item = _find(children, parts[3], child)
            return (
                Response.json(200, item) if item else Response.json(404, {"message": "Not found"})
            )
        return Response.json(404, {"message": "Not found"})

    def page(self, rows: list[dict[str, Any]], query: dict[str, list[str]], base: str) -> Response:
        try:
            size = int(query.get("size", [DEFAULT_PAGE])[-1])
            offset = int(query.get("offset", ["0"])[-1] or 0)
        except ValueError:
            return Response.json(400, {"message": "size and offset must be numbers"})
        if not 1 <= size <= MAX_PAGE:
            return Response.json(400, {"message": f"size must be between 1 and {MAX_PAGE}"})
        tags = query.get("tags")
        if tags:
            wanted = set(tags[-1].split(","))
            rows = [r for r in rows if wanted.issubset(r.get("tags") or [])]
        chunk = rows[offset : offset + size]
        more = offset + size < len(rows)
        return Response.json(
            200,
            {
                "data": chunk,
                "next": f"{base}?offset={offset + size}&size={size}" if more else None,
                "offset": str(offset + size) if more else None,
            },
        )


def _kong_shape(entity: Any) -> dict[str, Any]:
    """An entity as Kong's Admin API prints it: foreign keys as ``{"id": ...}``."""
    data: dict[str, Any] = msgspec.to_builtins(entity)
    for fk in ("service", "route", "consumer", "upstream", "certificate"):
        if fk in data:
            data[fk] = {"id": data[fk]} if data[fk] is not None else None
    return data


def _find(rows: list[dict[str, Any]], key: str, kind: str) -> dict[str, Any] | None:
    by: Callable[[dict[str, Any]], Any]
    for by in (
        lambda r: r.get("id"),
        lambda r: r.get("name"),
        lambda r: r.get("username"),
        lambda r: r.get("custom_id"),
        lambda r: r.get("target"),
    ):
        for row in rows:
            if by(row) == key:
                return row
    return None


def load_raw(raw: bytes) -> Any:
    """The posted document as plain data (for ``flattened_errors``' entity echo), decoded as
    the loader decodes it (Kong's YAML types: a date stays a string)."""
    return parse(raw)


def _multipart_field(body: bytes, content_type: str, name: str) -> bytes | None:
    boundary = content_type.partition("boundary=")[2].strip('"')
    if not boundary:
        return None
    for part in body.split(b"--" + boundary.encode()):
        head, _, value = part.partition(b"\r\n\r\n")
        if f'name="{name}"'.encode() in head:
            return value.rstrip(b"\r\n")
    return None


def _config_json(config: Any) -> bytes:
    """A config as ``POST /config`` answers it (the body ``Response.json`` would give)."""
    return json.dumps(msgspec.to_builtins(config), separators=(",", ":")).encode()
