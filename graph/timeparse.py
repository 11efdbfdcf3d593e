"""Spanish date and time expressions ("mañana en la tarde", "el viernes", "15 de diciembre a
las 3") turned into a search window in the organization's timezone.

Only what customers actually write to a clinic is understood; anything else gives the next
seven days, which is what a receptionist would offer anyway.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

WEEKDAYS = {"lunes": 0, "martes": 1, "miercoles": 2, "jueves": 3, "viernes": 4, "sabado": 5, "domingo": 6}
MONTHS = {"enero": 1, "febrero": 2, "marzo": 3, "abril": 4, "mayo": 5, "junio": 6, "julio": 7,
          "agosto": 8, "septiembre": 9, "setiembre": 9, "octubre": 10, "noviembre": 11, "diciembre": 12}
NUMBERS = {"una": 1, "uno": 1, "dos": 2, "tres": 3, "cuatro": 4, "cinco": 5, "seis": 6, "siete": 7,
           "ocho": 8, "nueve": 9, "diez": 10, "once": 11, "doce": 12}
PERIODS = {"manana": (time(6), time(12)), "tarde": (time(12), time(18)), "noche": (time(18), time(22))}
DEFAULT_DAYS = 7


@dataclass(frozen=True)
class When:
    days: list[date]
    time_from: time = time.min
    time_to: time = time.max
    prefer: time | None = None
    understood: bool = False  # False: nothing recognised, the default window


def normalize(text: str) -> str:
    """Lower case without accents (ñ becomes n): "Mañana" -> "manana"."""
    decomposed = unicodedata.normalize("NFD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


_NUM = r"(\d{1,2}|" + "|".join(NUMBERS) + r")"
_TIME = re.compile(r"\b(?:a las|a la|las|sobre las|tipo)\s+" + _NUM + r"(?::(\d{2})| y (media|cuarto))?"
                   r"\s*(am|a\.m\.|pm|p\.m\.|de la manana|de la tarde|de la noche)?")
_CLOCK = re.compile(r"\b(\d{1,2})(?::(\d{2}))\s*(am|pm|a\.m\.|p\.m\.)?|\b(\d{1,2})\s*(am|pm|a\.m\.|p\.m\.)")
_DAY_MONTH = re.compile(r"\b(\d{1,2})\s+de\s+(" + "|".join(MONTHS) + r")\b")
_SLASH = re.compile(r"\b(\d{1,2})/(\d{1,2})\b")
_DAY_ONLY = re.compile(r"\bel (?:dia )?(\d{1,2})\b(?!\s*(?:am|pm|:))")
_PERIOD = re.compile(r"\b(?:en|por|de|a) la (manana|tarde|noche)\b")


def parse(text: str, now: datetime) -> When:
    """The window a phrase asks for; `now` is local time in the organization's timezone."""
    t = normalize(text)
    today = now.date()
    days = _days(t, today)
    time_from, time_to = time.min, time.max
    period = _PERIOD.search(t)
    if period:
        time_from, time_to = PERIODS[period.group(1)]
    if re.search(r"\b(al )?medio ?dia\b", t):
        time_from, time_to = time(11), time(14)
    prefer = _time(t, period.group(1) if period else None)
    understood = bool(days or period or prefer)
    return When(days=days or [today + timedelta(days=i) for i in range(DEFAULT_DAYS)],
                time_from=time_from, time_to=time_to, prefer=prefer, understood=understood)


def _days(t: str, today: date) -> list[date]:
    if "pasado manana" in t:
        return [today + timedelta(days=2)]
    # "mañana" is tomorrow unless it is the period ("en la mañana", "de la mañana").
    if re.search(r"(?<!la )\bmanana\b", t):
        return [today + timedelta(days=1)]
    if re.search(r"\bhoy\b", t):
        return [today]
    for name, weekday in WEEKDAYS.items():
        if re.search(rf"\b{name}\b", t):
            ahead = (weekday - today.weekday()) % 7 or 7
            if re.search(rf"\b(proximo|siguiente) {name}\b", t) and ahead < 7:
                ahead += 7 if re.search(r"\bsemana que viene\b", t) else 0
            return [today + timedelta(days=ahead)]
    if m := _DAY_MONTH.search(t):
        return [_future(today, int(m.group(1)), MONTHS[m.group(2)])]
    if m := _SLASH.search(t):
        return [_future(today, int(m.group(1)), int(m.group(2)))]
    if m := _DAY_ONLY.search(t):
        day = int(m.group(1))
        month = today.month if day >= today.day else today.month % 12 + 1
        return [_future(today, day, month)]
    if re.search(r"\b(proxima semana|semana que viene|la otra semana)\b", t):
        monday = today + timedelta(days=7 - today.weekday())
        return [monday + timedelta(days=i) for i in range(7)]
    if re.search(r"\besta semana\b", t):
        return [today + timedelta(days=i) for i in range(7 - today.weekday())]
    return []


def _future(today: date, day: int, month: int) -> date:
    try:
        candidate = date(today.year, month, day)
    except ValueError:
        return today
    return candidate if candidate >= today else date(today.year + 1, month, day)


def _time(t: str, period: str | None) -> time | None:
    m = _TIME.search(t)
    if m:
        hour = int(NUMBERS.get(m.group(1), m.group(1)) if not m.group(1).isdigit() else m.group(1))
        minute = int(m.group(2)) if m.group(2) else {"media": 30, "cuarto": 15}.get(m.group(3) or "", 0)
        suffix = m.group(4) or ""
    else:
        m = _CLOCK.search(t)
        if not m:
            return None
        hour = int(m.group(1) or m.group(4))
        minute = int(m.group(2) or 0)
        suffix = m.group(3) or m.group(5) or ""
    if hour > 23 or minute > 59:
        return None
    pm = suffix.startswith("p") or "tarde" in suffix or "noche" in suffix or period in ("tarde", "noche")
    am = suffix.startswith("a") or "manana" in suffix or period == "manana"
    if pm and hour < 12:
        hour += 12
    elif not am and 1 <= hour <= 7:
        hour += 12  # nobody books a facial at 3 a.m.: "a las 3" is the afternoon
    return time(hour, minute)
