"""ai-prompt-guard: refuse LLM requests whose prompts match deny patterns or miss allow patterns.

Kong 3.9's ``kong/plugins/ai-prompt-guard/{schema,handler}.lua`` and ``filters/guard-prompt.lua``.
The request is the one the AI plugins share (:mod:`._ai_prompt`: decorated by
ai-prompt-decorator when that runs first). What is checked:

- a chat request (``messages`` is an array, or an object, read as empty): the ``content`` of its
  ``user`` messages (of every message with ``match_all_roles``), latest first, each followed by
  a space, as one text; with ``allow_all_conversation_history`` only the latest such message
  (without the space). Each message needs a string ``role`` (even those not checked) and each
  checked one a string ``content``: otherwise, as for a body with neither ``messages`` nor a
  string ``prompt`` (completions), the request is refused;
- ``deny_patterns`` are tried first: one found anywhere in the text refuses the request; then, if
  there are ``allow_patterns``, one of them must be found;
- a refusal is always ``400 {"error": {"message": "bad request"}}`` (Kong does not tell the
  client why; the reason is logged at debug level).

Patterns are PCRE (``ngx.re.find(text, pattern, "jo")`` on the text's UTF-8 bytes), run here as
:mod:`._pcre` translates them. Differences from Kong: a pattern PCRE refuses, or Python's ``re``
cannot run, is a config error (Kong takes it and answers each request reaching it with a 500);
a message that is not an object (a number, ``null``) is refused with the 400 (Kong: a 500);
``llm_format`` other than ``openai`` (Kong's bedrock and gemini adapters) is a config error.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Annotated, Any, Final

import msgspec
from msgspec import Meta

from fastkong.config import errors as E
from fastkong.plugins.base import REQUIRED, Exit, Plugin
from fastkong.plugins.bundled._ai_prompt import LlmFormat, bad_request, request_table
from fastkong.plugins.bundled._pcre import check_regex, compile_pcre
from fastkong.plugins.registry import register_plugin

if TYPE_CHECKING:
    from fastkong.plugins.context import RequestContext
    from fastkong.runtime import Runtime

log = logging.getLogger("fastkong.plugins.ai-prompt-guard")

REFUSED: Final = "bad request"
BAD_FORMAT: Final = "ai-prompt-guard only supports llm/v1/chat or llm/v1/completions prompts"
BLOCKED: Final = "prompt pattern is blocked"
NOT_ALLOWED: Final = "prompt doesn't match any allowed pattern"
Pattern = Annotated[str, Meta(max_length=500, extra={"kong_check": check_regex})]
Patterns = Annotated[list[Pattern], Meta(max_length=10)]


class AiPromptGuardConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    allow_patterns: Patterns | None = None
    deny_patterns: Patterns | None = None
    allow_all_conversation_history: Annotated[bool, REQUIRED] = False
    max_request_body_size: Annotated[int, Meta(gt=0)] = 8 * 1024
    match_all_roles: Annotated[bool, REQUIRED] = False
    llm_format: LlmFormat = "openai"


def collect_prompts(request: Mapping[str, Any], latest_only: bool, all_roles: bool) -> str | None:
    """The text the patterns are tried on, or None when the request has no prompt to check."""
    messages = request.get("messages")
    if isinstance(messages, (list, dict)):
        parts: list[str] = []
        for message in reversed(messages) if isinstance(messages, list) else ():
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                return None
            if message["role"] == "user" or all_roles:
                content = message.get("content")
                if not isinstance(content, str):
                    return None
                if latest_only:
                    return content
                parts.append(content)
                parts.append(" ")  # Kong's separator, after every message
        return "".join(parts)
    prompt = request.get("prompt")
    return prompt if isinstance(prompt, str) else None


Search = Callable[[str], object]


class Guard:
    """The decision on one request (Kong's ``execute``)."""

    __slots__ = ("allow", "deny", "latest_only", "all_roles")

    def __init__(self, config: AiPromptGuardConfig) -> None:
        self.allow: tuple[Search, ...] = tuple(_search(p) for p in config.allow_patterns or ())
        self.deny: tuple[Search, ...] = tuple(_search(p) for p in config.deny_patterns or ())
        self.latest_only = config.allow_all_conversation_history
        self.all_roles = config.match_all_roles

    def refusal(self, request: Mapping[str, Any]) -> str | None:
        """Why ``request`` is refused, or None when it passes."""
        text = collect_prompts(request, self.latest_only, self.all_roles)
        if text is None:
            return BAD_FORMAT
        # ngx.re reads the UTF-8 bytes; the translated patterns read one character per byte.
        subject = text.encode("utf-8", "surrogatepass").decode("latin-1")
        for search in self.deny:
            if search(subject) is not None:
                return BLOCKED
        if not self.allow:
            return None
        for search in self.allow:
            if search(subject) is not None:
                return None
        return NOT_ALLOWED


def _search(pattern: str) -> Search:
    compiled: re.Pattern[str] = compile_pcre(pattern)
    return compiled.search


@register_plugin
class AiPromptGuard(Plugin):
    name = "ai-prompt-guard"
    priority = 771
    Config = AiPromptGuardConfig

    def __init__(self, config: AiPromptGuardConfig, runtime: Runtime, entity: Any) -> None:
        super().__init__(config, runtime, entity)
        self.guard = Guard(config)
        self.limit = config.max_request_body_size

    @classmethod
    def check(cls, config: AiPromptGuardConfig) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if not config.allow_patterns and not config.deny_patterns:
            fields = "'config.allow_patterns', 'config.deny_patterns'"
            out.append(("", E.AT_LEAST_ONE_OF.format(fields)))
        if config.match_all_roles and config.allow_all_conversation_history:
            out.append(("allow_all_conversation_history", "value must be false"))
            out.append(("", E.CONDITIONAL.format("config.match_all_roles")))
        return out

    async def access(self, ctx: RequestContext) -> Exit | None:
        request = await request_table(ctx, self.limit)
        reason = self.guard.refusal(request or {})
        if reason is None:
            return None
        log.debug("[ai-prompt-guard] refused: %s", reason)
        return bad_request(REFUSED)
