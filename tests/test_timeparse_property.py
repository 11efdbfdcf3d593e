"""graph/timeparse.py checked against the calendar: expressions built from parts (weekday × day
number × month × time × period, and the relative forms) for every day of a year as "today",
with Python's datetime as the oracle. A weekday that disagrees with the date must come back as
a contradiction (both readings), never as a guess.

The oracle below is written from the rules in the parser's docstring, not from its code.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from graph.timeparse import PERIODS, parse

YEAR = [date(2027, 1, 1) + timedelta(days=i) for i in range(365)]
ES_WEEKDAYS = ["lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"]
EN_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
PT_WEEKDAYS = [
    "segunda-feira",
    "terça-feira",
    "quarta-feira",
    "quinta-feira",
    "sexta-feira",
    "sábado",
    "domingo",
]
ES_MONTHS = [
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
EN_MONTHS = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
]
PT_MONTHS = [
    "janeiro",
    "fevereiro",
    "março",
    "abril",
    "maio",
    "junho",
    "julho",
    "agosto",
    "setembro",
    "outubro",
    "novembro",
    "dezembro",
]
ES_HOURS = [
    "una",
    "dos",
    "tres",
    "cuatro",
    "cinco",
    "seis",
    "siete",
    "ocho",
    "nueve",
    "diez",
    "once",
    "doce",
]
PERIOD_ES = {"morning": "mañana", "afternoon": "tarde", "evening": "noche"}


# ---- the oracle ---------------------------------------------------------------------------


def next_date(today: date, day: int, month: int | None) -> date | None:
    """The first real date from today on with that day (and month)."""
    probe = today
    for _ in range(5 * 366):
        if probe.day == day and (month is None or probe.month == month):
            return probe
        probe += timedelta(days=1)
    return None


def nearest(target: date, weekday: int, today: date) -> date:
    """The weekday nearest the target date (by distance; seven is odd, so no ties), from today on."""
    options = [target + timedelta(days=k) for k in range(-3, 4)]
    near = next(d for d in options if d.weekday() == weekday)
    while near < today:
        near += timedelta(days=7)
    return near


def hour24(hour: int, how: str | None) -> int:
    """A receptionist's reading of a written hour: "3" is 3 p.m.; "8" is 8 a.m."""
    if how == "am":
        return hour % 12
    if how in ("pm", "afternoon"):
        return hour % 12 + 12
    if how == "evening":
        return hour + 12 if hour < 12 else 0
    if how == "morning":
        return hour
    return hour + 12 if 1 <= hour <= 7 else hour


# ---- the generator ------------------------------------------------------------------------


@st.composite
def day_parts(draw, today: date):
    """(text, expected days or None for the default week, conflict expected)."""
    lang = draw(st.sampled_from(["es", "es", "es", "en", "pt"]))
    kind = draw(
        st.sampled_from(
            ["weekday", "weekday+day", "weekday+day+month", "day", "day+month", "relative", "none"]
        )
    )
    real_weekday = draw(st.booleans())
    day = draw(st.integers(1, 31))
    month = draw(st.integers(1, 12))
    if kind == "relative":
        ahead, text = draw(
            st.sampled_from(
                [
                    (0, "hoy"),
                    (1, "mañana"),
                    (2, "pasado mañana"),
                    (1, "tomorrow"),
                    (2, "depois de amanhã"),
                    (3, "dentro de 3 días"),
                    (5, "en 5 días"),
                    (7, "dentro de ocho días"),
                    (14, "dentro de dos semanas"),
                ]
            )
        )
        return text, [today + timedelta(days=ahead)], False
    if kind == "none":
        return "", None, False
    with_month = kind.endswith("month")
    target = next_date(today, day, month if with_month else None) if "day" in kind else None
    if "day" in kind and target is None:  # "31 de abril" names no day
        return _render(lang, None, day, month if with_month else None), [], False
    if kind == "weekday":
        weekday = draw(st.integers(0, 6))
        return (
            _render(lang, weekday, None, None),
            [today + timedelta(days=(weekday - today.weekday()) % 7 or 7)],
            False,
        )
    if kind in ("day", "day+month"):
        return _render(lang, None, day, month if with_month else None), [target], False
    weekday = target.weekday() if real_weekday else draw(st.integers(0, 6))
    text = _render(lang, weekday, day, month if with_month else None)
    if weekday == target.weekday():
        return text, [target], False
    return text, sorted({target, nearest(target, weekday, today)}), True


def _render(lang: str, weekday: int | None, day: int | None, month: int | None) -> str:
    if lang == "en":
        parts = [EN_WEEKDAYS[weekday].capitalize()] if weekday is not None else []
        if day and month:
            parts.append(f"{EN_MONTHS[month - 1].capitalize()} {day}")
        elif day:
            parts.append(f"the {day}th")
        return ("on " if parts else "") + " ".join(parts)
    if lang == "pt":
        parts = [PT_WEEKDAYS[weekday]] if weekday is not None else []
        if day:
            parts.append(f"dia {day}" + (f" de {PT_MONTHS[month - 1]}" if month else ""))
        return " ".join(parts)
    parts = ["el"]
    if weekday is not None:
        parts.append(ES_WEEKDAYS[weekday])
    if day:
        parts.append(f"{day}" + (f" de {ES_MONTHS[month - 1]}" if month else ""))
    return " ".join(parts)


@st.composite
def time_parts(draw):
    """(text, expected preferred time or None, period the window must be)."""
    form = draw(
        st.sampled_from(
            [
                "none",
                "at",
                "at:mm",
                "y media",
                "y cuarto",
                "cuarto para",
                "menos cuarto",
                "ampm",
                "word",
                "period only",
                "range",
                "after",
                "before",
                "half past",
                "quarter to",
            ]
        )
    )
    how = draw(st.sampled_from([None, None, "morning", "afternoon", "evening"]))
    hours = {
        None: range(1, 13),
        "morning": range(6, 12),
        "afternoon": [12, 1, 2, 3, 4, 5, 6],
        "evening": range(6, 12),
    }[how]
    hour = draw(st.sampled_from(list(hours)))
    suffix = f" de la {PERIOD_ES[how]}" if how else ""
    at = lambda minute: time(hour24(hour, how), minute)  # noqa: E731
    if form == "none":
        return "", None, None
    if form == "period only":
        return f"en la {PERIOD_ES[how]}" if how else "", None, how
    if form == "range":  # "entre las 2 y las 4": the bare-hour rule for each end, 2 to 4 p.m.
        first, last = draw(
            st.sampled_from([(8, 10), (9, 11), (10, 12), (2, 4), (1, 5), (3, 6), (10, 2), (11, 3)])
        )
        start, end = time(hour24(first, None)), time(hour24(last, None))
        return f"entre las {first} y las {last}", (start, end), None
    if form == "after":  # "después de las 4": from then on
        return f"después de las {hour}{suffix}", (at(0), time.max), None
    if form == "before":
        return f"antes de las {hour}{suffix}", (time.min, at(0)), None
    if form == "half past":
        return f"half past {hour}", time(hour24(hour, None), 30), None
    if form == "quarter to":
        named = datetime.combine(date(2000, 1, 2), time(hour24(hour, None)))
        return f"quarter to {hour}", (named - timedelta(minutes=15)).time(), None
    if form == "at":
        return f"a las {hour}{suffix}", at(0), how
    if form == "at:mm":
        minute = draw(st.sampled_from([0, 10, 15, 20, 30, 45, 50]))
        return f"a las {hour}:{minute:02d}{suffix}", at(minute), how
    if form == "y media":
        return f"a las {hour} y media{suffix}", at(30), how
    if form == "y cuarto":
        return f"{hour} y cuarto{suffix}", at(15), how
    if form == "word":
        article = "la" if hour == 1 else "las"
        return f"a {article} {ES_HOURS[hour - 1]}{suffix}", at(0), how
    if form in ("cuarto para", "menos cuarto"):  # the hour named, less fifteen minutes
        named = datetime.combine(date(2000, 1, 2), at(0))
        text = (
            f"un cuarto para las {hour}{suffix}"
            if form == "cuarto para"
            else f"a las {hour} menos cuarto{suffix}"
        )
        return text, (named - timedelta(minutes=15)).time(), how
    ampm = draw(st.sampled_from(["am", "pm", " p. m.", " a. m."]))
    return f"{hour}{ampm}", time(hour24(hour, "am" if "a" in ampm else "pm"), 0), None


def check(text: str, today: date, days, conflict: bool, when, period) -> None:
    now = datetime.combine(today, time(9))
    w = parse(text, now)
    if days is None:
        assert w.days == [today + timedelta(days=i) for i in range(7)] and not w.day_given, (
            text,
            today,
            w,
        )
    else:
        assert w.days == days or (not days and not w.day_given), (text, today, w)
    assert (w.conflict is not None) == conflict, (text, today, w)
    if conflict:
        assert (
            w.conflict.dated in days
            and w.conflict.other in days
            and w.conflict.other.weekday() == w.conflict.weekday
        )
    if isinstance(when, tuple):
        assert (w.time_from, w.time_to) == when and w.prefer is None, (text, w)
    else:
        assert w.prefer == when, (text, today, w)
        expected = PERIODS[period] if period else (time.min, time.max)
        assert (w.time_from, w.time_to) == expected, (text, w)
    assert w.understood == bool(days or when or period), (text, w)


@settings(max_examples=4000, deadline=None, derandomize=True)
@given(data=st.data(), today=st.sampled_from(YEAR))
def test_expressions_from_parts_match_the_calendar(data, today):
    day_text, days, conflict = data.draw(day_parts(today))
    time_text, when, period = data.draw(time_parts())
    filler = data.draw(st.sampled_from(["", "quiero una cita ", "¿tienen algo para ", "Hola, "]))
    text = f"{filler}{day_text} {time_text}".strip()
    check(text, today, days, conflict, when, period)


def test_every_weekday_with_every_day_number_for_every_day_of_the_year():
    """Exhaustive: 365 todays × 7 weekdays × 31 day numbers ("el lunes 14"), each checked."""
    checked = conflicts = 0
    for today in YEAR:
        for day in range(1, 32):
            target = next_date(today, day, None)
            for weekday, name in enumerate(ES_WEEKDAYS):
                expected = (
                    [target]
                    if target.weekday() == weekday
                    else sorted({target, nearest(target, weekday, today)})
                )
                check(f"el {name} {day}", today, expected, target.weekday() != weekday, None, None)
                checked += 1
                conflicts += target.weekday() != weekday
    assert checked == 365 * 7 * 31 and conflicts == 365 * 6 * 31


def test_every_date_with_its_month_for_every_day_of_the_year():
    """Exhaustive: 365 todays × every date of the calendar ("el 18 de diciembre")."""
    for today in YEAR:
        for month in range(1, 13):
            for day in (1, 14, 28, 29, 30, 31):
                target = next_date(today, day, month)
                check(
                    f"el {day} de {ES_MONTHS[month - 1]}",
                    today,
                    [target] if target else [],
                    False,
                    None,
                    None,
                )


def test_every_weekday_and_relative_day_for_every_day_of_the_year():
    """Exhaustive: 365 todays × (hoy, mañana, pasado mañana, each weekday, each weekday of next week)."""
    for today in YEAR:
        for ahead, text in (
            (0, "hoy"),
            (1, "mañana"),
            (2, "pasado mañana"),
            (3, "dentro de 3 días"),
        ):
            check(text, today, [today + timedelta(days=ahead)], False, None, None)
        next_monday = today + timedelta(days=7 - today.weekday())
        for weekday, name in enumerate(ES_WEEKDAYS):
            check(
                f"el {name}",
                today,
                [today + timedelta(days=(weekday - today.weekday()) % 7 or 7)],
                False,
                None,
                None,
            )
            check(
                f"el {name} de la próxima semana",
                today,
                [next_monday + timedelta(days=weekday)],
                False,
                None,
                None,
            )
            check(
                f"el {name} en la tarde",
                today,
                [today + timedelta(days=(weekday - today.weekday()) % 7 or 7)],
                False,
                None,
                "afternoon",
            )
