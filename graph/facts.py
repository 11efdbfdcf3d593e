"""The business's facts in the receptionist's words: opening hours of a day, the address, who
performs a service, the price list. business_info (graph/tools.py) returns these texts, so a
real model and the offline one say the same thing, taken from the same rows.

Dates go through the one date parser (graph/timeparse.py) and hours through the availability
calendar (storage/facts.hours_on): the hours given for a day are the hours offered for it.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from typing import Iterable, Literal
from zoneinfo import ZoneInfo

import asyncpg

from graph import replies, timeparse
from storage import catalog, facts

Topic = Literal["horario", "direccion", "personal", "servicios"]
MAX_DAYS = 7  # "la próxima semana" lists each day; a longer span would be a wall of text
NEXT_OPEN_SEARCH_DAYS = 14  # after a closed day, the next open one within two weeks


def _clock(at: time) -> str:
    return replies.clock(datetime.combine(date(2000, 1, 1), at))


def _spans(spans: Iterable[tuple[time, time]]) -> str:
    return " y ".join(f"de {_clock(a)} a {_clock(b)}" for a, b in spans)


def _sentence(text: str) -> str:
    """A full stop, unless the text already ends in one ("6:00 p. m.")."""
    return text if text.endswith(".") else text + "."


def _plural(weekday: int) -> str:
    name = replies.WEEKDAYS[weekday]
    return name if name.endswith("s") else name + "s"


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
        head = f"Ojo: el {c.dated.day} es {replies.WEEKDAYS[c.dated.weekday()]}, no {replies.WEEKDAYS[c.weekday]}."
        return "\n".join([head] + [_one_day(h, now) for h in found])
    week = await _week(pool, org)
    if holiday:
        if await facts.open_on_holidays(pool, org):
            return f"Los festivos sí atendemos, en el horario del día. {week}"
        return f"Los festivos no atendemos. {week}"
    return week


def _one_day(h: facts.DayHours, now: datetime) -> str:
    today = now.date()
    name = "Hoy" if h.day == today else f"El {_day(h.day)}"
    if h.is_open and h.day == today and now.time() >= max(b for _, b in h.spans):
        # "¿hasta qué hora están hoy?" at 7 p. m.: closed for today, not "we are open until 6".
        return _sentence(f"Hoy ya cerramos: atendimos {_spans(h.spans)}")
    if h.is_open:
        prefix = f"Hoy, {_day(h.day)}," if h.day == today else name
        return _sentence(f"{prefix} atendemos {_spans(h.spans)}")
    if h.closed_because == "festivo":
        return (
            f"{name} ({_day(h.day)}) es festivo y no atendemos."
            if h.day == today
            else f"{name} es festivo y no atendemos."
        )
    if h.closed_because == "weekday":
        return f"Los {_plural(h.day.weekday())} no atendemos."
    return f"{name} no atendemos ({h.closed_because})."


async def _next_open(pool: asyncpg.Pool, org: str, tz: ZoneInfo, closed: date, today: date) -> str:
    days = [closed + timedelta(days=n) for n in range(1, NEXT_OPEN_SEARCH_DAYS + 1)]
    nxt = next((h for h in await facts.hours_on(pool, org, tz, days) if h.is_open), None)
    if nxt is None:
        return ""
    return _sentence(f"Volvemos a atender el {_day(nxt.day)}, {_spans(nxt.spans)}")


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
            replies.WEEKDAYS[first]
            if first == last
            else f"{replies.WEEKDAYS[first]} a {replies.WEEKDAYS[last]}"
        )
        parts.append(f"{days} {_spans(spans)}" if spans else f"{days} cerrado")
    return _sentence("Nuestro horario: " + "; ".join(parts))


async def address(pool: asyncpg.Pool, org: str) -> str:
    found = await facts.address(pool, org)
    if found.address is None and not found.notes:
        return (
            "No tengo la dirección registrada. Si quieres, te comunico con una persona del equipo."
        )
    parts = [f"Estamos en {found.address}."] if found.address else []
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
            return "No tengo registrado al equipo. Si quieres, te comunico con una persona."
        return (
            "Nuestro equipo: "
            + ", ".join(f"{name} ({role})" if role else name for name, role in team)
            + "."
        )
    lines = []
    for service in services:
        who = [name for name, _ in await facts.staff_for(pool, org, service)]
        if not who:
            lines.append(f"{service.name}: por ahora nadie del equipo lo tiene asignado.")
        else:
            names = who[0] if len(who) == 1 else ", ".join(who[:-1]) + f" y {who[-1]}"
            lines.append(f"{service.name} lo {'hace' if len(who) == 1 else 'hacen'} {names}.")
    return "\n".join(lines)


async def price_list(pool: asyncpg.Pool, org: str) -> str:
    services = await catalog.list_services(pool, org)
    if not services:
        return "Por ahora no tengo servicios publicados."
    lines = [
        f"• {s.name}: {replies.price(s.price, s.currency)} ({s.duration_minutes} min)"
        for s in services
    ]
    return "Estos son nuestros servicios:\n" + "\n".join(lines)


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
