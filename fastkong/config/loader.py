"""Load a declarative config (YAML or JSON) and hand the result to workers.

:func:`load_config` parses, validates and normalizes (see :mod:`.declarative`) and computes
Kong's configuration hash: the md5 of the raw input, or 32 zeros when the config holds no
entity (``kong:kong/db/declarative/import.lua``). :func:`dump_state`/:func:`load_state` move a
normalized config between processes as msgpack: the parent validates once, each worker only
decodes.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Final

import msgspec
import yaml

from fastkong._core._router_py import gc_paused
from fastkong.config import errors as E
from fastkong.config.declarative import build_config
from fastkong.config.errors import ConfigError, FieldError
from fastkong.config.schema import Config, LoadedConfig

EMPTY_CONFIG_HASH: Final = "0" * 32

_SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _LyamlLoader(_SAFE_LOADER):  # type: ignore[misc]
    """PyYAML's safe loader with the implicit types of lyaml, the YAML library Kong uses.

    lyaml has no timestamp and no ``=`` (value) type, so ``2024-01-01`` and ``=`` stay strings;
    and any number with an exponent is a float (``1e3``, ``1.5e3``; PyYAML wants a dot and a
    signed exponent).
    """


_DROPPED_TAGS: Final = ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value")
_LyamlLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in _DROPPED_TAGS]
    for first, resolvers in _SAFE_LOADER.yaml_implicit_resolvers.items()
}
_LyamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+.0123456789"),
)
_YAML_LOADER: Final = _LyamlLoader
_STATE_ENCODER: Final = msgspec.msgpack.Encoder()
_STATE_DECODER: Final = msgspec.msgpack.Decoder(Config)


def _parse_error(detail: str) -> ConfigError:
    return ConfigError([FieldError("", E.PARSE.format(detail))])


def _yaml_detail(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if problem and mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def parse(data: bytes, content_type: str | None = None) -> Any:
    """Decode a YAML or JSON document (JSON first when the type is unknown, as Kong does)."""
    kind = (content_type or "").lower()
    if "json" in kind or not any(t in kind for t in ("yaml", "yml")):
        try:
            return msgspec.json.decode(data)
        except msgspec.DecodeError as exc:
            if "json" in kind:
                raise _parse_error(str(exc)) from None
    try:
        return yaml.load(data, Loader=_YAML_LOADER)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise _parse_error(_yaml_detail(exc)) from None


def load_config(data: bytes | str, *, content_type: str | None = None) -> LoadedConfig:
    """Parse, validate and normalize a Kong declarative config.

    Parameters
    ----------
    data:
        The document, YAML or JSON (``str`` is encoded as UTF-8).
    content_type:
        A media type naming the format (``application/json``, ``application/yaml``...);
        ``None`` tries JSON, then YAML.

    Raises :class:`ConfigError` with every error found, each with its path.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    # A 10,000-route document is millions of young objects: the collections they would trigger
    # scan all of them (about a quarter of the load's time) and find no garbage.
    with gc_paused():
        doc = parse(raw, content_type)
        if not isinstance(doc, dict):
            raise ConfigError([FieldError("", E.PARSE.format(E.EXPECTED_OBJECT))], document=doc)
        config = build_config(doc)
    digest = EMPTY_CONFIG_HASH if config.is_empty() else hashlib.md5(raw).hexdigest()
    return LoadedConfig(config=config, hash=digest)


def dump_state(config: Config) -> bytes:
    """The normalized config as msgpack, for :func:`load_state` in another process."""
    return _STATE_ENCODER.encode(config)


def load_state(data: bytes) -> Config:
    """The inverse of :func:`dump_state` (a decode; the config was validated when loaded)."""
    return _STATE_DECODER.decode(data)
