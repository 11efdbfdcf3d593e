"""The OpenAI chat model, with two per-request costs removed that a busy worker pays hundreds of
times a second (measured with py-spy under `make bench`, together about a fifth of a turn's CPU):

- The openai SDK walks every request body against its TypedDict annotations before sending it
  (`async_maybe_transform`). For chat completions that walk only drops omitted arguments: no
  request field has an alias or a format. LeanCompletions drops them and posts the body as is;
  auth, retries, errors and the parsed ChatCompletion stay the SDK's own.
- Pydantic AI rewrites every tool's JSON schema for OpenAI on every request, deep-copying it.
  A tool's schema is the same object from one request to the next, so SchemaCachingChatModel
  rewrites each one once.

Streaming requests, which this project does not make, go through the SDK unchanged.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cached_property
from typing import TYPE_CHECKING, Any, Callable

from openai import AsyncOpenAI, AsyncStream, Timeout
from openai._types import NOT_GIVEN
from openai._utils import is_given
from openai.resources.chat import AsyncChat
from openai.resources.chat.completions import AsyncCompletions
from openai._base_client import make_request_options
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic_ai.models import ModelRequestParameters
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.profiles import JsonSchemaTransformer
from pydantic_ai.tools import ToolDefinition

if TYPE_CHECKING:  # annotations only: no further private name of openai needed at run time
    from openai._types import Body, Headers, NotGiven, Query

_SCHEMA_CACHE_LIMIT = 512


class LeanCompletions(AsyncCompletions):
    # One signature for what the SDK spells as overloads on `stream` (the base's body is the
    # same for both), so mypy cannot match it against each overload's narrower return type.
    async def create(  # type: ignore[override]
        self,
        *,
        stream: bool = False,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Body | None = None,
        timeout: float | Timeout | None | NotGiven = NOT_GIVEN,
        **params: Any,
    ) -> ChatCompletion | AsyncStream[ChatCompletionChunk]:
        if stream:
            streamed: AsyncStream[ChatCompletionChunk] = await super().create(
                stream=stream,
                extra_headers=extra_headers,
                extra_query=extra_query,
                extra_body=extra_body,
                timeout=timeout,
                **params,
            )
            return streamed
        body = {key: value for key, value in params.items() if is_given(value)}
        return await self._post(
            "/chat/completions",
            body=body,
            options=make_request_options(
                extra_headers=extra_headers,
                extra_query=extra_query,
                extra_body=extra_body,
                timeout=timeout,
                security={"bearer_auth": True},
            ),
            cast_to=ChatCompletion,
            stream=False,
            stream_cls=AsyncStream[ChatCompletionChunk],
        )


class LeanChat(AsyncChat):
    @cached_property
    def completions(self) -> LeanCompletions:
        return LeanCompletions(self._client)


class LeanAsyncOpenAI(AsyncOpenAI):
    """AsyncOpenAI whose chat completions skip the request-body transform (copies keep the class)."""

    @cached_property
    def chat(self) -> LeanChat:
        return LeanChat(self)


class SchemaCachingChatModel(OpenAIChatModel):
    """OpenAIChatModel that transforms each tool schema once instead of on every request."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # id(source schema) -> (source, transformed, strict-compatible). Holding the source keeps
        # its id from being reused by another dict while the entry lives.
        self._schemas: dict[
            tuple[int, bool | None], tuple[dict[str, Any], dict[str, Any], bool]
        ] = {}

    def customize_request_parameters(
        self, params: ModelRequestParameters
    ) -> ModelRequestParameters:
        transformer = self.profile.get("json_schema_transformer")
        if transformer is None:
            return super().customize_request_parameters(params)
        # The base class still handles the output object (one schema, used in native output mode).
        rest = super().customize_request_parameters(
            replace(params, function_tools=[], output_tools=[])
        )
        return replace(
            rest,
            function_tools=[self._customized(transformer, t) for t in params.function_tools],
            output_tools=[self._customized(transformer, t) for t in params.output_tools],
        )

    def _customized(
        self, transformer: Callable[..., JsonSchemaTransformer], tool: ToolDefinition
    ) -> ToolDefinition:
        source = tool.parameters_json_schema
        key = (id(source), tool.strict)
        entry = self._schemas.get(key)
        if entry is None or entry[0] is not source:
            walker = transformer(source, strict=tool.strict)
            entry = (source, walker.walk(), walker.is_strict_compatible)
            if len(self._schemas) >= _SCHEMA_CACHE_LIMIT:
                self._schemas.clear()
            self._schemas[key] = entry
        _, schema, strict_compatible = entry
        return replace(
            tool,
            parameters_json_schema=schema,
            strict=strict_compatible if tool.strict is None else tool.strict,
        )
