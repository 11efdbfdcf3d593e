"""ingress.gupshup against every webhook fixture, plus the shapes the fixtures lack."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from ingress.gupshup import AppRef, MalformedPayload, Parsed, identify_app, parse_webhook
from storage.events import InboundMessage, StatusEvent, UserEvent, decode, encode
from tests.helpers import FIXTURES as FIXTURES_ROOT
from tests.helpers import strip_notes

FIXTURES = FIXTURES_ROOT / "gupshup"
ORG = "acme"
RECEIVED = 1_800_000_000_000
# Outbound API shapes live beside the webhooks; they are not webhooks.
NOT_WEBHOOKS = ("send", "error", "filemanager")


def _load(name: str) -> dict[str, Any]:
    return strip_notes(json.loads((FIXTURES / name).read_text()))


def _webhook_fixtures() -> list[str]:
    return sorted(
        p.name for p in FIXTURES.glob("*.json") if not any(w in p.name for w in NOT_WEBHOOKS)
    )


def _parse(body: Any) -> Parsed:
    return parse_webhook(body, ORG, RECEIVED)


def _only(body: Any) -> InboundMessage | StatusEvent | UserEvent:
    parsed = _parse(body)
    assert parsed.ignored == []
    assert len(parsed.events) == 1
    return parsed.events[0]


# ---------------------------------------------------------------- expectations per fixture

V2_MEDIA_URL = "https://filemanager.gupshup.io/wa/23038a99-929b-408b-80eb-4d30cebb93d4/wa/media/"
V3_MEDIA_URL = "https://filemanager.gupshup.io/wa/07c7c72d-20e3-4ff9-a5a1-14d1186eeec8/wa/media/"
V2_CUSTOMER = {"type": "message", "org": ORG, "phone": "919876543210", "received_at_ms": RECEIVED}
V3_CUSTOMER = {
    "type": "message",
    "org": ORG,
    "phone": "917506080480",
    "name": "Avadhoot Yadav",
    "received_at_ms": RECEIVED,
}
WAMID_SENT = "wamid.HBgMOTE5MTYzODA1ODczFQIAERgSMDQ4RjAwMDAwMDAwAA=="
GS_ID = "7daeb742-f2dc-4c09-90e0-d879d20f7b98"
V3_STATUS = {
    "type": "status",
    "org": ORG,
    "provider_id": WAMID_SENT,
    "gs_id": GS_ID,
    "destination": "919163805873",
    "code": None,
    "reason": None,
}
REASON_1002 = "Number Does Not Exists On WhatsApp"
REASON_131047 = (
    "Message failed to send because more than 24 hours have passed since the customer "
    "last replied to this number."
)

# fixture -> (expected fields of each event in order, expected ignored kinds)
EXPECTED: dict[str, tuple[list[dict[str, Any]], list[str]]] = {
    "gupshup_v2_text.json": (
        [
            {
                **V2_CUSTOMER,
                "provider_id": "ABEGkZUTIXZ0Ago6jWqOZm-Sz0WD",
                "name": "SJ",
                "kind": "text",
                "text": "Hi",
                "caption": None,
                "media": None,
                "context_id": None,
                "sent_at_ms": 1718007189549,
            }
        ],
        [],
    ),
    "gupshup_v2_text_reply_with_context.json": (
        [
            {
                **V2_CUSTOMER,
                "provider_id": "ABEGkYaYVSEEAgo-sMx1DoUoQJRW",
                "name": "Jacob",
                "kind": "text",
                "text": "hi",
                "context_id": "gBEGkYaYVSEEAgnPFrOLcjkFjL8",
                "sent_at_ms": 1590854464792,
            }
        ],
        [],
    ),
    "gupshup_v2_audio.json": (
        [
            {
                **V2_CUSTOMER,
                "provider_id": "ABEGkZUTIXZ0Ago6nbYEmVczNV4w",
                "name": "SJ",
                "kind": "voice",
                "text": None,
                "caption": None,
                "sent_at_ms": 1718003880179,
                "media": {
                    "url": V2_MEDIA_URL + "60830ca4-c005-420a-9574-50a50c9a7736?download=false",
                    "content_type": "audio/ogg; codecs=opus",
                    "filename": None,
                    "expires_at_ms": 1718608680179,
                    "sha256": None,
                },
            }
        ],
        [],
    ),
    "gupshup_v2_image.json": (
        [
            {
                **V2_CUSTOMER,
                "provider_id": "ABEGkZUTIXZ0Ago69N5XB9zTUbl-",
                "kind": "image",
                "text": None,
                "caption": "Sample image",
                "media": {
                    "url": V2_MEDIA_URL + "2f997fea-9696-46c4-a2e5-8667fd27988d?download=false",
                    "content_type": "image/jpeg",
                    "filename": None,
                    "expires_at_ms": 1718608420228,
                    "sha256": None,
                },
            }
        ],
        [],
    ),
    "gupshup_v2_video.json": (
        [
            {
                **V2_CUSTOMER,
                "provider_id": "ABEGkZUTIXZ0Ago6tuN0fAfOdlgC",
                "kind": "video",
                "text": None,
                "caption": None,
                "media": {
                    "url": V2_MEDIA_URL + "f272da13-c601-457c-b8a0-d997536f9d2e?download=false",
                    "content_type": "video/mp4",
                    "filename": None,
                    "expires_at_ms": 1718608822842,
                    "sha256": None,
                },
            }
        ],
        [],
    ),
    "gupshup_v2_file.json": (
        [
            {
                **V2_CUSTOMER,
                "provider_id": "ABEGkZUTIXZ0Ago6VPYl8mM5nl8R",
                "kind": "file",
                "text": None,
                "caption": "Document caption",
                "media": {
                    "url": V2_MEDIA_URL
                    + "f716a5c0-712d-4462-bcb6-bae95368f8a3?download=false&fileName=IMG_0068.PNG",
                    "content_type": "image/png",
                    "filename": "IMG_0068.PNG",
                    "expires_at_ms": 1718609053390,
                    "sha256": None,
                },
            }
        ],
        [],
    ),
    "gupshup_v2_location.json": (
        [
            {
                **V2_CUSTOMER,
                "provider_id": "ABEGkYaYVSEEAhCIxTq7KXQIqby1Uo-IO7_E",
                "name": "Smit",
                "kind": "location",
                "text": "[ubicación] lat 19.1453658, lon 72.8552172",
                "media": None,
                "sent_at_ms": 1580228767338,
            }
        ],
        [],
    ),
    "gupshup_v2_contact.json": (
        [
            {
                **V2_CUSTOMER,
                "provider_id": "ABEGkYaYVSEEAhD9cTZVyPlOGYZJOnviI7OJ",
                "name": "Jacob",
                "kind": "contact",
                "text": "[contacto] Dev Support — tel +1 (650) 555-1234 — dev.support@example.com, "
                "dev.support2@example.com — Dev Support",
            }
        ],
        [],
    ),
    "gupshup_v2_button_reply.json": (
        [
            {
                **V2_CUSTOMER,
                "provider_id": "ABEGkYaYVSEEAhCzqobr15BdMPcRup1fIXAJ",
                "name": "John",
                "kind": "button_reply",
                "text": "First",
                "context_id": "gBEGkYaYVSEEAgkvE0f1ZkfXX78",
            }
        ],
        [],
    ),
    "gupshup_message_event_enqueued.json": (
        [
            {
                "type": "status",
                "org": ORG,
                "provider_id": "59f8db90-c37e-4408-90ab-cc54ef8246ad",
                "gs_id": None,
                "status": "enqueued",
                "destination": "919876543210",
                "at_ms": 1580546677791,
                "code": None,
            }
        ],
        [],
    ),
    "gupshup_message_event_sent.json": (
        [
            {
                "provider_id": WAMID_SENT,
                "gs_id": GS_ID,
                "status": "sent",
                "destination": "919876543210",
                "at_ms": 1710930461000,
                "code": None,
                "reason": None,
            }
        ],
        [],
    ),
    "gupshup_message_event_delivered.json": (
        [
            {
                "provider_id": WAMID_SENT,
                "gs_id": GS_ID,
                "status": "delivered",
                "at_ms": 1710930462000,
            }
        ],
        [],
    ),
    "gupshup_message_event_read.json": (
        [
            {
                "provider_id": "wamid.HBgMOTE5MTYzODA1ODczFQIAERgSMUUzNzAwMDAwMDAwAA==",
                "gs_id": "7b8f0910-db98-4cce-be5f-e6e1e847b4bd",
                "status": "read",
                "at_ms": 1720779817000,
            }
        ],
        [],
    ),
    "gupshup_message_event_failed_sync.json": (
        [
            {
                "provider_id": "ee4a68a0-1203-4c85-8dc3-49d0b3226a35",
                "gs_id": None,
                "status": "failed",
                "at_ms": 1580546677791,
                "code": 1002,
                "reason": REASON_1002,
            }
        ],
        [],
    ),
    "gupshup_message_event_failed_async.json": (
        [
            {
                # No `id` at all: gsId stands in as the provider id.
                "provider_id": "72f61f22-5aa4-4615-a970-943edf6da01c",
                "gs_id": "72f61f22-5aa4-4615-a970-943edf6da01c",
                "status": "failed",
                "at_ms": 1580546677791,
                "code": 1002,
                "reason": REASON_1002,
            }
        ],
        [],
    ),
    "gupshup_user_event_opted_in.json": (
        [
            {
                "type": "user_event",
                "org": ORG,
                "phone": "919876543210",
                "event": "opted-in",
                "at_ms": 1584541505908,
            }
        ],
        [],
    ),
    "gupshup_user_event_opted_out.json": (
        [
            {
                "type": "user_event",
                "phone": "919876543210",
                "event": "opted-out",
                "at_ms": 1584541505908,
            }
        ],
        [],
    ),
    "gupshup_user_event_sandbox_start.json": ([], ["user-event:sandbox-start"]),
    "gupshup_platform_event_connectivity_check_v2.json": (
        [],
        ["platform-event:connectivity-check"],
    ),
    "gupshup_v3_text.json": (
        [
            {
                **V3_CUSTOMER,
                "provider_id": "wamid.HBgMOTE3NTA2MDgwNDgwFQIAEhgUM0E0MkM5RjE2RkRBRjQzRDRGMDIA",
                "kind": "text",
                "text": "Is this still in stock?",
                "media": None,
                "context_id": None,
                "sent_at_ms": 1782372987000,
            }
        ],
        [],
    ),
    "gupshup_v3_audio.json": (
        [
            {
                **V3_CUSTOMER,
                "provider_id": "wamid.HBgMOTE3NTA2MDgwNDgwFQIAEhgUM0E2QjQ5NUUyMUZDQzg2MDJEMjEA",
                "kind": "voice",
                "text": None,
                "caption": None,
                "sent_at_ms": 1782372953000,
                "media": {
                    "url": V3_MEDIA_URL + "3609461882553011?download=false",
                    "content_type": "audio/ogg; codecs=opus",
                    "filename": None,
                    "expires_at_ms": None,
                    "sha256": "wua6L0gsWIGhTqM0SxPYpfcT2rkJrvRB0lpqI+cpISo=",
                },
            }
        ],
        [],
    ),
    "gupshup_v3_image.json": (
        [
            {
                **V3_CUSTOMER,
                "provider_id": "wamid.HBgMOTE3NTA2MDgwNDgwFQIAEhgUM0FGQkI0QTUyM0NCNjlCMkNBNkMA",
                "kind": "image",
                "text": None,
                "caption": None,
                "sent_at_ms": 1782372910000,
                "media": {
                    "url": V3_MEDIA_URL + "1751740922668458?download=false",
                    "content_type": "image/jpeg",
                    "filename": None,
                    "expires_at_ms": None,
                    "sha256": "nH77thkhdX34LtswPHcKJJIViehvFyEQkfM2kaDO/oI=",
                },
            }
        ],
        [],
    ),
    "gupshup_v3_video.json": (
        [
            {
                **V3_CUSTOMER,
                "provider_id": "wamid.HBgMOTE3NTA2MDgwNDgwFQIAEhgUM0E0MkM5RjE2RkRBRjQzRDRGMDEA",
                "kind": "video",
                "text": None,
                "media": {
                    "url": V3_MEDIA_URL + "1791860341777005?download=false",
                    "content_type": "video/mp4",
                    "filename": None,
                    "expires_at_ms": None,
                    "sha256": "zCYvqunwILzc9sXt3/2HyNYWv0L0V7WfXe5a0gqn8t0=",
                },
            }
        ],
        [],
    ),
    "gupshup_v3_document.json": (
        [
            {
                **V3_CUSTOMER,
                "provider_id": "wamid.HBgMOTE3NTA2MDgwNDgwFQIAEhgUM0EwMjA2OUQzMzlDMUM3MTNFMjIA",
                "kind": "file",
                "text": None,
                "caption": None,
                "sent_at_ms": 1782372793000,
                "media": {
                    "url": V3_MEDIA_URL + "1046654134600113?download=false&fileName=demo.docx",
                    "content_type": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                    "filename": "demo.docx",
                    "expires_at_ms": None,
                    "sha256": "JpMp/HrlSz8omzrFLv3jh+3C5WbvmkjWN+hBAix+Dqs=",
                },
            }
        ],
        [],
    ),
    # enqueued carries a ms number, the others a seconds string.
    "gupshup_v3_status_enqueued.json": (
        [{**V3_STATUS, "status": "enqueued", "at_ms": 1710941393420}],
        [],
    ),
    "gupshup_v3_status_sent.json": ([{**V3_STATUS, "status": "sent", "at_ms": 1710930461000}], []),
    "gupshup_v3_status_delivered.json": (
        [{**V3_STATUS, "status": "delivered", "at_ms": 1710930462000}],
        [],
    ),
    "gupshup_v3_status_read.json": ([{**V3_STATUS, "status": "read", "at_ms": 1720779817000}], []),
    "gupshup_v3_status_failed.json": (
        [
            {
                **V3_STATUS,
                "status": "failed",
                "at_ms": 1710941507000,
                "code": 131047,
                "reason": REASON_131047,
            }
        ],
        [],
    ),
}


def test_every_webhook_fixture_has_an_expectation() -> None:
    assert _webhook_fixtures(), f"no fixtures found in {FIXTURES}"
    assert set(_webhook_fixtures()) == set(EXPECTED)


def _assert_fields(event: Any, expected: dict[str, Any]) -> None:
    dumped = event.model_dump()
    for key, value in expected.items():
        assert dumped[key] == value, f"{key}: {dumped[key]!r} != {value!r}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_parses_to_expected_events(name: str) -> None:
    body = _load(name)
    expected_events, expected_ignored = EXPECTED[name]
    parsed = _parse(copy.deepcopy(body))
    assert parsed.ignored == expected_ignored
    assert len(parsed.events) == len(expected_events)
    for event, expected in zip(parsed.events, expected_events):
        _assert_fields(event, expected)
        assert decode(encode(event)) == event  # survives the stream unchanged


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_raw_is_the_sub_object_the_event_came_from(name: str) -> None:
    body = _load(name)
    for event in _parse(body).events:
        if "object" in body:
            value = body["entry"][0]["changes"][0]["value"]
            assert event.raw in value.get("messages", []) + value.get("statuses", [])
        else:
            assert event.raw == body["payload"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_identify_app(name: str) -> None:
    body = _load(name)
    ref = identify_app(body)
    if "object" in body:
        assert ref == AppRef(name=None, gs_app_id=body["gs_app_id"], format="v3")
    else:
        assert ref == AppRef(name=body["app"], gs_app_id=body.get("appId"), format="v2")


def test_button_reply_keeps_ids_in_raw() -> None:
    event = _only(_load("gupshup_v2_button_reply.json"))
    assert event.raw["payload"] == {"title": "First", "id": "qr1", "reply": "First 1"}
    assert event.raw["context"]["gsId"] == "123b0fb2-0620-493b-8f7e-5a1ceb6d8c58"


# ---------------------------------------------------------------- v2 shapes without a fixture


def _v2_message(kind: str, inner: dict[str, Any], **extra: Any) -> dict[str, Any]:
    payload = {
        "id": "ABEG1",
        "source": "919876543210",
        "type": kind,
        "payload": inner,
        "sender": {"phone": "919876543210", "name": "Ana"},
        **extra,
    }
    return {
        "app": "DemoApp",
        "timestamp": 1718000000000,
        "version": 2,
        "type": "message",
        "payload": payload,
    }


def test_v2_sticker() -> None:
    event = _only(
        _v2_message("sticker", {"url": "https://x/s", "contentType": "image/webp", "urlExpiry": 5})
    )
    assert (event.kind, event.media.content_type, event.text) == ("sticker", "image/webp", None)


def test_v2_plain_audio_file_is_audio_not_voice() -> None:
    event = _only(_v2_message("audio", {"url": "https://x/a", "contentType": "audio/mpeg"}))
    assert event.kind == "audio"


def test_v2_media_without_content_type_gets_the_default() -> None:
    event = _only(_v2_message("image", {"url": "https://x/i"}))
    assert event.media.content_type == "application/octet-stream"


def test_v2_list_reply_uses_title() -> None:
    inner = {
        "title": "Corte",
        "id": "svc-1",
        "reply": "Corte 1",
        "postbackText": "svc-1",
        "description": "30 min",
    }
    event = _only(_v2_message("list_reply", inner, context={"id": "gBEG9", "gsId": "uuid-9"}))
    assert (event.kind, event.text, event.context_id) == ("list_reply", "Corte", "gBEG9")
    assert event.raw["payload"]["id"] == "svc-1"


def test_v2_quick_reply_template_button_uses_text() -> None:
    inner = {"text": "Confirmar", "type": "button", "postbackText": "confirm-42"}
    event = _only(_v2_message("quick_reply", inner, context={"id": "wamid.T", "forwarded": False}))
    assert (event.kind, event.text, event.context_id) == ("quick_reply", "Confirmar", "wamid.T")
    assert event.raw["payload"]["postbackText"] == "confirm-42"


def test_v2_quick_reply_interactive_form_uses_title() -> None:
    event = _only(_v2_message("quick_reply", {"title": "Sí", "id": "qr-yes", "reply": "Sí 1"}))
    assert (event.kind, event.text) == ("quick_reply", "Sí")


def test_v2_context_falls_back_to_gs_id() -> None:
    event = _only(_v2_message("text", {"text": "ok"}, context={"gsId": "uuid-only"}))
    assert event.context_id == "uuid-only"


def test_v2_location_with_place() -> None:
    inner = {
        "longitude": "-99.1",
        "latitude": "19.4",
        "name": "Clínica Sol",
        "address": "Av. Reforma 1",
    }
    event = _only(_v2_message("location", inner))
    assert event.text == "[ubicación] lat 19.4, lon -99.1 — Clínica Sol, Av. Reforma 1"


def test_v2_location_with_only_a_name() -> None:
    event = _only(_v2_message("location", {"longitude": "1", "latitude": "2", "name": "Casa"}))
    assert event.text == "[ubicación] lat 2, lon 1 — Casa"


def test_v2_contact_with_only_a_name_and_phone() -> None:
    inner = {
        "contacts": [
            {"name": {"first_name": "Eva", "last_name": "Ruiz"}, "phones": [{"phone": "+52 55 1"}]}
        ]
    }
    event = _only(_v2_message("contact", inner))
    assert event.text == "[contacto] Eva Ruiz — tel +52 55 1"


@pytest.mark.parametrize(
    ("card", "text"),
    [
        # The shape that gave a 500 (issue 18): numbers where lists of objects belong.
        (
            {"name": {"formatted_name": "Eva"}, "phones": 573001234567, "emails": 5},
            "[contacto] Eva — tel 573001234567 — 5",
        ),
        (
            {"name": "Eva", "phones": {"phone": "+52 1"}, "emails": ["eva@example.com"]},
            "[contacto] Eva — tel +52 1 — eva@example.com",
        ),
        ({"name": 7.5, "phones": True, "emails": None, "org": "Acme"}, "[contacto]"),
        (
            {"name": {"formatted_name": {}}, "phones": [None, 3.5, {"phone": []}, "+57 1"]},
            "[contacto] tel +57 1",
        ),
    ],
)
def test_v2_contact_card_fields_of_the_wrong_type_are_left_out(
    card: dict[str, Any], text: str
) -> None:
    assert _only(_v2_message("contact", {"contacts": [card]})).text == text


@pytest.mark.parametrize("contacts", [5, "x", {"name": {"formatted_name": "Eva"}}, None])
def test_v2_contact_cards_that_are_not_a_list_keep_the_message(contacts: Any) -> None:
    event = _only(_v2_message("contact", {"contacts": contacts}))
    assert event.kind == "contact"
    assert event.text == ("[contacto] Eva" if isinstance(contacts, dict) else "[contacto]")


@pytest.mark.parametrize("wire_type", [None, 5, {"x": 1}, ["text"]])
def test_v2_message_whose_type_cannot_be_read_is_kept_as_unknown(wire_type: Any) -> None:
    # It has a sender and an id: the customer is answered rather than dropped (v3 does the same).
    body = _v2_message("text", {"text": "hola"})
    body["payload"]["type"] = wire_type
    event = _only(body)
    assert (event.kind, event.provider_id) == ("unknown", "ABEG1")


@pytest.mark.parametrize(
    ("inner", "reason"),
    [
        ({"text": {"a": 1}}, "payload.payload.text is not a string (it is an object)"),
        ({"text": None}, "payload.payload.text is missing"),
    ],
)
def test_v2_text_of_the_wrong_type_is_refused_naming_it(inner: dict[str, Any], reason: str) -> None:
    with pytest.raises(MalformedPayload) as exc:
        _parse(_v2_message("text", inner))
    assert str(exc.value) == reason


def test_v2_text_that_came_as_a_number_is_its_digits() -> None:
    assert _only(_v2_message("text", {"text": 12345})).text == "12345"


def test_v2_unknown_message_type_is_kind_unknown() -> None:
    body = _v2_message("order", {"catalog_id": "c1", "items": []})
    event = _only(body)
    assert (event.kind, event.text, event.media) == ("unknown", None, None)
    assert event.raw == body["payload"]


def test_v2_message_without_timestamp_uses_received_time() -> None:
    body = _v2_message("text", {"text": "hola"})
    del body["timestamp"]
    assert _only(body).sent_at_ms == RECEIVED


def test_v2_status_2026_layout_has_ts_one_level_down() -> None:
    body = {
        "app": "DemoAPI",
        "timestamp": 1760000000999,
        "version": 2,
        "type": "message-event",
        "payload": {
            "id": "11111111-aaaa",
            "gsId": "22222222-bbbb",
            "type": "read",
            "destination": "919876543210",
            "payload": {"ts": 1760000000, "userId": "IN.1"},
        },
    }
    event = _only(body)
    assert (event.provider_id, event.gs_id, event.status, event.at_ms) == (
        "11111111-aaaa",
        "22222222-bbbb",
        "read",
        1760000000000,
    )


def test_v2_status_mismatch_passes_through() -> None:
    body = {
        "app": "DemoAPI",
        "timestamp": 1760000000999,
        "version": 2,
        "type": "message-event",
        "payload": {
            "id": "wamid.M",
            "gsId": "g",
            "type": "mismatch",
            "destination": "5511987654321",
            "ts": 1760000001,
            "payload": {"wa_id": "551187654321", "phone": "5511987654321"},
        },
    }
    event = _only(body)
    assert (event.status, event.at_ms, event.code) == ("mismatch", 1760000001000, None)


def test_v2_string_failure_code_becomes_int() -> None:
    body = _load("gupshup_message_event_failed_sync.json")
    body["payload"]["payload"]["code"] = "1012"
    assert _only(body).code == 1012


def test_v2_real_sandbox_start_is_a_user_event() -> None:
    body = _load("gupshup_user_event_sandbox_start.json")
    body["payload"]["phone"] = "919876543210"
    event = _only(body)
    assert isinstance(event, UserEvent)
    assert (event.phone, event.event) == ("919876543210", "sandbox-start")


@pytest.mark.parametrize("kind", ["template-event", "account-event", "billing-event"])
def test_v2_known_non_chat_types_are_ignored(kind: str) -> None:
    parsed = _parse(
        {"app": "DemoApp", "timestamp": 1, "version": 2, "type": kind, "payload": {"x": 1}}
    )
    assert (parsed.events, parsed.ignored) == ([], [kind])


def test_unknown_top_level_type_is_ignored_not_raised() -> None:
    parsed = _parse(
        {"app": "DemoApp", "timestamp": 1, "version": 2, "type": "flows-event", "payload": {}}
    )
    assert (parsed.events, parsed.ignored) == ([], ["unknown:flows-event"])


# ---------------------------------------------------------------- malformed bodies


@pytest.mark.parametrize("body", [[1, 2], "hello", None, 42])
def test_body_that_is_not_an_object(body: Any) -> None:
    with pytest.raises(MalformedPayload, match="body is not a JSON object"):
        _parse(body)


def test_body_in_no_known_format() -> None:
    with pytest.raises(MalformedPayload, match="neither format"):
        _parse({"hello": "world"})


@pytest.mark.parametrize(
    ("field", "reason"),
    [
        ("source", "payload.source is missing"),
        ("id", "payload.id is missing"),
    ],
)
def test_v2_message_missing_required_field(field: str, reason: str) -> None:
    body = _load("gupshup_v2_text.json")
    del body["payload"][field]
    with pytest.raises(MalformedPayload) as exc:
        _parse(body)
    assert str(exc.value) == reason


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"app": "A", "type": "message"}, "payload is missing"),
        ({"app": "A", "type": "message", "payload": "x"}, "payload is not an object"),
        ({"app": "A", "payload": {}}, "type is missing"),
        (_v2_message("text", {}), "payload.payload.text is missing"),
        (_v2_message("image", {"contentType": "image/png"}), "payload.payload.url is missing"),
        (_v2_message("location", {"latitude": "1"}), "payload.payload.longitude is missing"),
        (
            _v2_message("location", {"latitude": {}, "longitude": "2"}),
            "payload.payload.latitude is not a number (it is an object)",
        ),
        (
            {"app": "A", "type": "message-event", "payload": {"type": "read"}},
            "payload.id is missing",
        ),
        ({"app": "A", "type": "message-event", "payload": {"id": "x"}}, "payload.type is missing"),
        (
            {"app": "A", "type": "user-event", "payload": {"type": "opted-in"}},
            "payload.phone is missing",
        ),
    ],
)
def test_v2_malformed_reasons_name_the_field(body: dict[str, Any], reason: str) -> None:
    with pytest.raises(MalformedPayload) as exc:
        _parse(body)
    assert str(exc.value).startswith(reason)


def test_malformed_payload_is_a_value_error() -> None:
    assert issubclass(MalformedPayload, ValueError)


# ---------------------------------------------------------------- v3 shapes without a fixture


def _v3(changes: list[dict[str, Any]], entries: int = 1) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "gs_app_id": "app-uuid",
        "entry": [{"id": f"waba{i}", "changes": copy.deepcopy(changes)} for i in range(entries)],
    }


def _v3_msg(kind: str, content: Any, **extra: Any) -> dict[str, Any]:
    msg = {
        "from": "5215512345678",
        "id": f"wamid.{kind}",
        "timestamp": "1782372987",
        "type": kind,
        kind: content,
        **extra,
    }
    value = {
        "messaging_product": "whatsapp",
        "messages": [msg],
        "contacts": [{"profile": {"name": "Luz"}, "wa_id": "5215512345678"}],
    }
    return {"field": "messages", "value": value}


def test_v3_connectivity_check_is_ignored() -> None:
    change = {
        "field": "platform-event",
        "value": {"type": "connectivity-check", "initiator": "gupshup"},
    }
    parsed = _parse(_v3([change]))
    assert (parsed.events, parsed.ignored) == ([], ["platform-event:connectivity-check"])


def test_v3_set_callback_status_is_ignored() -> None:
    change = {"field": "messages", "value": {"statuses": [{"type": "set-callback"}]}}
    assert _parse(_v3([change])).ignored == ["status:set-callback"]


def test_v3_template_update_and_unknown_fields_are_ignored() -> None:
    changes = [
        {"field": "message_template_status_update", "value": {}},
        {"field": "calls", "value": {}},
    ]
    assert _parse(_v3(changes)).ignored == ["template-event", "unknown:calls"]


def test_v3_every_entry_change_message_and_status_is_an_event() -> None:
    text = _v3_msg("text", {"body": "uno"})
    text["value"]["messages"].append({**text["value"]["messages"][0], "id": "wamid.two"})
    status = {
        "field": "messages",
        "value": {
            "statuses": [
                {
                    "id": "wamid.s",
                    "gs_id": "g",
                    "recipient_id": "5215512345678",
                    "status": "read",
                    "timestamp": "1700000000",
                }
            ]
        },
    }
    parsed = _parse(_v3([text, status], entries=2))
    kinds = [type(e).__name__ for e in parsed.events]
    assert kinds == ["InboundMessage", "InboundMessage", "StatusEvent"] * 2
    assert [e.name for e in parsed.events if isinstance(e, InboundMessage)] == ["Luz"] * 4


def test_v3_failed_with_code_and_reason_fields() -> None:
    status = {
        "id": "wamid.f",
        "gs_id": "g",
        "recipient_id": "1",
        "status": "failed",
        "timestamp": "1700000000",
        "code": "1002",
        "reason": REASON_1002,
    }
    event = _only(_v3([{"field": "messages", "value": {"statuses": [status]}}]))
    assert (event.code, event.reason, event.at_ms) == (1002, REASON_1002, 1700000000000)


def test_v3_reply_with_context() -> None:
    event = _only(
        _v3([_v3_msg("text", {"body": "sí"}, context={"from": "52155", "id": "wamid.orig"})])
    )
    assert (event.text, event.context_id, event.name) == ("sí", "wamid.orig", "Luz")


@pytest.mark.parametrize(
    ("kind", "content", "expected_kind", "expected_text"),
    [
        (
            "interactive",
            {"type": "button_reply", "button_reply": {"id": "b1", "title": "Mañana"}},
            "button_reply",
            "Mañana",
        ),
        (
            "interactive",
            {
                "type": "list_reply",
                "list_reply": {"id": "l1", "title": "Corte", "description": "x"},
            },
            "list_reply",
            "Corte",
        ),
        (
            "interactive",
            {"type": "nfm_reply", "nfm_reply": {"response_json": "{}"}},
            "unknown",
            None,
        ),
        ("button", {"text": "Confirmar", "payload": "confirm-42"}, "quick_reply", "Confirmar"),
        (
            "location",
            {"latitude": 19.4, "longitude": -99.1, "name": "Sol"},
            "location",
            "[ubicación] lat 19.4, lon -99.1 — Sol",
        ),
        ("reaction", {"message_id": "wamid.r", "emoji": "👍"}, "reaction", "👍"),
        ("unsupported", {}, "unknown", None),
    ],
)
def test_v3_non_media_kinds(
    kind: str, content: Any, expected_kind: str, expected_text: str | None
) -> None:
    event = _only(_v3([_v3_msg(kind, content)]))
    assert (event.kind, event.text) == (expected_kind, expected_text)


def test_v3_contacts() -> None:
    change = _v3_msg(
        "contacts",
        [
            {
                "name": {"formatted_name": "Eva Ruiz"},
                "phones": [{"phone": "+52 1"}],
                "emails": [{"email": "eva@example.com"}],
            }
        ],
    )
    event = _only(_v3([change]))
    assert (event.kind, event.text) == (
        "contact",
        "[contacto] Eva Ruiz — tel +52 1 — eva@example.com",
    )


def test_v3_image_caption_and_sticker_and_plain_audio() -> None:
    image = _only(
        _v3(
            [_v3_msg("image", {"url": "https://x/i", "mime_type": "image/jpeg", "caption": "mira"})]
        )
    )
    sticker = _only(_v3([_v3_msg("sticker", {"url": "https://x/s", "mime_type": "image/webp"})]))
    audio = _only(
        _v3(
            [
                _v3_msg(
                    "audio",
                    {"url": "https://x/a", "mime_type": "audio/ogg; codecs=opus", "voice": False},
                )
            ]
        )
    )
    assert (image.kind, image.caption) == ("image", "mira")
    assert sticker.kind == "sticker"
    assert audio.kind == "audio"  # v3 has a flag, so the codec is not guessed from


def test_v3_reaction_points_at_the_reacted_message() -> None:
    event = _only(_v3([_v3_msg("reaction", {"message_id": "wamid.r", "emoji": "👍"})]))
    assert event.context_id == "wamid.r"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"object": "whatsapp_business_account"}, "entry is missing"),
        (
            {"object": "whatsapp_business_account", "entry": {}},
            "entry is not a list (it is an object)",
        ),
        (
            {"object": "whatsapp_business_account", "entry": [{"changes": ["x"]}]},
            "entry[0].changes[0] is not an object (it is a string)",
        ),
        (
            {"object": "whatsapp_business_account", "entry": [{"changes": [{"field": 3}]}]},
            "entry[0].changes[0].field is not a string (it is a number)",
        ),
        (
            {
                "object": "whatsapp_business_account",
                "entry": [{"changes": [{"field": "messages", "value": []}]}],
            },
            "entry[0].changes[0].value is not an object (it is a list)",
        ),
    ],
)
def test_v3_malformed_envelope(body: dict[str, Any], reason: str) -> None:
    with pytest.raises(MalformedPayload) as exc:
        _parse(body)
    assert str(exc.value) == reason


def test_v3_message_missing_from_names_the_path() -> None:
    change = _v3_msg("text", {"body": "x"})
    del change["value"]["messages"][0]["from"]
    with pytest.raises(MalformedPayload) as exc:
        _parse(_v3([change]))
    assert str(exc.value) == "entry[0].changes[0].value.messages[0].from is missing"


def test_v3_media_without_url_names_the_path() -> None:
    with pytest.raises(MalformedPayload) as exc:
        _parse(_v3([_v3_msg("image", {"id": "1", "mime_type": "image/png"})]))
    assert str(exc.value) == "entry[0].changes[0].value.messages[0].image.url is missing"


def test_v3_status_missing_id_and_status() -> None:
    with pytest.raises(MalformedPayload, match=r"statuses\[0\]\.id is missing"):
        _parse(_v3([{"field": "messages", "value": {"statuses": [{"status": "read"}]}}]))
    with pytest.raises(MalformedPayload, match=r"statuses\[0\]\.status is missing"):
        _parse(_v3([{"field": "messages", "value": {"statuses": [{"id": "wamid.x"}]}}]))
