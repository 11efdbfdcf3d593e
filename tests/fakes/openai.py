"""Fake OpenAI chat completions endpoint, as used by pydantic-ai's OpenAIChatModel.

Wire format: docs/openai.md and tests/fixtures/openai/.
pydantic-ai asks for structured output through a `final_result` function tool with
`tool_choice: "required"`, so the default answer calls that tool with arguments built
from its JSON schema; a plain text agent (no tools) gets `content: "ok"`.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import deque
from typing import Any, Callable

from aiohttp import web

from .base import FakeServer

ERROR_BODIES: dict[int, dict[str, Any]] = {
    400: {
        "message": "Invalid request.",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    },
    401: {
        "message": "Incorrect API key provided.",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    },
    429: {
        "message": "Rate limit reached",
        "type": "rate_limit_error",
        "param": None,
        "code": "rate_limit_exceeded",
    },
    500: {
        "message": "The server had an error while processing your request. Sorry about that!",
        "type": "server_error",
        "param": None,
        "code": None,
    },
    503: {
        "message": "The engine is currently overloaded, please try again later.",
        "type": "server_error",
        "param": None,
        "code": None,
    },
}


def text(content: str) -> dict[str, Any]:
    """Assistant message that answers with plain text."""
    return {"content": content}


def tool_call(name: str, **arguments: Any) -> dict[str, Any]:
    """Assistant message that calls one tool (use final_result to end a pydantic-ai run)."""
    return {"tool_calls": [{"name": name, "arguments": arguments}]}


def openai_error(status: int, message: str | None = None) -> dict[str, Any]:
    err = dict(
        ERROR_BODIES.get(
            status, {"message": "Error", "type": "api_error", "param": None, "code": None}
        )
    )
    if message:
        err["message"] = message
    return {"error": err}


def _b64_floats(vector: list[float]) -> str:
    """The wire form of `encoding_format: base64`: little-endian float32, base64-encoded."""
    import base64
    import struct

    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


class FakeOpenAI(FakeServer):
    def __init__(self) -> None:
        super().__init__()
        self.responder: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        self.calls: list[dict[str, Any]] = []  # request bodies, in order
        self._script: deque[dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]]] = deque()
        self._call_seq = 0

    def setup_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/chat/completions", self._handle)
        router.add_post("/chat/completions", self._handle)
        router.add_post("/v1/embeddings", self._embeddings)
        router.add_post("/embeddings", self._embeddings)

    # -- embeddings --------------------------------------------------------------------
    # A bag of concepts: each word maps to a concept (itself, or what `synonyms` says), each
    # concept to a dimension. Texts sharing a concept are similar; the vector is unit length.
    synonyms: dict[str, str] = {}

    def embed(self, text: str, dimensions: int) -> list[float]:
        import hashlib
        import math
        import re
        import unicodedata

        plain = unicodedata.normalize("NFKD", text.lower()).encode("ascii", "ignore").decode()
        vector = [0.0] * dimensions
        for word in re.findall(r"[a-z]{3,}", plain):
            concept = self.synonyms.get(word, word)
            vector[int(hashlib.sha1(concept.encode()).hexdigest(), 16) % dimensions] += 1.0
        norm = math.sqrt(sum(v * v for v in vector)) or 1.0
        return [v / norm for v in vector]

    async def _embeddings(self, request: web.Request) -> web.Response:
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return web.json_response(openai_error(401), status=401)
        failure = self.take_failure()
        if failure is not None:
            return web.json_response(failure[1], status=failure[0])
        body = await request.json()
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        dimensions = int(body.get("dimensions") or 1536)
        self.calls.append(body)
        as_base64 = body.get("encoding_format") == "base64"  # the SDK's default
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": _b64_floats(vector) if as_base64 else vector,
            }
            for i, vector in enumerate(self.embed(str(t), dimensions) for t in inputs)
        ]
        tokens = sum(len(str(t).split()) for t in inputs)
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": body.get("model"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    # -- scripting ---------------------------------------------------------------------
    def script(self, *replies: dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        """Queue replies used one per request, before `responder` / the default."""
        self._script.extend(replies)

    def fail_next(self, status: int, times: int = 1, body: dict[str, Any] | None = None) -> None:
        self.queue_failure(status, times, body or openai_error(status))

    # -- handler -------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            return web.json_response(
                openai_error(
                    401,
                    "You didn't provide an API key. You need to provide your API key in an "
                    "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                ),
                status=401,
            )
        await self.sleep_delay()
        failure = self.take_failure()
        if failure is not None:
            return web.json_response(failure[1], status=failure[0])
        try:
            body = await request.json()
        except ValueError:
            return web.json_response(
                openai_error(400, "We could not parse the JSON body of your request."), status=400
            )
        if not isinstance(body, dict) or "model" not in body or not body.get("messages"):
            return web.json_response(
                openai_error(400, "'messages' and 'model' are required."), status=400
            )
        if body.get("stream"):
            # Not implemented: fail loudly rather than answer in the wrong format.
            return web.json_response(
                openai_error(400, "FakeOpenAI does not implement stream=true."), status=400
            )
        self.calls.append(body)

        if self._script:
            reply = self._script.popleft()
            reply = reply(body) if callable(reply) else reply
        elif self.responder is not None:
            reply = self.responder(body)
        else:
            reply = self.default_reply(body)
        return web.json_response(self._completion(body, reply))

    @staticmethod
    def default_reply(body: dict[str, Any]) -> dict[str, Any]:
        for tool in body.get("tools") or []:
            fn = tool.get("function") or {}
            if fn.get("name") == "final_result":
                return tool_call("final_result", **_args_from_schema(fn.get("parameters") or {}))
        return text("ok")

    def _completion(self, body: dict[str, Any], reply: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.get("content")}
        finish_reason = "stop"
        if reply.get("tool_calls"):
            calls = []
            for call in reply["tool_calls"]:
                self._call_seq += 1
                args = call.get("arguments", {})
                calls.append(
                    {
                        "id": call.get("id") or f"call_{self._call_seq}",
                        "type": "function",
                        "function": {
                            "name": call["name"],
                            # `arguments` is a JSON *string* on the wire.
                            "arguments": args
                            if isinstance(args, str)
                            else json.dumps(args, ensure_ascii=False),
                        },
                    }
                )
            message["tool_calls"] = calls
            finish_reason = "tool_calls"
        # "length": what a server says when the reply hit max_tokens (the reply is cut off).
        finish_reason = reply.get("finish_reason", finish_reason)
        prompt_tokens = max(1, len(json.dumps(body.get("messages"), ensure_ascii=False)) // 4)
        completion_tokens = max(1, len(json.dumps(message, ensure_ascii=False)) // 4)
        return {
            "id": "chatcmpl-" + secrets.token_hex(12),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            "system_fingerprint": "fp_fake",
        }


def _args_from_schema(schema: dict[str, Any], defs: dict[str, Any] | None = None) -> Any:
    """Smallest valid instance of a JSON schema: strings "ok", enums their first value."""
    defs = defs if defs is not None else schema.get("$defs", {})
    if "$ref" in schema:
        return _args_from_schema(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return _args_from_schema(options[0], defs)
    kind = schema.get("type", "string")
    if isinstance(kind, list):  # e.g. ["string", "null"]
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties") or {}
        # Strict tools require every property; pydantic only the `required` ones.
        return {name: _args_from_schema(sub, defs) for name, sub in props.items()}
    if kind == "array":
        return (
            [_args_from_schema(schema["items"], defs)]
            if schema.get("minItems") and "items" in schema
            else []
        )
    if kind in ("integer", "number"):
        return schema.get("minimum", schema.get("exclusiveMinimum", -1) + 1)
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return _STRING_FORMATS.get(schema.get("format", ""), "ok").ljust(
        schema.get("minLength", 0), "k"
    )


# Strings with a `format` must still validate on the pydantic side.
_STRING_FORMATS = {
    "date": "2026-01-01",
    "date-time": "2026-01-01T00:00:00Z",
    "time": "00:00:00",
    "email": "ok@example.com",
    "uri": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
}
