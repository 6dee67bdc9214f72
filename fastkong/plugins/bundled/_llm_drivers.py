"""Every LLM provider driver by Kong's provider name: ai-proxy's translations and the AI
transformers' own calls pick theirs here."""

from __future__ import annotations

from typing import Final

from fastkong.plugins.bundled._llm_anthropic import Anthropic
from fastkong.plugins.bundled._llm_bedrock import Bedrock
from fastkong.plugins.bundled._llm_cohere import Cohere
from fastkong.plugins.bundled._llm_gemini import Gemini
from fastkong.plugins.bundled._llm_huggingface import Huggingface
from fastkong.plugins.bundled._llm_openai import DRIVERS, Driver

ALL_DRIVERS: Final[dict[str, type[Driver]]] = {
    **DRIVERS,
    "anthropic": Anthropic,
    "gemini": Gemini,
    "cohere": Cohere,
    "huggingface": Huggingface,
    "bedrock": Bedrock,
}
