"""The AI plugins' configuration: Kong 3.9's ``kong/llm/schemas/init.lua`` (the record every AI
plugin shares, :class:`LlmConfig`: ai-proxy's config, the transformers' ``llm``) plus ai-proxy's
own fields (``kong/plugins/ai-proxy/schema.lua``), with their entity checks.

Every field Kong accepts is accepted (the GCP and AWS identity fields included); the native
``llm_format``s (Kong's ``kong/llm/adapters``), which fastkong does not translate, are refused at
load rather than proxied wrongly. A service account key given for Gemini is checked at load.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta

from fastkong.config import errors as E
from fastkong.config import vault
from fastkong.config.schema import REFERENCEABLE, Url
from fastkong.plugins.base import REQUIRED
from fastkong.plugins.bundled._gcp_token import AccountError, parse_key

Provider = Literal[
    "openai",
    "azure",
    "anthropic",
    "cohere",
    "mistral",
    "llama2",
    "gemini",
    "bedrock",
    "huggingface",
]
RouteType = Literal["llm/v1/chat", "llm/v1/completions", "preserve"]

#: Kong's ``UNSUPPORTED_LOG_STATISTICS``.
_NO_STATISTICS: Final = {"llm/v1/completions": frozenset({"anthropic"})}
#: Sub-path of a plugin check's message that is an entity error of ``config`` itself (Kong's
#: ``config["@entity"]``).
CONFIG_ENTITY: Final = "@entity"
#: Sub-path of a message about the plugin entity (Kong's top-level ``@entity``).
PLUGIN_ENTITY: Final = ""


class _Record(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    pass


class BedrockOptions(_Record, kw_only=True, frozen=True):
    aws_region: str | None = None


class GeminiOptions(_Record, kw_only=True, frozen=True):
    api_endpoint: str | None = None
    project_id: str | None = None
    location_id: str | None = None


class HuggingfaceOptions(_Record, kw_only=True, frozen=True):
    use_cache: bool | None = None
    wait_for_model: bool | None = None


class Auth(_Record, kw_only=True, frozen=True):
    header_name: Annotated[str, REFERENCEABLE] | None = None
    header_value: Annotated[str, REFERENCEABLE] | None = None
    param_name: Annotated[str, REFERENCEABLE] | None = None
    param_value: Annotated[str, REFERENCEABLE] | None = None
    param_location: Literal["query", "body"] | None = None
    gcp_use_service_account: bool = False
    gcp_service_account_json: Annotated[str, REFERENCEABLE] | None = None
    aws_access_key_id: Annotated[str, REFERENCEABLE] | None = None
    aws_secret_access_key: Annotated[str, REFERENCEABLE] | None = None
    allow_override: bool = False


class ModelOptions(_Record, kw_only=True, frozen=True):
    max_tokens: int | None = None
    input_cost: Annotated[float, Meta(gt=0)] | None = None
    output_cost: Annotated[float, Meta(gt=0)] | None = None
    temperature: Annotated[float, Meta(ge=0, le=5)] | None = None
    top_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    top_k: Annotated[int, Meta(ge=0, le=500)] | None = None
    anthropic_version: str | None = None
    azure_instance: str | None = None
    azure_api_version: str | None = "2023-05-15"
    azure_deployment_id: str | None = None
    llama2_format: Literal["raw", "openai", "ollama"] | None = None
    mistral_format: Literal["openai", "ollama"] | None = None
    upstream_url: Url | None = None
    upstream_path: str | None = None
    gemini: GeminiOptions | None = None
    bedrock: BedrockOptions | None = None
    huggingface: HuggingfaceOptions | None = None


class Model(_Record, kw_only=True, frozen=True):
    provider: Provider
    name: str | None = None
    options: ModelOptions | None = None


class Logging(_Record, kw_only=True, frozen=True):
    log_statistics: Annotated[bool, REQUIRED] = False
    log_payloads: Annotated[bool, REQUIRED] = False


class LlmConfig(_Record, kw_only=True, frozen=True):
    """Kong's shared ``llm.config_schema``: ai-proxy's config, the transformers' ``llm``."""

    route_type: RouteType
    auth: Auth | None = None
    model: Model
    logging: Annotated[Logging, REQUIRED] = msgspec.field(default_factory=Logging)


class AiProxyConfig(LlmConfig, kw_only=True, frozen=True):
    response_streaming: Literal["allow", "deny", "always"] = "allow"
    max_request_body_size: Annotated[int, Meta(gt=0)] = 8 * 1024
    model_name_header: bool = True
    llm_format: Literal["openai", "bedrock", "gemini"] = "openai"


def _quoted(*names: str) -> str:
    return ", ".join(f"'{n}'" for n in names)


def check(config: AiProxyConfig) -> list[tuple[str, str]]:
    """Kong's entity checks of the shared LLM record and of ai-proxy, then fastkong's own
    refusal of what it does not implement. ``(sub_path, message)`` pairs."""
    out = check_llm(config)
    # ai-proxy's own checks, on the plugin entity.
    if config.llm_format in ("bedrock", "gemini"):
        if config.route_type != "llm/v1/chat":
            out.append(("route_type", "value must be llm/v1/chat"))
            out.append(
                (
                    PLUGIN_ENTITY,
                    "native provider options in llm_format can only be "
                    "used with the 'llm/v1/chat' route_type",
                )
            )
        if config.model.provider != config.llm_format:
            out.append(("model.provider", f"value must be {config.llm_format}"))
            out.append(
                (
                    PLUGIN_ENTITY,
                    f"native llm_format '{config.llm_format}' can only be "
                    f"used with the '{config.llm_format}' model.provider",
                )
            )
    if out:
        return out
    # What fastkong does not implement (Kong's native formats): refused, never proxied
    # untranslated.
    if config.llm_format != "openai":
        out.append(
            (
                "llm_format",
                f"llm_format '{config.llm_format}' is not implemented by "
                "fastkong's ai-proxy (implemented: openai)",
            )
        )
    return out


def check_llm(config: LlmConfig) -> list[tuple[str, str]]:
    """The entity checks of Kong's shared LLM record, paths relative to the record
    (:data:`CONFIG_ENTITY` for the record itself)."""
    out: list[tuple[str, str]] = []
    auth = config.auth or Auth()
    model = config.model
    options = model.options
    provider = model.provider
    if provider in ("bedrock", "gemini") and auth.allow_override:
        out.append(("auth.allow_override", "value must be false"))
        out.append((CONFIG_ENTITY, "bedrock and gemini only support auth.allow_override = false"))
    if (auth.header_name is None) != (auth.header_value is None):
        out.append(
            (
                CONFIG_ENTITY,
                E.MUTUALLY_REQUIRED.format(_quoted("auth.header_name", "auth.header_value")),
            )
        )
    params = (auth.param_name, auth.param_value, auth.param_location)
    if any(p is None for p in params) and any(p is not None for p in params):
        out.append(
            (
                CONFIG_ENTITY,
                E.MUTUALLY_REQUIRED.format(
                    _quoted("auth.param_name", "auth.param_value", "auth.param_location")
                ),
            )
        )
    needed = {
        "llama2": (("llama2_format", "must set {} for llama2 provider"),),
        "mistral": (("mistral_format", "must set {} for mistral provider"),),
        "anthropic": (("anthropic_version", "must set {} for anthropic provider"),),
        "azure": (
            ("azure_instance", "must set {} for azure provider"),
            ("azure_api_version", "must set {} for azure provider"),
            ("azure_deployment_id", "must set {} for azure provider"),
        ),
    }
    gemini = options.gemini if options is not None else None
    if gemini is not None:
        vertex = (gemini.api_endpoint, gemini.project_id, gemini.location_id)
        if any(v is None for v in vertex) and any(v is not None for v in vertex):
            out.append(
                (
                    "model.options.gemini.@entity",
                    E.MUTUALLY_REQUIRED.format(
                        _quoted("api_endpoint", "project_id", "location_id")
                    ),
                )
            )
    key = auth.gcp_service_account_json
    if key is not None and vault.is_reference(key):
        # the secret is checked, not the reference's text (it resolved when its field was
        # walked; where references are not resolved, as in the controller, it is not checked)
        key = vault.resolve(key) if vault.resolving() else None
    if auth.gcp_use_service_account and key is not None:
        try:
            parse_key(key)
        except AccountError as exc:
            out.append(
                ("auth.gcp_service_account_json", f"not a usable service account key: {exc}")
            )
    for option, message in needed.get(provider, ()):
        if options is None or getattr(options, option) is None:
            out.append((CONFIG_ENTITY, message.format(_quoted(f"model.options.{option}"))))
    if provider == "llama2" and (options is None or options.upstream_url is None):
        out.append(
            (
                CONFIG_ENTITY,
                "must set 'model.options.upstream_url' for self-hosted providers/models",
            )
        )
    if config.logging.log_statistics and provider in _NO_STATISTICS.get(config.route_type, ()):
        out.append(
            (
                CONFIG_ENTITY,
                f"{provider} does not support statistics when route_type is {config.route_type}",
            )
        )
    return out


def model_options(config: LlmConfig) -> dict[str, Any]:
    """``model.options`` as a plain dict (empty when not given)."""
    options = config.model.options
    return msgspec.to_builtins(options) if options is not None else {}
