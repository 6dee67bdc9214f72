"""``fastkong k8s translate``: Kubernetes manifests -> a Kong declarative config, offline.

Reads files and directories (``*.yaml``, ``*.yml``, ``*.json``; ``-`` for stdin), multi-document
YAML and ``List`` kinds; writes the declarative YAML to stdout or ``-o``; prints each problem
to stderr. Exits 1 only when nothing could be read.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import yaml

from fastkong.k8s.gatewayapi import DEFAULT_CONTROLLER
from fastkong.k8s.translator import DEFAULT_INGRESS_CLASS, translate

SUFFIXES = (".yaml", ".yml", ".json")


def add_parser(subparsers: Any) -> None:
    """Register ``k8s translate`` on the ``fastkong`` command's subparsers."""
    k8s = subparsers.add_parser("k8s", help="Kubernetes: translate manifests into a kong.yml")
    k8s_sub = k8s.add_subparsers(dest="k8s_command", required=True)
    tr = k8s_sub.add_parser(
        "translate",
        help="translate Ingress/Gateway API/Service/EndpointSlice/Secret/Kong CRD manifests "
        "into a kong.yml",
    )
    tr.add_argument(
        "-f",
        "--filename",
        action="append",
        required=True,
        metavar="PATH",
        help="a manifest file or a directory of them (repeatable; - for stdin)",
    )
    tr.add_argument("-o", "--output", metavar="FILE", help="write the config here (default stdout)")
    tr.add_argument(
        "--ingress-class",
        action="append",
        metavar="NAME",
        help=f"ingress class to translate (repeatable; default {DEFAULT_INGRESS_CLASS})",
    )
    tr.add_argument(
        "--gateway-controller-name",
        default=DEFAULT_CONTROLLER,
        metavar="NAME",
        help="Gateway API: translate the HTTPRoutes of GatewayClasses with this "
        f"spec.controllerName (default {DEFAULT_CONTROLLER}; "
        "KIC's: konghq.com/kic-gateway-controller)",
    )
    tr.add_argument(
        "--combined-services-from-different-httproutes",
        action="store_true",
        help="Gateway API: rules with the same backends in HTTPRoutes of one namespace share a "
        "Kong service (KIC's flag, off by default)",
    )
    tr.add_argument(
        "--no-validate",
        action="store_true",
        help="do not check the result with the config layer (keep entities that would not load)",
    )
    tr.set_defaults(func=cmd_translate)


def cmd_translate(args: argparse.Namespace, *, stdin: TextIO | None = None) -> int:
    objects: list[dict[str, Any]] = []
    read = 0
    for path in args.filename:
        for source, text in _sources(path, stdin or sys.stdin):
            if text is None:
                continue
            try:
                docs = list(yaml.safe_load_all(text))
            except yaml.YAMLError as exc:
                print(f"{source}: not YAML: {exc}", file=sys.stderr)
                continue
            read += 1
            for doc in docs:
                objects.extend(_flatten(doc))
    if not read:
        print("fastkong k8s translate: nothing could be read", file=sys.stderr)
        return 1
    result = translate(
        objects,
        ingress_class=args.ingress_class or DEFAULT_INGRESS_CLASS,
        validate=not args.no_validate,
        gateway_controller=args.gateway_controller_name,
        combined_services=args.combined_services_from_different_httproutes,
    )
    for problem in result.problems:
        print(problem, file=sys.stderr)
    text = result.to_yaml()
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def _sources(path: str, stdin: TextIO) -> Iterator[tuple[str, str | None]]:
    """``(name, text)`` per file under ``path``; text None (and a message) when unreadable."""
    if path == "-":
        yield "<stdin>", stdin.read()
        return
    p = Path(path)
    files = (
        sorted(f for f in p.rglob("*") if f.suffix in SUFFIXES and f.is_file())
        if p.is_dir()
        else [p]
    )
    if p.is_dir() and not files:
        print(f"{path}: no {'/'.join(SUFFIXES)} files", file=sys.stderr)
    for f in files:
        try:
            yield str(f), f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            print(f"{f}: {exc}", file=sys.stderr)
            yield str(f), None


def _flatten(doc: Any) -> Iterator[dict[str, Any]]:
    """A document's objects: itself, or the items of a ``List`` / ``*List`` kind."""
    if not isinstance(doc, dict):
        return
    kind = str(doc.get("kind", ""))
    if kind.endswith("List") and isinstance(doc.get("items"), list):
        for item in doc["items"]:
            yield from _flatten(item)
    else:
        yield doc


def main(argv: list[str] | None = None) -> int:
    """Run ``k8s ...`` as its own command (until it is wired into ``fastkong``)."""
    parser = argparse.ArgumentParser(prog="fastkong")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
