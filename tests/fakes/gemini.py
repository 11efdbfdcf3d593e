"""Fake Gemini Developer API (generativelanguage.googleapis.com) for google-genai.

Wire format: docs/gemini.md and tests/fixtures/gemini/.
Served under both /v1/ and /v1beta/ because google-genai >= 3.0 defaults to v1 while
older code and many examples use v1beta. Part keys are accepted in both casings
(`mime_type`/`mimeType`, `file_uri`/`fileUri`, `inline_data`/`inlineData`) because the
SDK sends snake_case inside parts and camelCase elsewhere, and proto-JSON accepts both.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from aiohttp import web

from .base import FakeServer

DEFAULT_TRANSCRIPT = "Hola, quisiera una cita para limpieza facial mañana en la tarde"

# Google API error statuses by HTTP code (google.rpc.Code names).
ERROR_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
ERROR_MESSAGE = {
    400: "Request contains an invalid argument.",
    403: "The caller does not have permission",
    404: "Requested entity was not found.",
    429: "Resource has been exhausted (e.g. check quota).",
    500: "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
    504: "Deadline expired before operation could complete.",
}


@dataclass
class GeminiRequest:
    api_version: str  # "v1" or "v1beta"
    model: str  # without the "models/" prefix
    mime_types: list[str]  # of inline and file parts, in order
    prompts: list[str]  # text parts of `contents`, in order
    inline_bytes: int  # total decoded size of inline parts
    has_file_uri: bool
    system_instruction: str | None = None
    generation_config: dict[str, Any] = field(default_factory=dict)
    stream: bool = False
    body: dict[str, Any] = field(default_factory=dict)  # the raw request JSON


@dataclass
class _File:
    id: str
    mime_type: str
    size_bytes: int
    display_name: str | None
    data: bytearray = field(default_factory=bytearray)
    created: float = field(default_factory=time.time)
    finalized: bool = False


def _pick(d: dict[str, Any], *keys: str) -> Any:
    for k in keys:
        if k in d:
            return d[k]
    return None


def _rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


class FakeGemini(FakeServer):
    def __init__(self, *, api_key: str | None = None) -> None:
        super().__init__()
        self.api_key = api_key  # None: any non-empty key is accepted
        self.responder: Callable[[GeminiRequest], str | None] | None = (
            None  # None -> blocked prompt
        )
        self.transcripts: dict[str, str] = {}  # audio mime type -> transcript
        self.known_models: set[str] | None = None  # None: every model exists
        self.down = False  # True: every call answers 503 UNAVAILABLE
        self.file_processing_s = 0.0  # files stay PROCESSING this long after upload
        self.calls: list[GeminiRequest] = []
        self.files: dict[str, _File] = {}

    def setup_routes(self, router: web.UrlDispatcher) -> None:
        # aiohttp can't route on the ":method" suffix, so one route splits it itself.
        router.add_post(r"/{ver:v1|v1beta}/models/{target}", self._handle_model_call)
        router.add_post(r"/upload/{ver:v1|v1beta}/files", self._handle_upload)
        router.add_get(r"/{ver:v1|v1beta}/files/{file_id}", self._handle_get_file)
        router.add_delete(r"/{ver:v1|v1beta}/files/{file_id}", self._handle_delete_file)

    # -- scripting ---------------------------------------------------------------------
    def fail_next(self, code: int, times: int = 1, message: str | None = None) -> None:
        """The next `times` generateContent/streamGenerateContent calls fail with `code`."""
        self.queue_failure(code, times, google_error(code, message))

    # -- generateContent ------------------------------------------------------------------
    async def _handle_model_call(self, request: web.Request) -> web.StreamResponse:
        ver = request.match_info["ver"]
        model, _, method = request.match_info["target"].partition(":")
        if method not in ("generateContent", "streamGenerateContent"):
            return _error(404, f"Method {method or '(none)'} not found.")
        denied = self._check_key(request)
        if denied is not None:
            return denied
        if self.down:
            return _error(503)
        await self.sleep_delay()
        failure = self.take_failure()
        if failure is not None:
            return web.json_response(failure[1], status=failure[0])
        if self.known_models is not None and model not in self.known_models:
            return _error(
                404,
                f"models/{model} is not found for API version {ver}, or is not supported for {method}.",
            )
        try:
            body = await request.json()
            call = self._parse(ver, model, body, stream=method == "streamGenerateContent")
        except (ValueError, TypeError, AttributeError, binascii.Error) as exc:
            return _error(400, f"Invalid JSON payload received. {exc}")
        if not body.get("contents"):
            return _error(400, "* GenerateContentRequest.contents: contents is not specified")
        self.calls.append(call)

        text = self.responder(call) if self.responder is not None else self.default_answer(call)
        response = self._response(call, text)
        if not call.stream:
            return web.json_response(response)
        return await self._stream(request, call, text, response)

    def _check_key(self, request: web.Request) -> web.Response | None:
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        if not key:
            return _error(
                403,
                "Method doesn't allow unregistered callers (callers without established identity)."
                " Please use API Key or other form of API consumer identity to call this API.",
            )
        if self.api_key is not None and key != self.api_key:
            return _error(400, "API key not valid. Please pass a valid API key.")
        return None

    def _parse(self, ver: str, model: str, body: dict[str, Any], *, stream: bool) -> GeminiRequest:
        mime_types: list[str] = []
        prompts: list[str] = []
        inline_bytes = 0
        has_file_uri = False
        for content in body.get("contents") or []:
            for part in content.get("parts") or []:
                if "text" in part:
                    prompts.append(part["text"])
                inline = _pick(part, "inlineData", "inline_data")
                if inline is not None:
                    mime_types.append(_pick(inline, "mimeType", "mime_type") or "")
                    inline_bytes += len(_b64decode(inline.get("data", "")))
                file_data = _pick(part, "fileData", "file_data")
                if file_data is not None:
                    uri = _pick(file_data, "fileUri", "file_uri") or ""
                    has_file_uri = True
                    mime = _pick(file_data, "mimeType", "mime_type")
                    known = self.files.get(uri.rstrip("/").rsplit("/", 1)[-1])
                    mime_types.append(mime or (known.mime_type if known else ""))
        system = _pick(body, "systemInstruction", "system_instruction")
        system_text = None
        if system:
            system_text = "\n".join(p.get("text", "") for p in system.get("parts") or [])
        return GeminiRequest(
            api_version=ver,
            model=model.removeprefix("models/"),
            mime_types=mime_types,
            prompts=prompts,
            inline_bytes=inline_bytes,
            has_file_uri=has_file_uri,
            system_instruction=system_text,
            generation_config=_pick(body, "generationConfig", "generation_config") or {},
            stream=stream,
            body=body,
        )

    def default_answer(self, call: GeminiRequest) -> str:
        mime = call.mime_types[0].split(";")[0].strip().lower() if call.mime_types else ""
        if mime.startswith("audio/"):
            text = self.transcripts.get(mime, self.transcripts.get("audio", DEFAULT_TRANSCRIPT))
        elif mime.startswith("image/"):
            text = (
                "Una lista de precios de un salón de belleza: limpieza facial 45 €, manicura 20 €."
            )
        elif mime == "application/pdf":
            text = "Documento: factura de un salón de belleza, total 65 €."
        elif mime.startswith("video/"):
            text = "Video: una clienta muestra el resultado de un tratamiento facial."
        elif mime:
            text = f"Archivo {mime}."
        else:
            text = "ok"
        config = call.generation_config
        if _pick(config, "responseMimeType", "response_mime_type") == "application/json":
            schema = _pick(
                config,
                "responseSchema",
                "response_schema",
                "responseJsonSchema",
                "response_json_schema",
            )
            return json.dumps(_value_from_schema(schema or {"type": "STRING"}, text))
        return text

    def _response(self, call: GeminiRequest, text: str | None) -> dict[str, Any]:
        # Token counts are made up but deterministic and internally consistent.
        text_tokens = max(1, sum(len(p) for p in call.prompts) // 4)
        media_tokens = call.inline_bytes // 100 + (258 if call.has_file_uri else 0)
        prompt_tokens = text_tokens + media_tokens
        details = [{"modality": "TEXT", "tokenCount": text_tokens}]
        if call.mime_types:
            details.insert(
                0, {"modality": _modality(call.mime_types[0]), "tokenCount": media_tokens}
            )
        out: dict[str, Any] = {}
        if text is None:  # responder returned None: prompt blocked, no candidates
            out["promptFeedback"] = {"blockReason": "SAFETY"}
            usage: dict[str, Any] = {
                "promptTokenCount": prompt_tokens,
                "totalTokenCount": prompt_tokens,
            }
        else:
            out["candidates"] = [
                {
                    "content": {"parts": [{"text": text}], "role": "model"},
                    "finishReason": "STOP",
                    "index": 0,
                }
            ]
            cand_tokens = max(1, len(text) // 4)
            usage = {
                "promptTokenCount": prompt_tokens,
                "candidatesTokenCount": cand_tokens,
                "totalTokenCount": prompt_tokens + cand_tokens,
            }
        usage["promptTokensDetails"] = details
        out["usageMetadata"] = usage
        out["modelVersion"] = call.model
        out["responseId"] = secrets.token_urlsafe(16)
        return out

    async def _stream(
        self,
        request: web.Request,
        call: GeminiRequest,
        text: str | None,
        response: dict[str, Any],
    ) -> web.StreamResponse:
        # SSE: `data: <GenerateContentResponse>\r\n\r\n` per chunk; the text is split in
        # two chunks and only the last one carries finishReason.
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        chunks = [response]
        if text:
            half = len(text) // 2 or len(text)
            first = json.loads(json.dumps(response))
            first["candidates"][0]["content"]["parts"] = [{"text": text[:half]}]
            del first["candidates"][0]["finishReason"]
            last = json.loads(json.dumps(response))
            last["candidates"][0]["content"]["parts"] = [{"text": text[half:]}]
            chunks = [first, last] if text[half:] else [response]
        for chunk in chunks:
            await resp.write(b"data: " + json.dumps(chunk).encode() + b"\r\n\r\n")
        await resp.write_eof()
        return resp

    # -- Files API (resumable upload) ---------------------------------------------------
    async def _handle_upload(self, request: web.Request) -> web.Response:
        denied = self._check_key(request) if "upload_id" not in request.query else None
        if denied is not None:
            return denied
        if self.down:
            return _error(503)
        command = request.headers.get("X-Goog-Upload-Command", "").lower()
        commands = {c.strip() for c in command.split(",")}
        ver = request.match_info["ver"]
        if "start" in commands:
            return await self._upload_start(request, ver)
        upload_id = request.query.get("upload_id", "")
        f = self.files.get(upload_id)
        if f is None or f.finalized:
            return _error(404, "Upload session not found or already finalized.")
        offset = int(request.headers.get("X-Goog-Upload-Offset", "-1"))
        if offset != len(f.data):
            return _error(400, f"Invalid upload offset {offset}, expected {len(f.data)}.")
        if "upload" in commands:
            f.data.extend(await request.read())
        if "finalize" not in commands:
            return web.Response(headers={"X-Goog-Upload-Status": "active"})
        f.finalized = True
        f.size_bytes = len(f.data)
        f.created = time.time()
        return web.json_response(
            {"file": self._file_json(f, ver)}, headers={"X-Goog-Upload-Status": "final"}
        )

    async def _upload_start(self, request: web.Request, ver: str) -> web.Response:
        if request.headers.get("X-Goog-Upload-Protocol", "").lower() != "resumable":
            return _error(400, "Only the resumable upload protocol is supported by this fake.")
        raw = await request.read()  # (cached by the recorder; can_read_body is False now)
        meta = (json.loads(raw) if raw else {}).get("file") or {}
        mime = _pick(meta, "mimeType", "mime_type") or request.headers.get(
            "X-Goog-Upload-Header-Content-Type", "application/octet-stream"
        )
        size = int(
            _pick(meta, "sizeBytes", "size_bytes")
            or request.headers.get("X-Goog-Upload-Header-Content-Length", 0)
        )
        file_id = secrets.token_hex(6)
        self.files[file_id] = _File(file_id, mime, size, _pick(meta, "displayName", "display_name"))
        upload_url = f"{self.url}/upload/{ver}/files?upload_id={file_id}&upload_protocol=resumable"
        return web.Response(
            headers={
                "X-Goog-Upload-URL": upload_url,
                "X-Goog-Upload-Control-URL": upload_url,
                "X-Goog-Upload-Status": "active",
                "X-Goog-Upload-Chunk-Granularity": "8388608",
            }
        )

    async def _handle_get_file(self, request: web.Request) -> web.Response:
        denied = self._check_key(request)
        if denied is not None:
            return denied
        file_id = request.match_info["file_id"]
        f = self.files.get(file_id)
        if f is None or not f.finalized:
            # The real API answers 403, not 404, for files that don't exist (or aren't yours).
            return _error(
                403, f"You do not have permission to access the File {file_id} or it may not exist."
            )
        return web.json_response(self._file_json(f, request.match_info["ver"]))

    async def _handle_delete_file(self, request: web.Request) -> web.Response:
        denied = self._check_key(request)
        if denied is not None:
            return denied
        if self.files.pop(request.match_info["file_id"], None) is None:
            return _error(403, "You do not have permission to access the File or it may not exist.")
        return web.json_response({})

    def _file_json(self, f: _File, ver: str) -> dict[str, Any]:
        state = "PROCESSING" if time.time() < f.created + self.file_processing_s else "ACTIVE"
        out = {
            "name": f"files/{f.id}",
            "mimeType": f.mime_type,
            "sizeBytes": str(f.size_bytes),  # int64 is a string in proto-JSON
            "createTime": _rfc3339(f.created),
            "updateTime": _rfc3339(f.created),
            "expirationTime": _rfc3339(f.created + 48 * 3600),
            "sha256Hash": base64.b64encode(hashlib.sha256(f.data).hexdigest().encode()).decode(),
            "uri": f"{self.url}/{ver}/files/{f.id}",
            "state": state,
            "source": "UPLOADED",
        }
        if f.display_name:
            out["displayName"] = f.display_name
        return out


def google_error(code: int, message: str | None = None) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message or ERROR_MESSAGE.get(code, "Error"),
            "status": ERROR_STATUS.get(code, "UNKNOWN"),
        }
    }


def _error(code: int, message: str | None = None) -> web.Response:
    return web.json_response(google_error(code, message), status=code)


def _b64decode(data: str) -> bytes:
    """Proto-JSON bytes: standard or URL-safe base64, padded or not, are all accepted.

    google-genai sends URL-safe base64 (pydantic's `ser_json_bytes`), so `-` and `_` occur.
    """
    data = data.replace("-", "+").replace("_", "/")
    return base64.b64decode(data + "=" * (-len(data) % 4), validate=True)


def _modality(mime: str) -> str:
    major = mime.split("/")[0].lower()
    return {"audio": "AUDIO", "image": "IMAGE", "video": "VIDEO"}.get(major, "DOCUMENT")


def _value_from_schema(schema: dict[str, Any], text: str) -> Any:
    """Minimal instance of a Gemini (uppercase types) or JSON schema; strings get `text`."""
    if "enum" in schema:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [s for s in schema[key] if str(s.get("type", "")).upper() != "NULL"]
            return _value_from_schema(options[0] if options else schema[key][0], text)
    kind = str(schema.get("type", "STRING")).upper()
    if kind == "OBJECT":
        props = schema.get("properties") or {}
        return {name: _value_from_schema(sub, text) for name, sub in props.items()}
    if kind == "ARRAY":
        return [_value_from_schema(schema.get("items") or {}, text)]
    return {"INTEGER": 0, "NUMBER": 0.0, "BOOLEAN": False, "NULL": None}.get(kind, text)
