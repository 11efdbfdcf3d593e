"""The fakes in tests/fakes speak the real wire formats: checked with the real clients.

Gupshup has no Python SDK, so its fake is driven with plain aiohttp and its callback
bodies are compared key-by-key (and type-by-type) with tests/fixtures/gupshup/.
"""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any, Literal

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from pydantic import BaseModel

from tests.helpers import FIXTURES, strip_notes
from tests.fakes import (
    FakeGemini,
    FakeGupshup,
    FakeOpenAI,
    FakeServer,
    FakeSupabaseStorage,
    text,
    tool_call,
)

pytestmark = pytest.mark.asyncio


def load_fixture(name: str) -> Any:
    return strip_notes(json.loads((FIXTURES / name).read_text()))


def shape(obj: Any) -> Any:
    """Keys and JSON types, values ignored: two payloads of one format have one shape."""
    if isinstance(obj, dict):
        return {k: shape(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [shape(obj[0])] if obj else []
    return type(obj).__name__


class Receiver(FakeServer):
    """Stands in for our webhook: answers 200 with an empty body, records requests."""

    def setup_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/hook", self._hook)

    async def _hook(self, request: web.Request) -> web.Response:
        return web.Response(status=200)


@pytest_asyncio.fixture
async def gupshup():
    async with FakeGupshup(app_name="DemoAPI") as fake:
        yield fake


@pytest_asyncio.fixture
async def receiver():
    async with Receiver() as r:
        yield r


FORM = {
    "channel": "whatsapp",
    "source": "919999999999",
    "destination": "919876543210",
    "src.name": "DemoApp",
    "message": json.dumps({"type": "text", "text": "Olá! Recebemos sua mensagem."}),
}


# --------------------------------------------------------------------------- Gupshup
async def test_gupshup_send_is_form_encoded_and_answers_json_as_text_html(gupshup):
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{gupshup.url}/wa/api/v1/msg", data=FORM, headers={"apikey": "k1"}
        ) as resp:
            assert resp.status == 200
            assert resp.content_type == "text/html"
            with pytest.raises(aiohttp.ContentTypeError):  # the trap the real API sets
                await resp.json()
            body = json.loads(await resp.text())
        template_form = load_fixture("gupshup/gupshup_template_send_request.form.json")
        async with http.post(
            f"{gupshup.url}/wa/api/v1/template/msg", data=template_form, headers={"apikey": "k1"}
        ) as resp:
            tbody = await resp.json(content_type=None)

    assert body["status"] == "submitted" and len(body["messageId"]) == 36
    sent = await gupshup.wait_for_sent(2, timeout_s=1)
    assert sent[0].kind == "session" and sent[0].message == {
        "type": "text",
        "text": "Olá! Recebemos sua mensagem.",
    }
    assert (sent[0].source, sent[0].destination, sent[0].app, sent[0].apikey) == (
        "919999999999",
        "919876543210",
        "DemoApp",
        "k1",
    )
    assert sent[0].message_id == body["messageId"]
    assert sent[1].kind == "template" and sent[1].template["params"] == [
        "Maria",
        "2026-12-20",
        "10h",
    ]
    assert sent[1].message_id == tbody["messageId"]
    assert gupshup.requests[0]["form"]["src.name"] == "DemoApp"


async def test_gupshup_auth_scripted_failures_and_json_body_mistake(gupshup):
    gupshup.fail_next(429)
    gupshup.fail_next(500)
    url = f"{gupshup.url}/wa/api/v1/msg"
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=FORM) as resp:
            assert resp.status == 401
            assert json.loads(await resp.text()) == load_fixture(
                "gupshup/gupshup_send_error_auth_401.json"
            )
        async with http.post(url, data=FORM, headers={"apikey": "k"}) as resp:
            assert resp.status == 429
            assert json.loads(await resp.text()) == load_fixture(
                "gupshup/gupshup_error_too_many_requests_429.json"
            )
        async with http.post(url, data=FORM, headers={"apikey": "k"}) as resp:
            assert resp.status == 500
        async with http.post(
            url, json=FORM, headers={"apikey": "k"}
        ) as resp:  # JSON instead of form
            assert resp.status == 400
            assert json.loads(await resp.text()) == load_fixture(
                "gupshup/gupshup_send_error_invalid_destination_400.json"
            )
        async with http.post(url, data=FORM, headers={"apikey": "k"}) as resp:
            assert resp.status == 200
    assert len(gupshup.requests) == 5 and len(gupshup.sent) == 1
    with pytest.raises(asyncio.TimeoutError):
        await gupshup.wait_for_sent(2, timeout_s=0.05)


async def test_gupshup_status_callbacks_in_order_with_bearer(gupshup, receiver):
    gupshup.callback_url = f"{receiver.url}/hook"
    gupshup.callback_token = "s3cret"
    gupshup.callback_delay_s = 0.01
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{gupshup.url}/wa/api/v1/msg", data=FORM, headers={"apikey": "k"}
        ) as resp:
            message_id = json.loads(await resp.text())["messageId"]
    await gupshup.drain_callbacks()

    events = [r["json"] for r in receiver.requests]
    assert [e["payload"]["type"] for e in events] == ["enqueued", "sent", "delivered", "read"]
    assert all(r["headers"]["Authorization"] == "Bearer s3cret" for r in receiver.requests)
    assert all(status == 200 for _, status in gupshup.callbacks)
    enqueued, sent, delivered, read = events
    assert enqueued["payload"]["id"] == message_id and "gsId" not in enqueued["payload"]
    wamid = sent["payload"]["id"]
    assert (
        wamid.startswith("wamid.") and wamid == delivered["payload"]["id"] == read["payload"]["id"]
    )
    assert {sent["payload"]["gsId"], delivered["payload"]["gsId"], read["payload"]["gsId"]} == {
        message_id
    }
    for event, fixture in zip(events, ("enqueued", "sent", "delivered", "read")):
        assert shape(event) == shape(
            load_fixture(f"gupshup/gupshup_message_event_{fixture}.json")
        ), fixture


async def test_gupshup_post_status_layouts_match_fixtures(gupshup, receiver):
    gupshup.callback_url = f"{receiver.url}/hook"
    mid = "7daeb742-f2dc-4c09-90e0-d879d20f7b98"
    cases = [
        ("failed", "v2", {}, "gupshup_message_event_failed_sync.json"),
        ("failed", "v2", {"failed_async": True}, "gupshup_message_event_failed_async.json"),
        *[
            (s, "v3", {}, f"gupshup_v3_status_{s}.json")
            for s in ("enqueued", "sent", "delivered", "read")
        ],
        ("failed", "v3", {"code": 131047}, "gupshup_v3_status_failed.json"),
    ]
    for status, layout, extra, fixture in cases:
        assert await gupshup.post_status(mid, status, layout=layout, **extra) == 200
        got = receiver.requests[-1]["json"]
        assert shape(got) == shape(load_fixture(f"gupshup/{fixture}")), fixture
    failed_v3 = receiver.requests[-1]["json"]["entry"][0]["changes"][0]["value"]["statuses"][0]
    assert failed_v3["errors"][0]["code"] == 131047 and failed_v3["gs_id"] == mid

    # 2026 BSUID layout (partner-docs /docs/bsuid): ts moves into payload.payload.
    await gupshup.post_status(mid, "sent", layout="v2_bsuid", ts=1776944126)
    bsuid = receiver.requests[-1]["json"]["payload"]
    assert bsuid["payload"] == {"ts": 1776944126} and "ts" not in bsuid
    assert bsuid["gsId"] == mid and bsuid["userId"].startswith("IN.")
    assert set(bsuid) == {
        "id",
        "gsId",
        "type",
        "destination",
        "payload",
        "conversation",
        "pricing",
        "userId",
    }

    platform = load_fixture("gupshup/gupshup_platform_event_connectivity_check_v2.json")
    assert await gupshup.post_event(platform) == 200
    assert receiver.requests[-1]["json"] == platform


async def test_gupshup_media_host(gupshup):
    data = bytes(range(256)) * 1000  # 256 KB -> several chunks
    url = gupshup.add_media(data, "audio/ogg; codecs=opus")
    expired = gupshup.add_media(b"x", "image/jpeg", expires_after_s=0)
    assert url.startswith(f"{gupshup.url}/wa/{gupshup.app_id}/wa/media/") and url.endswith(
        "?download=false"
    )
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as resp:  # no auth header at all
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "audio/ogg; codecs=opus"
            assert resp.content_length == len(data)
            assert await resp.read() == data
        gupshup.fail_media_next(503)
        async with http.get(url) as resp:
            assert resp.status == 503
        async with http.get(expired) as resp:
            assert resp.status == 404
            assert json.loads(await resp.text()) == load_fixture(
                "gupshup/gupshup_filemanager_invalid_media_404.json"
            )
        for _ in range(19):  # 20 invalid calls in total are still plain 404s
            async with http.get(
                f"{gupshup.url}/wa/{gupshup.app_id}/wa/media/nope?download=false"
            ) as resp:
                assert resp.status == 404
        async with http.get(expired) as resp:
            assert resp.status == 429
            body = json.loads(await resp.text())
        async with http.get(url) as resp:  # the cooldown blocks valid media too
            assert resp.status == 429
    assert body["status"] == "error"
    assert body["message"].startswith(
        "Api rate limit reached due to multiple invalid calls. New quota will be"
    )


# ---------------------------------------------------------------------------- Gemini
@pytest_asyncio.fixture
async def gemini():
    async with FakeGemini() as fake:
        yield fake


@pytest_asyncio.fixture
async def genai_client(gemini):
    """Factory of real google-genai clients pointed at the fake; closed at teardown."""
    from google import genai
    from google.genai import types

    clients = []

    def make(api_version: str | None = None):
        opts = types.HttpOptions(base_url=gemini.url)
        if api_version:
            opts.api_version = api_version
        clients.append(genai.Client(api_key="test-key", http_options=opts))
        return clients[-1]

    yield make
    for client in clients:
        await client.aio.aclose()


async def test_gemini_audio_inline_v1beta(gemini, genai_client):
    from google.genai import types

    client = genai_client("v1beta")
    resp = await client.aio.models.generate_content(
        model="gemini-3.5-flash",
        contents=[
            types.Part.from_bytes(data=b"OggS" + bytes(400), mime_type="audio/ogg"),
            "Transcribe el audio.",
        ],
        config=types.GenerateContentConfig(
            system_instruction="Eres un transcriptor.", temperature=0.0
        ),
    )
    assert resp.text == "Hola, quisiera una cita para limpieza facial mañana en la tarde"
    assert resp.usage_metadata.total_token_count == (
        resp.usage_metadata.prompt_token_count + resp.usage_metadata.candidates_token_count
    )
    call = gemini.calls[0]
    assert (call.api_version, call.model, call.mime_types, call.inline_bytes) == (
        "v1beta",
        "gemini-3.5-flash",
        ["audio/ogg"],
        404,
    )
    assert (
        call.prompts == ["Transcribe el audio."]
        and call.system_instruction == "Eres un transcriptor."
    )
    assert gemini.requests[0]["headers"]["x-goog-api-key"] == "test-key"
    assert shape(gemini._response(call, "x")) == shape(
        load_fixture("gemini/gemini_generate_content_response.json")
    )


async def test_gemini_default_v1_image_stream_and_structured(gemini, genai_client):
    from google.genai import types

    client = genai_client()  # google-genai 3.x default: /v1/
    resp = await client.aio.models.generate_content(
        model="models/gemini-3.5-flash",
        contents=[
            types.Part.from_bytes(data=b"\x89PNG" + bytes(60), mime_type="image/png"),
            "Describe",
        ],
    )
    assert resp.text.startswith("Una lista de precios")
    assert gemini.calls[0].api_version == "v1" and gemini.calls[0].model == "gemini-3.5-flash"

    gemini.transcripts["audio/mpeg"] = "Quiero cancelar mi cita"
    chunks = [
        c.text
        async for c in await client.aio.models.generate_content_stream(
            model="gemini-3.5-flash",
            contents=[types.Part.from_bytes(data=b"ID3", mime_type="audio/mpeg")],
        )
    ]
    assert len(chunks) == 2 and "".join(chunks) == "Quiero cancelar mi cita"
    assert gemini.requests[-1]["query"] == {"alt": "sse"} and gemini.calls[-1].stream

    class Out(BaseModel):
        transcript: str
        urgent: bool

    gemini.responder = lambda call: '{"transcript": "hola", "urgent": true}'
    resp = await client.aio.models.generate_content(
        model="gemini-3.5-flash",
        contents="x",
        config=types.GenerateContentConfig(
            response_mime_type="application/json", response_schema=Out
        ),
    )
    assert resp.parsed == Out(transcript="hola", urgent=True)
    gemini.responder = None
    resp = await client.aio.models.generate_content(
        model="gemini-3.5-flash",
        contents=[types.Part.from_bytes(data=b"%PDF", mime_type="application/pdf")],
        config=types.GenerateContentConfig(
            response_mime_type="application/json", response_schema=Out
        ),
    )
    # Default JSON answer: the schema filled in, strings get the per-mime-type text.
    assert resp.parsed == Out(
        transcript="Documento: factura de un salón de belleza, total 65 €.", urgent=False
    )

    gemini.responder = lambda call: None  # blocked prompt: no candidates
    resp = await client.aio.models.generate_content(model="gemini-3.5-flash", contents="x")
    assert resp.text is None and resp.prompt_feedback.block_reason == types.BlockedReason.SAFETY


async def test_gemini_file_upload_then_generate(gemini, genai_client):
    from google.genai import types

    client = genai_client("v1beta")
    f = await client.aio.files.upload(
        file=io.BytesIO(b"OggS" + bytes(100)),
        config=types.UploadFileConfig(mime_type="audio/ogg", display_name="nota de voz"),
    )
    assert f.name.startswith("files/") and f.state == types.FileState.ACTIVE
    assert f.size_bytes == 104 and f.mime_type == "audio/ogg"
    assert bytes(gemini.files[f.name.removeprefix("files/")].data) == b"OggS" + bytes(100)
    start = gemini.requests_to("/upload/v1beta/files")[0]
    assert start["headers"]["X-Goog-Upload-Command"] == "start"
    # Upload metadata is snake_case on the wire (like inlineData.mime_type).
    assert start["json"] == {
        "file": {"display_name": "nota de voz", "mime_type": "audio/ogg", "size_bytes": 104}
    }
    assert start["headers"]["X-Goog-Upload-Header-Content-Type"] == "audio/ogg"
    finalize = gemini.requests_to("/upload/v1beta/files")[1]
    assert finalize["headers"]["X-Goog-Upload-Command"] == "upload, finalize"
    assert "x-goog-api-key" not in finalize["headers"]  # the session URL is the credential

    gemini.file_processing_s = 60  # state is computed on read: PROCESSING now ...
    assert (await client.aio.files.get(name=f.name)).state == types.FileState.PROCESSING
    gemini.file_processing_s = 0  # ... and ACTIVE once the processing time is over
    got = await client.aio.files.get(name=f.name)
    assert got.uri == f.uri and got.display_name == "nota de voz"
    resp = await client.aio.models.generate_content(
        model="gemini-3.5-flash", contents=[f, "Transcribe"]
    )
    assert resp.text == "Hola, quisiera una cita para limpieza facial mañana en la tarde"
    assert gemini.calls[-1].has_file_uri and gemini.calls[-1].mime_types == ["audio/ogg"]


async def test_gemini_accepts_fixture_requests_in_both_casings(gemini):
    url = f"{gemini.url}/v1/models/gemini-2.5-flash:generateContent"
    camel = {
        "contents": [
            {
                "parts": [{"inline_data": {"data": "T2dnUw==", "mimeType": "audio/ogg"}}],
                "role": "user",
            },
            {
                "parts": [
                    {"fileData": {"fileUri": "https://x/v1beta/files/abc", "mimeType": "video/mp4"}}
                ]
            },
        ]
    }
    async with aiohttp.ClientSession(headers={"x-goog-api-key": "k"}) as http:
        for body in (
            load_fixture("gemini/gemini_generate_content_request_image_inline.json"),
            load_fixture("gemini/gemini_generate_content_request_file_uri.json"),
            camel,
        ):
            async with http.post(url, json=body) as resp:
                assert resp.status == 200
                assert shape(await resp.json()) == shape(
                    load_fixture("gemini/gemini_generate_content_response.json")
                )
    image, file_uri, mixed = gemini.calls
    assert image.mime_types == ["image/png"] and image.system_instruction == "Você é um assistente."
    assert image.generation_config == {"temperature": 0.2, "maxOutputTokens": 512}
    assert (
        file_uri.has_file_uri
        and file_uri.mime_types == ["audio/ogg"]
        and file_uri.inline_bytes == 0
    )
    assert (
        mixed.mime_types == ["audio/ogg", "video/mp4"]
        and mixed.inline_bytes == 4
        and mixed.has_file_uri
    )


async def test_gemini_errors(gemini, genai_client):
    from google.genai import errors

    client = genai_client()
    gemini.fail_next(429)
    with pytest.raises(errors.ClientError) as exc:
        await client.aio.models.generate_content(model="gemini-3.5-flash", contents="hola")
    assert (exc.value.code, exc.value.status) == (429, "RESOURCE_EXHAUSTED")

    gemini.known_models = {"gemini-3.5-flash"}
    with pytest.raises(errors.ClientError) as exc:
        await client.aio.models.generate_content(model="gemini-2.0-flash", contents="hola")
    assert (exc.value.code, exc.value.status) == (404, "NOT_FOUND")

    gemini.down = True
    with pytest.raises(errors.ServerError) as exc:
        await client.aio.models.generate_content(model="gemini-3.5-flash", contents="hola")
    assert (exc.value.code, exc.value.status) == (503, "UNAVAILABLE")

    async with aiohttp.ClientSession() as http:  # the SDK refuses to run without a key
        async with http.post(
            f"{gemini.url}/v1/models/m:generateContent", json={"contents": []}
        ) as resp:
            assert resp.status == 403
            assert (await resp.json())["error"]["status"] == "PERMISSION_DENIED"
    assert len(gemini.calls) == 0


# ---------------------------------------------------------------------------- OpenAI
@pytest_asyncio.fixture
async def openai_fake():
    async with FakeOpenAI() as fake:
        yield fake


@pytest_asyncio.fixture
async def chat_model(openai_fake):
    """pydantic-ai model on a real AsyncOpenAI client (no SDK retries) aimed at the fake."""
    from openai import AsyncOpenAI
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    client = AsyncOpenAI(base_url=openai_fake.url + "/v1", api_key="k", max_retries=0)
    yield OpenAIChatModel("gpt-4o-mini", provider=OpenAIProvider(openai_client=client))
    await client.close()


class Reply(BaseModel):
    reply: str
    intent: Literal["greeting", "schedule", "other"]


async def test_openai_pydantic_ai_tool_call_then_final_result(
    openai_fake, chat_model, allow_model_requests
):
    from pydantic_ai import Agent

    agent = Agent(chat_model, output_type=Reply, instructions="Eres recepcionista.")
    looked_up: list[str] = []

    @agent.tool_plain
    def lookup_customer(phone: str) -> dict:
        """Busca cliente por teléfono."""
        looked_up.append(phone)
        return {"name": "Maria"}

    openai_fake.script(tool_call("lookup_customer", phone="5511999999999"))  # then the default
    result = await agent.run("hola")
    assert looked_up == ["5511999999999"]
    assert result.output == Reply(reply="ok", intent="greeting")  # built from final_result's schema
    assert result.usage.requests == 2 and result.usage.input_tokens > 0

    first, second = openai_fake.calls
    assert first["tool_choice"] == "required"
    assert {t["function"]["name"] for t in first["tools"]} == {"lookup_customer", "final_result"}
    tool_msg = second["messages"][-1]
    assert tool_msg["role"] == "tool" and json.loads(tool_msg["content"]) == {"name": "Maria"}
    assert openai_fake.requests[0]["headers"]["Authorization"] == "Bearer k"

    openai_fake.responder = lambda body: tool_call(
        "final_result", reply="¡Hola!", intent="schedule"
    )
    assert (await agent.run("cita")).output == Reply(reply="¡Hola!", intent="schedule")


async def test_openai_text_shape_and_errors(openai_fake, chat_model, allow_model_requests):
    from pydantic_ai import Agent
    from pydantic_ai.exceptions import ModelHTTPError

    agent = Agent(chat_model)
    assert (await agent.run("hola")).output == "ok"
    openai_fake.script(text("¿En qué te ayudo?"))
    assert (await agent.run("hola")).output == "¿En qué te ayudo?"
    completion = openai_fake._completion({"model": "gpt-4o-mini", "messages": []}, text("x"))
    assert shape(completion) == shape(load_fixture("openai/openai_chat_response_text.json"))
    completion = openai_fake._completion(
        {"model": "gpt-4o-mini", "messages": []}, tool_call("f", a=1)
    )
    assert shape(completion) == shape(load_fixture("openai/openai_chat_response_tool_call.json"))

    openai_fake.fail_next(429)
    with pytest.raises(ModelHTTPError) as exc:
        await agent.run("hola")
    assert exc.value.status_code == 429 and exc.value.body["code"] == "rate_limit_exceeded"
    openai_fake.fail_next(500)
    with pytest.raises(ModelHTTPError) as exc:
        await agent.run("hola")
    assert exc.value.status_code == 500

    async with aiohttp.ClientSession() as http:
        async with http.post(f"{openai_fake.url}/v1/chat/completions", json={}) as resp:
            assert (
                resp.status == 401
                and (await resp.json())["error"]["type"] == "invalid_request_error"
            )


# -------------------------------------------------------------------- Supabase Storage
async def test_supabase_storage_with_real_client():
    supabase = pytest.importorskip("supabase")
    from storage3.exceptions import StorageApiError

    async with FakeSupabaseStorage() as fake:
        sb = await supabase.acreate_client(fake.url, "service-role-key")
        async with sb.storage:  # closes the client's httpx session
            bucket = sb.storage.from_("chat-media")
            path = "org1/chat1/voice 1.ogg"
            up = await bucket.upload(
                path, b"OggS-data", {"content-type": "audio/ogg", "upsert": "true"}
            )
            assert up.full_path == f"chat-media/{path}" and up.path == path
            assert fake.objects[f"chat-media/{path}"] == (b"OggS-data", "audio/ogg")
            upload_req = fake.requests_to("/storage/v1/object/chat-media/")[0]
            assert upload_req["headers"]["apiKey"] == "service-role-key"
            assert upload_req["headers"]["x-upsert"] == "true"
            assert upload_req["headers"]["Content-Type"].startswith("multipart/form-data")

            with pytest.raises(StorageApiError) as exc:  # second upload without upsert
                await bucket.upload(path, b"other", {"content-type": "audio/ogg"})
            assert str(exc.value.status) == "409"

            assert await bucket.download(path) == b"OggS-data"
            signed = (await bucket.create_signed_url(path, 3600))["signedURL"]
            assert signed.startswith(f"{fake.url}/storage/v1/object/sign/chat-media/")
            async with aiohttp.ClientSession() as http:
                async with http.get(signed) as resp:  # no key: the token is the credential
                    assert resp.status == 200 and await resp.read() == b"OggS-data"
                async with http.get(signed.split("?")[0] + "?token=forged") as resp:
                    assert resp.status == 400
                async with http.get(f"{fake.url}/storage/v1/bucket") as resp:
                    assert resp.status == 401

            buckets = await sb.storage.list_buckets()
            assert [b.name for b in buckets] == ["chat-media"] and buckets[0].public is False

            with pytest.raises(StorageApiError) as exc:
                await bucket.download("missing.ogg")
            assert str(exc.value.status) == "404" and exc.value.code == "not_found"
            assert not await bucket.exists("missing.ogg") and await bucket.exists(path)
            assert len(await bucket.remove([path])) == 1 and fake.objects == {}
