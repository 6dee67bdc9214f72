"""ai-prompt-template: replace a request naming a template by that template, filled in.

Kong 3.9's ``kong/plugins/ai-prompt-template/{schema,handler,templater}.lua`` and
``filters/render-prompt-template.lua``. The request body is read as JSON whatever its
``Content-Type`` (up to ``max_request_body_size``):

- ``messages`` (chat) or ``prompt`` (completions) is the reference; both present is refused. A
  reference ``"{template://NAME}"`` names a template; anything else is an untemplated request,
  passed on as it is when ``allow_untemplated_requests`` (the default), refused otherwise;
- the template's ``{{name}}`` placeholders (letters, digits, ``_``) are filled from the body's
  ``properties`` object, whose values must be strings; each value is inserted JSON-escaped as
  cjson escapes a string (quotes, backslash, ``/``, control characters), so it stays inside the
  JSON string the template puts it in. A placeholder left unfilled (also one a value brought in)
  refuses the request, naming each once;
- the rendered template replaces the whole body (its ``Content-Type`` unchanged), and is what
  the AI plugins after this one (decorator, guard, ai-proxy) read.

Refusals are ``400 {"error": {"message": ...}}`` with Kong's messages. With
``log_original_request`` the body as the client sent it goes to the logging plugins as
``ai.payload.original_request``. Kong's "present" is Lua's: a ``null`` ``messages`` counts as
present (and is untemplated), ``false`` does not.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Final

import msgspec
from msgspec import Meta

from fastkong.plugins.base import REQUIRED, Exit, Plugin
from fastkong.plugins.bundled._ai_prompt import (
    bad_request,
    cjson_escape,
    forget_request_table,
    json_object,
    read_limited,
)
from fastkong.plugins.bundled._serializer import set_serialize_value
from fastkong.plugins.registry import register_plugin

if TYPE_CHECKING:
    from fastkong.plugins.context import RequestContext
    from fastkong.runtime import Runtime

log = logging.getLogger("fastkong.plugins.ai-prompt-template")

NOT_JSON: Final = "this LLM route only supports application/json requests"
BOTH: Final = "cannot run 'messages' and 'prompt' templates at the same time"
NO_REFERENCE: Final = (
    "only 'llm/v1/chat' and 'llm/v1/completions' formats are supported for templating"
)
UNTEMPLATED: Final = "this LLM route only supports templated requests"
NOT_FOUND: Final = "could not find template name [{}]"
NOT_AN_OBJECT: Final = "properties must be an object"
NOT_A_STRING: Final = "property values must be a string, got {}"
MISSING: Final = "missing template parameters: {}"
LOG_KEY: Final = "ai.payload.original_request"

_PREFIX: Final = "{template://"
#: Lua's ``{{([%w_]+)}}`` (``%w``: ASCII letters and digits).
_PLACEHOLDER: Final = re.compile(r"\{\{([A-Za-z0-9_]+)\}\}")
_ABSENT: Final = object()


class Template(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    name: str
    template: str


class AiPromptTemplateConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    templates: list[Template]
    allow_untemplated_requests: Annotated[bool, REQUIRED] = True
    log_original_request: Annotated[bool, REQUIRED] = False
    max_request_body_size: Annotated[int, Meta(gt=0)] = 8 * 1024


def template_name(reference: Any) -> str | None:
    """``NAME`` of a ``"{template://NAME}"`` reference, or None when it is not one."""
    if isinstance(reference, str) and reference.startswith(_PREFIX) and reference.endswith("}"):
        return reference[len(_PREFIX) : -1]
    return None


def _lua_type(value: Any) -> str:
    """Lua's ``type()`` of a value cjson decoded (``null`` is a userdata)."""
    if value is None:
        return "userdata"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "table"


def sanitize(properties: Any) -> tuple[dict[str, str] | None, str | None]:
    """The properties with each value escaped, or Kong's error."""
    if isinstance(properties, list) and not properties:
        return {}, None  # an empty array is an empty Lua table too
    if not isinstance(properties, dict):
        return None, NOT_AN_OBJECT
    out: dict[str, str] = {}
    for key, value in properties.items():
        if not isinstance(value, str):
            return None, NOT_A_STRING.format(_lua_type(value))
        out[key] = cjson_escape(value)
    return out, None


def render(template: str, properties: Any) -> tuple[str | None, str | None]:
    """Kong's ``templater.render``: the filled template, or None and the error."""
    values, err = sanitize(properties)
    if values is None:
        return None, err
    result = _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)
    missing = dict.fromkeys(f"[{m.group(1)}]" for m in _PLACEHOLDER.finditer(result))
    if missing:
        return None, MISSING.format(", ".join(missing))
    return result, None


def _truthy(request: Mapping[str, Any], key: str) -> Any:
    """``request[key]`` when Lua would find it truthy (present and not false), else _ABSENT."""
    value = request.get(key, _ABSENT)
    return _ABSENT if value is False else value


@register_plugin
class AiPromptTemplate(Plugin):
    name = "ai-prompt-template"
    priority = 773
    Config = AiPromptTemplateConfig

    def __init__(self, config: AiPromptTemplateConfig, runtime: Runtime, entity: Any) -> None:
        super().__init__(config, runtime, entity)
        self.templates: dict[str, str] = {}
        for t in config.templates:
            self.templates.setdefault(t.name, t.template)  # Kong takes the first of a name
        self.allow_untemplated = config.allow_untemplated_requests
        self.log_original = config.log_original_request
        self.limit = config.max_request_body_size

    async def access(self, ctx: RequestContext) -> Exit | None:
        if self.log_original:
            raw = await read_limited(ctx, self.limit)
            if raw is not None:
                set_serialize_value(ctx, LOG_KEY, raw.decode("utf-8", "replace"))
        request = await json_object(ctx, self.limit)
        if request is None:
            return self._refuse(NOT_JSON)
        messages = _truthy(request, "messages")
        prompt = _truthy(request, "prompt")
        if messages is not _ABSENT and prompt is not _ABSENT:
            return self._refuse(BOTH)
        reference = messages if messages is not _ABSENT else prompt
        if reference is _ABSENT:
            return self._refuse(NO_REFERENCE)
        name = template_name(reference)
        if name is None:
            return None if self.allow_untemplated else self._refuse(UNTEMPLATED)
        template = self.templates.get(name)
        if template is None:
            return self._refuse(NOT_FOUND.format(name))
        properties = _truthy(request, "properties")  # Lua's `properties or {}`
        rendered, err = render(template, {} if properties is _ABSENT else properties)
        if rendered is None:
            assert err is not None
            return self._refuse(err)
        ctx.body = rendered.encode("utf-8")
        ctx.body_read = True
        forget_request_table(ctx)
        return None

    @staticmethod
    def _refuse(message: str) -> Exit:
        log.debug("[ai-prompt-template] %s", message)
        return bad_request(message)
