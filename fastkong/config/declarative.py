"""Declarative document -> normalized :class:`~fastkong.config.schema.Config`.

The steps follow Kong's ``flatten`` (``kong:kong/db/schema/others/declarative_config.lua``):

1. visit every entity, top-level and nested (``services[].routes[]``...), in document order;
   check its fields (:mod:`fastkong.config.entities`) and give it its id (:mod:`.ids`), the
   parent's id first, so a nested entity can mix it into its own;
2. resolve top-level references (a name or an id) to ids;
3. check uniqueness: ids, endpoint keys (names), unique fields, one entity per cache key;
4. if anything failed, raise :class:`ConfigError` with *every* error, sorted in document order;
   otherwise build the Structs.

Unlike Kong, which stops after the first phase that fails, all phases run, so one pass reports
field errors, dangling references and duplicates together.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final

from fastkong.config import errors as E
from fastkong.config import ids, vault
from fastkong.config.checks import is_uuid
from fastkong.config.entities import PROCESSORS, Ctx
from fastkong.config.errors import ConfigError, FieldError, format_path
from fastkong.config.meta import (
    CHILDREN,
    ENTITIES,
    EXTRA_ENTITY_KEYS,
    FORMAT_VERSIONS,
    META_KEYS,
    EntityMeta,
    Loc,
)
from fastkong.config.schema import ENTITY_STRUCTS, Base, Config
from fastkong.config.validate import Issues, convert

_LAST: Final = 1 << 30
_STAND_IN_ID: Final = "00000000-0000-0000-0000-000000000000"
_CHILDREN: Final = {parent: dict(children) for parent, children in CHILDREN.items()}


@dataclass(slots=True, repr=False)
class Record:
    """One entity of the document, as visited."""

    meta: EntityMeta
    loc: Loc
    #: The entity's own fields as written (no nested children, no parent key): the id seed.
    fields: dict[str, Any]
    data: dict[str, Any] | None
    bad: set[str]
    parent: Record | None
    parent_fk: str | None
    id: str | None = None
    generated: bool = False
    children: list[Record] = field(default_factory=list)
    #: A nested entity's own value for the foreign key to its parent (the parent wins).
    named_parent: Any = None

    def __repr__(self) -> str:
        return f"<Record {format_path(self.loc)} id={self.id}>"

    def usable(self, name: str) -> bool:
        return self.data is not None and name in self.data and name not in self.bad


class _Builder:
    def __init__(self, doc: dict[Any, Any]) -> None:
        self.doc = doc
        self.issues = Issues()
        self.records: list[Record] = []
        self.format_version: str | None = None

    # -- 1. visit ----------------------------------------------------------------------------
    def visit_document(self) -> None:
        doc = self.doc
        self._check_meta()
        migrate = self.format_version in ("1.1", "2.1")
        for key, value in doc.items():
            name = key if isinstance(key, str) else str(key)
            if name in META_KEYS:
                continue
            if name not in ENTITIES:
                self.issues.field((name,), E.UNKNOWN)
            elif value is None or value == {}:  # Lua's one empty table: an empty array
                continue
            elif not isinstance(value, list):
                self.issues.field((name,), E.ARRAY)
            else:
                for i, item in enumerate(value):
                    self.visit(name, item, (name, i), None, None, migrate)

    def _check_meta(self) -> None:
        doc, issues = self.doc, self.issues
        version = doc.get("_format_version")
        if version is None:
            issues.field(("_format_version",), E.REQUIRED)
        elif not isinstance(version, str):
            issues.field(("_format_version",), E.STRING)
        elif version not in FORMAT_VERSIONS:
            issues.field(("_format_version",), E.ONE_OF.format(", ".join(FORMAT_VERSIONS)))
        else:
            self.format_version = version
        if doc.get("_transform") is not None and not isinstance(doc["_transform"], bool):
            issues.field(("_transform",), E.BOOLEAN)
        self._check_extras(doc, ())

    def _check_extras(self, item: dict[Any, Any], loc: Loc) -> None:
        comment, ignore = item.get("_comment"), item.get("_ignore")
        if comment is not None and not isinstance(comment, str):
            self.issues.field((*loc, "_comment"), E.STRING)
        if ignore is not None and not isinstance(ignore, list) and ignore != {}:
            self.issues.field((*loc, "_ignore"), E.ARRAY)

    def visit(
        self,
        plural: str,
        item: Any,
        loc: Loc,
        parent: Record | None,
        parent_fk: str | None,
        migrate: bool,
    ) -> None:
        meta = ENTITIES[plural]
        if plural == "snis" and parent is not None and isinstance(item, str):
            item = {"name": item}  # `certificates[].snis` may list plain names
        if not isinstance(item, dict):
            # Kong's array elements are required: a null one is missing, not a bad record
            self.issues.field(loc, E.REQUIRED if item is None else E.RECORD)
            return
        fields = {(k if isinstance(k, str) else str(k)): v for k, v in item.items()}
        nested: list[tuple[str, str, list[Any]]] = []
        children = _CHILDREN.get(plural, {})
        for child in [k for k in fields if k in children]:  # in document order
            value = fields.pop(child)
            if isinstance(value, list):
                nested.append((child, children[child], value))
            elif value == {}:  # Lua's one empty table: an empty array
                continue
            elif value is not None:
                self.issues.field((*loc, child), E.ARRAY)
        self._check_extras(fields, loc)
        for extra in EXTRA_ENTITY_KEYS:
            fields.pop(extra, None)
        own = dict(fields)
        named = own.pop(parent_fk, None) if parent is not None and parent_fk else None
        refused = self._foreign_records(own, meta, parent_fk, loc)
        optional = {"id", parent_fk} if parent_fk else {"id"}
        ctx = Ctx(frozenset(optional), parent_fk, migrate and plural == "routes")
        walked = PROCESSORS[plural](own, loc, self.issues, ctx)
        if walked is not None:
            walked.bad |= refused
        record = Record(
            meta,
            loc,
            fields,
            walked.data if walked is not None else None,
            walked.bad if walked is not None else set(),
            parent,
            parent_fk,
        )
        record.named_parent = named
        self._assign_id(record)
        self.records.append(record)
        if parent is not None:
            parent.children.append(record)
        for child, fk, items in nested:
            for i, child_item in enumerate(items):
                child_migrate = migrate and plural == "services"
                self.visit(child, child_item, (*loc, child, i), record, fk, child_migrate)

    def _foreign_records(
        self, own: dict[str, Any], meta: EntityMeta, parent_fk: str | None, loc: Loc
    ) -> set[str]:
        """A foreign key may be written as a record: Kong's ``{id: <uuid>}``, or the referenced
        entity itself (``client_certificate: {cert: ..., key: ...}``).

        Kong types a top-level foreign key as a name or id first and, when that fails,
        validates the entity again with the key's real type (``declarative_config.lua``
        ``flatten``), the ``foreign`` branch of ``Schema:validate_field``: a record whose
        primary key is valid stands for that id (its other fields are not looked at); else the
        record is checked as a partial entity of the referenced kind, whose errors are reported
        when it has any, the primary key's otherwise (``id: missing primary key``). An invalid
        record gets a stand-in id, so the walk does not also call it "expected a string" (the
        returned names are then bad).
        """
        refused: set[str] = set()
        for fk, target in meta.foreign.items():
            value = own.get(fk)
            if fk == parent_fk or not isinstance(value, dict):
                continue
            key = value.get("id")
            if isinstance(key, str) and is_uuid(key):
                own[fk] = key
                continue
            where = (*loc, fk)
            entity_errors = self._partial_entity_errors(value, target, where)
            if entity_errors:
                self.issues.errors.extend(entity_errors)
            elif "id" not in value:
                self.issues.field((*where, "id"), E.MISSING_PK)
            else:
                wrong = E.REQUIRED if key is None else E.UUID if isinstance(key, str) else E.STRING
                self.issues.field((*where, "id"), wrong)
            refused.add(fk)
            own[fk] = _STAND_IN_ID
        return refused

    @staticmethod
    def _partial_entity_errors(value: dict[str, Any], plural: str, loc: Loc) -> list[FieldError]:
        """``Schema:validate(value, false)``: ``value`` checked as an entity of ``plural``
        with no field required."""
        scratch = Issues()
        every_field = frozenset(ENTITY_STRUCTS[plural].__struct_fields__)
        PROCESSORS[plural](dict(value), loc, scratch, Ctx(every_field))
        return scratch.errors

    def _assign_id(self, record: Record) -> None:
        if record.fields.get("id") is not None:
            value = record.fields["id"]
            record.id = value if is_uuid(value) else None
            return
        parent = record.parent
        record.id = ids.entity_id(
            record.meta,
            record.fields,
            record.loc,
            record.parent_fk,
            parent.id if parent is not None else None,
        )
        record.generated = True

    # -- 2. references -------------------------------------------------------------------------
    def resolve(self) -> None:
        by_key: dict[str, dict[str, Record]] = {p: {} for p in ENTITIES}
        by_id: dict[str, dict[str, Record]] = {p: {} for p in ENTITIES}
        for rec in self.records:
            key = rec.meta.endpoint_key
            value = rec.fields.get(key) if key and rec.meta.endpoint_unique else None
            if isinstance(value, str):
                by_key[rec.meta.plural].setdefault(value, rec)
            if rec.id is not None:
                by_id[rec.meta.plural].setdefault(rec.id, rec)
        for rec in self.records:
            if rec.named_parent is not None and rec.parent is not None and rec.parent_fk:
                self._check_named_parent(rec, by_key, by_id)
            if rec.data is None:
                continue
            for fk, target in rec.meta.foreign.items():
                if fk == rec.parent_fk and rec.parent is not None:
                    rec.data[fk] = rec.parent.id
                    continue
                value = rec.data.get(fk)
                if value is None or not rec.usable(fk):
                    continue
                found = by_key[target].get(value) or by_id[target].get(value)
                if found is None:
                    written = rec.fields.get(fk)
                    if isinstance(written, dict):  # Kong shows a foreign record as JSON
                        value = json.dumps(written, separators=(",", ":"))
                    message = E.INVALID_REFERENCE.format(fk, value, target)
                    if rec.parent is not None:
                        # Kong's nested records take their other foreign keys as null-only;
                        # its second pass accepts one naming an entity, and a miss keeps
                        # the first pass's "value must be null" (declarative_config.lua
                        # copy_record, flatten).
                        message = E.EQ_NULL
                    self.issues.field((*rec.loc, fk), message)
                    rec.bad.add(fk)
                else:
                    rec.data[fk] = found.id

    def _check_named_parent(
        self, rec: Record, by_key: dict[str, dict[str, Record]], by_id: dict[str, dict[str, Record]]
    ) -> None:
        """A nested entity may name a parent; Kong then uses the enclosing one anyway.

        Kong validates nested entities a second time with their references resolved
        (``populate_ids_for_validation``): a value naming any existing entity of the parent's
        type, or an ``{id = <uuid>}`` record, passes, and flattening then sets the enclosing
        parent. Anything else keeps the first pass's "value must be null", except a record
        whose id names no entity: that one fails Kong's reference check.
        """
        assert rec.parent is not None and rec.parent_fk is not None
        value, target = rec.named_parent, rec.parent.meta.plural
        loc = (*rec.loc, rec.parent_fk)
        if isinstance(value, str):
            if not (_names(rec.parent, value) or value in by_key[target] or value in by_id[target]):
                self.issues.field(loc, E.EQ_NULL)
        elif not (isinstance(value, dict) and is_uuid(value.get("id"))):
            self.issues.field(loc, E.EQ_NULL)
        elif value["id"] != rec.parent.id and value["id"] not in by_id[target]:
            shown = json.dumps(value, separators=(",", ":"))
            self.issues.field(loc, E.INVALID_REFERENCE.format(rec.parent_fk, shown, target))

    # -- 3. uniqueness ---------------------------------------------------------------------------
    def check_unique(self) -> None:
        seen: dict[tuple[str, str], dict[Any, Record]] = {}

        def first(plural: str, what: str, value: Any, rec: Record) -> bool:
            table = seen.setdefault((plural, what), {})
            if value in table:
                return False
            table[value] = rec
            return True

        for rec in self.records:
            meta, plural = rec.meta, rec.meta.plural
            failed = False
            key = meta.endpoint_key
            if key and meta.endpoint_unique and rec.usable(key):
                assert rec.data is not None
                value = rec.data[key]
                if value is not None and not first(plural, key, value, rec):
                    self.issues.entity(rec.loc, E.UNIQUENESS.format(plural, key, value))
                    failed = True
            if rec.id is not None and not failed and not first(plural, "id", rec.id, rec):
                self.issues.entity(rec.loc, E.UNIQUENESS.format(plural, "primary key", rec.id))
                failed = True
            for name in meta.unique:
                value = rec.data.get(name) if rec.usable(name) and rec.data else None
                if value is not None and not first(plural, name, value, rec):
                    # Kong finds these once the config is flattened: keyed by endpoint key or id
                    named = rec.data.get(key) if key and rec.data else None
                    self.issues.entity(
                        rec.loc, E.UNIQUENESS.format(plural, name, value), str(named or rec.id)
                    )
            if meta.foreign and meta.cache_key and not failed and rec.data is not None:
                if not all(k not in rec.bad for k in meta.cache_key):
                    continue
                parts = [rec.data.get(k) for k in meta.cache_key]
                scope = ":".join([plural, *("" if p is None else str(p) for p in parts)])
                if not first(plural, "cache_key", scope, rec):
                    self.issues.entity(rec.loc, E.UNIQUENESS.format(plural, "cache_key", scope))

    # -- 4. result ---------------------------------------------------------------------------
    def error(self) -> ConfigError:
        doc = self.doc
        errors = sorted(self.issues.errors, key=lambda e: _order(doc, e))
        generated = {rec.loc: rec.id for rec in self.records if rec.generated and rec.id}
        return ConfigError(errors, document=doc, ids=generated)

    def build(self) -> Config:
        lists: dict[str, list[Base]] = {name: [] for name in ENTITY_STRUCTS}
        for rec in self.records:
            assert rec.data is not None
            data = {**rec.data, "id": rec.id}
            struct = convert(data, ENTITY_STRUCTS[rec.meta.plural], rec.loc, self.issues)
            lists[rec.meta.plural].append(struct)
        if self.issues.errors:
            raise self.error()
        transform = self.doc.get("_transform")
        return Config(
            format_version=str(self.format_version),
            transform=True if transform is None else bool(transform),
            **lists,  # type: ignore[arg-type]
        )


def _names(parent: Record, value: Any) -> bool:
    """Whether a nested entity's foreign key ``value`` names the parent it is nested in."""
    if value == parent.id:
        return True
    key = parent.meta.endpoint_key
    return key is not None and value == parent.fields.get(key)


def _order(doc: Any, err: FieldError) -> tuple[int, ...]:
    """Sort key: the error's position in the document (missing fields after present ones)."""
    out: list[int] = []
    node = doc
    for part in err.loc:
        if isinstance(node, dict):
            keys = list(node)
            out.append(keys.index(part) if part in node else len(keys))
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int):
            out.append(part)
            node = node[part] if 0 <= part < len(node) else None
        else:
            out.append(_LAST)
            node = None
    if err.entity:
        out.append(_LAST)
    return tuple(out)


def build_config(doc: Any) -> Config:
    """Validate and normalize a parsed declarative document; raises :class:`ConfigError`."""
    if not isinstance(doc, dict):
        message = E.PARSE.format(E.EXPECTED_OBJECT)
        raise ConfigError([FieldError("", message)], document=doc)
    builder = _Builder(doc)
    # Secret references may name the document's own vault prefixes, wherever those stand.
    vaults = doc.get("vaults")
    named = vault.vaults_by_prefix(vaults if isinstance(vaults, list) else ())
    with vault.named_vaults(named):
        builder.visit_document()
    builder.resolve()
    builder.check_unique()
    if builder.issues.errors:
        raise builder.error()
    return builder.build()
