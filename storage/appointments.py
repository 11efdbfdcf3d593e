"""Appointments: availability, and booking, listing, cancelling and rescheduling them.

Every function takes the organization (and, where it matters, the contact) first and filters
every query by them. Double booking is prevented by the database (the exclusion constraint
`appointments_no_double_booking`), not by a check-then-insert, so racing workers stay correct.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import asyncpg

from storage import consent, schedules
from storage.catalog import Service, get_service
from storage.chats import save_contact_name
from storage.db import Db, returned_row

# Two overlapping inserts can each wait on the other's index entry; PostgreSQL then aborts one
# with a deadlock instead of an exclusion violation. Either way that staff member is taken (each
# attempt runs in its own transaction or savepoint, so the next one can go on).
_TAKEN = (asyncpg.ExclusionViolationError, asyncpg.DeadlockDetectedError)


@dataclass(frozen=True)
class Slot:
    starts_at: datetime
    ends_at: datetime
    staff_id: str


@dataclass(frozen=True)
class Appointment:
    id: str
    service_id: str
    service_name: str
    staff_id: str
    staff_name: str
    starts_at: datetime
    ends_at: datetime
    status: str


# ---- availability -------------------------------------------------------------------------


async def eligible_staff(db: Db, org: str, service_id: str) -> list[str]:
    """Active staff who perform a service: those listed for it; for a service that lists
    nobody, the staff who are listed for no service at all (generalists)."""
    rows = await db.fetch(
        """
        select s.id::text from staff s
        where s.organization_id = $1::uuid and s.active
          and (exists (select 1 from staff_services x where x.staff_id = s.id and x.service_id = $2::uuid)
               or (not exists (select 1 from staff_services x where x.service_id = $2::uuid)
                   and not exists (select 1 from staff_services x where x.staff_id = s.id)))
        order by s.created_at, s.name""",
        org,
        service_id,
    )
    return [r["id"] for r in rows]


async def availability(
    db: Db,
    *,
    org: str,
    service: Service,
    tz: ZoneInfo,
    days: list[date],
    time_from: time,
    time_to: time,
    not_before: datetime,
    prefer: time | None = None,
    step_min: int = 30,
    limit: int = 3,
    held: Sequence[tuple[str, datetime, datetime]] = (),
) -> list[Slot]:
    """Free start times for a service on the given local days, between time_from and time_to.

    A start is free when an eligible staff member works then (their hours inside opening
    hours; not on a closure, a public holiday or their time off), has no appointment and no
    other chat holds it (`held`: (staff, start, end) of other chats' held slots).
    With `prefer` ("a las 3") the slots closest to that time come first; otherwise they are
    spread over the window so the customer gets a real choice, not three adjacent half hours.
    """
    if isinstance(db, asyncpg.Pool):  # one connection for its seven queries, not seven checkouts
        async with db.acquire() as conn:
            return await availability(
                conn,
                org=org,
                service=service,
                tz=tz,
                days=days,
                time_from=time_from,
                time_to=time_to,
                not_before=not_before,
                prefer=prefer,
                step_min=step_min,
                limit=limit,
                held=held,
            )
    staff = await eligible_staff(db, org, service.id)
    if not staff or not days:
        return []
    cal = await schedules.load_calendar(db, org, tz, days)
    span_from = datetime.combine(min(days), time.min, tz)
    span_to = datetime.combine(max(days) + timedelta(days=1), time.min, tz)
    busy: dict[str, list[tuple[datetime, datetime]]] = {s: [] for s in staff}
    for r in await db.fetch(
        """
            select staff_id::text, starts_at, ends_at from appointments
            where organization_id = $1::uuid and status <> 'cancelled' and staff_id = any($2::uuid[])
              and starts_at < $4 and ends_at > $3""",
        org,
        staff,
        span_from,
        span_to,
    ):
        busy[r["staff_id"]].append((r["starts_at"], r["ends_at"]))
    for staff_id, start, end in held:
        if staff_id in busy:
            busy[staff_id].append((start, end))
    duration = timedelta(minutes=service.duration_minutes)
    free: list[Slot] = []
    for day in sorted(days):
        if cal.is_closed(day):
            continue
        for opens, closes in cal.opening.get(day.weekday(), []):
            start = _round_up(datetime.combine(day, max(opens, time_from), tz), step_min)
            day_close = datetime.combine(day, closes, tz)
            last_start = datetime.combine(day, min(time_to, closes), tz)
            while start < last_start and start + duration <= day_close:
                end = start + duration
                if start >= not_before:
                    who = next(
                        (
                            s
                            for s in staff
                            if cal.can_work(s, start, end) and not _overlaps(busy[s], start, end)
                        ),
                        None,
                    )
                    if who:
                        free.append(Slot(start, end, who))
                start += timedelta(minutes=step_min)
    return _choose(free, prefer, limit)


def _round_up(moment: datetime, step_min: int) -> datetime:
    minutes = moment.hour * 60 + moment.minute
    rounded = -(-minutes // step_min) * step_min
    return moment.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(minutes=rounded)


def _overlaps(busy: list[tuple[datetime, datetime]], start: datetime, end: datetime) -> bool:
    return any(b_start < end and start < b_end for b_start, b_end in busy)


def _choose(free: list[Slot], prefer: time | None, limit: int) -> list[Slot]:
    if len(free) <= limit:
        return free
    if prefer is not None:

        def distance(slot: Slot) -> float:
            local = slot.starts_at
            at = local.replace(hour=prefer.hour, minute=prefer.minute)
            return (
                abs((local - at).total_seconds())
                + (local.date() - free[0].starts_at.date()).days * 86400
            )

        return sorted(sorted(free, key=distance)[:limit], key=lambda s: s.starts_at)
    last = len(free) - 1
    picks = sorted({round(i * last / (limit - 1)) for i in range(limit)}) if limit > 1 else [0]
    return [free[i] for i in picks]


# ---- bookings -----------------------------------------------------------------------------

# The contact already holds an active appointment overlapping the time (migration 008): no staff
# member can change that, so booking stops instead of trying the next one.
_CONTACT_BUSY = "appointments_contact_no_overlap"


async def staff_working(
    db: Db, org: str, staff: list[str], starts_at: datetime, ends_at: datetime
) -> list[str]:
    """Those of `staff` (in order) who work the whole span by the same calendar availability
    uses: opening and own hours, closures, public holidays, time off. A booking's fallback to a
    colleague goes through here, so a slot offered for one person never lands on another who
    is off then."""
    tz = ZoneInfo(
        await db.fetchval("select timezone from organizations where id = $1::uuid", org) or "UTC"
    )
    local_start, local_end = starts_at.astimezone(tz), ends_at.astimezone(tz)
    days = sorted({local_start.date(), local_end.date()})
    cal = await schedules.load_calendar(db, org, tz, days)
    return [s for s in staff if cal.can_work(s, local_start, local_end)]


_APPT = """select a.id::text, a.service_id::text, sv.name as service_name, a.staff_id::text,
                  st.name as staff_name, a.starts_at, a.ends_at, a.status
           from appointments a join services sv on sv.id = a.service_id join staff st on st.id = a.staff_id"""


async def appointment_by_key(db: Db, org: str, idempotency_key: str) -> Appointment | None:
    row = await db.fetchrow(
        _APPT + " where a.organization_id = $1::uuid and a.idempotency_key = $2",
        org,
        idempotency_key,
    )
    return Appointment(**dict(row)) if row else None


async def book(
    pool: asyncpg.Pool,
    *,
    org: str,
    contact_id: str,
    service: Service,
    starts_at: datetime,
    idempotency_key: str,
    preferred_staff: str | None = None,
    contact_name: str | None = None,
) -> Appointment | None:
    """Book a slot once; None when every eligible staff member is taken at that time.

    A retried turn reuses its idempotency key and gets the same appointment back. The
    contact's name and WhatsApp opt-in are written in the same transaction as the booking.
    """
    existing = await appointment_by_key(pool, org, idempotency_key)
    if existing:
        return existing
    staff = await eligible_staff(pool, org, service.id)
    if preferred_staff in staff:
        staff.remove(preferred_staff)
        staff.insert(0, preferred_staff)
    ends_at = starts_at + timedelta(minutes=service.duration_minutes)
    staff = await staff_working(pool, org, staff, starts_at, ends_at)
    async with pool.acquire() as conn:
        for staff_id in staff:
            try:
                async with conn.transaction():
                    new_id = await conn.fetchval(
                        "insert into appointments (organization_id, contact_id, service_id, staff_id,"
                        " starts_at, ends_at, idempotency_key) "
                        "select $1::uuid, c.id, $3::uuid, $4::uuid, $5, $6, $7 from contacts c "
                        "where c.id = $2::uuid and c.organization_id = $1::uuid "
                        "on conflict (organization_id, idempotency_key) where idempotency_key is not null "
                        "do nothing returning id::text",
                        org,
                        contact_id,
                        service.id,
                        staff_id,
                        starts_at,
                        ends_at,
                        idempotency_key,
                    )
                    if (
                        new_id is None
                    ):  # a concurrent redelivery of the same turn won, or no contact
                        return await appointment_by_key(conn, org, idempotency_key)
                    if contact_name:
                        await save_contact_name(conn, org, contact_id, contact_name)
                    await consent.record(
                        conn, org=org, contact_id=contact_id, status="opted_in", source="booking"
                    )
            except _TAKEN as exc:
                if getattr(exc, "constraint_name", None) == _CONTACT_BUSY:
                    return None  # the contact has another appointment then
                continue  # this staff member was taken meanwhile; try the next one
            return await appointment_by_key(conn, org, idempotency_key)
    return None


async def list_appointments(
    db: Db, org: str, contact_id: str, *, since: datetime | None = None, limit: int = 10
) -> list[Appointment]:
    """The contact's appointments, upcoming first in time order when `since` is given."""
    if since is not None:
        rows = await db.fetch(
            _APPT + " where a.organization_id = $1::uuid and a.contact_id = $2::uuid"
            " and a.status = 'confirmed' and a.starts_at >= $3 order by a.starts_at limit $4",
            org,
            contact_id,
            since,
            limit,
        )
    else:
        rows = await db.fetch(
            _APPT + " where a.organization_id = $1::uuid and a.contact_id = $2::uuid"
            " order by a.starts_at desc limit $3",
            org,
            contact_id,
            limit,
        )
    return [Appointment(**dict(r)) for r in rows]


async def cancel(db: Db, org: str, contact_id: str, appointment_id: str) -> Appointment | None:
    """Cancel the contact's own appointment (idempotent); None if it is not theirs."""
    await db.execute(
        "update appointments set status = 'cancelled', updated_at = now() "
        "where id = $3::uuid and organization_id = $1::uuid and contact_id = $2::uuid "
        "and status = 'confirmed'",
        org,
        contact_id,
        appointment_id,
    )
    row = await db.fetchrow(
        _APPT + " where a.id = $3::uuid and a.organization_id = $1::uuid "
        "and a.contact_id = $2::uuid",
        org,
        contact_id,
        appointment_id,
    )
    return Appointment(**dict(row)) if row and row["status"] == "cancelled" else None


class NotYours(LookupError):
    """The appointment does not exist for this organization and contact."""


async def reschedule(
    pool: asyncpg.Pool,
    *,
    org: str,
    contact_id: str,
    appointment_id: str,
    starts_at: datetime,
    preferred_staff: str | None = None,
) -> Appointment | None:
    """Move the contact's appointment; None when the new time is taken for every staff member.

    Moving onto the time it already has is a no-op, so a retried turn is harmless.
    """
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "select service_id::text, staff_id::text, starts_at from appointments "
            "where id = $3::uuid and organization_id = $1::uuid and contact_id = $2::uuid "
            "and status = 'confirmed' for update",
            org,
            contact_id,
            appointment_id,
        )
        if row is None:
            raise NotYours("esa cita no existe o no está activa")
        service = await get_service(conn, org, row["service_id"])
        if service is None:  # cannot happen: the appointment's foreign key keeps its service
            raise LookupError(f"service {row['service_id']} of appointment {appointment_id}")
        if row["starts_at"] == starts_at:
            return await _appointment(conn, org, appointment_id)
        staff = await eligible_staff(conn, org, service.id)
        order = [s for s in (preferred_staff, row["staff_id"]) if s in staff]
        order += [s for s in staff if s not in order]
        ends_at = starts_at + timedelta(minutes=service.duration_minutes)
        for staff_id in await staff_working(conn, org, order, starts_at, ends_at):
            try:
                async with conn.transaction():
                    await conn.execute(
                        "update appointments set starts_at = $2, ends_at = $3, staff_id = $4::uuid,"
                        " updated_at = now() where id = $1::uuid and organization_id = $5::uuid",
                        appointment_id,
                        starts_at,
                        ends_at,
                        staff_id,
                        org,
                    )
            except _TAKEN as exc:
                if getattr(exc, "constraint_name", None) == _CONTACT_BUSY:
                    return None  # the contact has another appointment then
                continue
            return await _appointment(conn, org, appointment_id)
    return None


async def _appointment(db: Db, org: str, appointment_id: str) -> Appointment:
    row = await db.fetchrow(
        _APPT + " where a.id = $2::uuid and a.organization_id = $1::uuid", org, appointment_id
    )
    return Appointment(**dict(returned_row(row)))


def utc(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc)
