"""The language model from settings: OpenAI or any OpenAI-compatible server, else offline."""

from __future__ import annotations

import logging

from pydantic_ai.models import Model

from graph.offline import OFFLINE_NAME, offline_model
from ops.settings import ConfigError, Settings, model_problems

log = logging.getLogger(__name__)


def build_model(settings: Settings) -> Model:
    """`LLM_MODEL=openai:gpt-4o-mini` (with OPENAI_BASE_URL for vLLM, Ollama, llama.cpp);
    `offline`, or no key and no base URL, gives the deterministic offline model, in development
    only: in production those raise ConfigError (a receptionist answering by keywords to a
    clinic's patients is worse than one that does not start)."""
    if not settings.development and (problems := model_problems(settings)):
        raise ConfigError(problems[0])
    name = settings.llm_model.strip()
    provider, _, model_name = name.partition(":")
    if name == "offline" or not model_name:
        log.info("LLM: %s; no API key needed", OFFLINE_NAME)
        return offline_model()
    if provider != "openai":
        raise ValueError(
            f"LLM_MODEL {name!r}: only 'openai:<model>' (or an OpenAI-compatible "
            "server through OPENAI_BASE_URL) and 'offline' are supported"
        )
    if not settings.openai_api_key and not settings.openai_base_url:
        log.warning("LLM: %s requested but OPENAI_API_KEY is unset; using %s", name, OFFLINE_NAME)
        return offline_model()
    from openai import DefaultAioHttpClient
    from pydantic_ai.providers.openai import OpenAIProvider
    from pydantic_ai.settings import ModelSettings

    from graph.openai_chat import LeanAsyncOpenAI, SchemaCachingChatModel

    # Local servers (Ollama, llama.cpp) ignore the key, but the client requires one. The aiohttp
    # transport: httpx's pool checks every idle connection on each request, which costs CPU
    # once hundreds of turns wait on the model at the same time (make bench).
    client = LeanAsyncOpenAI(
        base_url=settings.openai_base_url,
        api_key=settings.openai_api_key or "none",
        max_retries=1,
        timeout=settings.llm_turn_timeout_s,
        http_client=DefaultAioHttpClient(),
    )
    log.info("LLM: %s at %s", model_name, settings.openai_base_url or "api.openai.com")
    # The model's own default, so every request it makes is bounded, whichever agent makes it
    # (pydantic-ai sends it as `max_completion_tokens`; llama.cpp and vLLM honour that field).
    return SchemaCachingChatModel(
        model_name,
        provider=OpenAIProvider(openai_client=client),
        settings=ModelSettings(max_tokens=settings.llm_max_tokens),
    )
