"""What both Gupshup formats share: the parse result, field readers that name the field at
fault, and the readable lines for replies, locations and contact cards. Pure: no I/O."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from storage.events import InboundMessage, Media, MessageKind, StatusEvent, UserEvent

Event = InboundMessage | StatusEvent | UserEvent


class MalformedPayload(ValueError):
    """A webhook body that cannot mean anything; str(exc) names the field at fault."""


# WhatsApp caps a text message at 4096 characters and a caption at 1024: anything longer did
# not come from a person's phone, and is cut before it can fill a prompt.
MAX_TEXT_CHARS = 4096
MAX_NAME_CHARS = 256


def capped(value: str | None, limit: int = MAX_TEXT_CHARS) -> str | None:
    if value is None or len(value) <= limit:
        return value
    return value[:limit] + "…"


@dataclass
class Parsed:
    events: list[Event] = field(default_factory=list)
    # Kinds that were understood and deliberately dropped, for logs and metrics.
    ignored: list[str] = field(default_factory=list)


@dataclass
class Content:
    """The kind-specific part of an inbound message, shared by both formats."""

    kind: MessageKind
    text: str | None = None
    caption: str | None = None
    media: Media | None = None
    context_id: str | None = None


# ---------------------------------------------------------------- field helpers
#
# Every field of a webhook may arrive with the wrong JSON type (a provider change, a proxy, a
# hand-made request). Two rules, so no body ever reaches a TypeError: a field the event cannot
# mean anything without is read with a `req_`/`obj`/`as_list` reader, whose MalformedPayload
# (a 400) names the field and the type it had; an optional field is read with an `opt_` reader,
# which gives nothing for a wrong type, so one odd field never costs the customer's message.


def json_type(value: Any) -> str:
    """The JSON name of a value's type, for reasons a person reads."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def obj(value: Any, path: str) -> dict[str, Any]:
    if value is None:
        raise MalformedPayload(f"{path} is missing")
    if not isinstance(value, dict):
        raise MalformedPayload(f"{path} is not an object (it is {json_type(value)})")
    return value


def opt_obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedPayload(f"{path} is not a list (it is {json_type(value)})")
    return value


def opt_list(value: Any) -> list[Any]:
    """An optional list; one item sent bare where a list of them belongs counts as that item."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def opt_str(value: Any) -> str | None:
    # Ids and phones are strings on the wire, but a number is not worth rejecting.
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (str, int)):
        return str(value) or None
    return None


def req_str(obj: dict[str, Any], key: str, path: str) -> str:
    raw = obj.get(key)
    value = opt_str(raw)
    if value is None:
        wrong = raw is not None and raw != ""
        raise MalformedPayload(
            f"{path}.{key} is not a string (it is {json_type(raw)})"
            if wrong
            else f"{path}.{key} is missing"
        )
    return value


def req_text(obj: dict[str, Any], key: str, path: str) -> str:
    """What a person typed: a string, possibly empty; a bare number is its digits."""
    raw = obj.get(key)
    if isinstance(raw, str):
        return raw
    if isinstance(raw, int) and not isinstance(raw, bool):
        return str(raw)
    if raw is None:
        raise MalformedPayload(f"{path}.{key} is missing")
    raise MalformedPayload(f"{path}.{key} is not a string (it is {json_type(raw)})")


INT64_MAX = 2**63 - 1  # what PostgreSQL's bigint holds
YEAR_3000_MS = 32_503_680_000_000


# A phone number (E.164 has at most 15 digits) or a WhatsApp business-scoped user id
# (IN.1648738043044942); anything else would become a contact no message can reach.
_PHONE = re.compile(r"[0-9A-Za-z._-]{3,32}")


def req_phone(obj: dict[str, Any], key: str, path: str) -> str:
    value = req_str(obj, key, path).removeprefix("+")
    if not _PHONE.fullmatch(value):
        raise MalformedPayload(f"{path}.{key} is not a phone number or a WhatsApp user id")
    return value


def as_int(value: Any) -> int | None:
    """A number, or None for anything else: infinities, NaN and numbers no column can hold."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        value = int(value)
    if isinstance(value, int) and -INT64_MAX <= value <= INT64_MAX:
        return value
    return None


def epoch_ms(value: Any) -> int | None:
    """Seconds or milliseconds, as number or string, to ms.

    Gupshup mixes units (v2 `timestamp` is ms, `ts` is s; v3 `enqueued` is ms,
    other statuses s). Anything below 1e11 is seconds: 1e11 ms is 1973, 1e11 s is year 5138.
    """
    number = as_int(value)
    if number is None or number <= 0:
        return None
    ms = number * 1000 if number < 100_000_000_000 else number
    return ms if ms < YEAR_3000_MS else None  # nothing a database timestamp chokes on


def first_ms(*candidates: Any, default: int) -> int:
    for value in candidates:
        ms = epoch_ms(value)
        if ms is not None:
            return ms
    return default


# ---------------------------------------------------------------- shared renderers


def reply_text(obj: dict[str, Any]) -> str | None:
    """The words the user saw on the button: interactive replies use `title`, template buttons `text`."""
    for key in ("title", "text", "reply", "postbackText"):
        value = opt_str(obj.get(key))
        if value:
            return value
    return None


def location_text(loc: dict[str, Any], path: str) -> str:
    lat, lon = loc.get("latitude"), loc.get("longitude")
    for key, value in (("latitude", lat), ("longitude", lon)):
        if value is None:
            raise MalformedPayload(f"{path}.{key} is missing")
        if not _is_coordinate(value):
            raise MalformedPayload(f"{path}.{key} is not a number (it is {json_type(value)})")
    # Keep v2's strings as sent: float() would change the digits the user shared.
    line = f"[ubicación] lat {lat}, lon {lon}"
    place = ", ".join(p for p in (opt_str(loc.get("name")), opt_str(loc.get("address"))) if p)
    return f"{line} — {place}" if place else line


def _is_coordinate(value: Any) -> bool:
    """A finite number, or a string of one (v2 sends coordinates as strings)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return False
    return isinstance(value, (int, float)) and math.isfinite(value)


def _card_values(value: Any, key: str) -> list[str]:
    """A card's phones or emails: a list of {key: ...} objects, or the bare values themselves."""
    found = (
        opt_str(item.get(key)) if isinstance(item, dict) else opt_str(item)
        for item in opt_list(value)
    )
    return [v for v in found if v]


def one_contact_text(contact: dict[str, Any]) -> str:
    # Every part of a card is optional: a part of the wrong type is left out, not the message.
    name_obj = opt_obj(contact.get("name"))
    name = (
        opt_str(contact.get("name"))
        or opt_str(name_obj.get("formatted_name"))
        or " ".join(
            p
            for p in (opt_str(name_obj.get("first_name")), opt_str(name_obj.get("last_name")))
            if p
        )
    )
    phones = _card_values(contact.get("phones"), "phone")
    emails = _card_values(contact.get("emails"), "email")
    company = opt_str(opt_obj(contact.get("org")).get("company"))
    parts = [
        name or None,
        "tel " + ", ".join(phones) if phones else None,
        ", ".join(emails) if emails else None,
        company,
    ]
    return " ".join(["[contacto]", " — ".join(p for p in parts if p)]).rstrip()


def contacts_text(contacts: Any) -> str:
    """The readable lines of the cards in `contacts` (a list, one bare card, or unreadable)."""
    lines = [one_contact_text(opt_obj(c)) for c in opt_list(contacts)]
    return "\n".join(lines) if lines else "[contacto]"


def is_voice_note(content_type: str | None) -> bool:
    # v2 has no voice flag (docs/gupshup.md §1.4). WhatsApp records voice notes as OGG/Opus,
    # while audio *files* users forward are mostly mp3/m4a/aac, so OGG/Opus is the best signal.
    ct = (content_type or "").lower()
    return ct.startswith("audio/ogg") and "opus" in ct
