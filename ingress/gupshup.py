"""Turn one Gupshup webhook body (format v2 or v3) into stream events.

Pure parsing: no I/O. The HTTP handler decides what to do with `MalformedPayload`
and with the `ignored` kinds; this module only says what the body means.
Shapes follow shared/reference/protocols.md §1.3–1.7.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from storage.events import InboundMessage, Media, MessageKind, StatusEvent, UserEvent

Event = InboundMessage | StatusEvent | UserEvent


class MalformedPayload(ValueError):
    """A webhook body that cannot mean anything; str(exc) names the field at fault."""


@dataclass(frozen=True)
class AppRef:
    """Which Gupshup app sent the body: v2 names it, v3 gives its id."""

    name: str | None
    gs_app_id: str | None
    format: Literal["v2", "v3"]


@dataclass
class Parsed:
    events: list[Event] = field(default_factory=list)
    # Kinds that were understood and deliberately dropped, for logs and metrics.
    ignored: list[str] = field(default_factory=list)


@dataclass
class _Content:
    """The kind-specific part of an inbound message, shared by both formats."""

    kind: MessageKind
    text: str | None = None
    caption: str | None = None
    media: Media | None = None
    context_id: str | None = None


# ---------------------------------------------------------------- field helpers


def _obj(value: Any, path: str) -> dict[str, Any]:
    if value is None:
        raise MalformedPayload(f"{path} is missing")
    if not isinstance(value, dict):
        raise MalformedPayload(f"{path} is not an object")
    return value


def _opt_obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedPayload(f"{path} is not a list")
    return value


def _opt_str(value: Any) -> str | None:
    # Ids and phones are strings on the wire, but a number is not worth rejecting.
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (str, int)):
        return str(value) or None
    return None


def _req_str(obj: dict[str, Any], key: str, path: str) -> str:
    value = _opt_str(obj.get(key))
    if value is None:
        raise MalformedPayload(f"{path}.{key} is missing")
    return value


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str):
        try:
            return int(float(value.strip()))
        except ValueError:
            return None
    return None


def _epoch_ms(value: Any) -> int | None:
    """Seconds or milliseconds, as number or string, to ms.

    Gupshup mixes units (v2 `timestamp` is ms, `ts` is s; v3 `enqueued` is ms,
    other statuses s). Anything below 1e11 is seconds: 1e11 ms is 1973, 1e11 s is year 5138.
    """
    number = _int(value)
    if number is None or number <= 0:
        return None
    return number * 1000 if number < 100_000_000_000 else number


def _first_ms(*candidates: Any, default: int) -> int:
    for value in candidates:
        ms = _epoch_ms(value)
        if ms is not None:
            return ms
    return default


# ---------------------------------------------------------------- entry points


def identify_app(body: dict[str, Any]) -> AppRef:
    """Tell the format and the app apart before any parsing, so the caller can find the org."""
    if not isinstance(body, dict):
        raise MalformedPayload("body is not a JSON object")
    if body.get("object") == "whatsapp_business_account":
        return AppRef(name=None, gs_app_id=_opt_str(body.get("gs_app_id")), format="v3")
    # v2 always names the app; a body with a type and a payload is v2 even without it.
    if "app" in body or (isinstance(body.get("type"), str) and "payload" in body):
        return AppRef(name=_opt_str(body.get("app")), gs_app_id=_opt_str(body.get("appId")), format="v2")
    raise MalformedPayload("body is neither format v2 (no 'app') nor v3 (no 'object': 'whatsapp_business_account')")


def parse_webhook(body: dict[str, Any], org: str, received_at_ms: int) -> Parsed:
    """All events in one webhook body. Unknown kinds land in `ignored`, never raise."""
    ref = identify_app(body)
    out = Parsed()
    if ref.format == "v3":
        _parse_v3(body, org, received_at_ms, out)
    else:
        _parse_v2(body, org, received_at_ms, out)
    return out


# ---------------------------------------------------------------- shared renderers


def _reply_text(obj: dict[str, Any]) -> str | None:
    """The words the user saw on the button: interactive replies use `title`, template buttons `text`."""
    for key in ("title", "text", "reply", "postbackText"):
        value = _opt_str(obj.get(key))
        if value:
            return value
    return None


def _location_text(loc: dict[str, Any], path: str) -> str:
    lat, lon = loc.get("latitude"), loc.get("longitude")
    if lat is None or lon is None:
        raise MalformedPayload(f"{path}.latitude/longitude is missing")
    # Keep v2's strings as sent: float() would change the digits the user shared.
    line = f"[ubicación] lat {lat}, lon {lon}"
    place = ", ".join(p for p in (_opt_str(loc.get("name")), _opt_str(loc.get("address"))) if p)
    return f"{line} — {place}" if place else line


def _one_contact_text(contact: dict[str, Any]) -> str:
    name_obj = _opt_obj(contact.get("name"))
    name = _opt_str(name_obj.get("formatted_name")) or " ".join(
        p for p in (_opt_str(name_obj.get("first_name")), _opt_str(name_obj.get("last_name"))) if p
    )
    phones = [_opt_str(_opt_obj(p).get("phone")) for p in contact.get("phones") or []]
    emails = [_opt_str(_opt_obj(e).get("email")) for e in contact.get("emails") or []]
    company = _opt_str(_opt_obj(contact.get("org")).get("company"))
    parts = [
        name or None,
        "tel " + ", ".join(p for p in phones if p) if any(phones) else None,
        ", ".join(e for e in emails if e) if any(emails) else None,
        company,
    ]
    return " ".join(["[contacto]", " — ".join(p for p in parts if p)]).rstrip()


def _contacts_text(contacts: list[Any]) -> str:
    lines = [_one_contact_text(_opt_obj(c)) for c in contacts]
    return "\n".join(lines) if lines else "[contacto]"


def _is_voice_note(content_type: str | None) -> bool:
    # v2 has no voice flag (protocols.md §1.4). WhatsApp records voice notes as OGG/Opus,
    # while audio *files* users forward are mostly mp3/m4a/aac, so OGG/Opus is the best signal.
    ct = (content_type or "").lower()
    return ct.startswith("audio/ogg") and "opus" in ct


# ---------------------------------------------------------------- format v2

# Top-level v2 types we acknowledge without an event: nothing in them concerns a chat.
_V2_IGNORED_TYPES = {"template-event", "account-event", "billing-event"}
_V2_MEDIA_KINDS: dict[str, MessageKind] = {
    "image": "image", "audio": "audio", "video": "video", "file": "file", "sticker": "sticker",
}
_REPLY_KINDS: set[str] = {"button_reply", "list_reply", "quick_reply"}


def _parse_v2(body: dict[str, Any], org: str, received_at_ms: int, out: Parsed) -> None:
    kind = body.get("type")
    if not isinstance(kind, str) or not kind:
        raise MalformedPayload("type is missing")
    if kind == "message":
        out.events.append(_v2_message(body, org, received_at_ms))
    elif kind == "message-event":
        out.events.append(_v2_status(body, org, received_at_ms))
    elif kind == "user-event":
        _v2_user_event(body, org, received_at_ms, out)
    elif kind == "platform-event":
        sub = _opt_str(_opt_obj(body.get("payload")).get("type")) or "unknown"
        out.ignored.append(f"platform-event:{sub}")
    elif kind in _V2_IGNORED_TYPES:
        out.ignored.append(kind)
    else:
        # Gupshup adds event types without notice and requires a 2xx for them (§1.1).
        out.ignored.append(f"unknown:{kind}")


def _v2_message(body: dict[str, Any], org: str, received_at_ms: int) -> InboundMessage:
    payload = _obj(body.get("payload"), "payload")
    provider_id = _req_str(payload, "id", "payload")
    phone = _req_str(payload, "source", "payload")
    content = _v2_content(payload)
    context = _opt_obj(payload.get("context"))
    return InboundMessage(
        org=org,
        provider_id=provider_id,
        phone=phone,
        name=_opt_str(_opt_obj(payload.get("sender")).get("name")),
        kind=content.kind,
        text=content.text,
        caption=content.caption,
        media=content.media,
        context_id=_opt_str(context.get("id")) or _opt_str(context.get("gsId")) or content.context_id,
        # v2 messages carry no send time of their own; Gupshup's receive time (ms) is the closest.
        sent_at_ms=_first_ms(body.get("timestamp"), default=received_at_ms),
        received_at_ms=received_at_ms,
        raw=payload,
    )


def _v2_content(payload: dict[str, Any]) -> _Content:
    wire = _req_str(payload, "type", "payload")
    inner = _opt_obj(payload.get("payload"))
    path = "payload.payload"
    if wire == "text":
        text = inner.get("text")
        if not isinstance(text, str):
            raise MalformedPayload(f"{path}.text is missing")
        return _Content("text", text=text)
    if wire in _V2_MEDIA_KINDS:
        media = _v2_media(inner, path)
        kind = "voice" if wire == "audio" and _is_voice_note(media.content_type) else _V2_MEDIA_KINDS[wire]
        return _Content(kind, caption=_opt_str(inner.get("caption")), media=media)
    if wire == "location":
        return _Content("location", text=_location_text(inner, path))
    if wire == "contact":
        return _Content("contact", text=_contacts_text(_list(inner.get("contacts"), f"{path}.contacts")))
    if wire in _REPLY_KINDS:
        # Both quick_reply shapes ({title,id,reply} and {text,type,postbackText}) keep
        # the wire kind; the ids stay in raw for whoever matches the button.
        return _Content(wire, text=_reply_text(inner))  # type: ignore[arg-type]
    if wire == "reaction":
        # Shape undocumented for v2; keep the kind and whatever emoji there is.
        return _Content("reaction", text=_opt_str(inner.get("emoji")))
    return _Content("unknown")


def _v2_media(inner: dict[str, Any], path: str) -> Media:
    url = _req_str(inner, "url", path)
    return Media(
        url=url,
        content_type=_opt_str(inner.get("contentType")) or "application/octet-stream",
        filename=_opt_str(inner.get("name")),
        expires_at_ms=_epoch_ms(inner.get("urlExpiry")),
    )


def _v2_status(body: dict[str, Any], org: str, received_at_ms: int) -> StatusEvent:
    payload = _obj(body.get("payload"), "payload")
    inner = _opt_obj(payload.get("payload"))
    gs_id = _opt_str(payload.get("gsId"))
    # Async failures carry only gsId (§1.5), so it stands in for the missing id.
    provider_id = _opt_str(payload.get("id")) or gs_id
    if provider_id is None:
        raise MalformedPayload("payload.id is missing (and there is no payload.gsId)")
    return StatusEvent(
        org=org,
        provider_id=provider_id,
        gs_id=gs_id,
        status=_req_str(payload, "type", "payload"),
        destination=_opt_str(payload.get("destination")),
        # `ts` sits on the payload in the docs table and one level down in the 2026 layout.
        at_ms=_first_ms(payload.get("ts"), inner.get("ts"), body.get("timestamp"), default=received_at_ms),
        code=_int(inner.get("code")),
        reason=_opt_str(inner.get("reason")),
        raw=payload,
    )


def _v2_user_event(body: dict[str, Any], org: str, received_at_ms: int, out: Parsed) -> None:
    payload = _obj(body.get("payload"), "payload")
    phone = _req_str(payload, "phone", "payload")
    event = _req_str(payload, "type", "payload")
    if event == "sandbox-start" and phone == "callbackSetPhone":
        # Sent when the callback URL is set: a handshake, not a user.
        out.ignored.append("user-event:sandbox-start")
        return
    out.events.append(
        UserEvent(
            org=org,
            phone=phone,
            event=event,
            at_ms=_first_ms(body.get("timestamp"), default=received_at_ms),
            raw=payload,
        )
    )


# ---------------------------------------------------------------- format v3

# Meta webhook fields that are not about a chat, named like their v2 counterparts.
_V3_IGNORED_FIELDS = {
    "message_template_status_update": "template-event",
    "message_template_quality_update": "template-event",
    "template_category_update": "template-event",
    "account_update": "account-event",
    "account_review_update": "account-event",
    "account_alerts": "account-event",
    "phone_number_quality_update": "account-event",
    "phone_number_name_update": "account-event",
    "business_capability_update": "account-event",
}
_V3_MEDIA_KINDS: dict[str, MessageKind] = {
    "image": "image", "audio": "audio", "video": "video", "document": "file", "sticker": "sticker",
}


def _parse_v3(body: dict[str, Any], org: str, received_at_ms: int, out: Parsed) -> None:
    if "entry" not in body:
        raise MalformedPayload("entry is missing")
    for i, entry in enumerate(_list(body.get("entry"), "entry")):
        entry_path = f"entry[{i}]"
        changes = _obj(entry, entry_path).get("changes")
        for j, change in enumerate(_list(changes, f"{entry_path}.changes")):
            change_path = f"{entry_path}.changes[{j}]"
            _v3_change(_obj(change, change_path), change_path, org, received_at_ms, out)


def _v3_change(change: dict[str, Any], path: str, org: str, received_at_ms: int, out: Parsed) -> None:
    kind = _opt_str(change.get("field")) or "unknown"
    value = _opt_obj(change.get("value"))
    if kind == "platform-event":
        out.ignored.append(f"platform-event:{_opt_str(value.get('type')) or 'unknown'}")
        return
    if kind != "messages":
        out.ignored.append(_V3_IGNORED_FIELDS.get(kind, f"unknown:{kind}"))
        return
    path = f"{path}.value"
    names = _v3_names(_list(value.get("contacts"), f"{path}.contacts"))
    for k, msg in enumerate(_list(value.get("messages"), f"{path}.messages")):
        msg_path = f"{path}.messages[{k}]"
        out.events.append(_v3_message(_obj(msg, msg_path), names, msg_path, org, received_at_ms))
    for k, status in enumerate(_list(value.get("statuses"), f"{path}.statuses")):
        _v3_status(_obj(status, f"{path}.statuses[{k}]"), f"{path}.statuses[{k}]", org, received_at_ms, out)


def _v3_names(contacts: list[Any]) -> dict[str, str]:
    """Profile names by wa_id (and by BSUID user_id, for senders that only have one)."""
    names: dict[str, str] = {}
    for contact in contacts:
        contact = _opt_obj(contact)
        name = _opt_str(_opt_obj(contact.get("profile")).get("name"))
        for key in ("wa_id", "user_id"):
            ident = _opt_str(contact.get(key))
            if name and ident:
                names[ident] = name
    return names


def _v3_message(
    msg: dict[str, Any], names: dict[str, str], path: str, org: str, received_at_ms: int
) -> InboundMessage:
    phone = _req_str(msg, "from", path)
    content = _v3_content(msg, path)
    return InboundMessage(
        org=org,
        provider_id=_req_str(msg, "id", path),
        phone=phone,
        name=names.get(phone) or names.get(_opt_str(msg.get("from_user_id")) or ""),
        kind=content.kind,
        text=content.text,
        caption=content.caption,
        media=content.media,
        context_id=_opt_str(_opt_obj(msg.get("context")).get("id")) or content.context_id,
        sent_at_ms=_first_ms(msg.get("timestamp"), default=received_at_ms),
        received_at_ms=received_at_ms,
        raw=msg,
    )


def _v3_content(msg: dict[str, Any], path: str) -> _Content:
    wire = _opt_str(msg.get("type")) or "unknown"
    inner = _opt_obj(msg.get(wire))
    inner_path = f"{path}.{wire}"
    if wire == "text":
        body = inner.get("body")
        if not isinstance(body, str):
            raise MalformedPayload(f"{inner_path}.body is missing")
        return _Content("text", text=body)
    if wire in _V3_MEDIA_KINDS:
        return _v3_media(wire, inner, inner_path)
    if wire == "location":
        return _Content("location", text=_location_text(inner, inner_path))
    if wire == "contacts":
        return _Content("contact", text=_contacts_text(_list(msg.get("contacts"), inner_path)))
    if wire == "interactive":
        sub = _opt_str(inner.get("type"))
        if sub in ("button_reply", "list_reply"):
            return _Content(sub, text=_reply_text(_opt_obj(inner.get(sub))))  # type: ignore[arg-type]
        return _Content("unknown")  # flows (nfm_reply) and others: raw is kept
    if wire == "button":  # a template quick-reply button
        return _Content("quick_reply", text=_reply_text(inner))
    if wire == "reaction":
        return _Content("reaction", text=_opt_str(inner.get("emoji")), context_id=_opt_str(inner.get("message_id")))
    return _Content("unknown")


def _v3_media(wire: str, inner: dict[str, Any], path: str) -> _Content:
    # Gupshup adds a ready `url` (§1.7); without it the media would need Meta's API, which we do not call.
    media = Media(
        url=_req_str(inner, "url", path),
        content_type=_opt_str(inner.get("mime_type")) or "application/octet-stream",
        filename=_opt_str(inner.get("filename")),
        sha256=_opt_str(inner.get("sha256")),
    )
    kind = "voice" if wire == "audio" and inner.get("voice") is True else _V3_MEDIA_KINDS[wire]
    return _Content(kind, caption=_opt_str(inner.get("caption")), media=media)


def _v3_status(status: dict[str, Any], path: str, org: str, received_at_ms: int, out: Parsed) -> None:
    if "status" not in status and status.get("type"):
        # `{"type": "set-callback"}` arrives when the callback is set: nothing was sent.
        out.ignored.append(f"status:{_opt_str(status.get('type'))}")
        return
    gs_id = _opt_str(status.get("gs_id"))
    provider_id = _opt_str(status.get("id")) or gs_id
    if provider_id is None:
        raise MalformedPayload(f"{path}.id is missing (and there is no gs_id)")
    errors = status.get("errors")
    error = _opt_obj(errors[0]) if isinstance(errors, list) and errors else {}
    out.events.append(
        StatusEvent(
            org=org,
            provider_id=provider_id,
            gs_id=gs_id,
            status=_req_str(status, "status", path),
            destination=_opt_str(status.get("recipient_id")),
            at_ms=_first_ms(status.get("timestamp"), default=received_at_ms),
            # Meta puts failures in errors[]; Gupshup's passthrough doc shows code/reason instead.
            code=_int(error.get("code", status.get("code"))),
            reason=_opt_str(error.get("title") or error.get("message") or status.get("reason")),
            raw=status,
        )
    )
