"""opentelemetry's ``resource_attributes``, whose values may be templates rendered per request
(Kong 3.10: ``host.name: "$(headers.host)"``, ``kong/plugins/opentelemetry/utils.lua``).

A value is compiled once, as request-transformer's are (:mod:`._templates`: the same four
tables, ``headers``, ``query_params``, ``uri_captures``, ``shared``); one that does not
compile is sent as written, as Kong's ``param_value`` does. When every value is plain text the
export's resource is encoded once per config. Otherwise each logged request renders them; as
Kong's queue keeps the latest handler configuration it saw, a batch goes out with the resource
of the last request queued, and the encoding is redone only when the rendered values change.
A render that fails (a nil call...) is logged as Kong logs it and the values go as written.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fastkong.plugins.bundled._otlp import AttributeValue, TraceEnvelope
from fastkong.plugins.bundled._templates import (
    Env,
    Template,
    TemplateError,
    decode_args,
    header_table,
)

if TYPE_CHECKING:
    from fastkong.plugins.context import RequestContext

log = logging.getLogger("fastkong.plugins.opentelemetry")


class Resource:
    """The resource of one plugin config: fixed attributes, plus the configured ones."""

    __slots__ = ("templates", "fixed", "written", "envelope", "_rendered")

    def __init__(
        self, fixed: Mapping[str, AttributeValue], configured: Mapping[str, str] | None
    ) -> None:
        self.fixed = dict(fixed)
        #: The configured values that are templates, by attribute name.
        self.templates: dict[str, Template] = {}
        for name, value in (configured or {}).items():
            try:
                template = Template(value)
            except TemplateError:
                template = None
            if template is None or template.static is not None:
                self.fixed[name] = value
            else:
                self.templates[name] = template
        #: Every attribute as configured (what goes when rendering fails).
        self.written = {**fixed, **(configured or {})}
        self.envelope = TraceEnvelope(self.fixed)
        self._rendered: tuple[tuple[str, str], ...] | None = None

    def __repr__(self) -> str:
        return f"<Resource fixed={len(self.fixed)} templates={sorted(self.templates)}>"

    def for_request(self, ctx: RequestContext) -> TraceEnvelope:
        """The envelope with the templates rendered for ``ctx``."""
        if not self.templates:
            return self.envelope
        env = Env(
            {
                "headers": lambda: header_table(ctx.headers.items()),
                "query_params": lambda: decode_args(
                    ctx.query_string.decode("utf-8", "surrogateescape")
                ),
                "uri_captures": lambda: (ctx.match.captures if ctx.match else None) or {},
                "shared": lambda: ctx.shared,
            }
        )
        try:
            rendered = tuple((name, t.render(env)) for name, t in self.templates.items())
        except TemplateError as exc:
            log.warning("[otel] resource attributes template failed to compile: %s", exc)
            rendered = tuple((name, t.text) for name, t in self.templates.items())
        if rendered != self._rendered:
            self._rendered = rendered
            attributes: dict[str, Any] = {**self.fixed, **dict(rendered)}
            self.envelope = TraceEnvelope(attributes)
        return self.envelope
