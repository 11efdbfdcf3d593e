"""What a reply looks like on WhatsApp: dates in the customer's language (es-CO by default:
"jueves 4 de marzo, 3:00 p. m."), prices, no internal ids, ≤ 4096 chars.

Dates are written in the language of the turn (graph/i18n.py) unless one is passed: the
labels a tool shows are in the language the customer reads them in."""

from __future__ import annotations

import re
from datetime import date, datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo

from graph import i18n

MAX_CHARS = 4096
# Spanish names, for code that reads Spanish labels; replies use the catalog's (i18n "date.*").
WEEKDAYS = ["lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"]
MONTHS = [
    "enero",
    "febrero",
    "marzo",
    "abril",
    "mayo",
    "junio",
    "julio",
    "agosto",
    "septiembre",
    "octubre",
    "noviembre",
    "diciembre",
]
_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I)


def clock(moment: datetime | time, lang: str | None = None) -> str:
    """3:00 p. m. (es-CO), 3:00 PM (en), 15:00 (pt)."""
    half = i18n.text("date.am" if moment.hour < 12 else "date.pm", lang)
    return i18n.text(
        "date.clock",
        lang,
        hour12=moment.hour % 12 or 12,
        hour24=moment.hour,
        minute=f"{moment.minute:02d}",
        half=half,
    )


def weekday(n: int, lang: str | None = None) -> str:
    """The name of weekday n (Monday 0)."""
    return i18n.words("date.weekdays", lang)[n]


def weekdays_plural(n: int, lang: str | None = None) -> str:
    """ "domingos", "Sundays": what is closed every week."""
    return i18n.words("date.weekdays_plural", lang)[n]


def day(moment: date, lang: str | None = None) -> str:
    """jueves 4 de marzo, Thursday, March 4, quinta-feira, 4 de março."""
    return i18n.text(
        "date.day",
        lang,
        weekday=weekday(moment.weekday(), lang),
        day=moment.day,
        month=i18n.words("date.months", lang)[moment.month - 1],
    )


def when(moment: datetime, tz: ZoneInfo, lang: str | None = None) -> str:
    """viernes 12 de diciembre, 3:00 p. m. — always in the organization's timezone."""
    local = moment.astimezone(tz)
    return i18n.text("date.when", lang, day=day(local, lang), clock=clock(local, lang))


def price(amount: Decimal | float | int, currency: str = "COP") -> str:
    """$120.000 for COP (no cents, dot thousands); other currencies keep two decimals."""
    amount = Decimal(amount)
    if amount == 0:
        return i18n.text("date.free")
    if currency == "COP":
        return "$" + f"{int(amount.quantize(Decimal(1))):,}".replace(",", ".")
    whole, cents = f"{amount:,.2f}".split(".")
    return f"{currency} {whole.replace(',', '.')},{cents}"


def clean(text: str) -> str:
    """Internal ids never reach a customer, whatever the model wrote."""
    return _UUID.sub("", text).strip()


def split(text: str, limit: int = MAX_CHARS) -> list[str]:
    """WhatsApp messages of at most `limit` characters, cut on paragraph boundaries first."""
    text = clean(text)
    if not text:
        return []
    parts: list[str] = []
    current = ""
    for paragraph in re.split(r"\n\s*\n", text):
        for piece in _hard_split(paragraph.strip(), limit):
            candidate = f"{current}\n\n{piece}" if current else piece
            if len(candidate) <= limit:
                current = candidate
            else:
                parts.append(current)
                current = piece
    if current:
        parts.append(current)
    return parts


def _hard_split(paragraph: str, limit: int) -> list[str]:
    """A single paragraph longer than the limit is cut between words (inside a word if it must)."""
    out: list[str] = []
    current = ""
    for word in re.findall(r"\S+\s*", paragraph):
        if len(current) + len(word.rstrip()) > limit and current:
            out.append(current.rstrip())
            current = ""
        while len(word.rstrip()) > limit:
            out.append(word[:limit])
            word = word[limit:]
        current += word
    if current.strip():
        out.append(current.rstrip())
    return out
