"""Spanish date and time expressions in the organization's timezone, and WhatsApp formatting."""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo

from graph import replies
from graph.timeparse import parse

NOW = datetime(2027, 3, 3, 10, 0, tzinfo=ZoneInfo("America/Bogota"))  # Wednesday


def test_relative_days_and_periods():
    w = parse("¿tienen algo mañana en la tarde?", NOW)
    assert w.days == [date(2027, 3, 4)] and (w.time_from, w.time_to) == (time(12), time(18))
    w = parse("pasado mañana en la mañana", NOW)
    assert w.days == [date(2027, 3, 5)] and w.time_from == time(6)
    assert parse("hoy", NOW).days == [date(2027, 3, 3)]
    assert parse("en la mañana", NOW).time_to == time(12) and len(parse("en la mañana", NOW).days) == 7


def test_weekdays_and_dates():
    assert parse("el viernes", NOW).days == [date(2027, 3, 5)]
    assert parse("el miércoles", NOW).days == [date(2027, 3, 10)]  # today's weekday means next week
    w = parse("15 de diciembre a las 3", NOW)
    assert w.days == [date(2027, 12, 15)] and w.prefer == time(15)
    assert parse("el 2 de marzo", NOW).days == [date(2028, 3, 2)]  # already past this year
    assert parse("20/3", NOW).days == [date(2027, 3, 20)]
    assert len(parse("la próxima semana", NOW).days) == 7


def test_times():
    assert parse("a las 10 de la mañana", NOW).prefer == time(10)
    assert parse("a las 3:30", NOW).prefer == time(15, 30)
    assert parse("a las tres y media", NOW).prefer == time(15, 30)
    assert parse("4pm", NOW).prefer == time(16)
    assert parse("a las 9", NOW).prefer == time(9)
    nothing = parse("quiero una limpieza facial", NOW)
    assert not nothing.understood and len(nothing.days) == 7


def test_es_co_formatting_and_splitting():
    tz = ZoneInfo("America/Bogota")
    assert replies.when(datetime(2027, 3, 5, 20, 0, tzinfo=ZoneInfo("UTC")), tz) == "viernes 5 de marzo, 3:00 p. m."
    assert replies.price(Decimal("120000.00")) == "$120.000"
    assert replies.price(0) == "sin costo"
    text = "\n\n".join(["a" * 3000, "b" * 3000, "c " * 3000])
    parts = replies.split(text)
    assert all(len(p) <= 4096 for p in parts) and parts[0] == "a" * 3000
    assert "".join(parts).replace(" ", "").replace("\n", "") == text.replace(" ", "").replace("\n", "")
