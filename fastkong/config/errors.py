"""Config errors: every problem with its path, in Kong's shapes.

A :class:`ConfigError` carries *all* the errors of a document, in document order. Each
:class:`FieldError` has a ``path`` in the shape of the original document
(``services[0].routes[1].paths[0]``) and Kong's message for the problem. Two renderings match what
Kong's ``POST /config`` returns (``kong:kong/db/errors.lua``):

- :meth:`ConfigError.fields`: the nested ``fields`` tree, mirroring the input, with positional and
  possibly sparse arrays, entity-level messages under ``"@entity"``;
- :meth:`ConfigError.flattened`: ``flattened_errors``, one entry per entity, nested entities
  hoisted, field names dotted with 1-based array indexes (``tags.3``) as Kong writes them.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

import msgspec

from fastkong.config.meta import CHILDREN, ENTITIES, Loc, entity_prefixes

# -- Kong's message templates (kong:kong/db/schema/init.lua `validation_errors`) ----------------
REQUIRED: Final = "required field missing"
REQUIRED_FOR_ENTITY_CHECK: Final = "field required for entity check"
UNKNOWN: Final = "unknown field"
ARRAY: Final = "expected an array"
SET: Final = "expected a set"
MAP: Final = "expected a map"
RECORD: Final = "expected a record"
STRING: Final = "expected a string"
NUMBER: Final = "expected a number"
BOOLEAN: Final = "expected a boolean"
INTEGER: Final = "expected an integer"
UUID: Final = "expected a valid UUID"
MISSING_PK: Final = "missing primary key"
EQ_NULL: Final = "value must be null"
BETWEEN: Final = "value should be between {} and {}"
GT: Final = "value must be greater than {}"
LEN_EQ: Final = "length must be {}"
LEN_MIN: Final = "length must be at least {}"
LEN_MAX: Final = "length must be at most {}"
MATCH: Final = "invalid value: {}"
ONE_OF: Final = "expected one of: {}"
CONDITIONAL: Final = "failed conditional validation given value of field '{}'"
AT_LEAST_ONE_OF: Final = "at least one of these fields must be non-empty: {}"
DISTINCT: Final = "values of these fields must be distinct: {}"
MUTUALLY_REQUIRED: Final = "all or none of these fields must be set: {}"
MUTUALLY_EXCLUSIVE: Final = "only one or none of these fields must be set: {}"
MUTUALLY_EXCLUSIVE_SETS: Final = "these sets are mutually exclusive: {}"
SUBSCHEMA_UNKNOWN: Final = "unknown type: {}"
# Bounds Kong has no template for (msgspec's ``ge``/``le``/``lt`` alone); fastkong's wording.
GE: Final = "value must be greater than or equal to {}"
LT: Final = "value must be less than {}"
LE: Final = "value must be less than or equal to {}"
MULTIPLE_OF: Final = "value must be a multiple of {}"
# -- declarative config (kong:kong/db/schema/others/declarative_config.lua, kong/db/declarative)
PARSE: Final = "failed parsing declarative configuration: {}"
EXPECTED_OBJECT: Final = "expected an object"
UNIQUENESS: Final = "uniqueness violation: '{}' entity with {} set to '{}' already declared"
INVALID_REFERENCE: Final = "invalid reference '{}: {}' (no such entry in '{}')"
PLUGIN_NOT_ENABLED: Final = (
    "plugin '{}' not enabled; add it to the 'plugins' configuration property"
)
# fastkong's own: a plugin that forbids a scope (``no_consumer``...) nested under that entity.
PLUGIN_NO_SCOPE: Final = "plugin '{}' cannot be configured on a {}"

_UNIQUENESS_PREFIX: Final = "uniqueness violation: "
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_\-@$]+$")


def quoted_list(words: Iterable[str]) -> str:
    """Kong's ``quoted_list``: ``'a', 'b', 'c'``."""
    return ", ".join(f"'{w}'" for w in words)


def format_path(loc: Loc) -> str:
    """``("services", 0, "routes", 1)`` -> ``services[0].routes[1]``."""
    out: list[str] = []
    for part in loc:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _PLAIN_KEY.match(part):
            out.append(f".{part}" if out else part)
        else:
            out.append(f"[{msgspec.json.encode(part).decode()}]")
    return "".join(out)


class FieldError(msgspec.Struct, frozen=True):
    """One problem: where (``path``) and what (``message``, Kong's wording).

    ``loc`` is the path as a tuple (keys and 0-based indexes); ``entity`` marks an entity-level
    error (Kong's ``@entity``: a check across fields, a uniqueness violation), whose ``path``
    names the entity itself.
    """

    path: str
    message: str
    loc: tuple[str | int, ...] = ()
    entity: bool = False
    #: The key Kong files this error under in ``fields`` instead of the entity's position: a
    #: ``unique`` field's clash is found once the config is flattened, by entity, and keyed by
    #: the entity's endpoint key or id (``{consumers={bar="uniqueness violation: ..."}}``).
    key: str | None = None

    @classmethod
    def at(
        cls, loc: Loc, message: str, *, entity: bool = False, key: str | None = None
    ) -> FieldError:
        return cls(format_path(loc), message, tuple(loc), entity, key)


class ConfigError(Exception):
    """A declarative config was rejected: :attr:`errors` holds every problem, in document order."""

    errors: list[FieldError]

    def __init__(
        self,
        errors: list[FieldError],
        *,
        document: Any = None,
        ids: Mapping[Loc, str] | None = None,
    ) -> None:
        self.errors = list(errors)
        self.document = document
        self._ids: Mapping[Loc, str] = ids or {}
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(f"{e.path}: {e.message}" if e.path else e.message for e in self.errors)

    def __repr__(self) -> str:
        return f"<ConfigError {len(self.errors)} error(s)>"

    def __reduce__(self) -> tuple[Any, ...]:
        # Picklable (keyword-only state), so a worker can hand it to its parent.
        return (_rebuild, (self.errors, self.document, dict(self._ids)))

    def fields(self) -> dict[str, Any]:
        """Kong's ``fields`` error tree: the input's shape, one message per failing field.

        Arrays are positional (``None`` fills the holes); entity-level messages are listed under
        ``"@entity"``, except that an entity whose only problem is a uniqueness violation is the
        message itself, as Kong reports it. A document-level error is ``{"error": message}``.
        """
        tree: dict[str, Any] = {}
        by_entity: dict[Loc, list[str]] = {}
        keyed: list[FieldError] = []
        for err in self.errors:
            if not err.loc:
                tree.setdefault("error", err.message)
            elif err.key is not None:
                keyed.append(err)
            elif err.entity:
                by_entity.setdefault(err.loc, []).append(err.message)
            else:
                _put(tree, err.loc, err.message)
        for loc, messages in by_entity.items():
            only_unique = len(messages) == 1 and messages[0].startswith(_UNIQUENESS_PREFIX)
            if only_unique and _get(tree, loc) is None:
                _put(tree, loc, messages[0])
            else:
                node = _ensure_record(tree, loc)
                if node is not None:
                    node.setdefault("@entity", []).extend(messages)
        for err in keyed:
            section = tree.setdefault(str(err.loc[0]), {})
            if isinstance(section, dict):
                section[err.key] = err.message
            else:
                # (Kong never shows both: it flattens a config only once it validated; here
                # the section is positional already, so the clash takes its entity's place)
                _put(tree, err.loc, err.message)
        return tree

    def flattened(self, raw: Any = None) -> list[dict[str, Any]]:
        """Kong's ``flattened_errors``: one entry per entity with errors, nested ones hoisted.

        ``raw`` is the parsed document the errors refer to (default: the one this error was
        raised for). Each entry has ``entity_type`` (singular), ``entity`` (the input object,
        without its nested children, with ``{"id": ...}`` of its parent when nested),
        ``entity_id``/``entity_name``/``entity_tags`` when valid, and ``errors``:
        ``{"type": "field", "field": "config.minute", "message": ...}`` or
        ``{"type": "entity", "message": ...}``. Errors outside any entity are not included.
        """
        doc = self.document if raw is None else raw
        entries: dict[Loc, dict[str, Any]] = {}
        for err in self.errors:
            prefixes = entity_prefixes(err.loc)
            if not prefixes:
                continue
            end, plural = prefixes[-1]
            parents = prefixes[:-1]
            eloc, rest = err.loc[:end], err.loc[end:]
            fk = rest[0] if len(rest) > 1 and isinstance(rest[0], str) else None
            target = ENTITIES[plural].foreign.get(fk) if fk is not None else None
            if target is not None and isinstance(_lookup(doc, (*eloc, rest[0])), dict):
                # A foreign key written as the entity itself (``client_certificate: {cert:
                # ...}``): its errors are an entry of that entity's own (Kong's
                # add_entity_errors, one-to-one branch), with no parent key
                eloc, rest, plural, parents = (*eloc, rest[0]), rest[1:], target, []
            entry = entries.get(eloc)
            if entry is None:
                entry = entries[eloc] = self._flat_entry(doc, eloc, plural, parents)
            if err.entity or not rest:
                entry["errors"].append({"type": "entity", "message": err.message})
            else:
                name = ".".join(str(p + 1) if isinstance(p, int) else p for p in rest)
                entry["errors"].append({"type": "field", "field": name, "message": err.message})
        return list(entries.values())

    def _flat_entry(
        self, doc: Any, eloc: Loc, plural: str, parents: list[tuple[int, str]]
    ) -> dict[str, Any]:
        item = _lookup(doc, eloc)
        if isinstance(item, str) and plural == "snis":
            item = {"name": item}
        entity: dict[str, Any] = dict(item) if isinstance(item, dict) else {}
        for child, _ in CHILDREN.get(plural, ()):
            if isinstance(entity.get(child), list):
                del entity[child]
        for fk in ENTITIES[plural].foreign:
            written = entity.get(fk)
            if isinstance(written, dict):
                # (Kong's make_pk: the record's id when it is one, else nothing)
                key = written.get("id")
                if isinstance(key, str) and _is_uuid(key):
                    entity[fk] = {"id": key}
                else:
                    del entity[fk]
        entity = copy.deepcopy(entity)
        if parents:
            pend, pplural = parents[-1]
            fk = dict(CHILDREN[pplural])[plural]
            parent_id = self._id_of(doc, eloc[:pend])
            if fk not in entity and parent_id is not None:
                entity[fk] = {"id": parent_id}
        entry: dict[str, Any] = {"entity_type": ENTITIES[plural].singular}
        entity_id = self._id_of(doc, eloc)
        if entity_id is not None:
            entry["entity_id"] = entity_id
        name = entity.get("name")
        if isinstance(name, str) and name:
            entry["entity_name"] = name
        tags = entity.get("tags")
        if isinstance(tags, list) and all(isinstance(t, str) for t in tags):
            entry["entity_tags"] = tags
        entry["entity"] = entity
        entry["errors"] = []
        return entry

    def _id_of(self, doc: Any, eloc: Loc) -> str | None:
        item = _lookup(doc, eloc)
        if isinstance(item, dict) and "id" in item:
            value = item["id"]
            return value if isinstance(value, str) and _is_uuid(value) else None
        return self._ids.get(eloc)


def _rebuild(errors: list[FieldError], document: Any, ids: dict[Loc, str]) -> ConfigError:
    return ConfigError(errors, document=document, ids=ids)


_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)


def _is_uuid(value: str) -> bool:
    return len(value) == 36 and _UUID_RE.match(value) is not None


def _lookup(doc: Any, loc: Loc) -> Any:
    node = doc
    for part in loc:
        if isinstance(part, int):
            if not isinstance(node, list) or not 0 <= part < len(node):
                return None
            node = node[part]
        else:
            if not isinstance(node, dict):
                return None
            node = node.get(part)
    return node


def _container_for(tree: dict[str, Any], loc: Loc) -> Any:
    node: Any = tree
    for i, part in enumerate(loc[:-1]):
        nxt = loc[i + 1]
        if isinstance(node, dict) and isinstance(part, str):
            if node.get(part) is None:
                node[part] = {} if isinstance(nxt, str) else []
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int):
            while len(node) <= part:
                node.append(None)
            if node[part] is None:
                node[part] = {} if isinstance(nxt, str) else []
            node = node[part]
        else:
            return None
    return node


def _put(tree: dict[str, Any], loc: Loc, message: str) -> None:
    parent = _container_for(tree, loc)
    last = loc[-1]
    if isinstance(parent, dict) and isinstance(last, str):
        parent.setdefault(last, message)
    elif isinstance(parent, list) and isinstance(last, int):
        while len(parent) <= last:
            parent.append(None)
        if parent[last] is None:
            parent[last] = message


def _get(tree: dict[str, Any], loc: Loc) -> Any:
    return _lookup(tree, loc)


def _ensure_record(tree: dict[str, Any], loc: Loc) -> dict[str, Any] | None:
    parent = _container_for(tree, loc)
    last = loc[-1]
    node: Any = None
    if isinstance(parent, dict) and isinstance(last, str):
        node = parent.setdefault(last, {})
    elif isinstance(parent, list) and isinstance(last, int):
        while len(parent) <= last:
            parent.append(None)
        if parent[last] is None:
            parent[last] = {}
        node = parent[last]
    return node if isinstance(node, dict) else None
