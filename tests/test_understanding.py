"""Every inbound kind through the webhook and the real enrich stage, against the fake Gupshup media
host and the fake Gemini: the chat_messages row and the processed_text the agent reads."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from ingress.gupshup import parse_webhook
from ops.metrics import REGISTRY
from storage.events import InboundMessage
from tests.conftest import eventually, recording_receptionist
from tests.fakes.gemini import DEFAULT_TRANSCRIPT, FakeGemini
from tests.helpers import FIXTURES, fixture, post_webhook, settled, text_webhook
from tests import clock

APP = "clinic"
APP_ID = "07c7c72d-20e3-4ff9-a5a1-14d1186eeec8"
IMAGE = "Una lista de precios de un salón de belleza: limpieza facial 45 €, manicura 20 €."
VIDEO = "Video: una clienta muestra el resultado de un tratamiento facial."
PDF = "Documento: factura de un salón de belleza, total 65 €."
CONTACT = (
    "[contacto] Dev Support — tel +1 (650) 555-1234 — dev.support@example.com, "
    "dev.support2@example.com — Dev Support"
)
LOCATION = "[ubicación] lat 19.1453658, lon 72.8552172"

# processed_text per inbound fixture: with the fake Gemini answering, and without a key.
EXPECTED: dict[str, tuple[str, str]] = {
    "gupshup_v2_text.json": ("Hi", "Hi"),
    "gupshup_v2_text_reply_with_context.json": ("hi", "hi"),
    "gupshup_v2_button_reply.json": ("[botón] First", "[botón] First"),
    "gupshup_v2_contact.json": (CONTACT, CONTACT),
    "gupshup_v2_location.json": (LOCATION, LOCATION),
    "gupshup_v2_audio.json": (
        f"[nota de voz] {DEFAULT_TRANSCRIPT}",
        "[nota de voz: transcripción no disponible]",
    ),
    "gupshup_v2_image.json": (
        f'[imagen] {IMAGE} — pie de foto: "Sample image"',
        '[imagen: descripción no disponible] — pie de foto: "Sample image"',
    ),
    "gupshup_v2_file.json": (
        f'[documento: IMG_0068.PNG] {IMAGE} — comentario: "Document caption"',
        '[documento: IMG_0068.PNG — resumen no disponible] — comentario: "Document caption"',
    ),
    "gupshup_v2_video.json": (f"[video] {VIDEO}", "[video: descripción no disponible]"),
    "gupshup_v3_text.json": ("Is this still in stock?", "Is this still in stock?"),
    "gupshup_v3_audio.json": (
        f"[nota de voz] {DEFAULT_TRANSCRIPT}",
        "[nota de voz: transcripción no disponible]",
    ),
    "gupshup_v3_image.json": (f"[imagen] {IMAGE}", "[imagen: descripción no disponible]"),
    "gupshup_v3_video.json": (f"[video] {VIDEO}", "[video: descripción no disponible]"),
    # Gemini does not read .docx: the placeholder names the file.
    "gupshup_v3_document.json": (
        "[documento: demo.docx — resumen no disponible]",
        "[documento: demo.docx — resumen no disponible]",
    ),
}


def inbound_fixtures() -> list[str]:
    """Every fixture that is an inbound message, found by parsing, so a new one cannot be missed."""
    names = []
    for path in sorted((FIXTURES / "gupshup").glob("*.json")):
        try:
            parsed = parse_webhook(fixture(f"gupshup/{path.name}"), "org", 1)
        except ValueError:
            continue
        if any(isinstance(e, InboundMessage) for e in parsed.events):
            names.append(path.name)
    return names


def _message(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(the message object, its media object or None) in either format."""
    if body.get("object") == "whatsapp_business_account":
        msg = body["entry"][0]["changes"][0]["value"]["messages"][0]
        inner = msg.get(msg["type"])
        return msg, inner if isinstance(inner, dict) and "url" in inner else None
    inner = body["payload"]["payload"]
    return body["payload"], inner if "url" in inner else None


def sample_bytes(content_type: str, size: int = 2048) -> bytes:
    head = {"audio": b"OggS", "image": b"\xff\xd8\xff\xe0", "video": b"\x00\x00\x00\x18ftyp"}
    prefix = head.get(content_type.split("/")[0], b"%PDF-1.4")
    return (prefix + bytes(range(256)) * (size // 256 + 1))[:size]


def webhook(
    fixture_name: str,
    gupshup,
    *,
    data: bytes | None = None,
    delay_s: float = 0,
    content_type: str | None = None,
    **inner: Any,
) -> tuple[dict[str, Any], str, bytes | None]:
    """A fixture addressed to our test app, its media (if any) served by the fake media host.

    Returns (body, provider id, the media bytes). Links get a future urlExpiry: the fixtures'
    expired years ago, and expired links are not even tried.
    """
    body = fixture(f"gupshup/{fixture_name}")
    if body.get("object") == "whatsapp_business_account":
        body["gs_app_id"] = APP_ID
    else:
        body["app"] = APP
    msg, media = _message(body)
    if media is None:
        return body, msg["id"], None
    ctype_key = "mime_type" if "mime_type" in media else "contentType"
    if content_type:
        media[ctype_key] = content_type
    ctype = media[ctype_key]
    data = sample_bytes(ctype) if data is None else data
    media["url"] = gupshup.add_media(data, ctype.split(";")[0], delay_s=delay_s)
    if ctype_key == "contentType":
        media["urlExpiry"] = clock.now_ms() + 7 * 86_400_000
    media.update(inner)
    return body, msg["id"], data


@pytest.fixture
async def gemini():
    async with FakeGemini() as fake:
        yield fake


@pytest.fixture
def media_system(system, gemini, tmp_path):
    """Ingress and enrich only, Gemini configured (pass gemini_api_key=None to run without)."""

    def start(roles=("ingress", "enrich"), **overrides):
        settings = {
            "gemini_api_key": "test-key",
            "google_gemini_base_url": gemini.url,
            "media_dir": tmp_path / "media",
            "media_retry_base_s": 0.01,
            "gemini_retry_base_s": 0.01,
            "gemini_retry_max_s": 0.05,
            **overrides,
        }
        return system(roles=roles, **settings)

    return start


async def row(deps, org: str, provider_id: str):
    return await deps.pool.fetchrow(
        "select message, processed_text, media_type, media_url, media_mime_type, media_size_bytes,"
        " media_sha256, artifacts from chat_messages where organization_id = $1::uuid"
        " and provider_message_id = $2",
        org,
        provider_id,
    )


async def wait_row(deps, org: str, provider_id: str, timeout_s: float = 15.0):
    return await eventually(lambda: row(deps, org, provider_id), timeout_s=timeout_s)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_every_inbound_fixture_has_an_expectation():
    assert sorted(inbound_fixtures()) == sorted(EXPECTED)


@pytest.mark.parametrize("with_gemini", [True, False], ids=["gemini", "no_key"])
async def test_every_inbound_fixture_gets_its_row_and_processed_text(
    with_gemini, media_system, make_org, gupshup, gemini, deps, tmp_path
):
    org = await make_org(APP, app_id=APP_ID)
    overrides = {} if with_gemini else {"gemini_api_key": None}
    sent: dict[str, tuple[str, bytes | None]] = {}
    async with media_system(**overrides) as s:
        for name in EXPECTED:
            body, provider_id, data = webhook(name, gupshup)
            assert (await post_webhook(s.url, body))[0] == 200
            sent[name] = (provider_id, data)
        rows = {name: await wait_row(deps, org, pid) for name, (pid, _) in sent.items()}

    for name, (_provider_id, data) in sent.items():
        r = rows[name]
        assert r["processed_text"] == EXPECTED[name][0 if with_gemini else 1], (
            name,
            r["artifacts"],
        )
        if data is None:
            assert r["media_url"] is None, name
            continue
        # The file was stored whole, where the row says, with its size and hash.
        assert r["media_size_bytes"] == len(data), name
        assert r["media_sha256"] == hashlib.sha256(data).hexdigest(), name
        assert (tmp_path / "media" / r["media_url"]).read_bytes() == data, name
        assert r["media_url"].startswith(f"{org}/")
        assert r["media_type"] in {"voice", "image", "file", "video"}
    if with_gemini:
        by_mime = {c.mime_types[0] for c in gemini.calls}
        # Voice notes reach Gemini without "; codecs=opus"; the .docx never does.
        assert by_mime == {"audio/ogg", "image/jpeg", "image/png", "video/mp4"}
        assert {c.api_version for c in gemini.calls} == {"v1beta"}
        audio_call = next(c for c in gemini.calls if c.mime_types[0] == "audio/ogg")
        assert "Transcribe" in audio_call.prompts[0]
    else:
        assert gemini.calls == []


async def test_api_v1_is_served_too(media_system, make_org, gupshup, gemini, deps):
    org = await make_org(APP, app_id=APP_ID)
    async with media_system(gemini_api_version="v1") as s:
        body, pid, _ = webhook("gupshup_v2_image.json", gupshup)
        await post_webhook(s.url, body)
        r = await wait_row(deps, org, pid)
    assert r["processed_text"].startswith(f"[imagen] {IMAGE}")
    assert [c.api_version for c in gemini.calls] == ["v1"]


async def test_pdf_is_summarised_and_named(media_system, make_org, gupshup, gemini, deps):
    org = await make_org(APP, app_id=APP_ID)
    async with media_system() as s:
        body, pid, _ = webhook(
            "gupshup_v2_file.json",
            gupshup,
            content_type="application/pdf",
            name="precios.pdf",
            caption="¿cuánto cuesta esto?",
        )
        await post_webhook(s.url, body)
        r = await wait_row(deps, org, pid)
    assert (
        r["processed_text"]
        == f'[documento: precios.pdf] {PDF} — comentario: "¿cuánto cuesta esto?"'
    )
    assert r["media_url"].endswith(".pdf") and r["media_mime_type"] == "application/pdf"


async def test_unknown_type_is_kept_with_its_raw_payload(media_system, make_org, deps):
    org = await make_org(APP, app_id=APP_ID)
    before = sample("skytide_media_messages_total", org=org, kind="unknown", result="unsupported")
    body = fixture("gupshup/gupshup_v2_text.json", app=APP)
    body["payload"].update(id="unknown-1", type="order_v9", payload={"items": [1, 2]})
    async with media_system() as s:
        assert (await post_webhook(s.url, body))[0] == 200
        r = await wait_row(deps, org, "unknown-1")
    assert r["processed_text"] == "[mensaje no soportado: order_v9]"
    assert r["artifacts"]["raw"]["payload"] == {"items": [1, 2]}
    assert (
        sample("skytide_media_messages_total", org=org, kind="unknown", result="unsupported")
        == before + 1
    )


async def test_dead_link_gives_a_placeholder_and_a_metric(media_system, make_org, gupshup, deps):
    org = await make_org(APP, app_id=APP_ID)
    async with media_system() as s:
        body, pid, _ = webhook("gupshup_v2_image.json", gupshup)
        gupshup.expire_media(_message(body)[1]["url"])
        await post_webhook(s.url, body)
        r = await wait_row(deps, org, pid)
    assert r["processed_text"] == '[imagen: no se pudo descargar] — pie de foto: "Sample image"'
    assert r["media_url"] is None and r["artifacts"] == {"media_error": "not_found"}
    assert (
        sample("skytide_media_messages_total", org=org, kind="image", result="download_not_found")
        == 1
    )


async def test_link_past_its_expiry_is_not_even_called(media_system, make_org, gupshup, deps):
    org = await make_org(APP, app_id=APP_ID)
    async with media_system() as s:
        body, pid, _ = webhook("gupshup_v2_audio.json", gupshup, urlExpiry=clock.now_ms() - 1)
        await post_webhook(s.url, body)
        r = await wait_row(deps, org, pid)
    assert r["processed_text"] == "[nota de voz: no se pudo descargar]"
    assert gupshup.requests_to("/wa/" + gupshup.app_id) == []


async def test_oversize_image_is_refused(media_system, make_org, gupshup, gemini, deps, tmp_path):
    org = await make_org(APP, app_id=APP_ID)
    async with media_system() as s:
        body, pid, _ = webhook(
            "gupshup_v3_image.json", gupshup, data=b"\xff" * (5 * 1024 * 1024 + 1)
        )
        await post_webhook(s.url, body)
        r = await wait_row(deps, org, pid)
    assert r["processed_text"] == "[imagen: archivo demasiado grande]"
    assert r["media_url"] is None and gemini.calls == []
    assert not [p for p in (tmp_path / "media").rglob("*") if p.is_file()]


async def test_gemini_429_is_retried_and_the_transcription_arrives(
    media_system, make_org, gupshup, gemini, deps
):
    org = await make_org(APP, app_id=APP_ID)
    gemini.fail_next(429, times=2)
    async with media_system() as s:
        body, pid, _ = webhook("gupshup_v3_audio.json", gupshup)
        await post_webhook(s.url, body)
        r = await wait_row(deps, org, pid)
    assert r["processed_text"] == f"[nota de voz] {DEFAULT_TRANSCRIPT}"
    assert len(gemini.requests_to("/v1beta/models/")) == 3
    assert sample("skytide_gemini_errors_total", org=org, reason="retried_rate_limited") == 2
    assert sample("skytide_gemini_tokens_total", org=org, kind="prompt") > 0


async def test_gemini_down_gives_the_placeholder_within_the_budget(
    media_system, make_org, gupshup, gemini, deps
):
    org = await make_org(APP, app_id=APP_ID)
    gemini.down = True
    async with media_system(gemini_budget_s=0.5) as s:
        body, pid, data = webhook("gupshup_v3_audio.json", gupshup)
        await post_webhook(s.url, body)
        r = await wait_row(deps, org, pid)
    assert r["processed_text"] == "[nota de voz: transcripción no disponible]"
    assert r["media_size_bytes"] == len(data)  # the file is kept for a person to listen to
    assert r["artifacts"]["understanding"] in ("gemini_server_error", "gemini_budget")
    assert len(gemini.requests_to("/v1beta/models/")) >= 2


async def test_a_voice_note_asking_for_an_appointment_gets_an_answer_to_what_was_said(
    media_system, make_org, gupshup, deps
):
    await make_org(APP, app_id=APP_ID, catalog=True)
    async with media_system(roles=("ingress", "enrich", "batcher", "agent", "sender")) as s:
        body, _, _ = webhook("gupshup_v2_audio.json", gupshup)
        body["timestamp"] = clock.now_ms()  # inside the 24-hour window
        await post_webhook(s.url, body)
        sent = await gupshup.wait_for_sent(1, timeout_s=15)
    # The transcription asked for a facial cleansing tomorrow afternoon: slots for it are offered.
    reply = sent[0].message["text"]
    assert "Limpieza facial" in reply and "horarios" in reply


async def test_slow_media_keeps_its_chat_in_order(media_system, make_org, gupshup, deps):
    """The voice note is sent first and downloads slowly; the text after it waits its turn."""
    org = await make_org(APP, app_id=APP_ID)
    now = clock.now_ms()
    seen: list[list[str]] = []
    async with media_system(
        roles=("ingress", "enrich", "batcher", "agent", "sender"),
        debounce_seconds=0.2,
        receptionist_builder=recording_receptionist(seen),
    ) as s:
        body, _, _ = webhook("gupshup_v2_audio.json", gupshup, delay_s=1.0)
        body["timestamp"] = now
        await post_webhook(s.url, body)
        await post_webhook(
            s.url, text_webhook(APP, "919876543210", "¿tienen hueco?", "after-1", now + 1000)
        )
        sent = await gupshup.wait_for_sent(1, timeout_s=15)
        await eventually(lambda: settled(deps.redis, org))  # a split second turn would be out
    assert seen == [[f"[nota de voz] {DEFAULT_TRANSCRIPT}", "¿tienen hueco?"]]
    assert len(gupshup.sent) == 1 and sent[0].message["text"]


async def test_slow_media_does_not_hold_up_other_chats(media_system, make_org, gupshup, deps):
    org = await make_org(APP, app_id=APP_ID)
    async with media_system() as s:
        body, slow_id, _ = webhook("gupshup_v2_audio.json", gupshup, delay_s=3.0)
        await post_webhook(s.url, body)
        now = clock.now_ms()
        await post_webhook(s.url, text_webhook(APP, "5215550001111", "hola", "other-chat-1", now))
        await wait_row(deps, org, "other-chat-1")
        # The other chat's message is stored while the voice note is still downloading.
        assert await row(deps, org, slow_id) is None
        await wait_row(deps, org, slow_id)
