"""Admission reviews: refuse at ``kubectl apply`` what the controller would leave out.

KIC runs a validating admission webhook so that a KongPlugin with a bad config, an Ingress
with a path Kong refuses or a credential Secret missing its key is refused when it is applied,
instead of being accepted and then silently missing from the gateways. fastkong's controller
already leaves such objects out (and reports them as Events); this module answers the API
server's ``AdmissionReview`` with the same judgement, before the object is stored.

Theory of operation: there is no second rule book. A review is decided by translating the
cluster as the controller's cache holds it with the reviewed object put in (added, or in place
of its stored version), with the very translator and config validation the controller
delivers with:

- an *error* problem on the reviewed object refuses it, with the problem's message;
- an error problem on *another* object, which that object did not have before the change,
  refuses the change too ("Change on Secret default/x will generate invalid configuration for
  KongPlugin default/p: ..."): a Secret edited under a plugin's ``configFrom`` or a
  credential, a second KongConsumer with a taken username;
- a problem that says a referent is *not found* (a Service, a Secret, a KongPlugin named in an
  annotation) does not refuse: ``kubectl apply -f dir/`` creates objects in file order, and
  the referent may be the next file. It comes back as an admission warning, which kubectl
  prints, as do the translator's warnings about the object;
- a KongPlugin, and a KongClusterPlugin of our class, is also checked on its own against the
  plugin's schema, as KIC does, since until something refers to it no translation contains it.

The translation of the cache without the change (for the "did not have before" test) is kept
per store generation, and the controller hands over its own for each generation it
translates. Only CREATE and UPDATE are judged; anything else, and kinds the translator does
not read, is allowed. Nothing in this module does I/O: the server around it is
:mod:`fastkong.k8s.admission_server`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from fastkong.k8s.ingress import annotation_class_filter
from fastkong.k8s.objects import CLUSTER_SCOPED, KNOWN_KINDS, Index, Obj, ObjectRef, Problem
from fastkong.k8s.plugins import PluginError, build_plugin, secret_refs
from fastkong.k8s.prune import config_layer_validator, format_loc
from fastkong.k8s.store import key_of
from fastkong.k8s.translator import TranslationResult

#: The API server's request and response object (``admissionReviewVersions: ["v1"]``).
API_VERSION: Final = "admission.k8s.io/v1"
#: What a refusal carries as ``status.code`` (KIC's).
REFUSED_CODE: Final = 400
#: Problems named in one refusal; more are counted.
MAX_REASONS: Final = 5
#: The API server truncates longer warnings; kubectl prints each on its own line.
MAX_WARNING: Final = 256
MAX_WARNINGS: Final = 10
_JUDGED: Final = frozenset({"CREATE", "UPDATE"})
_PLUGIN_KINDS: Final = frozenset({"KongPlugin", "KongClusterPlugin"})

Translate = Callable[[list[Obj]], TranslationResult]


class ReviewError(ValueError):
    """A request body that is not an AdmissionReview (answered 400, as KIC does)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the webhook answers for one object."""

    allowed: bool
    message: str = ""
    warnings: tuple[str, ...] = ()

    def __repr__(self) -> str:
        said = f" {self.message!r}" if self.message else ""
        state = "allowed" if self.allowed else "refused"
        return f"<Verdict {state}{said} warnings={len(self.warnings)}>"


def parse_review(body: bytes) -> dict[str, Any]:
    """The ``request`` of an AdmissionReview body; raises :class:`ReviewError`."""
    try:
        review = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ReviewError(f"not JSON: {exc}") from None
    if not isinstance(review, dict) or review.get("kind") != "AdmissionReview":
        raise ReviewError("not an AdmissionReview")
    request = review.get("request")
    if not isinstance(request, dict) or not isinstance(request.get("uid"), str):
        raise ReviewError("AdmissionReview without a request uid")
    return request


def answer(request: Mapping[str, Any], verdict: Verdict) -> dict[str, Any]:
    """The AdmissionReview the API server expects back for ``request``."""
    response: dict[str, Any] = {"uid": request["uid"], "allowed": verdict.allowed}
    if not verdict.allowed:
        response["status"] = {"message": verdict.message, "code": REFUSED_CODE}
    elif verdict.message:
        response["status"] = {"message": verdict.message}
    if verdict.warnings:
        response["warnings"] = list(verdict.warnings)
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response}


class Reviewer:
    """Judges admission requests against a snapshot of the cluster (the controller's cache)."""

    def __init__(self, translate: Translate, classes: Collection[str]) -> None:
        self._translate = translate
        self.classes = frozenset(classes)
        self._baseline: tuple[int, TranslationResult] | None = None
        self.reviews = 0
        self.refused = 0

    def __repr__(self) -> str:
        cached = self._baseline[0] if self._baseline is not None else "-"
        return f"<Reviewer reviews={self.reviews} refused={self.refused} baseline_gen={cached}>"

    def review(
        self, request: Mapping[str, Any], objects: Sequence[Obj], generation: int
    ) -> Verdict:
        """The verdict on ``request`` (an AdmissionReview's ``request``) given the cluster's
        ``objects`` at store ``generation``."""
        self.reviews += 1
        verdict = self._judge(request, objects, generation)
        if not verdict.allowed:
            self.refused += 1
        return verdict

    def _judge(
        self, request: Mapping[str, Any], objects: Sequence[Obj], generation: int
    ) -> Verdict:
        obj = request.get("object")
        if request.get("operation") not in _JUDGED or not isinstance(obj, Mapping):
            return Verdict(True)
        obj = _completed(obj, request)
        kind = str(obj.get("kind") or "")
        if kind not in KNOWN_KINDS:
            return Verdict(True)
        ref = ObjectRef.of(obj)
        key = key_of(obj)
        candidate = [x for x in objects if key_of(x) != key]
        candidate.append(dict(obj))
        before = self._before(objects, generation)
        after = self._translate(candidate)
        refusals: list[str] = []
        warnings: list[str] = []
        if kind in _PLUGIN_KINDS:
            refused, warned = self._check_plugin(obj, candidate)
            refusals += refused
            warnings += warned
        elif kind == "Secret":
            refusals += self._check_plugins_reading(ref, candidate)
        # Objects judged already (before, or above) are not blamed again.
        had = {p.ref for p in before.problems if p.level == "error"}
        if refusals:
            had |= {ObjectRef.of(x) for x in candidate if x.get("kind") in _PLUGIN_KINDS}
        for problem in after.problems:
            if problem.ref == ref:
                if problem.level == "error" and not _missing(problem):
                    refusals.append(problem.message)
                else:
                    warnings.append(problem.message)
            elif problem.level == "error" and problem.ref not in had:
                refusals.append(
                    f"Change on {ref} will generate invalid configuration for "
                    f"{problem.ref}: {problem.message}"
                )
        refusals = list(dict.fromkeys(refusals))
        if refusals:
            shown = refusals[:MAX_REASONS]
            if len(refusals) > MAX_REASONS:
                shown.append(f"and {len(refusals) - MAX_REASONS} more")
            return Verdict(False, "; ".join(shown), _warnings(warnings))
        return Verdict(True, warnings=_warnings(warnings))

    def seed(self, generation: int, result: TranslationResult) -> None:
        """Take the controller's own translation of the cache at ``generation`` as the
        baseline (made with the same translator and options), sparing a review one."""
        if self._baseline is None or self._baseline[0] <= generation:
            self._baseline = (generation, result)

    def _before(self, objects: Sequence[Obj], generation: int) -> TranslationResult:
        cached = self._baseline  # (seed() may replace it from the event loop meanwhile)
        if cached is None or cached[0] != generation:
            cached = (generation, self._translate(list(objects)))
            self.seed(generation, cached[1])
        return cached[1]

    def _check_plugin(self, obj: Obj, objects: list[Obj]) -> tuple[list[str], list[str]]:
        """KIC's plugin validation, of the plugin alone, whether anything uses it yet or not:
        the reasons to refuse it, and the warnings."""
        index = Index(objects)
        if obj.get("kind") == "KongClusterPlugin" and not annotation_class_filter(
            index, self.classes
        )(obj):
            return [], []
        try:
            record, _ = build_plugin(obj, index)
        except PluginError as exc:
            return ([], [str(exc)]) if "not found" in str(exc) else ([str(exc)], [])
        validator = config_layer_validator()
        if validator is None:
            return [], []
        refusals = []
        for loc, message in validator({"_format_version": "3.0", "plugins": [record]}):
            where = format_loc(loc[2:])
            detail = f"{where}: {message}" if where else message
            refusals.append(f"plugin failed schema validation: {detail}")
        return refusals, []

    def _check_plugins_reading(self, secret: ObjectRef, objects: list[Obj]) -> list[str]:
        """The plugins whose ``configFrom``/``configPatches`` read ``secret``, each checked
        with the Secret as it would be (KIC's ``checkReferrersOfSecret``)."""
        out = []
        for obj in objects:
            if obj.get("kind") not in _PLUGIN_KINDS:
                continue
            if (secret.namespace, secret.name) not in secret_refs(obj):
                continue
            refused, _ = self._check_plugin(obj, objects)
            out += [
                f"Change on {secret} will generate invalid configuration for "
                f"{ObjectRef.of(obj)}: {reason}"
                for reason in refused
            ]
        return out


def _completed(obj: Mapping[str, Any], request: Mapping[str, Any]) -> dict[str, Any]:
    """``obj`` with what a CREATE may leave to the API server: its kind, namespace and name."""
    out = dict(obj)
    meta = dict(out.get("metadata") or {}) if isinstance(out.get("metadata"), Mapping) else {}
    kind_info = request.get("kind")
    if not out.get("kind") and isinstance(kind_info, Mapping):
        out["kind"] = kind_info.get("kind")
    if not meta.get("namespace") and out.get("kind") not in CLUSTER_SCOPED:
        meta["namespace"] = request.get("namespace") or "default"
    if not meta.get("name"):
        meta["name"] = request.get("name") or f"{meta.get('generateName') or ''}<generated>"
    out["metadata"] = meta
    return out


def _missing(problem: Problem) -> bool:
    """A problem that names a referent the cluster does not have (yet)."""
    return "not found" in problem.message or problem.message.endswith(" found")


def _warnings(messages: list[str]) -> tuple[str, ...]:
    unique = list(dict.fromkeys(messages))[:MAX_WARNINGS]
    return tuple(m if len(m) <= MAX_WARNING else m[: MAX_WARNING - 3] + "..." for m in unique)


__all__ = ["API_VERSION", "ReviewError", "Reviewer", "Verdict", "answer", "parse_review"]
