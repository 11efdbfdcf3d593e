"""An organization's settings (organizations.settings, jsonb), checked before they are saved.

`skytide org set` and `skytide catalog import` both go through `parse`, so a typo is a clear
error naming the key, never a setting that silently does nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time
from typing import Any, Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

from storage.db import Db

DEFAULT_REMINDER_OFFSETS_H = [24.0, 2.0]


class BadSetting(ValueError):
    """A setting name or value that cannot be used."""


def _text(value: Any) -> str:
    text = str(value).strip()
    if not text:
        raise BadSetting("must not be empty")
    return text


def _phone(value: Any) -> str:
    digits = re.sub(r"[\s+()-]", "", str(value))
    if not digits.isdigit() or not 8 <= len(digits) <= 15:
        raise BadSetting(f"{value!r} is not a phone number in international form (573001234567)")
    return digits


def _phones(value: Any) -> list[str]:
    items = value if isinstance(value, list) else str(value).split(",")
    return sorted({_phone(item) for item in items if str(item).strip()})


def staff_phones(settings: dict[str, Any]) -> frozenset[str]:
    """The phones of the clinic's own people (the advisor and `staff_phones`): what they write
    to the business number is stored and shown, never answered by the bot, and they never
    become contacts."""
    phones = set(settings.get("staff_phones") or [])
    if settings.get("advisor_phone"):
        phones.add(str(settings["advisor_phone"]))
    return frozenset(phones)


def _offsets(value: Any) -> list[float]:
    items = value if isinstance(value, list) else str(value).split(",")
    try:
        hours = sorted(
            {float(str(h).strip().rstrip("h")) for h in items if str(h).strip()}, reverse=True
        )
    except ValueError:
        raise BadSetting(f"{value!r}: expected hours before the appointment, e.g. 24,2") from None
    if not hours or any(h <= 0 or h > 24 * 14 for h in hours):
        raise BadSetting(f"{value!r}: each offset must be between 0 and 336 hours")
    return hours


def _clock(text: str) -> str:
    try:
        return time.fromisoformat(text.strip()).strftime("%H:%M")
    except ValueError:
        raise BadSetting(f"{text!r} is not a time of day (HH:MM)") from None


def _quiet(value: Any) -> dict[str, str] | None:
    if value in (None, "", "off", "none"):
        return None
    if isinstance(value, dict):
        start, end = value.get("start", ""), value.get("end", "")
    else:
        start, _, end = str(value).partition("-")
    return {"start": _clock(str(start)), "end": _clock(str(end))}


def _country(value: Any) -> str:
    code = str(value).strip().upper()
    if code not in holidays.list_supported_countries():
        raise BadSetting(
            f"{value!r} is not a country the holidays package knows (ISO code, e.g. CO)"
        )
    return code


def _hours(value: Any) -> float:
    try:
        hours = float(str(value).strip().rstrip("h"))
    except ValueError:
        raise BadSetting(f"{value!r} is not a number of hours") from None
    if hours <= 0:
        raise BadSetting(f"{value!r}: must be more than 0 hours")
    return hours


def _days(value: Any) -> float:
    try:
        days = float(str(value).strip().rstrip("d"))
    except ValueError:
        raise BadSetting(f"{value!r} is not a number of days") from None
    if days < 1:
        raise BadSetting(f"{value!r}: must be at least 1 day")
    return days


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1", "on", "si", "sí"):
        return True
    if text in ("false", "no", "0", "off"):
        return False
    raise BadSetting(f"{value!r} is not true or false")


def _seconds(value: Any) -> float:
    try:
        seconds = float(str(value).strip().rstrip("s"))
    except ValueError:
        raise BadSetting(f"{value!r} is not a number of seconds") from None
    if not 0 < seconds <= 120:
        raise BadSetting(f"{value!r}: must be more than 0 and at most 120 seconds")
    return seconds


def _share(value: Any) -> float:
    try:
        share = float(str(value).strip())
    except ValueError:
        raise BadSetting(f"{value!r} is not a number between 0 and 1") from None
    if not 0 < share <= 1:
        raise BadSetting(f"{value!r}: must be more than 0 and at most 1")
    return share


def _locale(value: Any) -> str:
    text = _text(value)
    if not re.fullmatch(r"[a-z]{2}(-[A-Z]{2})?", text):
        raise BadSetting(f"{value!r} is not a locale like es-CO")
    return text


def _currency(value: Any) -> str:
    code = _text(value).upper()
    if not re.fullmatch(r"[A-Z]{3}", code):
        raise BadSetting(f"{value!r} is not an ISO currency code like COP")
    return code


KEYS: dict[str, Callable[[Any], Any]] = {
    "advisor_phone": _phone,
    "staff_phones": _phones,  # comma-separated: staff who may write to the business number
    "escalation_template_id": _text,
    "reengagement_template_id": _text,
    "reminder_template_id": _text,  # the approved template for reminders outside the 24 h window
    # consumers/staff_notices.py: a template to the staff phones (and the advisor) for each
    # booking, move and cancellation, whoever made it; unset sends none.
    "booking_notice_template_id": _text,
    "reminder_offsets_h": _offsets,
    "quiet_hours": _quiet,  # "21:00-08:00": nothing scheduled is sent in between
    "locale": _locale,
    "currency": _currency,
    "country": _country,
    "open_on_holidays": _bool,
    "address": _text,  # in reminders and confirmations
    "emergency_phone": _text,  # said at once to a customer who describes an emergency (graph/safety.py)
    "bot_resume_after_hours": _hours,  # storage/chats.py: a paused bot comes back after this long
    # The burst's quiet window (graph/bursts.py): the organization's own DEBOUNCE_* settings.
    "debounce_seconds": _seconds,
    "debounce_adaptive": _bool,
    "debounce_complete_share": _share,
    "debounce_neutral_share": _share,
    # The Gupshup app's partner app token: read receipts with a typing indicator when a turn
    # starts (consumers/typing_indicator.py). A secret: never exported.
    "gupshup_partner_token": _text,
    # Retention (consumers/retention.py), enforced by the scheduler; unset keeps data until erased.
    "retention_messages_days": _days,  # chat messages (and their media) older than this are deleted
    "retention_media_days": _days,  # media files older than this are deleted; the message row stays
    "retention_dead_letters_days": _days,  # only shortens DEAD_LETTER_RETENTION_DAYS, never lengthens
}

SECRET_KEYS = frozenset({"gupshup_partner_token"})

# A WhatsApp template is approved per language: `reminder_template_id_en=...` is the one for
# chats in English; a chat in a language without its own gets the key without a suffix.
TEMPLATE_KEYS = ("escalation_template_id", "reengagement_template_id", "reminder_template_id")
LANGUAGES = ("es", "en", "pt")
KEYS.update({f"{key}_{lang}": _text for key in TEMPLATE_KEYS for lang in LANGUAGES})


def template_for(settings: dict[str, Any], key: str, language: str | None) -> str | None:
    """The organization's template `key` in `language` if it has one, else its default."""
    base = (language or "").split("-")[0].lower()
    found = settings.get(f"{key}_{base}") or settings.get(key)
    return str(found) if found else None


def default_language(settings: dict[str, Any]) -> str:
    """The organization's language (its `locale`, "es-CO" -> "es"): chats start in it."""
    base = str(settings.get("locale") or "es").split("-")[0].lower()
    return base if base in LANGUAGES else "es"


RETENTION_KEYS = ("retention_messages_days", "retention_media_days", "retention_dead_letters_days")


def parse(values: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in values.items():
        check = KEYS.get(key)
        if check is None:
            raise BadSetting(f"unknown setting {key!r}; known: {', '.join(sorted(KEYS))}")
        try:
            out[key] = check(value)
        except BadSetting as exc:
            raise BadSetting(f"{key}: {exc}") from None
    return out


def check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadSetting(
            f"timezone: {name!r} is not an IANA timezone like America/Bogota"
        ) from None
    return name


async def update(
    db: Db,
    org: str,
    settings: dict[str, Any],
    *,
    name: str | None = None,
    timezone: str | None = None,
) -> dict[str, Any]:
    """Merge checked settings into the organization's; returns the settings now in force."""
    merged: dict[str, Any] | None = await db.fetchval(
        "update organizations set settings = settings || $2::jsonb, name = coalesce($3, name),"
        " timezone = coalesce($4, timezone) where id = $1::uuid returning settings",
        org,
        parse(settings),
        name,
        check_timezone(timezone) if timezone else None,
    )
    if merged is None:
        raise BadSetting(f"no organization {org}")
    return merged


@dataclass(frozen=True)
class Quiet:
    start: time
    end: time

    def contains(self, moment: time) -> bool:
        if self.start <= self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end  # across midnight


def quiet_hours(settings: dict[str, Any]) -> Quiet | None:
    q = settings.get("quiet_hours")
    return Quiet(time.fromisoformat(q["start"]), time.fromisoformat(q["end"])) if q else None


def reminder_offsets_h(settings: dict[str, Any]) -> list[float]:
    return settings.get("reminder_offsets_h") or DEFAULT_REMINDER_OFFSETS_H
