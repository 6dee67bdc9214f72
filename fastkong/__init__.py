"""fastkong: a Kong-compatible API gateway data plane for Kubernetes.

Public API: :class:`Gateway` (the ASGI app), :func:`load_config` and :class:`ConfigError`
(Kong's declarative format), :func:`compile_runtime` and :class:`Runtime` (a config snapshot
ready to serve).
"""

__version__ = "0.1.0"
