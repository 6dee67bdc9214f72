"""Kong's ``kong.conf`` file, read as Kong's conf loader reads it, and ``fastkong check``.

Kong reads the file with Penlight's ``pl.config.read`` (``smart = false``; names made into Lua
identifiers, values that read as numbers turned into numbers) and then strips each value's
trailing ``# comment``, unescaping ``\\#`` (``kong/conf_loader/init.lua``, ``load_config``).
Its precedence is a flag, then ``KONG_<NAME>``, then the file, then the default
(``conf_loader/parse.lua``, ``overrides``). fastkong reads every setting from the environment,
so :func:`apply_kong_conf` puts each file entry there as ``KONG_<NAME>`` unless the variable
is already set: the flags still win, the environment wins over the file, and every reader
(the supervisor, the workers, the stream processes, the plugins) sees the file's values.

Without ``--conf``, Kong reads ``/etc/kong/kong.conf`` or ``/etc/kong.conf``, the first one
present (``conf_loader/constants.lua``, ``DEFAULT_PATHS``). Kong has no variable naming the
file. fastkong's ``-c`` is the declarative config; a ``-c`` file that is not one but reads as a
kong.conf (:func:`is_kong_conf`) is taken as the ``--conf`` file, as a Kong user means it.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Iterator, MutableMapping
from typing import Final, NamedTuple

#: ``conf_loader/constants.lua``: where Kong looks for its file when none is given.
DEFAULT_PATHS: Final = ("/etc/kong/kong.conf", "/etc/kong.conf")
#: ``kong check``'s default (``kong/cmd/check.lua``): this one path, not the fallback.
CHECK_DEFAULT_PATH: Final = DEFAULT_PATHS[0]

#: Lua's ``tonumber`` on a string: decimal (fraction, exponent) or hexadecimal, surrounded
#: by optional whitespace. LuaJIT's number text is ``%.14g``.
_LUA_NUMBER: Final = re.compile(
    r"\s*[+-]?(?:0[xX][0-9a-fA-F]+|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)\s*",
    re.ASCII,
)
#: Kong's ``strip_comments``: from the first unescaped ``#`` (and the blanks before it) on.
_COMMENT: Final = re.compile(r"\s*(?<!\\)#.*$", re.ASCII)
#: What Kong's defaults name a setting: lowercase identifiers (``conf_loader/parse.lua`` looks
#: a file entry up by its exact name, so ``Proxy_Listen`` is not ``proxy_listen``).
_SETTING_NAME: Final = re.compile(r"[a-z0-9_]+")
#: For telling a kong.conf from a declarative config: the ``name = value`` line of a setting.
_ENTRY_LINE: Final = re.compile(r"[a-z0-9_]+\s*=")
#: Lua's ``%s``: what Penlight trims.
_BLANKS: Final = " \t\n\r\f\v"


class ConfEntry(NamedTuple):
    """One ``name = value`` line of a kong.conf, as Kong reads it (``line`` counts from 1)."""

    name: str
    value: str
    line: int


class KongConf(NamedTuple):
    """A kong.conf file read: its entries in file order (a later one for a name wins, as in
    Kong's table), the lines Kong reads no setting from (no ``=``, or a name that is not a
    setting's), and the entries :func:`apply_kong_conf` put in the environment."""

    path: str
    entries: tuple[ConfEntry, ...]
    ignored_lines: tuple[int, ...] = ()
    applied: tuple[str, ...] = ()

    def settings(self) -> dict[str, str]:
        """name -> value, the last entry for a name winning."""
        return {entry.name: entry.value for entry in self.entries}

    def __repr__(self) -> str:
        return f"<KongConf {self.path} entries={len(self.entries)} applied={len(self.applied)}>"


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """Penlight's ``config.lines``: blank lines and lines opening with ``#`` or ``;`` skipped, a
    line ending in ``\\`` continued by the next one; each with the number of its first line."""
    pending = ""
    first = 0
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip(_BLANKS) or line.lstrip(_BLANKS)[:1] in ("#", ";"):
            continue
        if re.search(r"\\\s*$", line, re.ASCII):
            first = first or number
            pending += line[: line.rindex("\\")]
        elif pending:
            yield first, pending + line
            pending, first = "", 0
        else:
            yield number, line
    # (a continuation on the last line is dropped, as Penlight drops it)


def _value(raw: str) -> str:
    """Penlight's ``process_value`` (a number turned into Lua's text for it, blanks trimmed),
    then Kong's ``strip_comments``."""
    value = raw
    if re.match(r"[0-9+-]", value):
        if not _LUA_NUMBER.fullmatch(value) and value.endswith(" kB"):
            value = value.replace(" kB", "")  # Penlight reads "64 kB" as 64
        if _LUA_NUMBER.fullmatch(value):
            number = float.fromhex(value) if "x" in value.lower() else float(value)
            value = f"{number:.14g}"  # LuaJIT's tostring: "08" is "8", "1.50" is "1.5"
    value = value.strip(_BLANKS)
    return _COMMENT.sub("", value, count=1).replace("\\#", "#")


def parse_kong_conf(text: str, path: str) -> KongConf:
    """The entries of a kong.conf's ``text``, read as Kong reads them.

    ValueError ``<path>:<line>: ...`` for a line Kong refuses: a ``[section]`` line (Penlight
    makes it a table, on which Kong's comment stripping fails).
    """
    entries: list[ConfEntry] = []
    ignored: list[int] = []
    for number, line in _lines(text):
        if line.startswith("["):
            raise ValueError(
                f"{path}:{number}: {line.strip()!r}: kong.conf has no sections; "
                "write name = value lines"
            )
        line = line.lstrip(_BLANKS)
        assign = re.search(r"\s*=\s*", line, re.ASCII)
        if assign is None:
            ignored.append(number)  # Penlight keeps it as a list item, which Kong never reads
            continue
        name = re.sub(r"[^0-9A-Za-z]", "_", line[: assign.start()])
        if not _SETTING_NAME.fullmatch(name):
            ignored.append(number)
            continue
        entries.append(ConfEntry(name, _value(line[assign.end() :]), number))
    return KongConf(path, tuple(entries), tuple(ignored))


def read_kong_conf(path: str) -> KongConf:
    """Read and parse the file at ``path``; ValueError in Kong's words when there is none."""
    if not os.path.exists(path):
        raise ValueError(f"no file at: {path}")
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as exc:
        raise ValueError(f"could not load config file: {path}: {exc.strerror or exc}") from None
    return parse_kong_conf(data.decode("utf-8", "surrogateescape"), path)


def is_kong_conf(path: str) -> bool:
    """Whether a ``-c`` file is a kong.conf rather than a declarative config: it is not a YAML
    or JSON mapping (a mapping is always a declarative config, valid or not), and it has at
    least one line and only lines of settings (``name = value``) and comments. An empty file
    or a broken YAML one is neither and keeps the declarative config's error."""
    from fastkong.config import ConfigError  # noqa: PLC0415 - heavy, and only -c needs it
    from fastkong.config.loader import parse  # noqa: PLC0415

    try:
        with open(path, "rb") as file:
            data = file.read()
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    lines = [line for _, line in _lines(text)]
    if not lines or not all(_ENTRY_LINE.match(line.lstrip()) for line in lines):
        return False  # (first: a declarative config is not parsed twice at start)
    try:
        return not isinstance(parse(data), dict)
    except ConfigError:
        return True


def apply_kong_conf(conf: KongConf, environ: MutableMapping[str, str]) -> KongConf:
    """Put each entry into ``environ`` as ``KONG_<NAME>`` unless ``KONG_<NAME>`` or
    ``FASTKONG_<NAME>`` has a value (an empty variable counts as unset, as fastkong reads
    them); the file, with the names it set."""
    applied = []
    for name, value in conf.settings().items():
        key = name.upper()
        if environ.get(f"KONG_{key}") or environ.get(f"FASTKONG_{key}"):
            continue
        environ[f"KONG_{key}"] = value
        applied.append(f"KONG_{key}")
    return conf._replace(applied=tuple(applied))


def load_start_conf(args: argparse.Namespace) -> KongConf | None:
    """The kong.conf ``fastkong start`` reads (``--conf``; else a ``-c`` file that is one,
    said on stderr; else Kong's default paths), applied to this process's environment; None
    without one. ValueError for a ``--conf`` that is not there or a line Kong refuses."""
    path = args.conf
    if path is None and args.config and is_kong_conf(args.config):
        print(
            f"fastkong: -c {args.config}: Kong settings (name = value), not a declarative "
            "config: read as --conf, and its declarative_config served",
            file=sys.stderr,
        )
        path, args.config = args.config, None
    if path is None:
        path = next((p for p in DEFAULT_PATHS if os.path.exists(p)), None)
    if path is None:
        return None
    return apply_kong_conf(read_kong_conf(path), os.environ)


def unread_in_file(conf: KongConf | None, unread: list[str]) -> str:
    """The "not implemented, ignored" list: the environment's names (``KONG_*``) as they are,
    the file's as its lines name them, and the file's lines Kong reads nothing from."""
    if conf is None:
        return ", ".join(unread)
    from_file = {f"KONG_{e.name.upper()}": e for e in conf.entries}
    named = [key for key in unread if key not in conf.applied]
    named += [f"{from_file[key].name} ({conf.path}:{from_file[key].line})"
              for key in unread if key in conf.applied]  # fmt: skip
    named += [f"{conf.path}:{line} (not a setting)" for line in conf.ignored_lines]
    return ", ".join(named)


def cmd_check(args: argparse.Namespace) -> int:
    """Kong's ``kong check <conf>``: the file and every setting read as ``fastkong start``
    reads them (:func:`fastkong.cli.read_settings`), nothing started. Kong's lines: the
    result on stdout, each error on stderr as ``<time> [error] <message>``."""
    from fastkong.cli import build_parser, read_settings  # noqa: PLC0415 - cli imports this

    start = build_parser().parse_args(["start", "--conf", args.conf])
    try:
        load_start_conf(start)
        read_settings(start)
    except ValueError as exc:
        stamp = time.strftime("%Y/%m/%d %H:%M:%S")
        for line in str(exc).splitlines():
            print(f"{stamp} [error] {line}", file=sys.stderr)
        return 1
    print(f"configuration at {args.conf} is valid")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``fastkong check [PATH]``."""
    check = sub.add_parser(
        "check",
        help="check a kong.conf and the settings fastkong start would read (kong check)",
        description="Check the validity of a given Kong configuration file: the file, the "
        "KONG_* environment and every setting are read as fastkong start reads them.",
    )
    check.add_argument(
        "conf",
        nargs="?",
        default=CHECK_DEFAULT_PATH,
        help=f"configuration file (default {CHECK_DEFAULT_PATH})",
    )
    check.set_defaults(func=cmd_check)
