"""Kong's ``ctx-checker`` test plugin (``spec/fixtures/custom_plugins/kong/plugins/ctx-checker``),
as a Python plugin installed for a gateway the way a third-party plugin is: a distribution in the
``fastkong.plugins`` entry-point group (:func:`tests.helpers.plugin_package`).

Kong's specs use it to set what an earlier plugin would have set (``ctx_set_*``, access phase)
or to show a value other plugins left (``ctx_check_*``: a ``ctx-checker-<field>`` response
header, Kong's header_filter). ``ngx.ctx`` fields are fastkong's request-context attributes of
the same meaning (:data:`NGX_CTX`); ``kong.ctx.shared`` is ``ctx.shared``.
"""

from __future__ import annotations

from pathlib import Path

from tests.helpers import plugin_package

SOURCE = """
import msgspec

from fastkong.plugins.base import Plugin

#: ngx.ctx's authentication fields -> the request context's attributes.
NGX_CTX = {
    "authenticated_credential": "credential",
    "authenticated_consumer": "consumer",
    "authenticated_groups": "authenticated_groups",
}


class CtxCheckerConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    ctx_set_field: str | None = None
    ctx_set_value: str = "set_by_ctx_checker"
    ctx_set_array: list[str] | None = None
    ctx_check_field: str | None = None
    ctx_check_value: str | None = None
    ctx_check_array: list[str] | None = None
    ctx_kind: str = "ngx.ctx"
    ctx_throw_error: bool = False


class CtxChecker(Plugin):
    name = "ctx-checker"
    priority = 1000
    Config = CtxCheckerConfig

    async def access(self, ctx):
        conf = self.config
        if conf.ctx_set_field is None:
            return None
        value = list(conf.ctx_set_array) if conf.ctx_set_array is not None else conf.ctx_set_value
        if conf.ctx_kind == "kong.ctx.shared":
            ctx.shared[conf.ctx_set_field] = value
        else:
            setattr(ctx, NGX_CTX[conf.ctx_set_field], value)
        return None

    def response(self, ctx, status, headers):
        conf = self.config
        if conf.ctx_check_field is None:
            return
        if conf.ctx_kind == "kong.ctx.shared":
            value = ctx.shared.get(conf.ctx_check_field)
        else:
            value = getattr(ctx, NGX_CTX[conf.ctx_check_field])
        if conf.ctx_check_array is not None:
            ok = value == list(conf.ctx_check_array)
        elif conf.ctx_check_value is not None:
            ok = value == conf.ctx_check_value
        else:
            ok = True
        if ok:
            # (ngx.header, under kong.response.set_header too, writes ``_`` as ``-``)
            name = f"ctx-checker-{conf.ctx_check_field}".replace("_", "-").encode()
            headers.append((name, str(value).encode()))
"""


def install(site: Path) -> str:
    """Install the plugin in ``site``; the ``PYTHONPATH`` for a gateway that should load it."""
    return plugin_package(
        site,
        "kong-spec-ctx-checker",
        {"ctx_checker": SOURCE},
        {"ctx-checker": "ctx_checker:CtxChecker"},
    )
