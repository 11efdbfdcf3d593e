"""The business's facts in the receptionist's words: opening hours of a day, the address, who
performs a service, the price list. business_info (graph/tools.py) returns these texts, so a
real model and the offline one say the same thing, taken from the same rows.

Dates go through the one date parser (graph/timeparse.py) and hours through the availability
calendar (storage/facts.hours_on): the hours given for a day are the hours offered for it.
The sentences come from the message catalogs (graph/i18n.py), in the language of the turn.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from typing import Iterable, Literal
from zoneinfo import ZoneInfo

import asyncpg

from graph import i18n, replies, timeparse
from storage import catalog, facts

Topic = Literal["horario", "direccion", "personal", "servicios"]
MAX_DAYS = 7  # "la próxima semana" lists each day; a longer span would be a wall of text
NEXT_OPEN_SEARCH_DAYS = 14  # after a closed day, the next open one within two weeks


def _clock(at: time) -> str:
    return replies.clock(datetime.combine(date(2000, 1, 1), at))


def _spans(spans: Iterable[tuple[time, time]]) -> str:
    return i18n.text("facts.spans_join").join(
        i18n.text("facts.span", start=_clock(a), end=_clock(b)) for a, b in spans
    )


def _sentence(text: str) -> str:
    """A full stop, unless the text already ends in one ("6:00 p. m.")."""
    return text if text.endswith(".") else text + "."


def _plural(weekday: int) -> str:
    return replies.weekdays_plural(weekday)


def _day(d: date) -> str:
    return replies.day(datetime.combine(d, time(12)))


async def hours(
    pool: asyncpg.Pool, org: str, tz: ZoneInfo, now: datetime, asked: str | None
) -> str:
    """The hours for the day(s) the customer named, else the usual week."""
    text = timeparse.normalize(asked or "")
    when = timeparse.parse(text, now) if text else None
    holiday = bool(re.search(r"\bfestivos?\b", text))
    today = now.date()
    if when is not None and when.day_given and when.days and when.conflict is None:
        days = when.days[:MAX_DAYS]
        if holiday and len(days) == 1:
            # "¿atienden el lunes festivo?" names the next Monday that is a holiday, which is not
            # always the next Monday.
            days = [await facts.next_holiday_on(pool, org, days[0].weekday(), today) or days[0]]
        found = await facts.hours_on(pool, org, tz, days)
        lines = [_one_day(h, now) for h in found]
        if len(found) == 1 and not found[0].is_open:
            lines.append(await _next_open(pool, org, tz, found[0].day, today))
        return "\n".join(line for line in lines if line)
    if when is not None and when.conflict is not None:
        # "¿abren el martes 15?" when the 15th is a Monday: both readings, each named in full,
        # rather than a guess (the booking tool asks which; a question about hours can answer both).
        c = when.conflict
        found = await facts.hours_on(pool, org, tz, sorted({c.dated, c.other}))
        head = i18n.text(
            "facts.conflict",
            n=c.dated.day,
            dated_weekday=replies.weekday(c.dated.weekday()),
            weekday=replies.weekday(c.weekday),
        )
        return "\n".join([head] + [_one_day(h, now) for h in found])
    week = await _week(pool, org)
    if holiday:
        if await facts.open_on_holidays(pool, org):
            return i18n.text("facts.holidays_open", week=week)
        return i18n.text("facts.holidays_closed", week=week)
    return week


def _one_day(h: facts.DayHours, now: datetime) -> str:
    today = now.date()
    if h.is_open and h.day == today and now.time() >= max(b for _, b in h.spans):
        # "¿hasta qué hora están hoy?" at 7 p. m.: closed for today, not "we are open until 6".
        return _sentence(i18n.text("facts.today_closed_already", spans=_spans(h.spans)))
    if h.is_open:
        key = "facts.today_open" if h.day == today else "facts.day_open"
        return _sentence(i18n.text(key, day=_day(h.day), spans=_spans(h.spans)))
    if h.closed_because == "festivo":
        key = "facts.today_holiday" if h.day == today else "facts.day_holiday"
        return i18n.text(key, day=_day(h.day))
    if h.closed_because == "weekday":
        return i18n.text("facts.closed_weekday", weekdays=_plural(h.day.weekday()))
    key = "facts.today_closed" if h.day == today else "facts.day_closed"
    return i18n.text(key, day=_day(h.day), reason=h.closed_because)


async def _next_open(pool: asyncpg.Pool, org: str, tz: ZoneInfo, closed: date, today: date) -> str:
    days = [closed + timedelta(days=n) for n in range(1, NEXT_OPEN_SEARCH_DAYS + 1)]
    nxt = next((h for h in await facts.hours_on(pool, org, tz, days) if h.is_open), None)
    if nxt is None:
        return ""
    return _sentence(i18n.text("facts.next_open", day=_day(nxt.day), spans=_spans(nxt.spans)))


async def _week(pool: asyncpg.Pool, org: str) -> str:
    """ "lunes a viernes de 8:00 a. m. a 6:00 p. m.; sábado de ...; domingo cerrado": consecutive
    weekdays with the same hours are one range."""
    week = await facts.weekly_hours(pool, org)
    groups: list[tuple[int, int, tuple[tuple[time, time], ...]]] = []
    for wd in range(7):
        spans = tuple(week.get(wd, []))
        if groups and groups[-1][2] == spans and groups[-1][1] == wd - 1:
            groups[-1] = (groups[-1][0], wd, spans)
        else:
            groups.append((wd, wd, spans))
    parts = []
    for first, last, spans in groups:
        days = (
            replies.weekday(first)
            if first == last
            else i18n.text(
                "facts.week_range", first=replies.weekday(first), last=replies.weekday(last)
            )
        )
        parts.append(
            f"{days} {_spans(spans)}" if spans else i18n.text("facts.week_closed", days=days)
        )
    return _sentence(i18n.text("facts.week", days="; ".join(parts)))


async def address(pool: asyncpg.Pool, org: str) -> str:
    found = await facts.address(pool, org)
    if found.address is None and not found.notes:
        return i18n.text("facts.no_address")
    parts = [i18n.text("facts.address", address=found.address)] if found.address else []
    # An FAQ answer that repeats the address adds only what it says besides (parking, a landmark).
    parts += (
        [n for n in found.notes if not found.address or found.address not in n]
        if found.address
        else list(found.notes)
    )
    return " ".join(parts)


async def staff(pool: asyncpg.Pool, org: str, asked: str | None) -> str:
    services = (
        [
            s
            for s, score in await catalog.search_services(pool, org, asked or "", 3)
            if score >= catalog.SERVICE_MATCH_MIN
        ]
        if asked
        else []
    )
    if not services:
        team = await facts.team(pool, org)
        if not team:
            return i18n.text("facts.no_team")
        people = ", ".join(f"{name} ({role})" if role else name for name, role in team)
        return i18n.text("facts.team", people=people)
    lines = []
    for service in services:
        who = [name for name, _ in await facts.staff_for(pool, org, service)]
        if not who:
            lines.append(i18n.text("facts.unassigned", service=service.name))
        else:
            and_ = i18n.text("facts.and")
            names = who[0] if len(who) == 1 else ", ".join(who[:-1]) + f" {and_} {who[-1]}"
            key = "facts.done_by_one" if len(who) == 1 else "facts.done_by_many"
            lines.append(i18n.text(key, service=service.name, names=names))
    return "\n".join(lines)


async def price_list(pool: asyncpg.Pool, org: str) -> str:
    services = await catalog.list_services(pool, org)
    if not services:
        return i18n.text("facts.no_services")
    lines = [
        f"• {s.name}: {replies.price(s.price, s.currency)} ({s.duration_minutes} min)"
        for s in services
    ]
    return i18n.text("facts.services", lines="\n".join(lines))


async def answer(
    pool: asyncpg.Pool,
    org: str,
    tz: ZoneInfo,
    now: datetime,
    topic: Topic,
    when: str | None = None,
    service: str | None = None,
) -> str:
    if topic == "horario":
        return await hours(pool, org, tz, now, when)
    if topic == "direccion":
        return await address(pool, org)
    if topic == "personal":
        return await staff(pool, org, service)
    return await price_list(pool, org)
