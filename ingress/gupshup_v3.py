"""Gupshup format v3 (Meta's WhatsApp Business Account shape plus `gs_app_id`): several
messages and statuses per body, timestamps in seconds (docs/gupshup.md §1.7)."""

from __future__ import annotations

from typing import Any

from ingress.gupshup_fields import (
    Content,
    MalformedPayload,
    Parsed,
    as_int,
    MAX_NAME_CHARS,
    capped,
    as_list,
    contacts_text,
    json_type,
    first_ms,
    location_text,
    obj,
    opt_list,
    opt_obj,
    opt_str,
    reply_text,
    req_phone,
    req_str,
    req_text,
)
from storage.events import InboundMessage, Media, MessageKind, StatusEvent


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
    "image": "image",
    "audio": "audio",
    "video": "video",
    "document": "file",
    "sticker": "sticker",
}


def parse_v3(body: dict[str, Any], org: str, received_at_ms: int, out: Parsed) -> None:
    if "entry" not in body:
        raise MalformedPayload("entry is missing")
    for i, entry in enumerate(as_list(body.get("entry"), "entry")):
        entry_path = f"entry[{i}]"
        changes = obj(entry, entry_path).get("changes")
        for j, change in enumerate(as_list(changes, f"{entry_path}.changes")):
            change_path = f"{entry_path}.changes[{j}]"
            _v3_change(obj(change, change_path), change_path, org, received_at_ms, out)


def _v3_change(
    change: dict[str, Any], path: str, org: str, received_at_ms: int, out: Parsed
) -> None:
    # An unknown field is acknowledged (§1.1), so a field that cannot be read is refused: read
    # leniently, a `messages` change whose field came as a number would be dropped unseen.
    kind = change.get("field")
    if not isinstance(kind, str) or not kind:
        raise MalformedPayload(
            f"{path}.field is missing"
            if kind in (None, "")
            else f"{path}.field is not a string (it is {json_type(kind)})"
        )
    if kind == "platform-event":
        value = opt_obj(change.get("value"))
        out.ignored.append(f"platform-event:{opt_str(value.get('type')) or 'unknown'}")
        return
    if kind != "messages":
        out.ignored.append(_V3_IGNORED_FIELDS.get(kind, f"unknown:{kind}"))
        return
    path = f"{path}.value"
    value = obj(change.get("value"), path)
    names = _v3_names(value.get("contacts"))  # profile names only: optional
    for k, msg in enumerate(as_list(value.get("messages"), f"{path}.messages")):
        msg_path = f"{path}.messages[{k}]"
        out.events.append(_v3_message(obj(msg, msg_path), names, msg_path, org, received_at_ms))
    for k, status in enumerate(as_list(value.get("statuses"), f"{path}.statuses")):
        _v3_status(
            obj(status, f"{path}.statuses[{k}]"), f"{path}.statuses[{k}]", org, received_at_ms, out
        )


def _v3_names(contacts: Any) -> dict[str, str]:
    """Profile names by wa_id (and by BSUID user_id, for senders that only have one)."""
    names: dict[str, str] = {}
    for contact in opt_list(contacts):
        contact = opt_obj(contact)
        name = opt_str(opt_obj(contact.get("profile")).get("name"))
        for key in ("wa_id", "user_id"):
            ident = opt_str(contact.get(key))
            if name and ident:
                names[ident] = name
    return names


def _v3_message(
    msg: dict[str, Any], names: dict[str, str], path: str, org: str, received_at_ms: int
) -> InboundMessage:
    phone = req_phone(msg, "from", path)
    content = _v3_content(msg, path)
    return InboundMessage(
        org=org,
        provider_id=req_str(msg, "id", path),
        phone=phone,
        name=capped(
            names.get(phone) or names.get(opt_str(msg.get("from_user_id")) or ""), MAX_NAME_CHARS
        ),
        kind=content.kind,
        text=capped(content.text),
        caption=capped(content.caption),
        media=content.media,
        context_id=opt_str(opt_obj(msg.get("context")).get("id")) or content.context_id,
        sent_at_ms=first_ms(msg.get("timestamp"), default=received_at_ms),
        received_at_ms=received_at_ms,
        raw=msg,
    )


def _v3_content(msg: dict[str, Any], path: str) -> Content:
    wire = opt_str(msg.get("type")) or "unknown"
    inner_path = f"{path}.{wire}"
    if wire == "text":
        return Content("text", text=req_text(obj(msg.get(wire), inner_path), "body", inner_path))
    if wire in _V3_MEDIA_KINDS:
        return _v3_media(wire, obj(msg.get(wire), inner_path), inner_path)
    if wire == "location":
        return Content("location", text=location_text(obj(msg.get(wire), inner_path), inner_path))
    inner = opt_obj(msg.get(wire))
    if wire == "contacts":
        return Content("contact", text=contacts_text(msg.get("contacts")))
    if wire == "interactive":
        sub = opt_str(inner.get("type"))
        if sub in ("button_reply", "list_reply"):
            return Content(sub, text=reply_text(opt_obj(inner.get(sub))))  # type: ignore[arg-type]
        return Content("unknown")  # flows (nfm_reply) and others: raw is kept
    if wire == "button":  # a template quick-reply button
        return Content("quick_reply", text=reply_text(inner))
    if wire == "reaction":
        return Content(
            "reaction",
            text=opt_str(inner.get("emoji")),
            context_id=opt_str(inner.get("message_id")),
        )
    return Content("unknown")


def _v3_media(wire: str, inner: dict[str, Any], path: str) -> Content:
    # Gupshup adds a ready `url` (§1.7); without it the media would need Meta's API, which we do not call.
    media = Media(
        url=req_str(inner, "url", path),
        content_type=opt_str(inner.get("mime_type")) or "application/octet-stream",
        filename=opt_str(inner.get("filename")),
        sha256=opt_str(inner.get("sha256")),
    )
    kind = "voice" if wire == "audio" and inner.get("voice") is True else _V3_MEDIA_KINDS[wire]
    return Content(kind, caption=opt_str(inner.get("caption")), media=media)


def _v3_status(
    status: dict[str, Any], path: str, org: str, received_at_ms: int, out: Parsed
) -> None:
    if "status" not in status and status.get("type"):
        # `{"type": "set-callback"}` arrives when the callback is set: nothing was sent.
        out.ignored.append(f"status:{opt_str(status.get('type'))}")
        return
    gs_id = opt_str(status.get("gs_id"))
    provider_id = opt_str(status.get("id")) or gs_id
    if provider_id is None:
        raise MalformedPayload(f"{path}.id is missing (and there is no gs_id)")
    errors = opt_list(status.get("errors"))
    error = opt_obj(errors[0]) if errors else {}
    out.events.append(
        StatusEvent(
            org=org,
            provider_id=provider_id,
            gs_id=gs_id,
            status=req_str(status, "status", path),
            destination=opt_str(status.get("recipient_id")),
            at_ms=first_ms(status.get("timestamp"), default=received_at_ms),
            # Meta puts failures in errors[]; Gupshup's passthrough doc shows code/reason instead.
            code=as_int(error.get("code", status.get("code"))),
            reason=opt_str(error.get("title"))
            or opt_str(error.get("message"))
            or opt_str(status.get("reason")),
            raw=status,
        )
    )
