"""Dates and times as customers write them ("el lunes 14 en la tarde", "pasado mañana a las 3 y
media", "entre las 2 y las 4", "un cuarto para las 5") turned into a search window in the
organization's timezone. Spanish first; the common English and Portuguese forms too.

This is the one parser of the project: the offline model (graph/offline.py, graph/intents.py)
and the tools a real model calls (graph/tools.py check_availability) both read dates here, so
a phrase means the same day whatever model is behind the conversation.

Why hand-written and not `dateparser`: dateparser 1.5.0 was tried on the phrases this module
must understand (today fixed on Wednesday 3 March 2027). It returned nothing for "el lunes 14",
"el viernes 18 de diciembre", "el 14", "pasado mañana", "el martes de la otra semana", "a las 3 y
media", "un cuarto para las 5", "al mediodía", "mañana en la tarde" and "entre las 2 y las 4", and
read "lunes 14" as Sunday 14 March without a word about the contradiction. It also gives one
datetime, not a window (a period, a range, "a primera hora"), and took 0.2-1 ms a phrase (its
first call ~100 ms) where this parser takes ~25 µs, which matters because the intent rules ask
"does this name a time?" several times per message. What is needed here is a small, closed
vocabulary; a table-driven parser is exact, fast and checked against the calendar by a
property test (tests/test_timeparse_property.py) for every day of a year.

Rules a receptionist would follow:
- A weekday alone is the next such day (today's weekday means next week's).
- A day number without a month is the nearest such day from today on; with a month, that date
  this year, or next year if it has passed.
- A weekday with a day number that disagree ("el lunes 15" when the 15th is a Tuesday) is a
  contradiction: `When.conflict` says so and the bot asks which one; the parser never guesses.
- A bare hour from 1 to 7 is the afternoon ("a las 3" is 3 p.m.): nobody books a facial at 3 a.m.
- The latest time mentioned wins ("mañana a las 3… mejor a las 4").
- "Al día siguiente" counts from the day on the table (the appointment being moved), else today.
Anything without a day gives the next seven days, which is what a receptionist would offer.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Iterable, Literal

# Weekday names, Monday 0: Spanish here, English and Portuguese added below.
WEEKDAYS = {
    "lunes": 0,
    "martes": 1,
    "miercoles": 2,
    "jueves": 3,
    "viernes": 4,
    "sabado": 5,
    "domingo": 6,
}
_WEEKDAY_WORDS = {
    **WEEKDAYS,
    "monday": 0,
    "tuesday": 1,
    "wednesday": 2,
    "thursday": 3,
    "friday": 4,
    "saturday": 5,
    "sunday": 6,
    "segunda-feira": 0,
    "terca-feira": 1,
    "terca": 1,
    "quarta-feira": 2,
    "quarta": 2,
    "quinta-feira": 3,
    "sexta-feira": 4,
}
# Portuguese "segunda", "quinta", "sexta" are also Spanish ordinals ("la segunda" picks a slot):
# they are weekdays only after a Portuguese preposition ("na segunda", "próxima sexta") or before
# a Portuguese time or period ("sexta às 15h", "quinta à noite", "segunda de manhã").
_PT_SHORT = {"segunda": 0, "quinta": 3, "sexta": 4}
MONTHS = {
    "enero": 1,
    "febrero": 2,
    "marzo": 3,
    "abril": 4,
    "mayo": 5,
    "junio": 6,
    "julio": 7,
    "agosto": 8,
    "septiembre": 9,
    "setiembre": 9,
    "octubre": 10,
    "noviembre": 11,
    "diciembre": 12,
    "january": 1,
    "february": 2,
    "march": 3,
    "april": 4,
    "may": 5,
    "june": 6,
    "july": 7,
    "august": 8,
    "september": 9,
    "october": 10,
    "november": 11,
    "december": 12,
    "janeiro": 1,
    "fevereiro": 2,
    "marco": 3,
    "maio": 5,
    "junho": 6,
    "julho": 7,
    "setembro": 9,
    "outubro": 10,
    "novembro": 11,
    "dezembro": 12,
}
NUMBERS = {
    "una": 1,
    "uno": 1,
    "dos": 2,
    "tres": 3,
    "cuatro": 4,
    "cinco": 5,
    "seis": 6,
    "siete": 7,
    "ocho": 8,
    "nueve": 9,
    "diez": 10,
    "once": 11,
    "doce": 12,
    "quince": 15,
    "veinte": 20,
    "veinticinco": 25,
    "treinta": 30,
    "um": 1,
    "duas": 2,
    "dois": 2,
    "quatro": 4,
    "sete": 7,
    "oito": 8,
    "nove": 9,
    "dez": 10,
    "onze": 11,
    "doze": 12,
    "quinze": 15,
    "vinte": 20,
}
Period = Literal["morning", "afternoon", "evening"]
PERIODS: dict[str, tuple[time, time]] = {
    "morning": (time(6), time(12)),
    "afternoon": (time(12), time(18)),
    "evening": (time(18), time(22)),
}
_PERIOD_WORDS: dict[str, Period] = {
    "manana": "morning",
    "mananas": "morning",
    "manha": "morning",
    "morning": "morning",
    "tarde": "afternoon",
    "tardes": "afternoon",
    "afternoon": "afternoon",
    "noche": "evening",
    "noches": "evening",
    "noite": "evening",
    "evening": "evening",
    "night": "evening",
}
DEFAULT_DAYS = 7
Order = Literal["spread", "earliest", "latest"]


@dataclass(frozen=True)
class Conflict:
    """A weekday and a date that disagree ("el lunes 15" when the 15th is a Tuesday): two readings."""

    weekday: int  # the weekday named (Monday 0)
    dated: date  # the day the number or the relative word names
    other: date  # the named weekday nearest that day (the same week first), never before today


@dataclass(frozen=True)
class When:
    days: list[date]
    time_from: time = time.min
    time_to: time = time.max
    prefer: time | None = None  # the exact time asked ("a las 3 y media")
    understood: bool = False  # False: nothing recognised, the default window
    day_given: bool = False  # a day was named (not only a time or a period)
    conflict: Conflict | None = None  # set: ask which day, do not search
    order: Order = "spread"  # "a primera hora": the earliest free times first
    period: Period | None = None  # morning, afternoon or evening, when one was named


def normalize(text: str) -> str:
    """Lower case without accents (ñ becomes n): "Mañana" -> "manana"."""
    decomposed = unicodedata.normalize("NFD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _alt(words: Iterable[str]) -> str:
    return "|".join(sorted(map(re.escape, words), key=len, reverse=True))


_WD = (
    r"(?P<wd>"
    + _alt(_WEEKDAY_WORDS)
    + r"|(?:(?<=\bna )|(?<=\bnesta )|(?<=\bproxima )|(?<=\besta ))"
    r"(?:" + _alt(_PT_SHORT) + r")(?:-feira)?"
    r"|(?:" + _alt(_PT_SHORT) + r")(?=\s+(?:as|a|de|pela|no|na)\s+(?:\d|tarde|manha|noite)))"
)
_MONTH = r"(?P<month>" + _alt(MONTHS) + r")"
_ORD = r"(?:st|nd|rd|th|o|ro|º)?"
# What may follow a day number without making it an hour: "el 14 a las 3" yes, "el 3:30" or "el 3 pm" no.
_NOT_CLOCK = (
    r"(?!\s*(?::|h\b|hs\b|horas\b|am\b|pm\b|a\.? ?m\b|p\.? ?m\b|y (?:media|cuarto)|e meia"
    r"|de la (?:manana|tarde|noche)|menos\b|para las?\b))"
)
_DATE_DM = re.compile(
    r"(?:\b"
    + _WD
    + r",?\s+)?(?:(?:el|the|dia)\s+)?\b(?P<day>\d{1,2})"
    + _ORD
    + r"\s+(?:de\s+|of\s+)?"
    + _MONTH
    + r"\b(?:,?\s+(?:de\s+|del\s+)?(?P<year>\d{4}))?"
)
_DATE_MD = re.compile(
    r"(?:\b"
    + _WD
    + r",?\s+)?\b"
    + _MONTH
    + r"\s+(?:the\s+)?(?P<day>\d{1,2})"
    + _ORD
    + r"\b(?:,?\s+(?P<year>\d{4}))?"
)
_DATE_SLASH = re.compile(
    r"(?:\b" + _WD + r",?\s+)?(?:(?:el|the|dia)\s+)?\b(?P<day>\d{1,2})/(?P<month>\d{1,2})"
    r"(?:/(?P<year>\d{2}|\d{4}))?\b"
)
# A real model may pass the date it worked out as ISO ("2027-03-15"), with or without the weekday.
_DATE_ISO = re.compile(
    r"(?:\b" + _WD + r",?\s+)?\b(?P<year>\d{4})-(?P<month>\d{1,2})-(?P<day>\d{1,2})\b"
)
_WD_DAY = re.compile(
    r"\b" + _WD + r",?\s+(?:(?:el|the|dia)\s+)?(?P<day>\d{1,2})" + _ORD + r"\b" + _NOT_CLOCK
)
_DAY_ONLY = re.compile(
    r"(?:\bel|\bdia|\bthe|\bon the)\s+(?:dia\s+)?(?P<day>\d{1,2})" + _ORD + r"\b" + _NOT_CLOCK
)
_NEXT_WEEK = (
    r"(?:(?:la|a) )?(?:proxima semana|semana que viene|semana que vem|otra semana|siguiente semana"
    r"|semana siguiente|semana proxima|next week)"
)
_WD_NEXT_WEEK = re.compile(r"\b" + _WD + r"\s+(?:(?:de|da|of)\s+)?" + _NEXT_WEEK)
_RELATIVE = re.compile(
    r"\b(?P<word>pasado manana|depois de amanha|day after tomorrow|manana|amanha|tomorrow"
    r"|hoy|hoje|today|tonight|esta (?:manana|tarde|noche|noite)|this (?:morning|afternoon|evening))\b"
)
_IN_DAYS = re.compile(
    r"\b(?:dentro de|en|in|daqui a|em|within)\s+(?P<n>\d{1,2}|"
    + _alt(NUMBERS)
    + r"|un|a|uma)\s+(?P<unit>dias|dia|days|day|semanas|semana|weeks|week)\b"
)
# "al día siguiente" counts from a day already on the table (the appointment being moved), else today.
_NEXT_DAY = re.compile(
    r"\b(?:(?:al|el|para el) dia siguiente|al otro dia|(?:un|1) dia (?:despues|mas tarde)"
    r"|the next day|the day after|no dia seguinte|(?P<before>(?:al|el|para el) dia anterior"
    r"|(?:un|1) dia antes|the day before|no dia anterior))\b"
)
_THIS_WEEK = re.compile(r"\b(?:esta semana|this week)\b")
_WD_ALONE = re.compile(r"\b" + _WD + r"\b")
_WD_AFTER = re.compile(r",?\s+(?:el\s+)?" + _WD + r"\b")
_NEXT_WEEK_ALONE = re.compile(r"\b" + _NEXT_WEEK + r"\b")
_MORNING_PERIOD = re.compile(r"\b(?:la|las|de|por|en) mananas?\b")
_WEEKEND = re.compile(r"\b(?:fin de semana|fim de semana|weekend)\b")

_H = r"(?P<h>\d{1,2}|" + _alt(NUMBERS) + r")"
_AT = r"(?:a las|a la|las|sobre las|tipo|como a las|por ahi de las|at|around|as)"
_SUFFIX = (
    r"(?:\s*(?P<suffix>a\.? ?m\.?|p\.? ?m\.?|de la manana|de la tarde|de la noche|del dia|da manha|da tarde"
    r"|da noite|in the morning|in the afternoon|in the evening|en punto|hrs|h\b|horas\b))?"
)
_MIN = (
    r"(?::(?P<mm>\d{2})|\s+y\s+(?P<yword>media|cuarto|\d{2}|cinco|diez|veinte|veinticinco)\b"
    r"|\s+e\s+(?P<eword>meia|quinze|\d{1,2})\b|\s+menos\s+(?P<menos>cuarto|\d{1,2}|cinco|diez|veinte)\b)?"
)
_TIME_AT = re.compile(r"\b" + _AT + r"\s+" + _H + r"\b" + _MIN + _SUFFIX)
_TIME_BARE = re.compile(
    r"\b(?P<h>\d{1,2})(?::(?P<mm>\d{2})\s*(?P<suffix>a\.? ?m\.?|p\.? ?m\.?|hrs|h\b)?"
    r"|\s*(?P<suffix2>a\.? ?m\b\.?|p\.? ?m\b\.?|h\b|hrs\b))"
)
_TIME_HALF = re.compile(
    r"\b" + _H + r"\s+(?:y (?P<yword>media|cuarto)|e (?P<eword>meia))\b" + _SUFFIX
)
_TIME_TO = re.compile(
    r"\b(?:(?:un|a|um) )?(?P<before>cuarto|quarter|quarto|\d{1,2}|cinco|diez|veinte|quinze|dez)"
    r"\s+(?:para|to|pras?)\s+(?:las?\s+|as\s+)?" + _H + r"\b" + _SUFFIX
)
_TIME_PAST = re.compile(r"\b(?P<what>half|quarter) past " + _H + r"\b" + _SUFFIX)
_RANGE = re.compile(
    r"\b(?:entre|between|de|desde|from)\s+(?:las?\s+|as\s+)?(?P<a>\d{1,2}(?::\d{2})?|"
    + _alt(NUMBERS)
    + r")\s*(?P<asuf>am|pm)?\s+(?:y|a|and|to|e|hasta|until|-)\s+(?:las?\s+|as\s+)?(?P<b>\d{1,2}(?::\d{2})?|"
    + _alt(NUMBERS)
    + r")(?!\d)\s*(?P<bsuf>am|pm)?"
)
# "hasta" and "desde" need the article to be about hours: "hasta 3 sesiones" is not a time.
_AFTER = re.compile(
    r"\b(?:(?:despues de|a partir de|after|depois d|from)\s*(?:las?\s+|as\s+|e\s+)?|desde\s+las?\s+)"
    r"(?P<h>\d{1,2}(?::\d{2})?|" + _alt(NUMBERS) + r")(?![\d:])\s*(?P<suf>am|pm)?"
)
_BEFORE = re.compile(
    r"\b(?:(?:antes de|before|antes d)\s*(?:las?\s+|as\s+|e\s+)?|hasta\s+las?\s+)"
    r"(?P<h>\d{1,2}(?::\d{2})?|" + _alt(NUMBERS) + r")(?![\d:])\s*(?P<suf>am|pm)?"
)
# Spanish "mañana" is a period only with its article ("en la mañana"): "para mañana" is tomorrow.
_PERIOD = re.compile(
    r"\b(?:(?:en|por|de|a|para|hoy en) (?:la|las)|esta) (?P<p>mananas?|tardes?|noches?)\b"
    r"|\b(?:de|a|pela|por|en|para|da|hoje a) (?P<q>tardes?|noches?|manha|noite)\b"
    r"|\b(?<!good )(?P<r>morning|afternoon|evening)s?\b|\b(?P<tonight>tonight)\b"
)
_NOON = re.compile(r"\b(?:al |a |at |ao )?(?:medio ?dia|mediodia|noon|meio[- ]dia)\b")
_FIRST = re.compile(
    r"\b(?:a primera hora|primera hora|lo mas temprano|first thing|earliest|bem cedo|logo cedo)\b"
)
_LAST = re.compile(r"\b(?:a ultima hora|ultima hora|lo mas tarde posible|latest|last thing)\b")


def parse(text: str, now: datetime, anchor: date | None = None) -> When:
    """The window a phrase asks for; `now` is local time in the organization's timezone.
    `anchor`: the day "al día siguiente" / "el día anterior" count from (the appointment being
    moved); without one, today."""
    t = normalize(text)
    today = now.date()
    days, conflict = _days(t, today)
    if not days and not conflict and (m := _NEXT_DAY.search(t)):
        day = (anchor or today) + timedelta(days=-1 if m["before"] else 1)
        days = [max(day, today)]  # never a day already past
    period = _period(t)
    time_from, time_to = PERIODS[period] if period else (time.min, time.max)
    prefer: time | None = None
    order: Order = "spread"
    if span := _range(t, period):
        time_from, time_to = span
    else:
        prefer = _time(t, period)
        if prefer is None and _NOON.search(t):
            time_from, time_to, prefer = time(11), time(14), time(12)
    if _FIRST.search(t):
        order = "earliest"
    elif _LAST.search(t):
        order = "latest"
    ranged = (time_from, time_to) != (time.min, time.max)
    understood = bool(days or conflict or period or prefer or ranged or order != "spread")
    if conflict:  # both readings, in order; the tools ask which one before searching either
        days = sorted({conflict.dated, conflict.other})
    return When(
        days=days or [today + timedelta(days=i) for i in range(DEFAULT_DAYS)],
        time_from=time_from,
        time_to=time_to,
        prefer=prefer,
        understood=understood,
        day_given=bool(days or conflict),
        conflict=conflict,
        order=order,
        period=period,
    )


# ---- days ----------------------------------------------------------------------------------


def _weekday(word: str | None) -> int | None:
    if word is None:
        return None
    word = word.removesuffix("-feira") if word.removesuffix("-feira") in _PT_SHORT else word
    return _WEEKDAY_WORDS.get(word, _PT_SHORT.get(word))


def _checked(
    day: date | None, weekday: int | None, today: date
) -> tuple[list[date], Conflict | None]:
    if day is None:
        return [], None
    if weekday is not None and day.weekday() != weekday:
        return [], Conflict(weekday=weekday, dated=day, other=nearest_weekday(day, weekday, today))
    return [day], None


def nearest_weekday(day: date, weekday: int, today: date) -> date:
    """The `weekday` closest to `day` ("el lunes 15": Monday 14), but not before today."""
    back = (day.weekday() - weekday) % 7
    near = day - timedelta(days=back) if back <= 3 else day + timedelta(days=7 - back)
    while near < today:
        near += timedelta(days=7)
    return near


def counts_from_a_day(text: str) -> bool:
    """The phrase counts from a day on the table ("al día siguiente"): the caller passes `anchor`."""
    return bool(_NEXT_DAY.search(normalize(text)))


def pick_reading(conflict: Conflict, answer: str, now: datetime) -> date | None:
    """Which reading an answer to "¿el martes 15 o el lunes 14?" names: a day that is one of
    them ("el 15", "el lunes 14"), or a weekday or day number of one ("el martes", "el 14")."""
    readings = (conflict.dated, conflict.other)
    asked = parse(answer, now)
    if asked.day_given and not asked.conflict and (hit := [d for d in readings if d in asked.days]):
        return hit[0]
    t = normalize(answer)
    if m := _WD_ALONE.search(t):
        hit = [d for d in readings if d.weekday() == _weekday(m["wd"])]
        return hit[0] if len(hit) == 1 else None
    numbers = {int(n) for n in re.findall(r"\b\d{1,2}\b", t)}
    hit = [d for d in readings if d.day in numbers]
    return hit[0] if len(hit) == 1 else None


def _days(t: str, today: date) -> tuple[list[date], Conflict | None]:
    numbered = any(c.isdigit() for c in t)  # most messages name no date: skip the costly patterns
    for rx in (_DATE_ISO, _DATE_DM, _DATE_MD, _DATE_SLASH) if numbered else ():
        if m := rx.search(t):
            month = MONTHS[m["month"]] if not m["month"].isdigit() else int(m["month"])
            year = int(m["year"]) + (2000 if len(m["year"]) == 2 else 0) if m["year"] else None
            if not 1 <= month <= 12:
                continue
            return _checked(dated(today, int(m["day"]), month, year), _weekday(m["wd"]), today)
    if m := _WD_NEXT_WEEK.search(t):
        monday = today + timedelta(days=7 - today.weekday())
        weekday = _weekday(m["wd"])
        assert weekday is not None  # the pattern's wd group matches weekday names only
        return [monday + timedelta(days=weekday)], None
    if numbered and (m := _WD_DAY.search(t)):
        return _checked(day_number(today, int(m["day"])), _weekday(m["wd"]), today)
    if numbered and (m := _DAY_ONLY.search(t)):
        return _checked(day_number(today, int(m["day"])), None, today)
    if m := _IN_DAYS.search(t):
        n = m["n"]
        n = int(n) if n.isdigit() else NUMBERS.get(n, 1)
        if m["unit"].startswith(("semana", "week")):
            n *= 7
        elif n in (8, 15):  # "dentro de ocho días" is a week from today, "quince días" two weeks
            n -= 1
        return [today + timedelta(days=n)], None
    if m := _RELATIVE.search(_without_morning(t)):
        ahead = {
            "pasado manana": 2,
            "depois de amanha": 2,
            "day after tomorrow": 2,
            "manana": 1,
            "amanha": 1,
            "tomorrow": 1,
        }.get(m["word"], 0)
        day = today + timedelta(days=ahead)
        # "mañana lunes" when tomorrow is not a Monday: ask, as with a date.
        after = _WD_AFTER.match(t, m.end())
        return _checked(day, _weekday(after["wd"]) if after else None, today)
    if m := _WD_ALONE.search(t):
        weekday = _weekday(m["wd"])
        assert weekday is not None  # the pattern's wd group matches weekday names only
        ahead = (weekday - today.weekday()) % 7 or 7
        return [today + timedelta(days=ahead)], None
    if _NEXT_WEEK_ALONE.search(t):
        monday = today + timedelta(days=7 - today.weekday())
        return [monday + timedelta(days=i) for i in range(7)], None
    if _THIS_WEEK.search(t):
        return [today + timedelta(days=i) for i in range(7 - today.weekday())], None
    if _WEEKEND.search(t):
        saturday = today + timedelta(days=(5 - today.weekday()) % 7)
        return [
            d
            for d in (saturday - timedelta(days=1), saturday, saturday + timedelta(days=1))
            if d >= today and d.weekday() >= 5
        ][:2], None
    return [], None


def _without_morning(t: str) -> str:
    """ "en la mañana", "por las mañanas" are a period, not tomorrow; "mañana en la mañana" keeps its first."""
    return _MORNING_PERIOD.sub(" ", t)


def dated(today: date, day: int, month: int, year: int | None = None) -> date | None:
    """That day of that month: in `year`, or the first year from today's on where it is not past."""
    if year is not None:
        try:
            return date(year, month, day)
        except ValueError:
            return None
    for y in range(today.year, today.year + 5):  # 29 February waits for a leap year
        try:
            candidate = date(y, month, day)
        except ValueError:
            continue
        if candidate >= today:
            return candidate
    return None


def day_number(today: date, day: int) -> date | None:
    """The nearest date from today on whose day of the month is `day` (31 skips short months)."""
    if not 1 <= day <= 31:
        return None
    year, month = today.year, today.month
    for _ in range(13):
        try:
            candidate = date(year, month, day)
            if candidate >= today:
                return candidate
        except ValueError:
            pass
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return None


# ---- times ---------------------------------------------------------------------------------


def _period(t: str) -> Period | None:
    found = _last(t, (_PERIOD,))
    if found is None:
        return None
    m = found[1]
    return "evening" if m["tonight"] else _PERIOD_WORDS[m["p"] or m["q"] or m["r"]]


def _num(word: str) -> int:
    return int(word) if word.isdigit() else NUMBERS[word]


def _suffix_period(suffix: str | None, period: Period | None) -> str:
    """am, pm, morning/afternoon/evening or "" from a time's own suffix, else the phrase's period."""
    s = (suffix or "").replace(".", "").replace(" ", "")
    if s in ("am", "pm"):
        return s
    for word, name in (
        ("manana", "morning"),
        ("manha", "morning"),
        ("morning", "morning"),
        ("tarde", "afternoon"),
        ("afternoon", "afternoon"),
        ("noche", "evening"),
        ("noite", "evening"),
        ("evening", "evening"),
        ("deldia", "afternoon"),
    ):
        if word in s:
            return name
    if s in ("h", "hrs", "horas"):
        return "24h"
    return period or ""


def clock(hour: int, minute: int, how: str) -> time | None:
    """A written hour read as a receptionist would: "3" is 3 p.m., "8" is 8 a.m., "12 de la noche" midnight."""
    if not (0 <= hour <= 23 and 0 <= minute <= 59):
        return None
    if how in ("am", "morning"):
        if hour > 12:
            return None
        hour = 0 if hour == 12 and how == "am" else hour
    elif how in ("pm", "afternoon"):
        if hour > 12:
            return time(hour, minute) if how == "afternoon" else None
        hour = hour % 12 + 12
    elif how == "evening":
        hour = 0 if hour == 12 else (hour + 12 if hour < 12 else hour)
    elif how != "24h" and 1 <= hour <= 7:
        hour += 12  # nobody books a facial at 3 a.m.: "a las 3" is the afternoon
    return time(hour % 24, minute)


def _minus(at: time | None, minutes: int) -> time | None:
    if at is None:
        return None
    return (datetime.combine(date(2000, 1, 2), at) - timedelta(minutes=minutes)).time()


_MINUTE_WORDS = {
    "media": 30,
    "meia": 30,
    "cuarto": 15,
    "quinze": 15,
    "cinco": 5,
    "diez": 10,
    "veinte": 20,
    "veinticinco": 25,
}


def _last(
    t: str, patterns: Iterable[re.Pattern[str]]
) -> tuple[re.Pattern[str], re.Match[str]] | None:
    """The latest mention among the patterns: in "mañana a las 3, mejor a las 4" the 4 wins (the
    offline model also appends a correction to the earlier words). Of two matches ending at the
    same place, the longer one ("cuarto para las 5", not "las 5")."""
    best: tuple[re.Pattern[str], re.Match[str]] | None = None
    for rx in patterns:
        for m in rx.finditer(t):
            if best is None or (m.end(), -m.start()) > (best[1].end(), -best[1].start()):
                best = (rx, m)
    return best


def _time(t: str, period: Period | None) -> time | None:
    found = _last(t, (_TIME_TO, _TIME_PAST, _TIME_AT, _TIME_HALF, _TIME_BARE))
    if found is None:
        return None
    rx, m = found
    if rx is _TIME_TO:  # "un cuarto para las 5": 4:45, the hour read as written
        before = 15 if m["before"] in ("cuarto", "quarter", "quarto") else _num(m["before"])
        return (
            _minus(clock(_num(m["h"]), 0, _suffix_period(m["suffix"], period)), before)
            if 1 <= before <= 30
            else None
        )
    if rx is _TIME_PAST:
        return clock(
            _num(m["h"]), 30 if m["what"] == "half" else 15, _suffix_period(m["suffix"], period)
        )
    if rx is _TIME_BARE:
        return clock(
            int(m["h"]), int(m["mm"] or 0), _suffix_period(m["suffix"] or m["suffix2"], period)
        )
    return _at(m, period)


def _at(m: re.Match[str], period: Period | None) -> time | None:
    groups = m.groupdict()
    hour, how = _num(m["h"]), _suffix_period(m["suffix"], period)
    if groups.get("menos"):  # "las 5 menos cuarto": 4:45
        less = 15 if m["menos"] == "cuarto" else _num(m["menos"])
        return _minus(clock(hour, 0, how), less) if 1 <= less <= 30 else None
    word = groups.get("yword") or groups.get("eword")
    minute = (
        int(groups["mm"])
        if groups.get("mm")
        else (_MINUTE_WORDS[word] if word in _MINUTE_WORDS else int(word) if word else 0)
    )
    return clock(hour, minute, how)


def _written(word: str, suffix: str | None, how: str) -> time | None:
    """One end of a range as written: "2", "2:30", "4" with "pm"."""
    hour, _, minute = word.partition(":")
    return clock(_num(hour), int(minute or 0), suffix or how)


def _range(t: str, period: Period | None) -> tuple[time, time] | None:
    """ "entre las 2 y las 4" (2 to 4 p.m.), "después de las 3", "antes de las 11"."""
    how = period or ""
    if m := _RANGE.search(t):
        first, last = _num(m["a"].partition(":")[0]), _num(m["b"].partition(":")[0])
        # "between 2 and 4pm": the second end's am/pm is the first's too, when it comes earlier.
        start = _written(m["a"], m["asuf"] or (m["bsuf"] if first <= last else None), how)
        end = _written(m["b"], m["bsuf"], how)
        if start and end and end <= start and end.hour < 12:
            end = time(end.hour + 12, end.minute)  # "entre las 10 y las 2": 10 a.m. to 2 p.m.
        if start and end and start < end:
            return start, end
    if (m := _AFTER.search(t)) and (start := _written(m["h"], m["suf"], how)):
        return start, time.max
    if (m := _BEFORE.search(t)) and (end := _written(m["h"], m["suf"], how)) and end > time(0):
        return time.min, end
    return None
