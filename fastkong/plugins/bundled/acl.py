"""acl: allow or deny consumers by group (``kong:kong/plugins/acl``).

Runs after the auth plugins (priority 950). The groups are the consumer's ``acls`` entries, or
the request's *authenticated groups* (set by an auth plugin that has no consumer, e.g. LDAP)
when there is no consumer, the consumer is anonymous, or ``always_use_authenticated_groups``.
No identity at all is 401 ``Unauthorized``; a blocked one is 403 ``You cannot consume this
service``. A request that passes carries its groups upstream in ``X-Consumer-Groups`` (consumer
groups) or ``X-Authenticated-Groups``, unless ``hide_groups_header``.

Unlike Kong, a client-sent ``X-Consumer-Groups`` / ``X-Authenticated-Groups`` never reaches the
upstream from a route that runs acl: the header the plugin does not set is cleared.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Final

import msgspec

from fastkong.plugins.base import REQUIRED, Exit, Plugin, kong_error
from fastkong.plugins.bundled._consumer import AUTHENTICATED_GROUPS, CONSUMER_GROUPS, wire
from fastkong.plugins.registry import register_plugin

if TYPE_CHECKING:
    from fastkong.plugins.context import RequestContext
    from fastkong.runtime import Runtime

ERR_FORBIDDEN: Final = "You cannot consume this service"
ERR_UNAUTHORIZED: Final = "Unauthorized"
_FIELDS: Final = "'config.allow', 'config.deny'"


class AclConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    allow: list[str] | None = None
    deny: list[str] | None = None
    hide_groups_header: Annotated[bool, REQUIRED] = False
    always_use_authenticated_groups: Annotated[bool, REQUIRED] = False


def _groups(runtime: Runtime) -> dict[str, tuple[str, ...]]:
    """Consumer id -> its groups, in config order, once per snapshot."""
    found: dict[str, list[str]] = {}
    config = runtime.config
    if config is not None:
        for acl in config.acls:
            groups = found.setdefault(acl.consumer, [])
            if acl.group not in groups:
                groups.append(acl.group)
    return {consumer: tuple(groups) for consumer, groups in found.items()}


def authenticated_groups(ctx: RequestContext) -> list[str] | None:
    """``kong.ctx.shared.authenticated_groups``, else the request's authenticated groups."""
    groups = ctx.shared.get("authenticated_groups")
    if isinstance(groups, list):
        return groups
    return ctx.authenticated_groups


@register_plugin
class Acl(Plugin):
    name = "acl"
    priority = 950
    Config = AclConfig
    no_consumer = True

    def __init__(self, config: AclConfig, runtime: Runtime, entity: Any) -> None:
        super().__init__(config, runtime, entity)
        self.deny = bool(config.deny)
        self.groups = frozenset((config.deny if self.deny else config.allow) or ())
        self.hide = config.hide_groups_header
        self.always_authenticated = config.always_use_authenticated_groups
        self.consumer_groups = runtime.index("acl:groups", _groups)
        #: consumer id -> None (blocked) or the X-Consumer-Groups value.
        self._decided: dict[str, str | None] = {}

    def __repr__(self) -> str:
        kind = "deny" if self.deny else "allow"
        return f"<Acl priority={self.priority} id={self.id} {kind}={sorted(self.groups)}>"

    def decide(self, groups: tuple[str, ...] | list[str]) -> str | None:
        """None when blocked, else the groups header value."""
        inside = not self.groups.isdisjoint(groups)
        if inside == self.deny:
            return None
        return "" if self.hide else ", ".join(groups)

    def allow(self, ctx: RequestContext, header: str, value: str) -> None:
        other = AUTHENTICATED_GROUPS if header == CONSUMER_GROUPS else CONSUMER_GROUPS
        ctx.clear_upstream_header(other)
        if self.hide:
            ctx.clear_upstream_header(header)
        else:
            ctx.set_upstream_header(header, wire(value))

    async def access(self, ctx: RequestContext) -> Exit | None:
        consumer = ctx.consumer
        credential = ctx.credential
        consumer_id: str | None = (
            consumer.id if consumer is not None else getattr(credential, "consumer", None)
        )
        auth_groups = None
        if consumer_id is None or credential is None or self.always_authenticated:
            auth_groups = authenticated_groups(ctx)
        if auth_groups is not None:
            value = self.decide(auth_groups)
            if value is None:
                return kong_error(403, ERR_FORBIDDEN)
            self.allow(ctx, AUTHENTICATED_GROUPS, value)
            return None
        if consumer_id is None:
            if credential is not None:
                return kong_error(403, ERR_FORBIDDEN)
            return kong_error(401, ERR_UNAUTHORIZED)

        try:
            value = self._decided[consumer_id]
        except KeyError:
            groups = self.consumer_groups.get(consumer_id)
            if groups is None and not self.deny:
                if credential is not None:
                    return kong_error(403, ERR_FORBIDDEN)
                return kong_error(401, ERR_UNAUTHORIZED)
            value = self._decided[consumer_id] = self.decide(groups or ())
        if value is None:
            return kong_error(403, ERR_FORBIDDEN)
        self.allow(ctx, CONSUMER_GROUPS, value)
        return None

    @classmethod
    def check(cls, config: Any) -> list[tuple[str, str]]:
        """Kong's ``at_least_one_of`` and ``only_one_of`` on allow / deny."""
        found: list[tuple[str, str]] = []
        if not config.allow and not config.deny:
            found.append(("", f"at least one of these fields must be non-empty: {_FIELDS}"))
        if config.allow is not None and config.deny is not None:
            if bool(config.allow) == bool(config.deny):
                found.append(("", f"exactly one of these fields must be non-empty: {_FIELDS}"))
        return found
