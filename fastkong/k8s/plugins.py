"""KongPlugin and KongClusterPlugin -> Kong plugin records.

A KongPlugin is a plugin *template*: the ``konghq.com/plugins`` annotation on an Ingress,
Service or KongConsumer attaches it, and each attachment becomes one Kong plugin (KIC's
``buildPlugins``). A KongClusterPlugin labelled ``global: "true"`` is a global plugin. The
plugin's ``config`` is checked later, by the config layer; here we only decide whether the
plugin name exists at all and build the record.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any, Final

import yaml

from fastkong.k8s import objects as o
from fastkong.k8s.objects import Index, Obj, ObjectRef, Problem
from fastkong.plugins.registry import KONG_BUNDLED_PLUGINS, lookup

GLOBAL_LABEL: Final = "global"


def is_known_plugin(plugin: str) -> bool:
    return plugin in KONG_BUNDLED_PLUGINS or lookup(plugin) is not None


class PluginError(ValueError):
    """A KongPlugin/KongClusterPlugin that cannot become a Kong plugin."""


def build_plugin(obj: Obj, index: Index) -> tuple[dict[str, Any], list[str]]:
    """The Kong plugin record for a KongPlugin/KongClusterPlugin (without its scope), and the
    warnings about fields that were dropped. Raises :class:`PluginError`."""
    plugin = obj.get("plugin")
    if not isinstance(plugin, str) or not plugin:
        raise PluginError("field 'plugin' is missing")
    if not is_known_plugin(plugin):
        raise PluginError(f"unknown plugin {plugin!r}")
    config = _config(obj, index)
    record: dict[str, Any] = {"name": plugin}
    if obj.get("instance_name"):
        record["instance_name"] = str(obj["instance_name"])
    record["config"] = _sorted(config)
    if obj.get("disabled") is True:
        record["enabled"] = False
    protocols = obj.get("protocols")
    if isinstance(protocols, list) and protocols:
        record["protocols"] = [str(p) for p in protocols]
    record["tags"] = o.tags(obj)
    warnings = []
    for field in ("ordering", "run_on"):
        if obj.get(field):
            warnings.append(f"field {field!r} ignored: not supported by Kong OSS")
    return record, warnings


def _config(obj: Obj, index: Index) -> dict[str, Any]:
    config = obj.get("config")
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        raise PluginError("field 'config' must be an object")
    config = copy.deepcopy(dict(config))
    config_from = obj.get("configFrom")
    cluster = obj.get("kind") == "KongClusterPlugin"
    if config_from:
        if config:
            raise PluginError("'config' and 'configFrom' are both set")
        ref = _secret_ref(config_from, "configFrom", cluster, o.namespace(obj))
        value = _parse_value(_secret_value(index, *ref), ref)
        if not isinstance(value, dict):
            raise PluginError(f"secret {ref[0]}/{ref[1]} key {ref[2]!r} is not an object")
        config = value
    patches = obj.get("configPatches") or []
    if not isinstance(patches, list):
        raise PluginError("field 'configPatches' must be a list")
    for i, patch in enumerate(patches):
        if not isinstance(patch, Mapping) or not isinstance(patch.get("path"), str):
            raise PluginError(f"configPatches[{i}]: 'path' is missing")
        where = f"configPatches[{i}].valueFrom"
        ref = _secret_ref(patch.get("valueFrom"), where, cluster, o.namespace(obj))
        value = _parse_value(_secret_value(index, *ref), ref)
        config = _json_patch_add(config, patch["path"], value)
    return config


def secret_refs(obj: Obj) -> set[tuple[str, str]]:
    """The Secrets (namespace, name) a plugin's ``configFrom`` and ``configPatches`` read."""
    cluster = obj.get("kind") == "KongClusterPlugin"
    sources = [obj.get("configFrom")]
    patches = obj.get("configPatches")
    if isinstance(patches, list):
        sources += [p.get("valueFrom") for p in patches if isinstance(p, Mapping)]
    found = set()
    for source in sources:
        try:
            ns, name, _ = _secret_ref(source, "", cluster, o.namespace(obj))
        except PluginError:
            continue
        found.add((ns, name))
    return found


def _secret_ref(source: Any, where: str, cluster: bool, ns: str) -> tuple[str, str, str]:
    ref = source.get("secretKeyRef") if isinstance(source, Mapping) else None
    if not isinstance(ref, Mapping) or not ref.get("name") or not ref.get("key"):
        raise PluginError(f"{where}.secretKeyRef needs 'name' and 'key'")
    if cluster:
        if not ref.get("namespace"):
            raise PluginError(f"{where}.secretKeyRef needs 'namespace' on a KongClusterPlugin")
        ns = str(ref["namespace"])
    return ns, str(ref["name"]), str(ref["key"])


def _secret_value(index: Index, ns: str, name: str, key: str) -> str:
    secret = index.get("Secret", ns, name)
    if secret is None:
        raise PluginError(f"secret {ns}/{name} not found")
    try:
        data = o.secret_data(secret)
    except ValueError as exc:
        raise PluginError(f"secret {ns}/{name}: {exc}") from None
    if key not in data:
        raise PluginError(f"secret {ns}/{name} has no key {key!r}")
    return data[key]


def _parse_value(text: str, ref: tuple[str, str, str]) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise PluginError(
            f"secret {ref[0]}/{ref[1]} key {ref[2]!r} is neither JSON nor YAML"
        ) from None


def _json_patch_add(doc: Any, path: str, value: Any) -> dict[str, Any]:
    """RFC 6902 ``add``, creating missing parent objects (KIC's ``EnsurePathExistsOnAdd``)."""
    if path == "":
        if not isinstance(value, dict):
            raise PluginError("a configPatch on the root must be an object")
        return value
    if not path.startswith("/"):
        raise PluginError(f"configPatch path {path!r} must start with /")
    parts = [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]
    node = doc
    for part in parts[:-1]:
        if isinstance(node, list):
            node = node[_list_index(node, part, existing=True)]
        else:
            node = node.setdefault(part, {})
        if not isinstance(node, (dict, list)):
            raise PluginError(f"configPatch path {path!r} goes through a scalar")
    last = parts[-1]
    if isinstance(node, list):
        node.insert(_list_index(node, last, existing=False), value)
    else:
        node[last] = value
    return dict(doc)


def _list_index(node: list[Any], part: str, *, existing: bool) -> int:
    if part == "-" and not existing:
        return len(node)
    if not part.isdigit() or int(part) > len(node) - (1 if existing else 0):
        raise PluginError(f"configPatch index {part!r} is out of range")
    return int(part)


def _sorted(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _sorted(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def resolve(
    index: Index, ns: str, plugin: str, ingress_class_ok: Any
) -> tuple[Obj | None, str | None]:
    """The KongPlugin ``ns/plugin``, else the KongClusterPlugin ``plugin`` of our class (KIC's
    ``getKongPluginOrKongClusterPlugin``); or None and why."""
    if ":" in plugin:
        return None, (
            f"plugin reference {plugin!r} names another namespace: needs a ReferenceGrant, "
            "which fastkong does not support yet"
        )
    found = index.get("KongPlugin", ns, plugin)
    if found is not None:
        return found, None
    cluster = index.get("KongClusterPlugin", "", plugin)
    if cluster is not None and ingress_class_ok(cluster):
        return cluster, None
    return None, f"no KongPlugin {ns}/{plugin} or KongClusterPlugin {plugin} found"


def global_plugins(
    index: Index, ingress_class_ok: Any, problems: list[Problem]
) -> list[tuple[ObjectRef, dict[str, Any]]]:
    """KongClusterPlugins labelled ``global: "true"``: one Kong global plugin per plugin name.

    KIC drops *every* global plugin of a name given twice; we keep the oldest (then the first by
    name) and report the others, since Kong allows one global instance per plugin name.
    """
    out: list[tuple[ObjectRef, dict[str, Any]]] = []
    seen: dict[str, ObjectRef] = {}
    for obj in sorted(index.all("KongPlugin"), key=lambda x: (o.namespace(x), o.name(x))):
        if o.labels(obj).get(GLOBAL_LABEL) == "true":
            problems.append(
                Problem(
                    ObjectRef.of(obj),
                    'label global="true" is only honoured on a KongClusterPlugin; ignored',
                    "warning",
                )
            )
    candidates = [
        c
        for c in index.all("KongClusterPlugin")
        if o.labels(c).get(GLOBAL_LABEL) == "true" and ingress_class_ok(c)
    ]
    for obj in sorted(candidates, key=lambda c: (o.created(c), o.name(c))):
        ref = ObjectRef.of(obj)
        try:
            record, warnings = build_plugin(obj, index)
        except PluginError as exc:
            problems.append(Problem(ref, str(exc)))
            continue
        problems.extend(Problem(ref, w, "warning") for w in warnings)
        if record["name"] in seen:
            problems.append(
                Problem(
                    ref,
                    f"a global {record['name']!r} plugin is already defined by "
                    f"{seen[record['name']]}; left out",
                )
            )
            continue
        seen[record["name"]] = ref
        out.append((ref, record))
    return out
