"""The business's facts as its own rows state them: opening hours of a given day, the address,
who performs a service, the price list.

Hours of a day come from schedules.load_calendar, the very calendar availability searches
(closures, public holidays of the organization's country, open_on_holidays), so "¿abren el
24?" and "¿tienen cita el 24?" can never disagree. Who performs a service is
appointments.eligible_staff, the rule bookings use (generalists included).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from storage import appointments, catalog, schedules
from storage.catalog import Service
from storage.db import Db


@dataclass(frozen=True)
class DayHours:
    day: date
    spans: tuple[tuple[time, time], ...]  # empty: closed that day
    closed_because: str | None = (
        None  # "festivo", a closure's reason, "weekday" (never opens that day)
    )

    @property
    def is_open(self) -> bool:
        return bool(self.spans)


async def hours_on(db: Db, org: str, tz: ZoneInfo, days: list[date]) -> list[DayHours]:
    """Each day's opening hours, read through the availability calendar."""
    cal = await schedules.load_calendar(db, org, tz, days)
    out = []
    for day in days:
        if day in cal.closed:
            out.append(DayHours(day, (), cal.closed[day]))
            continue
        spans = tuple(cal.opening.get(day.weekday(), []))
        out.append(DayHours(day, spans, None if spans else "weekday"))
    return out


async def weekly_hours(db: Db, org: str) -> dict[int, list[tuple[time, time]]]:
    """weekday (Monday 0) -> the opening spans of a usual week; a missing weekday is closed."""
    week: dict[int, list[tuple[time, time]]] = {}
    for weekday, opens, closes in await catalog.business_hours(db, org):
        week.setdefault(weekday, []).append((opens, closes))
    return week


async def _settings(db: Db, org: str) -> dict[str, Any]:
    settings: dict[str, Any] | None = await db.fetchval(
        "select settings from organizations where id = $1::uuid", org
    )
    return settings or {}


async def open_on_holidays(db: Db, org: str) -> bool:
    return bool((await _settings(db, org)).get("open_on_holidays"))


async def next_holiday_on(
    db: Db, org: str, weekday: int, start: date, weeks: int = 60
) -> date | None:
    """The first public holiday on that weekday from `start`: "el lunes festivo" names it, not
    simply the next Monday. None if the country has none within `weeks`."""
    first = start + timedelta(days=(weekday - start.weekday()) % 7)
    candidates = [first + timedelta(weeks=n) for n in range(weeks)]
    country = (await _settings(db, org)).get("country") or schedules.DEFAULT_COUNTRY
    found = schedules.public_holidays(country, candidates)
    return min(found) if found else None


@dataclass(frozen=True)
class Address:
    address: str | None  # settings.address
    notes: tuple[str, ...]  # FAQ answers about the place (parking, how to arrive)


# FAQ entries about where the business is, whatever their wording: their question or answer
# names the place. Matched in SQL so an organization's own entries join in without code.
_PLACE_WORDS = (
    r"(ubicad|ubicaci|direcci|llegar|llego|parqueadero|parqueo|estacionamiento|queda|sede|local\b)"
)


async def address(db: Db, org: str) -> Address:
    settings = await _settings(db, org)
    rows = await db.fetch(
        "select answer from knowledge_entries where organization_id = $1::uuid "
        "and immutable_unaccent(lower(question || ' ' || answer)) ~ $2 order by created_at",
        org,
        _PLACE_WORDS,
    )
    return Address(
        (settings.get("address") or "").strip() or None, tuple(r["answer"] for r in rows)
    )


async def staff_for(db: Db, org: str, service: Service) -> list[tuple[str, str]]:
    """(name, role) of the active staff who perform the service, by the booking rule."""
    ids = await appointments.eligible_staff(db, org, service.id)
    if not ids:
        return []
    rows = await db.fetch(
        "select id::text, name, coalesce(role, '') as role from staff "
        "where organization_id = $1::uuid and id = any($2::uuid[])",
        org,
        ids,
    )
    by_id = {r["id"]: (r["name"], r["role"]) for r in rows}
    return [by_id[i] for i in ids if i in by_id]


async def team(db: Db, org: str) -> list[tuple[str, str]]:
    """(name, role) of the active staff, in the order they joined."""
    rows = await db.fetch(
        "select name, role from staff where organization_id = $1::uuid and active "
        "order by created_at, name",
        org,
    )
    return [(r["name"], r["role"]) for r in rows]
