"""Kong's DB-less Admin API, served by the supervisor.

``GET /``, ``GET /status``, ``GET /config``, ``POST /config`` (raw YAML/JSON body, a
``config=`` form field, or a JSON object; ``check_hash``; ``flatten_errors``), and read-only
``GET`` of every entity Kong's API lists (collections, by id or endpoint key, nested and foreign
endpoints) in Kong's paged shape, with Kong's ``size``/``offset``/``tags`` errors. Writes answer
as Kong's off strategy does (``operation unsupported`` or ``Method not allowed``); ``OPTIONS``,
CORS and ``X-Kong-Admin-Latency`` as Kong's admin filters do. A config accepted here is persisted
in the prefix so a restarted node comes back configured.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import re
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, unquote

import msgspec
import yaml

from fastkong.acme.admin import AcmeAdmin
from fastkong.config import Config, ConfigError, load_config
from fastkong.config.loader import parse
from fastkong.config.schema import ENTITY_STRUCTS
from fastkong.control.httpserver import Request, Response
from fastkong.control.schemas import plugin_schema
from fastkong.plugins import registry

if TYPE_CHECKING:
    from fastkong.control.supervisor import Supervisor

#: Admin API collection name -> the config's entity array (Kong's ``admin_api_name``).
ENTITIES = {
    "vaults": "vaults",
    "services": "services",
    "routes": "routes",
    "upstreams": "upstreams",
    "consumers": "consumers",
    "plugins": "plugins",
    "certificates": "certificates",
    "snis": "snis",
    "ca_certificates": "ca_certificates",
    "key-auths": "keyauth_credentials",
    "basic-auths": "basicauth_credentials",
    "hmac-auths": "hmacauth_credentials",
    "jwts": "jwt_secrets",
    "acls": "acls",
    "key-sets": "key_sets",
    "keys": "keys",
}
#: Each entity's ``endpoint_key``: the field a non-UUID path segment is looked up by.
ENDPOINT_KEY = {
    "vaults": "prefix",
    "services": "name",
    "routes": "name",
    "upstreams": "name",
    "targets": "target",
    "consumers": "username",
    "certificates": None,
    "snis": "name",
    "ca_certificates": None,
    "plugins": "instance_name",
    "keyauth_credentials": "key",
    "basicauth_credentials": "username",
    "hmacauth_credentials": "username",
    "jwt_secrets": "key",
    "acls": None,
    "key_sets": "name",
    "keys": "name",
}
#: (parent, nested admin name) -> (child entity array, foreign key): /services/{s}/routes, ...
NESTED = {
    ("services", "routes"): ("routes", "service"),
    ("services", "plugins"): ("plugins", "service"),
    ("routes", "plugins"): ("plugins", "route"),
    ("consumers", "plugins"): ("plugins", "consumer"),
    ("upstreams", "targets"): ("targets", "upstream"),
    ("certificates", "snis"): ("snis", "certificate"),
    ("consumers", "key-auth"): ("keyauth_credentials", "consumer"),
    ("consumers", "basic-auth"): ("basicauth_credentials", "consumer"),
    ("consumers", "hmac-auth"): ("hmacauth_credentials", "consumer"),
    ("consumers", "jwt"): ("jwt_secrets", "consumer"),
    ("consumers", "acls"): ("acls", "consumer"),
    ("key-sets", "keys"): ("keys", "set"),
}
#: (collection, foreign key) -> the foreign entity array: /routes/{r}/service, ...
FOREIGN = {
    ("routes", "service"): "services",
    ("plugins", "service"): "services",
    ("plugins", "route"): "routes",
    ("plugins", "consumer"): "consumers",
    ("key-auths", "consumer"): "consumers",
    ("basic-auths", "consumer"): "consumers",
    ("jwts", "consumer"): "consumers",
    ("acls", "consumer"): "consumers",
    ("keys", "set"): "key_sets",
}
FOREIGN_KEYS = ("service", "route", "consumer", "upstream", "certificate", "set")
DEFAULT_PAGE = 100
MAX_PAGE = 1000
#: The Kong release whose Admin API this one answers as (``kong/meta.lua``): decK and KIC
#: gate features on ``GET /``'s ``version`` and refuse a version they do not know.
KONG_VERSION = "3.10.0"
#: ``Allow`` of each kind of endpoint (Kong sorts its methods and adds HEAD and OPTIONS).
READ_ONLY = "GET, HEAD, OPTIONS"
COLLECTION = "GET, HEAD, OPTIONS, POST"
ENTITY = "DELETE, GET, HEAD, OPTIONS, PATCH, PUT"
TAG = r"[\x20-\x2B\x2D\x2E\x30-\x7E\x80-\U0010FFFF]+"
TAGS_AND = re.compile(rf"^(?:{TAG}(?:,|$))+$")
TAGS_OR = re.compile(rf"^(?:{TAG}(?:/|$))+$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)


TRUTHY = ("true", "1", "on", "yes")


def lua_table(value: Any) -> str:
    """Kong renders error trees as Lua tables in ``message`` (``pl.pretty.write(t, "")``)."""
    if isinstance(value, dict):
        items = [f"{k}={lua_table(v)}" for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))]
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        # A Lua array ends at its first hole: what follows is written with its index
        # (``{services={[2]="..."}}``), as pl.pretty writes a sparse table.
        head = next((i for i, v in enumerate(value) if v is None), len(value))
        items = [lua_table(v) for v in value[:head]]
        items += [
            f"[{i + 1}]={lua_table(v)}" for i, v in enumerate(value) if i > head and v is not None
        ]
        return "{" + ",".join(items) + "}"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


class AdminApi:
    """Request handling of the admin listener (state lives in the :class:`Supervisor`)."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.loading = asyncio.Lock()

    async def handle(self, request: Request) -> Response:
        started = time.monotonic()
        response = await self.route(request)
        # Kong's cors_filter and admin header filter: on every admin answer.
        response.headers["access-control-allow-origin"] = request.headers.get("origin", "*")
        response.headers["access-control-allow-credentials"] = "true"
        if self.supervisor.admin_latency:
            latency = int((time.monotonic() - started) * 1000)
            response.headers["x-kong-admin-latency"] = str(latency)
        return response

    async def route(self, request: Request) -> Response:
        path = request.path.rstrip("/") or "/"
        method = request.method
        if path in ("/status/ready", "/metrics"):
            return await self.supervisor.handle_status(request)
        allowed = self.allowed_methods(path)
        if allowed is None:
            return NOT_FOUND()
        if method == "OPTIONS":
            return Response(
                204,
                headers={
                    "allow": allowed,
                    "access-control-allow-methods": allowed,
                    "access-control-allow-headers": request.headers.get(
                        "access-control-request-headers", "Content-Type"
                    ),
                },
            )
        if method not in allowed.split(", "):
            return Response.json(405, {"message": "Method not allowed"})
        if method in ("POST", "PUT", "PATCH"):
            if not _accepted_body(request, path):
                return Response(415)
            if "application/json" in request.headers.get("content-type", "").lower():
                try:
                    json.loads(request.body)
                except ValueError:  # lapis' json_params, empty bodies included
                    return Response.json(400, {"message": "Cannot parse JSON body"})
        if path in ("/", "/status"):
            return await self.supervisor.handle_status(request)
        if path == "/config":
            return self.get_config() if method != "POST" else await self.post_config(request)
        if path == "/plugins/enabled":
            return Response.json(200, {"enabled_plugins": registry.names()})
        if path == "/tags" or path.startswith("/tags/"):
            return self.tags(unquote(path[len("/tags/") :]) if path != "/tags" else None, request)
        if (found := re.fullmatch(r"/schemas/plugins/([^/]+)", path)) and found[1] != "validate":
            return plugin_schema_response(unquote(found[1]))
        if path.startswith("/schemas/"):
            return await self.validate_entity(request, path.split("/")[2])
        parts = [unquote(p) for p in path.split("/") if p]
        if parts[0] == "acme":
            params = {k: v[-1] for k, v in request.query.items()}
            params.update(_body_params(request) or {})
            return await self.supervisor.acme.handle(method, parts, params)
        if parts[0] == "upstreams" and len(parts) >= 3:
            await self.supervisor.checker.warm(parts[1])  # health reads target addresses
        if parts[-1] in ("healthy", "unhealthy") and len(parts) in (5, 6):
            # Health is node state, not config: these work in DB-less mode (Kong #15001).
            address = parts[4] if len(parts) == 6 else None
            healthy = parts[-1] == "healthy"
            return self.supervisor.set_target_health(parts[1], parts[3], address, healthy)
        if method not in ("GET", "HEAD"):
            return self.write_refused(method, parts)
        return self.read_entities(parts, request.query)

    async def status_upstreams(self, request: Request) -> Response:
        """The status listener's read-only ``/upstreams`` routes (no health writes there)."""
        path = request.path.rstrip("/")
        allowed = self.allowed_methods(path)
        if allowed is None or "GET" not in allowed:
            return NOT_FOUND()
        if request.method not in ("GET", "HEAD"):
            return Response.json(405, {"message": "Method not allowed"})
        parts = [unquote(p) for p in path.split("/") if p]
        if len(parts) >= 3:
            await self.supervisor.checker.warm(parts[1])
        return self.read_entities(parts, request.query)

    def allowed_methods(self, path: str) -> str | None:
        """The ``Allow`` of the endpoint at ``path``, None when there is no such endpoint."""
        if path in ("/", "/status", "/plugins/enabled", "/tags"):
            return READ_ONLY
        if re.fullmatch(r"/tags/[^/]+", path):
            return READ_ONLY
        if path == "/config":
            return COLLECTION
        if re.fullmatch(r"/schemas/plugins/[^/]+", path) and path != "/schemas/plugins/validate":
            return READ_ONLY
        if re.fullmatch(r"/schemas/[^/]+/validate", path):
            return "OPTIONS, POST"
        parts = [p for p in path.split("/") if p]
        if parts and parts[0] == "acme":
            return AcmeAdmin.allowed_methods(parts)
        if not parts or parts[0] not in ENTITIES:
            return None
        n = len(parts)
        if n == 1:
            return COLLECTION
        if n == 2:
            return ENTITY
        if parts[0] == "upstreams" and n >= 3:
            if n == 3 and parts[2] == "health":
                return READ_ONLY
            if n == 4 and parts[2:] == ["targets", "all"]:
                return READ_ONLY
            if n in (5, 6) and parts[2] == "targets" and parts[-1] in ("healthy", "unhealthy"):
                return "OPTIONS, POST, PUT"  # Kong: PUT; POST kept for fastkong's earlier API
        if (parts[0], parts[2]) in NESTED:
            return COLLECTION if n == 3 else ENTITY if n == 4 else None
        if n == 3 and (parts[0], parts[2]) in FOREIGN:
            return ENTITY
        return None

    # -- /config -----------------------------------------------------------------------------

    def get_config(self) -> Response:
        """Kong's ``GET /config``: the loaded config exported as YAML in ``{"config": ...}``."""
        config = self.supervisor.current_config()
        text = export_yaml(config) if config is not None else ""
        return Response.json(200, {"config": text})

    async def post_config(self, request: Request) -> Response:
        if self.supervisor.draining:
            return Response.json(503, {"message": "Kong currently exiting"})
        raw, is_object = self._declarative_body(request)
        if raw is None or not raw.strip():
            return Response.json(400, {"message": "expected a declarative configuration"})
        # Kong: flatten_errors takes true/1/on/yes; check_hash only "1" (config.lua:27-77),
        # compared with the md5 of the posted text before it is parsed or waits for the lock;
        # a body that is itself the config object has no text, so no hash to compare.
        flatten = (request.query.get("flatten_errors") or [""])[-1].lower() in TRUTHY
        check_hash = (request.query.get("check_hash") or [""])[-1] == "1"
        current = self.supervisor.config.hash
        if check_hash and not is_object and hashlib.md5(raw).hexdigest() == current:
            return Response(304)
        if self.loading.locked():
            return Response.json(
                429, {"message": "Currently loading previous configuration"}, **{"retry-after": "1"}
            )
        async with self.loading:
            try:
                loaded = await self.supervisor.in_loader(load_config, raw)
            except ConfigError as exc:
                self.supervisor.config.reloads["failure"] += 1
                self.supervisor.config.last_error = [f"{e.path}: {e.message}" for e in exc.errors]
                return self.invalid(exc, raw, flatten)
            await self.supervisor.in_loader(self.supervisor.accept_posted, loaded, raw)
            # Kong answers with every entity loaded: megabytes of JSON for a large config,
            # encoded on the loader thread, not on the event loop that answers probes.
            body = await self.supervisor.in_loader(_entities_json, loaded.config)
        return Response(201, body, {"content-type": "application/json; charset=utf-8"})

    def _declarative_body(self, request: Request) -> tuple[bytes | None, bool]:
        """The config text posted, and whether the body was the config object itself."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        body = request.body
        if ctype == "application/x-www-form-urlencoded":
            form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
            config = form.get("config")
            return (config[-1].encode() if config else None), False
        if ctype == "multipart/form-data":
            content_type = request.headers.get("content-type", "")
            return _multipart_field(body, content_type, "config"), False
        if ctype == "application/json" and body.strip().startswith(b"{"):
            try:
                parsed = json.loads(body)
            except ValueError:
                return body, False
            if isinstance(parsed, dict) and "_format_version" in parsed:
                return body, True
            if isinstance(parsed, dict):
                inner = parsed.get("config")
                if isinstance(inner, str):
                    return inner.encode(), False
                if isinstance(inner, dict):
                    return json.dumps(inner).encode(), True
        return body, False

    def invalid(self, exc: ConfigError, raw: bytes, flatten: bool) -> Response:
        fields = exc.fields()
        flattened = None
        if flatten:
            try:
                parsed = load_raw(raw)
            except Exception:
                parsed = None
            flattened = exc.flattened(parsed)
            if isinstance(parsed, dict):
                # Kong's flatten_errors drains every entity section (errors in a table, the
                # input's section a table) out of ``fields``: those errors are in the list
                # now; what stays (``abnormal_extra_field``) is what ``message`` shows.
                fields = {
                    section: errors
                    for section, errors in fields.items()
                    if not (
                        isinstance(errors, (list, dict))
                        and isinstance(parsed.get(section), (list, dict))
                    )
                }
        payload: dict[str, Any] = {
            "code": 14,
            "name": "invalid declarative configuration",
            "message": f"declarative config is invalid: {lua_table(fields)}",
            "fields": fields,
        }
        if flattened is not None:
            payload["flattened_errors"] = flattened
        return Response.json(400, payload)

    async def validate_entity(self, request: Request, entity: str) -> Response:
        """``POST /schemas/{entity}/validate`` (KIC's admission webhook asks it about plugins
        and credentials): the entity checked as the loader checks it, nothing stored."""
        if entity not in ENTITY_STRUCTS:
            return Response.json(404, {"message": f"No entity named '{entity}'"})
        params = _body_params(request)
        if params is None:
            return Response.json(400, {"message": "Cannot parse JSON body"})
        # References are checked against the loaded config by the loader; Kong's schema
        # check does not look them up, so they are left out here.
        refs = {k for k in FOREIGN_KEYS if isinstance(params.get(k), dict)}
        doc = {
            "_format_version": "3.0",
            entity: [{k: v for k, v in params.items() if k not in refs}],
        }
        try:
            await self.supervisor.in_loader(load_config, json.dumps(doc).encode())
        except ConfigError as exc:
            fields = exc.fields()
            found = fields.get(entity)
            errors = found[0] if isinstance(found, list) and found and found[0] else fields
            errors = {k: v for k, v in errors.items() if k not in refs}
            if errors:
                return Response.json(400, _schema_violation(errors))
        return Response.json(200, {"message": "schema validation successful"})

    # -- entities ----------------------------------------------------------------------------

    def tags(self, tag: str | None, request: Request) -> Response:
        """``GET /tags`` and ``/tags/{tag}``: one row per tag of each entity (Kong's off
        strategy ``page_for_tags``)."""
        config = self.supervisor.current_config()
        rows = [
            {"entity_name": kind, "entity_id": row["id"], "tag": t}
            for kind in ENTITY_STRUCTS
            for row in (_admin_rows(config, kind) if config is not None else ())
            for t in row.get("tags") or ()
            if tag is None or t == tag
        ]
        query = {k: v for k, v in request.query.items() if k != "tags"}
        if tag is None:
            return self.page(rows, query, "/tags", top=True)
        return self.page(rows, query, f"/tags/{quote(tag, safe='')}")

    def write_refused(self, method: str, parts: list[str]) -> Response:
        """A write in DB-less mode, answered as Kong's off strategy answers it."""
        if len(parts) == 1 or (len(parts) == 3 and (parts[0], parts[2]) in NESTED):
            # a collection: only POST gets here
            kind = ENTITIES[parts[0]] if len(parts) == 1 else NESTED[(parts[0], parts[2])][0]
            return _unsupported(f"cannot create '{kind}' entities when not using a database")
        foreign = len(parts) == 3
        if len(parts) == 2:
            kind, key = ENTITIES[parts[0]], parts[1]
        elif foreign:
            kind, key = FOREIGN[(parts[0], parts[2])], ""
        else:
            kind, key = NESTED[(parts[0], parts[2])][0], parts[3]
        by = ENDPOINT_KEY[kind] if key and not UUID.match(key) and ENDPOINT_KEY[kind] else ""
        found = self.read_entities(parts, {})
        if kind == "certificates" and found.status == 404 and method != "PUT":
            return found  # Kong's prepare_params: "SNI not found" before any write
        if kind == "targets":
            # upstreams.lua target_endpoint: found first (404 if not), then written by id
            if found.status == 404:
                return found
            by = ""
        if foreign and (method == "DELETE" or found.status == 404):
            # Kong: the foreign-entity endpoint never deletes; a missing link is a 404
            return (
                Response.json(405, {"message": "Method not allowed"})
                if found.status == 200
                else found
            )
        if found.status == 404:
            if method == "DELETE":
                return Response(204)  # Kong's DAO: deleting nothing succeeds
            if method == "PATCH":
                filter_ = {by: key} if by else {"id": key}
                what = f"'{lua_table(filter_)}'" if by else f"primary key '{lua_table(filter_)}'"
                return Response.json(
                    404,
                    {
                        "code": 6,
                        "name": "not found",
                        "message": f"could not find the entity with {what}",
                        "fields": filter_,
                    },
                )
        verb = {"PUT": "create or update", "PATCH": "update", "DELETE": "remove"}[method]
        by_field = f" by '{by}'" if by else ""
        return _unsupported(f"cannot {verb} '{kind}' entities{by_field} when not using a database")

    def rows(self, kind: str) -> list[dict[str, Any]]:
        config = self.supervisor.current_config()
        if config is None:
            return []
        return _admin_rows(config, kind)

    def read_entities(self, parts: list[str], query: dict[str, list[str]]) -> Response:
        kind = ENTITIES[parts[0]]
        rows = self.rows(kind)
        if len(parts) == 1:
            custom_id = query.get("custom_id")
            if kind == "consumers" and custom_id is not None:
                # kong/api/routes/consumers.lua: a lookup, not a filter of the page
                if not custom_id[-1]:
                    return Response.json(400, {"message": "custom_id must be an unempty string"})
                data = [r for r in rows if r.get("custom_id") == custom_id[-1]][:1]
                return Response.json(200, {"data": data, "next": None})
            return self.page(rows, query, f"/{parts[0]}", top=True)
        key = parts[1]
        if kind == "certificates" and not UUID.match(key):
            # kong/api/routes/certificates.lua: a name is an SNI, standing for its certificate
            sni = _find(self.rows("snis"), key, "snis")
            if sni is None:
                return Response.json(404, {"message": "SNI not found"})
            key = sni["certificate"]["id"]
        found = _find(rows, key, kind)
        if found is None:
            return NOT_FOUND()
        if len(parts) == 2:
            if kind == "certificates":  # select_with_name_list
                snis = self.rows("snis")
                found["snis"] = [r["name"] for r in snis if r["certificate"]["id"] == found["id"]]
            return Response.json(200, found)
        child = parts[2]
        if kind == "upstreams" and child in ("health", "targets"):
            targets = [r for r in self.rows("targets") if r["upstream"]["id"] == found["id"]]
            if child == "health":
                if (query.get("balancer_health") or [""])[-1] == "1":
                    return self.supervisor.upstream_health(found, targets, balancer=True)
                page = self.paginate(
                    targets, query, f"/upstreams/{parts[1]}/health", False, exact=True
                )
                if isinstance(page, Response):
                    return page
                links = {k: v for k, v in page.items() if k != "data"}
                return self.supervisor.upstream_health(found, page["data"], links=links)
            if parts[3:] == ["all"]:
                return self.page(targets, query, f"/upstreams/{parts[1]}/targets/all")
        if (parts[0], child) in FOREIGN:
            ref = found.get(child)
            target_kind = FOREIGN[(parts[0], child)]
            item = _find(self.rows(target_kind), ref["id"], target_kind) if ref else None
            return Response.json(200, item) if item else NOT_FOUND()
        child_kind, fk = NESTED[(parts[0], child)]
        children = [r for r in self.rows(child_kind) if (r.get(fk) or {}).get("id") == found["id"]]
        if len(parts) == 3:
            exact = parts[0] == "upstreams" and child == "targets"  # (page_for_upstream)
            return self.page(children, query, f"/{parts[0]}/{parts[1]}/{child}", exact=exact)
        item = _find(children, parts[3], child_kind)
        return Response.json(200, item) if item else NOT_FOUND()

    def page(
        self,
        rows: list[dict[str, Any]],
        query: dict[str, list[str]],
        base: str,
        top: bool = False,
        exact: bool = False,
    ) -> Response:
        """One page in Kong's shape (``data``, ``offset`` while more, ``next``)."""
        payload = self.paginate(rows, query, base, top, exact)
        return payload if isinstance(payload, Response) else Response.json(200, payload)

    def paginate(
        self,
        rows: list[dict[str, Any]],
        query: dict[str, list[str]],
        base: str,
        top: bool,
        exact: bool = False,
    ) -> dict[str, Any] | Response:
        """The page ``query`` asks for, or Kong's error for its ``size``/``offset``/``tags``
        (``next`` repeats ``tags`` and ``size`` only on a top-level collection, as Kong's).

        Kong DB-less pages its collections by key prefix (``page_for_prefix`` over
        lua-resty-lmdb), which cannot tell a full last page from one with more after it: a
        full page always has an ``offset``, and the page it names may be empty. An upstream's
        targets and health are counted (``page_for_upstream``): ``exact``."""
        size = DEFAULT_PAGE
        raw_size = query.get("size")
        if raw_size:
            number = _lua_number(raw_size[-1])
            if number is None:
                return _invalid_size("size must be a number")
            if number != int(number) or not 1 <= number <= MAX_PAGE:
                return _invalid_size(f"size must be an integer between 1 and {MAX_PAGE}")
            size = int(number)
        start = 0
        raw_offset = query.get("offset")
        if raw_offset:
            decoded = _decode_offset(raw_offset[-1])
            if decoded is None:
                return Response.json(
                    400,
                    {
                        "code": 7,
                        "name": "invalid offset",
                        "message": f"'{raw_offset[-1]}' is not a valid offset: bad base64 encoding",
                    },
                )
            start = decoded
        tags = query.get("tags")
        if tags is not None:
            try:
                rows = _tagged(rows, tags[0])
            except ValueError as exc:
                message = str(exc)
                return Response.json(
                    400,
                    {
                        "code": 11,
                        "name": "invalid options",
                        "message": f"invalid option (tags: {message})",
                        "options": {"tags": message},
                    },
                )
        chunk = rows[start : start + size]
        payload: dict[str, Any] = {"data": chunk, "next": None}
        full = not exact and tags is None and len(chunk) == size
        if start + size < len(rows) or full:
            offset = _encode_offset(start + size)
            following = f"{base}?offset={quote(offset, safe='')}"
            if top and tags is not None:
                following += f"&tags={quote(tags[0], safe='')}"
            if top and raw_size:
                following += f"&size={raw_size[-1]}"
            payload["offset"] = offset
            payload["next"] = following
        return payload


def plugin_schema_response(name: str) -> Response:
    """Kong's ``GET /schemas/plugins/{name}`` (fastkong/control/schemas.py)."""
    spec = registry.lookup(name)
    if spec is None:
        return Response.json(404, {"message": f"No plugin named '{name}'"})
    return Response.json(200, plugin_schema(spec))


def NOT_FOUND() -> Response:  # noqa: N802 - Kong's handle_404 body, built per answer
    return Response.json(404, {"message": "Not found"})


def _schema_violation(errors: dict[str, Any]) -> dict[str, Any]:
    """Kong's ``schema_violation`` error body (``kong/db/errors.lua``)."""
    lines = [str(e) for e in errors.get("@entity") or ()]
    for name in sorted(k for k in errors if k != "@entity"):
        value = errors[name]
        if isinstance(value, dict):
            lines += [
                f"{name}.{sub}: {v if isinstance(v, str) else lua_table(v)}"
                for sub, v in sorted(value.items())
            ]
        else:
            lines.append(f"{name}: {value if isinstance(value, str) else lua_table(value)}")
    if len(lines) == 1:
        message = f"schema violation ({lines[0]})"
    else:
        message = f"{len(lines)} schema violations ({'; '.join(lines)})"
    return {"code": 2, "name": "schema violation", "message": message, "fields": errors}


def _body_params(request: Request) -> dict[str, Any] | None:
    """A request's JSON object or form fields (``a.b=`` keys nested), None when unreadable."""
    ctype = request.headers.get("content-type", "").lower()
    if ctype.startswith("application/x-www-form-urlencoded"):
        params: dict[str, Any] = {}
        for key, values in parse_qs(request.body.decode("utf-8", "replace")).items():
            *path, last = key.split(".")
            node = params
            for part in path:
                node = node.setdefault(part, {})
            node[last] = values[-1]
        return params
    try:
        parsed = json.loads(request.body or b"{}")
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _unsupported(message: str) -> Response:
    return Response.json(405, {"code": 12, "name": "operation unsupported", "message": message})


def _invalid_size(message: str) -> Response:
    return Response.json(400, {"code": 9, "name": "invalid size", "message": message})


def _lua_number(text: str) -> float | None:
    """Lua's ``tonumber`` on a query value (decimal or hex), None when it is not a number."""
    text = text.strip()
    try:
        value = float(int(text, 16)) if text.lower().lstrip("+-").startswith("0x") else float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _encode_offset(index: int) -> str:
    """An opaque page token, base64 as Kong's DB-less offsets are."""
    return base64.b64encode(f"fastkong|{index}".encode()).decode().rstrip("=")


def _decode_offset(token: str) -> int | None:
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), validate=True).decode()
        prefix, _, index = raw.partition("|")
        return int(index) if prefix == "fastkong" and index.isdigit() else None
    except ValueError:
        return None


def _tagged(rows: list[dict[str, Any]], tags: str) -> list[dict[str, Any]]:
    """Kong's ``?tags=``: ``a,b`` all of them, ``a/b`` any of them (at most 5)."""
    if not tags:
        raise ValueError("cannot be null")
    if TAGS_AND.match(tags):
        wanted, every = tags.split(","), True
    elif TAGS_OR.match(tags):
        wanted, every = tags.split("/"), False
    else:
        raise ValueError("invalid filter syntax")
    wanted = [t for t in wanted if t]
    if len(wanted) > 5:
        raise ValueError("cannot query more than 5 tags")
    test = all if every else any
    return [r for r in rows if test(t in (r.get("tags") or ()) for t in wanted)]


def _accepted_body(request: Request, path: str) -> bool:
    """Kong's admin ``before_filter``: a body must be JSON, a form, or (``/config``) YAML."""
    ctype = request.headers.get("content-type")
    if ctype is None:
        return True
    ctype = ctype.lower()
    accepted: tuple[str, ...] = (
        "application/json",
        "multipart/form-data",
        "application/x-www-form-urlencoded",
    )
    if path == "/config":
        accepted += ("application/yaml", "text/yaml")
    return ctype.startswith(accepted)


def _kong_shape(entity: Any) -> dict[str, Any]:
    """An entity as Kong's Admin API prints it: foreign keys as ``{"id": ...}``."""
    data: dict[str, Any] = msgspec.to_builtins(entity)
    for fk in FOREIGN_KEYS:
        if fk in data:
            data[fk] = {"id": data[fk]} if data[fk] is not None else None
    return data


def _admin_rows(config: Config, kind: str) -> list[dict[str, Any]]:
    """An entity array as Kong stores it: a basic-auth password salted and hashed (the
    basic-auth dao's transformation) unless the config says it already is."""
    rows = [_kong_shape(e) for e in getattr(config, kind)]
    if kind == "basicauth_credentials" and config.transform:
        for row in rows:
            salted = row["password"] + row["consumer"]["id"]
            row["password"] = hashlib.sha1(salted.encode()).hexdigest()
    return rows


def export_yaml(config: Config) -> str:
    """The loaded config as Kong exports it (``kong/db/declarative/export.lua``):
    ``_format_version: "3.0"`` and ``_transform: false`` (basic-auth passwords are exported
    hashed, as stored), each entity array at the top level with every entity's id, foreign keys
    as ids. Fields without a value are written as nulls, as Kong writes them (its export reads
    with ``nulls = true``); the text loads back as it is."""
    out: dict[str, Any] = {"_format_version": "3.0", "_transform": False}
    for name in ENTITY_STRUCTS:
        rows = [_exported(row) for row in _admin_rows(config, name)]
        if rows:
            out[name] = rows
    text: str = yaml.safe_dump(out, sort_keys=False, allow_unicode=True)
    return text


def _exported(value: Any) -> Any:
    """A row for the export: ``{"id": x}`` foreign keys as ``x``."""
    if isinstance(value, dict):
        if value.keys() == {"id"}:
            return value["id"]
        return {k: _exported(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_exported(v) for v in value]
    return value


def _find(rows: list[dict[str, Any]], key: str, kind: str) -> dict[str, Any] | None:
    """Kong's ``select_entity``: a UUID is an id, anything else the entity's endpoint key."""
    field = "id" if UUID.match(key) else ENDPOINT_KEY.get(kind)
    if field is None:
        return None
    return next((row for row in rows if row.get(field) == key), None)


def _entities_json(config: Any) -> bytes:
    """``POST /config``'s 201 body: each entity array as a map of id to entity (Kong's
    ``load_into_cache`` result after ``sanitize_output``)."""
    out = {name: {r["id"]: r for r in _admin_rows(config, name)} for name in ENTITY_STRUCTS}
    return json.dumps({k: v for k, v in out.items() if v}, separators=(",", ":")).encode()


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
