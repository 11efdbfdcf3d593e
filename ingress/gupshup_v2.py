"""Gupshup format v2 (the default for self-serve apps): one event per body, `payload.payload`
nesting, timestamps in milliseconds (docs/gupshup.md §1.3–1.6)."""

from __future__ import annotations

from typing import Any

from ingress.gupshup_fields import (
    Content,
    MalformedPayload,
    Parsed,
    as_int,
    MAX_NAME_CHARS,
    capped,
    contacts_text,
    epoch_ms,
    first_ms,
    is_voice_note,
    json_type,
    location_text,
    obj,
    opt_obj,
    opt_str,
    reply_text,
    req_phone,
    req_str,
    req_text,
)
from storage.events import InboundMessage, Media, MessageKind, StatusEvent, UserEvent


# Top-level v2 types we acknowledge without an event: nothing in them concerns a chat.
_V2_IGNORED_TYPES = {"template-event", "account-event", "billing-event"}
_V2_MEDIA_KINDS: dict[str, MessageKind] = {
    "image": "image",
    "audio": "audio",
    "video": "video",
    "file": "file",
    "sticker": "sticker",
}
_REPLY_KINDS: set[str] = {"button_reply", "list_reply", "quick_reply"}


def parse_v2(body: dict[str, Any], org: str, received_at_ms: int, out: Parsed) -> None:
    kind = body.get("type")
    if not isinstance(kind, str) or not kind:
        # Without its type a body cannot be told apart from the events that must be ignored.
        raise MalformedPayload(
            "type is missing"
            if kind in (None, "")
            else f"type is not a string (it is {json_type(kind)})"
        )
    if kind == "message":
        out.events.append(_v2_message(body, org, received_at_ms))
    elif kind == "message-event":
        payload = opt_obj(body.get("payload"))
        if opt_str(payload.get("type")) == "mismatch" and not (
            opt_str(payload.get("id")) or opt_str(payload.get("gsId"))
        ):
            # The WhatsApp id differs from the number sent to (Brazil's 9th digit). Without a
            # message id there is nothing to update: counted so an operator can see it happen.
            out.ignored.append("message-event:mismatch")
        else:
            out.events.append(_v2_status(body, org, received_at_ms))
    elif kind == "user-event":
        _v2_user_event(body, org, received_at_ms, out)
    elif kind == "platform-event":
        sub = opt_str(opt_obj(body.get("payload")).get("type")) or "unknown"
        out.ignored.append(f"platform-event:{sub}")
    elif kind in _V2_IGNORED_TYPES:
        out.ignored.append(kind)
    else:
        # Gupshup adds event types without notice and requires a 2xx for them (§1.1).
        out.ignored.append(f"unknown:{kind}")


def _v2_message(body: dict[str, Any], org: str, received_at_ms: int) -> InboundMessage:
    payload = obj(body.get("payload"), "payload")
    provider_id = req_str(payload, "id", "payload")
    phone = req_phone(payload, "source", "payload")
    content = _v2_content(payload)
    context = opt_obj(payload.get("context"))
    return InboundMessage(
        org=org,
        provider_id=provider_id,
        phone=phone,
        name=capped(opt_str(opt_obj(payload.get("sender")).get("name")), MAX_NAME_CHARS),
        kind=content.kind,
        text=capped(content.text),
        caption=capped(content.caption),
        media=content.media,
        context_id=opt_str(context.get("id")) or opt_str(context.get("gsId")) or content.context_id,
        # v2 messages carry no send time of their own; Gupshup's receive time (ms) is the closest.
        sent_at_ms=first_ms(body.get("timestamp"), default=received_at_ms),
        received_at_ms=received_at_ms,
        raw=payload,
    )


def _v2_content(payload: dict[str, Any]) -> Content:
    # A message whose type cannot be read still has a sender and an id: it is kept as
    # "unknown" (as v3 does), so the customer is answered instead of silently dropped.
    wire = opt_str(payload.get("type")) or "unknown"
    path = "payload.payload"
    if wire == "text":
        return Content("text", text=req_text(obj(payload.get("payload"), path), "text", path))
    if wire in _V2_MEDIA_KINDS:
        inner = obj(payload.get("payload"), path)
        media = _v2_media(inner, path)
        kind = (
            "voice"
            if wire == "audio" and is_voice_note(media.content_type)
            else _V2_MEDIA_KINDS[wire]
        )
        return Content(kind, caption=opt_str(inner.get("caption")), media=media)
    if wire == "location":
        return Content("location", text=location_text(obj(payload.get("payload"), path), path))
    inner = opt_obj(payload.get("payload"))
    if wire == "contact":
        return Content("contact", text=contacts_text(inner.get("contacts")))
    if wire in _REPLY_KINDS:
        # Both quick_reply shapes ({title,id,reply} and {text,type,postbackText}) keep
        # the wire kind; the ids stay in raw for whoever matches the button.
        return Content(wire, text=reply_text(inner))  # type: ignore[arg-type]
    if wire == "reaction":
        # Shape undocumented for v2; keep the kind and whatever emoji there is.
        return Content("reaction", text=opt_str(inner.get("emoji")))
    return Content("unknown")


def _v2_media(inner: dict[str, Any], path: str) -> Media:
    url = req_str(inner, "url", path)
    return Media(
        url=url,
        content_type=opt_str(inner.get("contentType")) or "application/octet-stream",
        filename=opt_str(inner.get("name")),
        expires_at_ms=epoch_ms(inner.get("urlExpiry")),
    )


def _v2_status(body: dict[str, Any], org: str, received_at_ms: int) -> StatusEvent:
    payload = obj(body.get("payload"), "payload")
    inner = opt_obj(payload.get("payload"))
    gs_id = opt_str(payload.get("gsId"))
    # Async failures carry only gsId (§1.5), so it stands in for the missing id.
    provider_id = opt_str(payload.get("id")) or gs_id
    if provider_id is None:
        raise MalformedPayload("payload.id is missing (and there is no payload.gsId)")
    return StatusEvent(
        org=org,
        provider_id=provider_id,
        gs_id=gs_id,
        status=req_str(payload, "type", "payload"),
        destination=opt_str(payload.get("destination")),
        # `ts` sits on the payload in the docs table and one level down in the 2026 layout.
        at_ms=first_ms(
            payload.get("ts"), inner.get("ts"), body.get("timestamp"), default=received_at_ms
        ),
        code=as_int(inner.get("code")),
        reason=opt_str(inner.get("reason")),
        raw=payload,
    )


def _v2_user_event(body: dict[str, Any], org: str, received_at_ms: int, out: Parsed) -> None:
    payload = obj(body.get("payload"), "payload")
    phone = req_phone(payload, "phone", "payload")
    event = req_str(payload, "type", "payload")
    if event == "sandbox-start" and phone == "callbackSetPhone":
        # Sent when the callback URL is set: a handshake, not a user.
        out.ignored.append("user-event:sandbox-start")
        return
    out.events.append(
        UserEvent(
            org=org,
            phone=phone,
            event=event,
            at_ms=first_ms(body.get("timestamp"), default=received_at_ms),
            raw=payload,
        )
    )
