"""What a reply looks like on WhatsApp: es-CO dates and prices, no internal ids, ≤ 4096 chars."""

from __future__ import annotations

import re
from datetime import date, datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo

MAX_CHARS = 4096
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


def clock(moment: datetime | time) -> str:
    """3:00 p. m. (the es-CO way)."""
    hour = moment.hour % 12 or 12
    return f"{hour}:{moment.minute:02d} {'a. m.' if moment.hour < 12 else 'p. m.'}"


def day(moment: date) -> str:
    return f"{WEEKDAYS[moment.weekday()]} {moment.day} de {MONTHS[moment.month - 1]}"


def when(moment: datetime, tz: ZoneInfo) -> str:
    """viernes 12 de diciembre, 3:00 p. m. — always in the organization's timezone."""
    local = moment.astimezone(tz)
    return f"{day(local)}, {clock(local)}"


def price(amount: Decimal | float | int, currency: str = "COP") -> str:
    """$120.000 for COP (no cents, dot thousands); other currencies keep two decimals."""
    amount = Decimal(amount)
    if amount == 0:
        return "sin costo"
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
