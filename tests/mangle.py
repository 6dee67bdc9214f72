"""Mangled documents for hypothesis tests: JSON-like values changed where they could break.

Up to three places of a copy of a valid document change: a field dropped, a list item
repeated, a value put in from ``odd`` (wrong types as well as odd values of the right one), or
one that another document holds under the same field name (``borrow``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any

from hypothesis import strategies as st

Path = tuple[Any, ...]


def spots(node: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Every place below ``node`` (keys and indexes from it) and its value."""
    if path:
        yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from spots(value, (*path, key))
    elif isinstance(node, list):
        for at, value in enumerate(node):
            yield from spots(value, (*path, at))


def by_name(docs: list[Any]) -> dict[str, list[Any]]:
    """Every value the documents hold, by the field name it is under."""
    found: dict[str, list[Any]] = {}
    for doc in docs:
        for path, value in spots(doc):
            if isinstance(path[-1], str):
                found.setdefault(path[-1], []).append(value)
    return found


def mangle(
    draw: st.DrawFn,
    doc: Any,
    odd: st.SearchStrategy[Any],
    *,
    borrow: Mapping[str, list[Any]] | None = None,
    depth: int = 1,
    keep: frozenset[Path] = frozenset(),
) -> Any:
    """A copy of ``doc`` changed in one to three places at least ``depth`` deep (not in
    ``keep``)."""
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, 3))):
        places = [path for path, _ in spots(doc) if len(path) >= depth and path not in keep]
        if not places:
            break
        path = draw(st.sampled_from(places))
        parent: Any = doc
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        how = draw(st.sampled_from(["drop", "odd", "borrow", "repeat"]))
        if how == "drop" and isinstance(parent, dict):
            del parent[key]
        elif how == "repeat" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
        elif how == "borrow" and borrow and isinstance(key, str) and key in borrow:
            parent[key] = copy.deepcopy(draw(st.sampled_from(borrow[key])))
        else:
            # (a copy: ``st.just`` gives the same object every time, which put into a document
            # and then changed there could come to hold itself)
            parent[key] = copy.deepcopy(draw(odd))
    return doc
