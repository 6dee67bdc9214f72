"""ai-request-transformer: an LLM rewrites the request body before it goes upstream (Kong 3.9's
``kong/plugins/ai-request-transformer``, over ``kong/llm``).

Priority 777, not on consumers. In the access phase the client's body is read
(up to ``max_request_body_size``, or nginx's 8k client body buffer when that is larger, as Kong
reads it; a larger body is a 413), sent to the configured LLM with ``prompt`` as the system
message (:class:`~._ai_transformer.Introspector`), and the answer's content, cut to the first
match of ``transformation_extract_pattern`` when set, becomes the body sent upstream (its
``Content-Length`` set by the proxy). A failed call is Kong's 400
``{"error":{"message":"failed to introspect request with AI service: ..."}}``; the request is not
proxied. As Kong's ``enable-buffering`` filter does, the upstream's response is read whole
before it goes back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastkong.plugins.base import Exit, Plugin
from fastkong.plugins.bundled._ai_prompt import read_limited
from fastkong.plugins.bundled._ai_transformer import (
    IntrospectionError,
    Introspector,
    TransformerConfig,
    bad_request,
    body_limit,
    check,
    check_invalid,
    too_large,
)
from fastkong.plugins.registry import register_plugin

if TYPE_CHECKING:
    from fastkong.plugins.context import RequestContext
    from fastkong.runtime import Runtime


class AiRequestTransformerConfig(TransformerConfig, kw_only=True, frozen=True):
    pass


@register_plugin
class AiRequestTransformer(Plugin):
    name = "ai-request-transformer"
    priority = 777
    Config = AiRequestTransformerConfig
    no_consumer = True

    def __init__(self, config: AiRequestTransformerConfig, runtime: Runtime, entity: Any) -> None:
        super().__init__(config, runtime, entity)
        self.llm = Introspector(config, self.name, self.id)
        self.body_limit = body_limit(config)

    @classmethod
    def check(cls, config: Any) -> list[tuple[str, str]]:
        return check(config)

    @classmethod
    def check_invalid(cls, raw: dict[str, Any]) -> list[tuple[str, str]]:
        return check_invalid(raw)

    async def access(self, ctx: RequestContext) -> Exit | None:
        body = await read_limited(ctx, self.body_limit)
        if body is None:
            return too_large(self.body_limit)
        ctx.buffer_response = True
        try:
            ctx.body = await self.llm.introspect(ctx, body)
        except IntrospectionError as exc:
            return bad_request(str(exc))
        return None
