"""When each staff member can take an appointment: opening hours, staff hours, time off,
organization closures and public holidays, all read in the organization's timezone.

A staff member with no hours of their own works whenever the organization is open. Public
holidays come from the `holidays` package for the organization's country (settings.country,
Colombia by default) unless settings.open_on_holidays is true.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import holidays

from storage.db import Db

DEFAULT_COUNTRY = "CO"
Interval = tuple[datetime, datetime]


@functools.lru_cache(maxsize=64)
def _holidays(country: str, year: int) -> frozenset[date]:
    try:
        return frozenset(holidays.country_holidays(country, years=year).keys())
    except NotImplementedError:
        raise ValueError(f"the holidays package does not know the country {country!r}") from None


def public_holidays(country: str, days: list[date]) -> set[date]:
    years = {d.year for d in days}
    found: set[date] = set()
    for year in years:
        found |= _holidays(country.upper(), year)
    return {d for d in days if d in found}


@dataclass
class Calendar:
    """Everything availability needs to know for a span of local days."""

    tz: ZoneInfo
    opening: dict[int, list[tuple[time, time]]] = field(default_factory=dict)
    staff_hours: dict[str, dict[int, list[tuple[time, time]]]] = field(default_factory=dict)
    away: dict[str, list[Interval]] = field(default_factory=dict)  # time off, per staff member
    closed: dict[date, str] = field(default_factory=dict)  # closures and holidays: why
    _working: dict[tuple[str, date], list[Interval]] = field(default_factory=dict, repr=False)

    def is_closed(self, day: date) -> bool:
        return day in self.closed

    def working(self, staff_id: str, day: date) -> list[Interval]:
        """The staff member's working intervals on a local day (opening hours ∩ own hours)."""
        key = (staff_id, day)
        if key not in self._working:  # asked once per candidate start: computed once per day
            self._working[key] = self._compute_working(staff_id, day)
        return self._working[key]

    def _compute_working(self, staff_id: str, day: date) -> list[Interval]:
        if day in self.closed:
            return []
        opening = self.opening.get(day.weekday(), [])
        own = self.staff_hours.get(staff_id)
        spans = opening if own is None else _intersect(opening, own.get(day.weekday(), []))
        return [
            (datetime.combine(day, a, self.tz), datetime.combine(day, b, self.tz)) for a, b in spans
        ]

    def can_work(self, staff_id: str, start: datetime, end: datetime) -> bool:
        day = start.date() if start.tzinfo is self.tz else start.astimezone(self.tz).date()
        inside = any(a <= start and end <= b for a, b in self.working(staff_id, day))
        return inside and not any(a < end and start < b for a, b in self.away.get(staff_id, []))


def _intersect(xs: list[tuple[time, time]], ys: list[tuple[time, time]]) -> list[tuple[time, time]]:
    out = []
    for a1, b1 in xs:
        for a2, b2 in ys:
            a, b = max(a1, a2), min(b1, b2)
            if a < b:
                out.append((a, b))
    return sorted(out)


async def load_calendar(db: Db, org: str, tz: ZoneInfo, days: list[date]) -> Calendar:
    cal = Calendar(tz=tz)
    if not days:
        return cal
    for r in await db.fetch(
        "select weekday, opens, closes from business_hours "
        "where organization_id = $1::uuid order by weekday, opens",
        org,
    ):
        cal.opening.setdefault(r["weekday"], []).append((r["opens"], r["closes"]))
    for r in await db.fetch(
        "select staff_id::text, weekday, starts, ends from staff_hours "
        "where organization_id = $1::uuid order by weekday, starts",
        org,
    ):
        cal.staff_hours.setdefault(r["staff_id"], {}).setdefault(r["weekday"], []).append(
            (r["starts"], r["ends"])
        )
    span_from = datetime.combine(min(days), time.min, tz)
    span_to = datetime.combine(max(days) + timedelta(days=1), time.min, tz)
    for r in await db.fetch(
        "select staff_id::text, starts_at, ends_at from staff_time_off "
        "where organization_id = $1::uuid and starts_at < $3 and ends_at > $2",
        org,
        span_from,
        span_to,
    ):
        cal.away.setdefault(r["staff_id"], []).append((r["starts_at"], r["ends_at"]))
    for r in await db.fetch(
        "select day, reason from closures where organization_id = $1::uuid "
        "and day between $2 and $3",
        org,
        min(days),
        max(days),
    ):
        cal.closed[r["day"]] = r["reason"] or "cerrado"
    settings = (
        await db.fetchval("select settings from organizations where id = $1::uuid", org) or {}
    )
    if not settings.get("open_on_holidays"):
        for day in public_holidays(settings.get("country") or DEFAULT_COUNTRY, days):
            cal.closed.setdefault(day, "festivo")
    return cal


# ---- why a window has no free time --------------------------------------------------------

# The days that are closed as a whole, whatever the time asked.
CLOSED_DAY_KINDS = ("holiday", "closure", "closed_weekday")
ClosedKind = Literal[
    "holiday",
    "closure",
    "closed_weekday",
    "outside_hours",
    "ends_after_closing",
    "staff_away",
    "full",
    "closed_days",
    "too_soon",
]


@dataclass(frozen=True)
class Unavailable:
    """Why nothing is free in a window: what the customer is told, in a few words, before the
    alternatives. `full` means open and staffed, but booked."""

    kind: ClosedKind
    day: date  # the (first) day asked
    reason: str = ""  # a closure's own reason ("Nochebuena")
    opens: time | None = None  # the opening hours of the asked day(s), for "outside_hours"
    closes: time | None = None


def unavailable(
    cal: Calendar,
    staff: list[str],
    days: list[date],
    time_from: time,
    time_to: time,
    whole: bool = False,
) -> Unavailable:
    """Why `days` × [time_from, time_to) offer nothing. Several days: a closed day does not
    contradict "we do not open at night", so the open days decide (outside hours if all are).
    `whole`: the span is one appointment (an exact time asked), which must fit in the opening
    hours: one that starts while open but would end after closing is `ends_after_closing`."""
    found = [_unavailable_on(cal, staff, day, time_from, time_to, whole) for day in sorted(days)]
    if len(found) == 1:
        return found[0]
    open_days = [u for u in found if u.kind not in CLOSED_DAY_KINDS]
    if not open_days:
        return Unavailable("closed_days", found[0].day)
    if all(u.kind == "outside_hours" for u in open_days):
        return Unavailable(
            "outside_hours",
            open_days[0].day,
            # An outside_hours day always has its hours.
            opens=min(u.opens for u in open_days if u.opens is not None),
            closes=max(u.closes for u in open_days if u.closes is not None),
        )
    if all(u.kind == "staff_away" for u in open_days):
        return open_days[0]
    return Unavailable("full", found[0].day)


def _unavailable_on(
    cal: Calendar, staff: list[str], day: date, time_from: time, time_to: time, whole: bool
) -> Unavailable:
    if day in cal.closed:
        reason = cal.closed[day]
        return Unavailable("holiday" if reason == "festivo" else "closure", day, reason=reason)
    spans = cal.opening.get(day.weekday(), [])
    if not spans:
        return Unavailable("closed_weekday", day)
    opens, closes = min(a for a, _ in spans), max(b for _, b in spans)
    if not any(max(a, time_from) < min(b, time_to) for a, b in spans):
        return Unavailable("outside_hours", day, opens=opens, closes=closes)
    if whole and not any(a <= time_from and time_to <= b for a, b in spans):
        kind: ClosedKind = (
            "ends_after_closing" if any(a <= time_from < b for a, b in spans) else "outside_hours"
        )
        return Unavailable(kind, day, opens=opens, closes=closes)
    lo = datetime.combine(day, time_from, cal.tz)
    hi = (
        datetime.combine(day, time_to, cal.tz)
        if time_to != time.max
        else datetime.combine(day + timedelta(days=1), time.min, cal.tz)
    )
    if not any(
        _works_some_of(cal, s, max(a, lo), min(b, hi))
        for s in staff
        for a, b in cal.working(s, day)
    ):
        return Unavailable("staff_away", day, opens=opens, closes=closes)
    return Unavailable("full", day, opens=opens, closes=closes)


def _works_some_of(cal: Calendar, staff_id: str, start: datetime, end: datetime) -> bool:
    """Some of [start, end) is working time not covered by the staff member's time off."""
    return start < end and not any(a <= start and end <= b for a, b in cal.away.get(staff_id, []))


# ---- writing (catalog import, tests) ------------------------------------------------------------


async def set_staff_hours(
    db: Db, org: str, staff_id: str, hours: list[tuple[int, time, time]]
) -> None:
    """Replace a staff member's weekly hours (an empty list: works whenever the org is open)."""
    await db.execute(
        "delete from staff_hours where organization_id = $1::uuid and staff_id = $2::uuid",
        org,
        staff_id,
    )
    await db.executemany(
        "insert into staff_hours (organization_id, staff_id, weekday, starts, ends)"
        " values ($1::uuid, $2::uuid, $3, $4, $5)",
        [(org, staff_id, d, a, b) for d, a, b in hours],
    )


async def add_time_off(
    db: Db, org: str, staff_id: str, starts_at: datetime, ends_at: datetime, reason: str = ""
) -> bool:
    """Time off, once: the same span for the same person is not added twice (False then)."""
    return bool(
        await db.fetchval(
            """
        insert into staff_time_off (organization_id, staff_id, starts_at, ends_at, reason)
        select $1::uuid, $2::uuid, $3, $4, $5 where not exists (
            select 1 from staff_time_off where organization_id = $1::uuid and staff_id = $2::uuid
              and starts_at = $3 and ends_at = $4)
        returning true""",
            org,
            staff_id,
            starts_at,
            ends_at,
            reason,
        )
    )


def day_span(
    first: date, last: date, tz: ZoneInfo, start: time | None = None, end: time | None = None
) -> Interval:
    """Local days first..last as one interval; with start/end, part of a single day."""
    return (
        datetime.combine(first, start or time.min, tz),
        datetime.combine(last, end, tz)
        if end
        else datetime.combine(last + timedelta(days=1), time.min, tz),
    )
