"""A fake Kubernetes API server on loopback that speaks the real list/watch wire protocol.

No kube-apiserver can run here (``shared/reference/k8s.md`` section 2), so the controller's
tests drive the *real* client library against this: aiohttp on 127.0.0.1, JSON only.

What it implements, as the API server does (kubernetes.io "API Concepts"):

- One global, monotonically increasing resourceVersion; every write gets the next one.
- ``GET`` collections (cluster-wide and per namespace) with ``metadata.resourceVersion``,
  ``limit``/``continue`` paging served from a consistent snapshot (410 when the snapshot has
  been compacted), simple ``labelSelector``/``fieldSelector`` (``k=v`` terms). Items of
  built-in kinds come without ``kind``/``apiVersion``, as the real server sends them.
- ``?watch=1``: newline-delimited JSON events on a chunked response. Without a resourceVersion
  (or with ``0``) the current objects come first as ADDED; from ``resourceVersion=N`` the
  history after N is replayed, then live events follow. ``allowWatchBookmarks=true`` gets a
  BOOKMARK (``metadata.resourceVersion`` only) whenever the stream has been idle for
  :attr:`bookmark_interval`; ``timeoutSeconds`` ends the stream cleanly.
- Compaction (:meth:`compact`): a watch from an RV older than the oldest kept one gets 410
  Gone, either as the HTTP status or as an in-stream ``ERROR`` event with a ``Status`` object
  (:attr:`expired_as`; the watch cache does the latter). :meth:`expire_streams` sends that
  ERROR on open streams.
- Faults: :meth:`drop_streams` aborts open watch connections mid-stream; :meth:`fail` makes
  the next matching requests fail with a status (and ``Retry-After``).
- Writes: create (POST), replace (PUT, with the resourceVersion precondition), patch (JSON
  merge patch; a strategic merge patch is applied as one, which is exact for what the
  controller sends), delete; the ``status`` subresource. Each write is a watch event; a
  change outside ``metadata`` and ``status`` bumps ``metadata.generation``.

The test side changes objects directly (:meth:`create`, :meth:`update`, :meth:`delete`),
which also produces watch events.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web


@dataclass(frozen=True)
class Kind:
    kind: str
    group: str
    version: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def builtin(self) -> bool:
        return self.group not in (KONG, GATEWAY)


KONG = "configuration.konghq.com"
GATEWAY = "gateway.networking.k8s.io"
KINDS = [
    Kind("Ingress", "networking.k8s.io", "v1", "ingresses"),
    Kind("IngressClass", "networking.k8s.io", "v1", "ingressclasses", namespaced=False),
    Kind("Service", "", "v1", "services"),
    Kind("EndpointSlice", "discovery.k8s.io", "v1", "endpointslices"),
    Kind("Secret", "", "v1", "secrets"),
    Kind("ConfigMap", "", "v1", "configmaps"),
    Kind("Event", "", "v1", "events"),
    Kind("Lease", "coordination.k8s.io", "v1", "leases"),
    Kind("KongPlugin", KONG, "v1", "kongplugins"),
    Kind("KongClusterPlugin", KONG, "v1", "kongclusterplugins", namespaced=False),
    Kind("KongConsumer", KONG, "v1", "kongconsumers"),
    Kind("KongUpstreamPolicy", KONG, "v1beta1", "kongupstreampolicies"),
    Kind("KongIngress", KONG, "v1", "kongingresses"),
    Kind("IngressClassParameters", KONG, "v1alpha1", "ingressclassparameterses"),
    Kind("GatewayClass", GATEWAY, "v1", "gatewayclasses", namespaced=False),
    Kind("Gateway", GATEWAY, "v1", "gateways"),
    Kind("HTTPRoute", GATEWAY, "v1", "httproutes"),
    Kind("ReferenceGrant", GATEWAY, "v1beta1", "referencegrants"),
    Kind("BackendTLSPolicy", GATEWAY, "v1alpha3", "backendtlspolicies"),
    Kind("TCPRoute", GATEWAY, "v1alpha2", "tcproutes"),
    Kind("TLSRoute", GATEWAY, "v1alpha2", "tlsroutes"),
    Kind("UDPRoute", GATEWAY, "v1alpha2", "udproutes"),
    Kind("TCPIngress", KONG, "v1beta1", "tcpingresses"),
    Kind("UDPIngress", KONG, "v1beta1", "udpingresses"),
    Kind("KongVault", KONG, "v1alpha1", "kongvaults", namespaced=False),
    Kind("Namespace", "", "v1", "namespaces", namespaced=False),
]
BY_KIND = {k.kind: k for k in KINDS}
BY_PATH = {(k.group, k.version, k.plural): k for k in KINDS}

Key = tuple[str, str, str]  # kind, namespace, name
#: ``metav1.MicroTime`` as the API server parses it (Go layout ``2006-01-02T15:04:05.000000Z07:00``:
#: exactly six fraction digits).
MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d)$")
_DROP = object()
_EXPIRE = object()


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


@dataclass(eq=False)
class _Stream:
    kind: Kind
    namespace: str | None
    selectors: list[tuple[str, str]]
    queue: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)


@dataclass
class _Fault:
    method: str
    path: str
    status: int
    times: int
    retry_after: int | None


class FakeApiServer:
    """See the module docstring. ``async with FakeApiServer() as api: api.url ...``"""

    def __init__(
        self,
        *,
        bookmark_interval: float | None = None,
        expired_as: Literal["event", "status"] = "event",
        start_rv: int = 1000,
    ) -> None:
        self.bookmark_interval = bookmark_interval
        self.expired_as = expired_as
        self.rv = start_rv
        #: Watches from an RV below this get 410 Gone.
        self.oldest_rv = start_rv
        self.objects: dict[Key, dict[str, Any]] = {}
        #: (rv, type, object, the object before a MODIFIED)
        self.history: list[tuple[int, str, dict[str, Any], dict[str, Any] | None]] = []
        self.requests: list[tuple[str, str]] = []
        self.streams: set[_Stream] = set()
        self.faults: list[_Fault] = []
        self._snapshots: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0

    def __repr__(self) -> str:
        return (
            f"<FakeApiServer rv={self.rv} oldest={self.oldest_rv} objects={len(self.objects)} "
            f"streams={len(self.streams)}>"
        )

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> FakeApiServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(
            app, handle_signals=False, access_log=None, shutdown_timeout=0.5
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        self.drop_streams()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeApiServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kubeconfig(self) -> str:
        """A kubeconfig (YAML) pointing at this server."""
        return (
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: fake\n  cluster:\n    server: {self.url}\n"
            "users:\n- name: fake\n  user:\n    token: fake-token\n"
            "contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n"
            "current-context: fake\n"
        )

    # -- the test side ------------------------------------------------------------------------

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        kind = BY_KIND[obj["kind"]]
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if kind.namespaced:
            meta.setdefault("namespace", "default")
        else:
            meta.pop("namespace", None)
        key = (kind.kind, meta.get("namespace", ""), meta["name"])
        if key in self.objects:
            raise KeyError(f"{key} exists")
        return self._store(kind, key, obj, "ADDED")

    def update(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Replace an object (no resourceVersion precondition)."""
        kind = BY_KIND[obj["kind"]]
        meta = obj.get("metadata") or {}
        key = (kind.kind, meta.get("namespace", "default") if kind.namespaced else "", meta["name"])
        old = self.objects[key]
        new = copy.deepcopy(obj)
        for keep in ("uid", "creationTimestamp", "namespace"):
            if keep in old["metadata"]:
                new["metadata"][keep] = old["metadata"][keep]
        return self._store(kind, key, new, "MODIFIED")

    def delete(self, kind_name: str, namespace: str, name: str) -> dict[str, Any]:
        kind = BY_KIND[kind_name]
        key = (kind_name, namespace if kind.namespaced else "", name)
        old = self.objects.pop(key)
        gone = copy.deepcopy(old)
        self.rv += 1
        gone["metadata"]["resourceVersion"] = str(self.rv)
        self._record("DELETED", kind, gone)
        return gone

    def get(self, kind_name: str, namespace: str, name: str) -> dict[str, Any] | None:
        kind = BY_KIND[kind_name]
        return self.objects.get((kind_name, namespace if kind.namespaced else "", name))

    def all(self, kind_name: str) -> list[dict[str, Any]]:
        return [o for (k, _, _), o in sorted(self.objects.items()) if k == kind_name]

    def compact(self, rv: int | None = None) -> None:
        """Forget history up to ``rv`` (default: everything so far)."""
        self.oldest_rv = self.rv if rv is None else rv
        self.history = [h for h in self.history if h[0] > self.oldest_rv]
        self._snapshots = {k: v for k, v in self._snapshots.items() if k[1] >= self.oldest_rv}

    def drop_streams(self, kind: str | None = None) -> int:
        """Abort open watch connections (a reset, not a clean end)."""
        return self._signal(_DROP, kind)

    def expire_streams(self, kind: str | None = None) -> int:
        """Send an in-stream ``ERROR`` 410 on open watches, then end them."""
        return self._signal(_EXPIRE, kind)

    def fail(
        self, method: str, path: str, status: int, times: int = 1, retry_after: int | None = None
    ) -> None:
        """The next ``times`` requests whose path contains ``path`` answer ``status``."""
        self.faults.append(_Fault(method, path, status, times, retry_after))

    def watch_count(self, kind: str | None = None) -> int:
        return sum(1 for s in self.streams if kind is None or s.kind.kind == kind)

    # -- storage ------------------------------------------------------------------------------

    def _store(self, kind: Kind, key: Key, obj: dict[str, Any], typ: str) -> dict[str, Any]:
        self.rv += 1
        obj["apiVersion"] = kind.api_version
        obj["kind"] = kind.kind
        meta = obj["metadata"]
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", now_rfc3339())
        meta["resourceVersion"] = str(self.rv)
        if typ == "ADDED":
            meta.setdefault("generation", 1)
        else:
            # As the API server does for kinds with a status subresource: a change of
            # anything but status and metadata bumps metadata.generation.
            old = self.objects.get(key) or {}
            gen = (old.get("metadata") or {}).get("generation", 1)
            changed = _content(old) != _content(obj)
            meta["generation"] = gen + 1 if changed else gen
        before = self.objects.get(key)
        self.objects[key] = obj
        self._record(typ, kind, obj, before if typ == "MODIFIED" else None)
        return copy.deepcopy(obj)

    def _record(
        self, typ: str, kind: Kind, obj: dict[str, Any], before: dict[str, Any] | None = None
    ) -> None:
        snapshot = copy.deepcopy(obj)
        before = copy.deepcopy(before) if before is not None else None
        self.history.append((self.rv, typ, snapshot, before))
        for stream in self.streams:
            if stream.kind == kind and (event := self._event(stream, typ, snapshot, before)):
                stream.queue.put_nowait(event)

    def _event(
        self, stream: _Stream, typ: str, obj: dict[str, Any], before: dict[str, Any] | None
    ) -> tuple[str, dict[str, Any]] | None:
        """What a watch with ``stream``'s selectors sees of a change, as the API server's watch
        cache sends it: an object that comes to match is ADDED, one that stops matching is
        DELETED (its last matching state, at the new resourceVersion)."""
        now = self._matches(stream, obj)
        if typ != "MODIFIED" or before is None:
            return (typ, obj) if now else None
        was = self._matches(stream, before)
        if now:
            return ("MODIFIED" if was else "ADDED", obj)
        if was:
            gone = copy.deepcopy(before)
            gone["metadata"]["resourceVersion"] = obj["metadata"]["resourceVersion"]
            return ("DELETED", gone)
        return None

    def _signal(self, what: object, kind: str | None) -> int:
        n = 0
        for stream in list(self.streams):
            if kind is None or stream.kind.kind == kind:
                stream.queue.put_nowait(what)
                n += 1
        return n

    @staticmethod
    def _matches(stream: _Stream, obj: dict[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        if stream.namespace is not None and meta.get("namespace") != stream.namespace:
            return False
        return _select(obj, stream.selectors)

    # -- HTTP ---------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs))
        for fault in self.faults:
            if fault.times > 0 and fault.method == request.method and fault.path in request.path:
                fault.times -= 1
                headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after else {}
                return _json(fault.status, status(fault.status, "Fault", "injected"), headers)
        route = _route(request.path)
        if route is None:
            return _json(404, status(404, "NotFound", f"no route for {request.path}"))
        kind, namespace, name, sub = route
        q = request.query
        if name is None:
            if request.method == "GET":
                if q.get("watch") in ("1", "true", "True"):
                    return await self._watch(request, kind, namespace)
                return self._list(kind, namespace, q)
            if request.method == "POST":
                return self._create(kind, namespace, await request.json())
            return _json(405, status(405, "MethodNotAllowed", request.method))
        key = (kind.kind, namespace or "", name)
        if request.method == "GET":
            obj = self.objects.get(key)
            if obj is None:
                return _json(404, status(404, "NotFound", f'{kind.plural} "{name}" not found'))
            return _json(200, obj)
        if request.method == "DELETE":
            if key not in self.objects:
                return _json(404, status(404, "NotFound", f'{kind.plural} "{name}" not found'))
            return _json(200, self.delete(kind.kind, namespace or "", name))
        if request.method in ("PUT", "PATCH"):
            ctype = request.headers.get("Content-Type", "")
            body = await request.json()
            return self._write(kind, key, request.method, ctype, body, sub)
        return _json(405, status(405, "MethodNotAllowed", request.method))

    def _list(self, kind: Kind, namespace: str | None, q: Any) -> web.Response:
        selectors = _selectors(q)
        limit = int(q.get("limit") or 0)
        token = q.get("continue")
        if token:
            state = json.loads(base64.b64decode(token))
            list_rv, start = int(state["rv"]), int(state["start"])
            items = self._snapshots.get((self._snap_key(kind, namespace, q), list_rv))
            if items is None:
                return _json(
                    410,
                    status(410, "Expired", "The provided continue parameter is too old"),
                )
        else:
            list_rv, start = self.rv, 0
            items = [
                copy.deepcopy(o)
                for (k, ns, _), o in sorted(self.objects.items())
                if k == kind.kind
                and (namespace is None or ns == namespace)
                and _select(o, selectors)
            ]
            if limit:
                self._snapshots[(self._snap_key(kind, namespace, q), list_rv)] = items
        page = items[start : start + limit] if limit else items
        meta: dict[str, Any] = {"resourceVersion": str(list_rv)}
        if limit and start + limit < len(items):
            nxt = {"rv": list_rv, "start": start + limit}
            meta["continue"] = base64.b64encode(json.dumps(nxt).encode()).decode()
            meta["remainingItemCount"] = len(items) - start - limit
        if kind.builtin:
            page = [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")} for o in page]
        return _json(
            200,
            {
                "kind": f"{kind.kind}List",
                "apiVersion": kind.api_version,
                "metadata": meta,
                "items": page,
            },
        )

    @staticmethod
    def _snap_key(kind: Kind, namespace: str | None, q: Any) -> str:
        return f"{kind.kind}|{namespace}|{q.get('labelSelector', '')}|{q.get('fieldSelector', '')}"

    async def _watch(
        self, request: web.Request, kind: Kind, namespace: str | None
    ) -> web.StreamResponse:
        q = request.query
        stream = _Stream(kind, namespace, _selectors(q))
        rv_param = q.get("resourceVersion") or "0"
        expired = False
        if rv_param == "0":
            replay = [
                ("ADDED", copy.deepcopy(o))
                for (k, _, _), o in sorted(self.objects.items())
                if k == kind.kind and self._matches(stream, o)
            ]
        elif int(rv_param) < self.oldest_rv:
            if self.expired_as == "status":
                msg = f"too old resource version: {rv_param} ({self.oldest_rv})"
                return _json(410, status(410, "Expired", msg))
            replay, expired = [], True
        else:
            since = int(rv_param)
            replay = [
                event
                for rv, typ, obj, before in self.history
                if rv > since
                and obj["kind"] == kind.kind
                and (event := self._event(stream, typ, obj, before))
            ]
        self.streams.add(stream)  # registered before the first await: no event is missed
        timeout = float(q.get("timeoutSeconds") or 1800)
        bookmarks = q.get("allowWatchBookmarks") in ("1", "true", "True")
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        try:
            await resp.prepare(request)
            if expired:
                msg = f"too old resource version: {rv_param} ({self.oldest_rv})"
                await _send(resp, "ERROR", status(410, "Expired", msg))
                await resp.write_eof()
                return resp
            for typ, obj in replay:
                await _send(resp, typ, obj)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while (left := deadline - loop.time()) > 0:
                if bookmarks and self.bookmark_interval is not None:
                    wait = min(left, self.bookmark_interval)
                else:
                    wait = left
                try:
                    item = await asyncio.wait_for(stream.queue.get(), wait)
                except TimeoutError:
                    if bookmarks and self.bookmark_interval is not None:
                        await _send(resp, "BOOKMARK", self._bookmark(kind))
                    continue
                if item is _DROP:
                    if request.transport is not None:
                        request.transport.abort()
                    return resp
                if item is _EXPIRE:
                    msg = f"too old resource version: {rv_param} ({self.oldest_rv})"
                    await _send(resp, "ERROR", status(410, "Expired", msg))
                    break
                await _send(resp, *item)
            await resp.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.streams.discard(stream)
        return resp

    def _bookmark(self, kind: Kind) -> dict[str, Any]:
        return {
            "kind": kind.kind,
            "apiVersion": kind.api_version,
            "metadata": {"resourceVersion": str(self.rv)},
        }

    def _create(self, kind: Kind, namespace: str | None, body: dict[str, Any]) -> web.Response:
        meta = body.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        if namespace is not None:
            meta["namespace"] = namespace
        key = (kind.kind, namespace or "", meta.get("name", ""))
        if not key[2]:
            return _json(422, status(422, "Invalid", "metadata.name: Required value"))
        if key in self.objects:
            msg = f'{kind.plural} "{key[2]}" already exists'
            return _json(409, status(409, "AlreadyExists", msg))
        meta.pop("resourceVersion", None)
        if (invalid := _invalid(kind, body)) is not None:
            return invalid
        return _json(201, self._store(kind, key, body, "ADDED"))

    def _write(
        self,
        kind: Kind,
        key: Key,
        method: str,
        ctype: str,
        body: Any,
        sub: str | None,
    ) -> web.Response:
        old = self.objects.get(key)
        if old is None:
            return _json(404, status(404, "NotFound", f'{kind.plural} "{key[2]}" not found'))
        if method == "PATCH" and "json-patch" in ctype:
            return _json(415, status(415, "UnsupportedMediaType", "json-patch is not faked"))
        want_rv = ((body or {}).get("metadata") or {}).get("resourceVersion")
        if want_rv and want_rv != old["metadata"]["resourceVersion"]:
            msg = (
                f'Operation cannot be fulfilled on {kind.plural} "{key[2]}": the object has '
                "been modified; please apply your changes to the latest version and try again"
            )
            return _json(409, status(409, "Conflict", msg))
        if sub == "status":
            new = copy.deepcopy(old)
            if method == "PUT":
                new["status"] = copy.deepcopy(body.get("status"))
            else:
                new["status"] = merge_patch(old.get("status"), body.get("status"))
        elif method == "PUT":
            new = copy.deepcopy(body)
            new["metadata"] = {**body.get("metadata", {})}
            for keep in ("uid", "creationTimestamp", "namespace", "generation"):
                if keep in old["metadata"]:
                    new["metadata"][keep] = old["metadata"][keep]
        else:
            new = merge_patch(old, body)
        if (invalid := _invalid(kind, new)) is not None:
            return invalid
        if new == old:
            return _json(200, old)  # a no-op write gets no new resourceVersion
        return _json(200, self._store(kind, key, new, "MODIFIED"))


def _content(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def _invalid(kind: Kind, obj: dict[str, Any]) -> web.Response | None:
    """What the real server's decoder refuses among what the controller writes."""
    if kind.kind == "Lease":
        for name in ("acquireTime", "renewTime"):
            value = (obj.get("spec") or {}).get(name)
            if value is not None and not MICRO_TIME.match(str(value)):
                msg = f'Lease in version "v1" cannot be handled as a Lease: {name}: {value!r}'
                return _json(400, status(400, "BadRequest", msg))
    return None


def _route(path: str) -> tuple[Kind, str | None, str | None, str | None] | None:
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 3 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    kind = BY_PATH.get((group, version, rest[0]))
    if kind is None or len(rest) > 3:
        return None
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    return kind, namespace, name, sub


def _selectors(q: Any) -> list[tuple[str, str]]:
    out = []
    for param, prefix in (("labelSelector", "label:"), ("fieldSelector", "")):
        for term in (q.get(param) or "").split(","):
            if "=" in term:
                k, _, v = term.partition("=")
                out.append((prefix + k.rstrip("="), v))
    return out


def _select(obj: dict[str, Any], selectors: Iterable[tuple[str, str]]) -> bool:
    meta = obj.get("metadata") or {}
    for key, value in selectors:
        if key.startswith("label:"):
            if (meta.get("labels") or {}).get(key[6:]) != value:
                return False
        elif key == "metadata.name" and meta.get("name") != value:
            return False
        elif key == "metadata.namespace" and meta.get("namespace") != value:
            return False
    return True


def _json(code: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=code, text=json.dumps(body), content_type="application/json", headers=headers
    )


async def _send(resp: web.StreamResponse, typ: str, obj: dict[str, Any]) -> None:
    await resp.write(json.dumps({"type": typ, "object": obj}).encode() + b"\n")
