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


def obj(value: Any, path: str) -> dict[str, Any]:
    if value is None:
        raise MalformedPayload(f"{path} is missing")
    if not isinstance(value, dict):
        raise MalformedPayload(f"{path} is not an object")
    return value


def opt_obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedPayload(f"{path} is not a list")
    return value


def opt_str(value: Any) -> str | None:
    # Ids and phones are strings on the wire, but a number is not worth rejecting.
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (str, int)):
        return str(value) or None
    return None


def req_str(obj: dict[str, Any], key: str, path: str) -> str:
    value = opt_str(obj.get(key))
    if value is None:
        raise MalformedPayload(f"{path}.{key} is missing")
    return value


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
    if lat is None or lon is None:
        raise MalformedPayload(f"{path}.latitude/longitude is missing")
    # Keep v2's strings as sent: float() would change the digits the user shared.
    line = f"[ubicación] lat {lat}, lon {lon}"
    place = ", ".join(p for p in (opt_str(loc.get("name")), opt_str(loc.get("address"))) if p)
    return f"{line} — {place}" if place else line


def one_contact_text(contact: dict[str, Any]) -> str:
    name_obj = opt_obj(contact.get("name"))
    name = opt_str(name_obj.get("formatted_name")) or " ".join(
        p for p in (opt_str(name_obj.get("first_name")), opt_str(name_obj.get("last_name"))) if p
    )
    phones = [opt_str(opt_obj(p).get("phone")) for p in contact.get("phones") or []]
    emails = [opt_str(opt_obj(e).get("email")) for e in contact.get("emails") or []]
    company = opt_str(opt_obj(contact.get("org")).get("company"))
    parts = [
        name or None,
        "tel " + ", ".join(p for p in phones if p) if any(phones) else None,
        ", ".join(e for e in emails if e) if any(emails) else None,
        company,
    ]
    return " ".join(["[contacto]", " — ".join(p for p in parts if p)]).rstrip()


def contacts_text(contacts: list[Any]) -> str:
    lines = [one_contact_text(opt_obj(c)) for c in contacts]
    return "\n".join(lines) if lines else "[contacto]"


def is_voice_note(content_type: str | None) -> bool:
    # v2 has no voice flag (docs/gupshup.md §1.4). WhatsApp records voice notes as OGG/Opus,
    # while audio *files* users forward are mostly mp3/m4a/aac, so OGG/Opus is the best signal.
    ct = (content_type or "").lower()
    return ct.startswith("audio/ogg") and "opus" in ct


