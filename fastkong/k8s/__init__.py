"""The Kubernetes side: translate Ingress, the Gateway API, Service, EndpointSlice, Secret and
Kong's CRDs into a Kong declarative config (:func:`translate`), offline (``fastkong k8s
translate``) or from the list/watch controller (``fastkong ingress-controller``).
"""

from fastkong.k8s.objects import ObjectRef, Problem
from fastkong.k8s.translator import (
    DEFAULT_INGRESS_CLASS,
    TranslationResult,
    dump_yaml,
    translate,
)

__all__ = [
    "DEFAULT_INGRESS_CLASS",
    "ObjectRef",
    "Problem",
    "TranslationResult",
    "dump_yaml",
    "translate",
]
