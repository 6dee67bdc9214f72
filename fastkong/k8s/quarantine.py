"""An object the translator fails on is left out, not the whole config.

The API server checks built-in kinds, and CRDs that carry their schema, before the controller
sees them, so the translator reads well-formed objects. A CRD installed without its schema, an
older CRD version or a bug in the translator can still make one object raise. Without this
module that object would stop every translation, and with it every later change, until someone
fixed it: the failure Kong's controller is known for, where one bad object blocks all config
(kong.md section 8).

When a translation raises, an object the failure needs is found by bisection over the object
list: translating ``objects[k:]`` raises for ``k = 0`` and not for ``k = n`` (nothing to
translate), so the smallest ``k`` for which it does not, less one, is such an object. Objects
others refer to (Services, Gateways, classes) are put last, so that a failure needing both
blames the referring one. It is left
out with a problem naming the exception, and the rest is translated again, as often as another
object raises. Each costs about log2(n) translations, paid only when something raised; the
exception is logged with its traceback once, as it may be a bug to report.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

from fastkong.k8s.objects import ObjectRef, Problem

if TYPE_CHECKING:
    from fastkong.k8s.translator import TranslationResult

log = logging.getLogger("fastkong.k8s")

#: Objects left out of one translation before giving up: past this, the fault is likely not in
#: the objects, and the exception goes to the caller (which keeps its last config).
MAX_LEFT_OUT = 32

#: Kinds other objects refer to, by how widely: the bisection keeps them to the last, so that a
#: failure needing both an HTTPRoute and its Gateway blames the route, not every route of the
#: Gateway. (One that fails alone is still found, as the last tails hold it alone.)
_CONTEXT_RANK: Final = {
    "Service": 1,
    "EndpointSlice": 1,
    "Secret": 1,
    "ConfigMap": 1,
    "ReferenceGrant": 1,
    "KongUpstreamPolicy": 1,
    "KongIngress": 1,
    "Gateway": 2,
    "GatewayClass": 3,
    "IngressClass": 3,
    "IngressClassParameters": 3,
}

Translate = Callable[[list[Mapping[str, Any]]], "TranslationResult"]


def translate_isolating(
    translate: Translate, objects: list[Mapping[str, Any]]
) -> TranslationResult:
    """``translate(objects)``, leaving out each object it raises on (see the module docstring)."""
    try:
        return translate(objects)
    except Exception as first:
        log.exception("translation failed; finding the objects it fails on")
        failed = first
    try:
        translate([])
    except Exception:
        raise failed from None  # it fails on nothing: not the objects' doing
    kept = sorted(objects, key=_context_rank)  # (the translation ignores the order)
    left_out: list[Problem] = []
    while kept and len(left_out) < MAX_LEFT_OUT:
        at, exc = _culprit(translate, kept, failed)
        bad = kept.pop(at)
        ref = ObjectRef.of(bad) if isinstance(bad, Mapping) else ObjectRef("", "", repr(bad)[:60])
        reason = f"left out: the translator failed on it ({type(exc).__name__}: {exc})"
        log.error("%s: %s", ref, reason)
        left_out.append(Problem(ref, reason))
        try:
            result = translate(kept)
        except Exception as exc:
            failed = exc
            continue
        return dataclasses.replace(
            result,
            problems=sorted(set(result.problems) | set(left_out)),
            left_out=frozenset(p.ref for p in left_out),
        )
    # So many objects fail that they are unlikely to be the cause (or none is left).
    raise failed


def _context_rank(obj: Mapping[str, Any]) -> int:
    kind = obj.get("kind") if isinstance(obj, Mapping) else None
    return _CONTEXT_RANK.get(kind, 0) if isinstance(kind, str) else 0


def _culprit(
    translate: Translate, objects: list[Mapping[str, Any]], failed: Exception
) -> tuple[int, Exception]:
    """The index of an object the failure of ``translate(objects)`` (which raised ``failed``)
    needs, and the exception of the shortest failing tail."""
    failing, passing = 0, len(objects)  # translate(objects[failing:]) raises, [passing:] not
    while passing - failing > 1:
        mid = (failing + passing) // 2
        try:
            translate(objects[mid:])
        except Exception as exc:
            failing, failed = mid, exc
        else:
            passing = mid
    return failing, failed
