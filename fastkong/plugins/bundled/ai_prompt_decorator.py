"""ai-prompt-decorator: add configured chat messages before and after the client's.

Kong 3.9's ``kong/plugins/ai-prompt-decorator/{schema,handler}.lua`` and
``filters/decorate-prompt.lua``. The request is the one the AI plugins share (:mod:`._ai_prompt`;
ai-prompt-template, which runs before, may have rewritten it). A chat request (a non-empty
``messages`` array) gets ``prompts.prepend`` in front of its messages and ``prompts.append``
after them, each list in its configured order, each message as ``{"role", "content"}``; the
other fields of the body are kept. The new body goes upstream as JSON (``Content-Type:
application/json``, its own ``Content-Length``), and is the request the plugins after this one
(ai-prompt-guard, ai-proxy) see.

Anything else (no ``messages``, an empty one, a body that is not a JSON object or is larger
than ``max_request_body_size``) is ``400 {"error": {"message": "this LLM route only supports
llm/chat type requests"}}``. Differences from Kong: a ``messages`` that is neither an array nor
an object (a string, a number) is that 400 too (Kong: a 500); ``llm_format`` other than
``openai`` is a config error; the body is written by msgspec, so key order is kept and ``/`` is
not escaped (Kong's cjson writes keys in table order and ``\\/``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta

from fastkong.config import errors as E
from fastkong.plugins.base import REQUIRED, Exit, Plugin
from fastkong.plugins.bundled._ai_prompt import (
    LlmFormat,
    bad_request,
    request_table,
    use_request_table,
)
from fastkong.plugins.registry import register_plugin

if TYPE_CHECKING:
    from fastkong.plugins.context import RequestContext
    from fastkong.runtime import Runtime

log = logging.getLogger("fastkong.plugins.ai-prompt-decorator")

NOT_CHAT: Final = "this LLM route only supports llm/chat type requests"
_CONTENT_TYPE: Final = b"content-type"
_JSON: Final = b"application/json"


class Prompt(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    role: Annotated[Literal["system", "assistant", "user"], REQUIRED] = "system"
    content: Annotated[str, Meta(max_length=500)]


PromptList = Annotated[list[Prompt], Meta(max_length=15)]


class Prompts(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    prepend: PromptList | None = None
    append: PromptList | None = None


class AiPromptDecoratorConfig(
    msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True
):
    prompts: Prompts | None = None
    max_request_body_size: Annotated[int, Meta(gt=0)] = 8 * 1024
    llm_format: LlmFormat = "openai"


Message = dict[str, str]


def decorate(
    request: Mapping[str, Any], prepend: list[Message], append: list[Message]
) -> dict[str, Any] | None:
    """``request`` with the messages added (a new dict; ``request`` is left as it is), or None
    when it is not a chat request."""
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    # Fresh dicts per request: a later plugin may edit the messages it is given.
    added_before = [dict(m) for m in prepend]
    added_after = [dict(m) for m in append]
    return {**request, "messages": [*added_before, *messages, *added_after]}


@register_plugin
class AiPromptDecorator(Plugin):
    name = "ai-prompt-decorator"
    priority = 772
    Config = AiPromptDecoratorConfig

    def __init__(self, config: AiPromptDecoratorConfig, runtime: Runtime, entity: Any) -> None:
        super().__init__(config, runtime, entity)
        prompts = config.prompts or Prompts()
        self.prepend = [{"role": p.role, "content": p.content} for p in prompts.prepend or ()]
        self.append = [{"role": p.role, "content": p.content} for p in prompts.append or ()]
        self.limit = config.max_request_body_size

    @classmethod
    def check(cls, config: AiPromptDecoratorConfig) -> list[tuple[str, str]]:
        prompts = config.prompts
        if prompts is None or (not prompts.prepend and not prompts.append):
            fields = "'config.prompts.prepend', 'config.prompts.append'"
            return [("", E.AT_LEAST_ONE_OF.format(fields))]
        return []

    async def access(self, ctx: RequestContext) -> Exit | None:
        request = await request_table(ctx, self.limit)
        decorated = decorate(request or {}, self.prepend, self.append)
        if decorated is None:
            log.info("[ai-prompt-decorator] %s", NOT_CHAT)
            return bad_request(NOT_CHAT)
        ctx.body = msgspec.json.encode(decorated)
        ctx.body_read = True
        ctx.set_upstream_raw(_CONTENT_TYPE, _JSON)
        use_request_table(ctx, decorated)
        return None
