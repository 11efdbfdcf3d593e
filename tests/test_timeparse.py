"""Spanish date and time expressions in the organization's timezone, and WhatsApp formatting."""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo

from graph import replies
from graph.timeparse import parse, pick_reading

NOW = datetime(2027, 3, 3, 10, 0, tzinfo=ZoneInfo("America/Bogota"))  # Wednesday


def test_relative_days_and_periods():
    w = parse("¿tienen algo mañana en la tarde?", NOW)
    assert w.days == [date(2027, 3, 4)] and (w.time_from, w.time_to) == (time(12), time(18))
    w = parse("pasado mañana en la mañana", NOW)
    assert w.days == [date(2027, 3, 5)] and w.time_from == time(6)
    assert parse("hoy", NOW).days == [date(2027, 3, 3)]
    assert (
        parse("en la mañana", NOW).time_to == time(12) and len(parse("en la mañana", NOW).days) == 7
    )


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
    assert (
        replies.when(datetime(2027, 3, 5, 20, 0, tzinfo=ZoneInfo("UTC")), tz)
        == "viernes 5 de marzo, 3:00 p. m."
    )
    assert replies.price(Decimal("120000.00")) == "$120.000"
    assert replies.price(0) == "sin costo"
    text = "\n\n".join(["a" * 3000, "b" * 3000, "c " * 3000])
    parts = replies.split(text)
    assert all(len(p) <= 4096 for p in parts) and parts[0] == "a" * 3000
    assert "".join(parts).replace(" ", "").replace("\n", "") == text.replace(" ", "").replace(
        "\n", ""
    )


def test_a_weekday_with_its_day_number_is_that_date_not_the_next_weekday():
    # The bug of issue 20: "el lunes 14" gave the next Monday (the 8th).
    assert parse("el lunes 15", NOW).days == [date(2027, 3, 15)]
    assert parse("el viernes 17 de diciembre", NOW).days == [date(2027, 12, 17)]
    assert parse("el 14", NOW).days == [date(2027, 3, 14)] and parse("el día 2", NOW).days == [
        date(2027, 4, 2)
    ]


def test_a_weekday_that_disagrees_with_the_date_is_a_contradiction_with_both_readings():
    w = parse("el lunes 14", NOW)  # the 14th of March 2027 is a Sunday
    assert w.conflict is not None and (w.conflict.dated, w.conflict.other) == (
        date(2027, 3, 14),
        date(2027, 3, 15),
    )
    assert w.days == [date(2027, 3, 14), date(2027, 3, 15)] and w.day_given
    assert parse("mañana lunes", NOW).conflict is not None  # tomorrow is a Thursday
    assert parse("mañana jueves", NOW).conflict is None


def test_relative_days_and_weeks():
    assert parse("pasado mañana", NOW).days == [date(2027, 3, 5)]
    assert parse("dentro de 3 días", NOW).days == [date(2027, 3, 6)]
    assert parse("dentro de ocho días", NOW).days == [date(2027, 3, 10)]  # a week, as people say it
    assert parse("el martes de la otra semana", NOW).days == [date(2027, 3, 9)]
    assert parse("la próxima semana", NOW).days[0] == date(2027, 3, 8)
    assert (
        parse("para mañana", NOW).days == [date(2027, 3, 4)]
        and parse("para mañana", NOW).period is None
    )
    assert parse("esta noche", NOW).days == [date(2027, 3, 3)] and parse(
        "esta noche", NOW
    ).time_from == time(18)


def test_half_and_quarter_hours_noon_first_thing_and_ranges():
    assert parse("a las 4 y cuarto", NOW).prefer == time(16, 15)
    assert parse("un cuarto para las 5", NOW).prefer == time(16, 45)
    assert parse("a las 5 menos cuarto", NOW).prefer == time(16, 45)
    assert parse("cuarto para las 9 de la mañana", NOW).prefer == time(8, 45)
    w = parse("al mediodía", NOW)
    assert w.prefer == time(12) and (w.time_from, w.time_to) == (time(11), time(14))
    assert parse("mañana a primera hora", NOW).order == "earliest"
    w = parse("el viernes entre las 2 y las 4", NOW)
    assert (
        w.days == [date(2027, 3, 5)]
        and (w.time_from, w.time_to) == (time(14), time(16))
        and w.prefer is None
    )
    assert (parse("después de las 4", NOW).time_from, parse("antes de las 11", NOW).time_to) == (
        time(16),
        time(11),
    )
    w = parse("el jueves en la noche", NOW)
    assert (w.time_from, w.time_to) == (time(18), time(22))


def test_english_and_portuguese_forms():
    assert parse("Monday the 15th at 3pm", NOW).days == [date(2027, 3, 15)]
    assert parse("tomorrow at 3:30 pm", NOW).prefer == time(15, 30)
    assert parse("quarter to 5", NOW).prefer == time(16, 45)
    assert parse("na segunda às 3", NOW).days == [date(2027, 3, 8)]
    assert parse("sexta-feira dia 5 de março", NOW).days == [date(2027, 3, 5)]
    assert not parse("la segunda", NOW).understood  # a Spanish pick, not Portuguese Monday


def test_an_answer_to_which_day_picks_one_reading():
    conflict = parse(
        "el martes 15", NOW
    ).conflict  # the 15th is a Monday; the Tuesday near it is the 16th
    assert (conflict.dated, conflict.other) == (date(2027, 3, 15), date(2027, 3, 16))
    assert pick_reading(conflict, "el martes", NOW) == date(2027, 3, 16)
    assert pick_reading(conflict, "el lunes por favor", NOW) == date(2027, 3, 15)
    assert pick_reading(conflict, "el 16", NOW) == date(2027, 3, 16)
    assert pick_reading(conflict, "lunes 15", NOW) == date(2027, 3, 15)
    assert pick_reading(conflict, "el jueves", NOW) is None  # neither: a new request


def test_an_iso_date_as_a_model_may_pass_it():
    assert parse("2027-03-15 15:00", NOW).days == [date(2027, 3, 15)]
    assert parse("2027-03-15 15:00", NOW).prefer == time(15)
    assert parse("martes 2027-03-15", NOW).conflict is not None  # the 15th is a Monday


def test_the_next_day_counts_from_the_day_on_the_table():
    moved = date(2027, 3, 5)  # the appointment being moved
    assert parse("muévela al día siguiente", NOW, anchor=moved).days == [date(2027, 3, 6)]
    assert parse("mejor un día antes", NOW, anchor=moved).days == [date(2027, 3, 4)]
    assert parse("al día siguiente", NOW).days == [date(2027, 3, 4)]  # no day on the table: today's
