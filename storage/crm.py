"""The CRM as the receptionist sees it: catalogue search, availability, bookings, contacts.

Every function takes the organization (and, where it matters, the contact) as its first
arguments and filters every query by them, so a caller cannot reach another tenant's rows by
passing a foreign id. Double booking is prevented by the database (the exclusion constraint
`appointments_no_double_booking`), not by a check-then-insert, so racing workers stay correct.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

Db = asyncpg.Pool | asyncpg.Connection

# word_similarity of a service name inside the query: "limpiesa facial" vs "Limpieza facial" is
# about 0.7, an unrelated word about 0.2.
SERVICE_MATCH_MIN = 0.45


@dataclass(frozen=True)
class OrgProfile:
    id: str
    name: str
    timezone: str
    settings: dict[str, Any]

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class Service:
    id: str
    name: str
    description: str
    duration_minutes: int
    price: Decimal
    currency: str


@dataclass(frozen=True)
class Hit:
    kind: str  # "service" or "faq"
    title: str
    text: str
    score: float
    service: Service | None = None


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


async def org_profile(db: Db, org: str) -> OrgProfile | None:
    row = await db.fetchrow("select id::text, name, timezone, settings from organizations "
                            "where id = $1::uuid", org)
    return OrgProfile(**dict(row)) if row else None


# ---- catalogue ----------------------------------------------------------------------------

_SERVICE_COLS = "s.id::text, s.name, s.description, s.duration_minutes, s.price, s.currency"

# An OR of the query's Spanish lexemes: a question mentions a service among other words, so an
# AND of every word (plainto_tsquery) would almost never match.
_TSQUERY = "nullif(replace(plainto_tsquery('spanish', immutable_unaccent($2))::text, '&', '|'), '')::tsquery"


async def search_services(db: Db, org: str, query: str, limit: int = 5) -> list[tuple[Service, float]]:
    rows = await db.fetch(f"""
        with q as (select immutable_unaccent(lower($2)) as text, {_TSQUERY} as ts)
        select {_SERVICE_COLS},
               word_similarity(immutable_unaccent(lower(s.name)), q.text)
               + coalesce(ts_rank(to_tsvector('spanish', immutable_unaccent(s.name || ' ' || s.description)), q.ts), 0)
               as score
        from services s, q
        where s.organization_id = $1::uuid and s.active
          and (to_tsvector('spanish', immutable_unaccent(s.name || ' ' || s.description)) @@ q.ts
               or word_similarity(immutable_unaccent(lower(s.name)), q.text) > 0.3)
        order by score desc, s.name limit $3""", org, query, limit)
    return [(Service(*list(r.values())[:6]), float(r["score"])) for r in rows]


async def search_knowledge(db: Db, org: str, query: str, limit: int = 5) -> list[Hit]:
    """Services and FAQ entries that match a question, best first (typos tolerated)."""
    hits = [Hit("service", s.name, s.description, score, s)
            for s, score in await search_services(db, org, query, limit)]
    rows = await db.fetch(f"""
        with q as (select immutable_unaccent(lower($2)) as text, {_TSQUERY} as ts)
        select k.question, k.answer,
               word_similarity(immutable_unaccent(lower(k.question)), q.text)
               + coalesce(ts_rank(to_tsvector('spanish', immutable_unaccent(k.question || ' ' || k.answer)), q.ts), 0)
               as score
        from knowledge_entries k, q
        where k.organization_id = $1::uuid
          and (to_tsvector('spanish', immutable_unaccent(k.question || ' ' || k.answer)) @@ q.ts
               or similarity(immutable_unaccent(lower(k.question)), q.text) > 0.3)
        order by score desc limit $3""", org, query, limit)
    hits += [Hit("faq", r["question"], r["answer"], float(r["score"])) for r in rows]
    hits.sort(key=lambda h: -h.score)
    return hits[:limit]


async def find_service(db: Db, org: str, query: str) -> Service | None:
    """The one service a phrase names ("limpiesa facial", "quiero un masaje relajante"), if any."""
    found = await search_services(db, org, query, 1)
    if not found:
        return None
    service, score = found[0]
    return service if score >= SERVICE_MATCH_MIN else None


async def get_service(db: Db, org: str, service_id: str) -> Service | None:
    row = await db.fetchrow(f"select {_SERVICE_COLS} from services s "
                            "where s.organization_id = $1::uuid and s.id = $2::uuid", org, service_id)
    return Service(*row.values()) if row else None


async def list_services(db: Db, org: str) -> list[Service]:
    rows = await db.fetch(f"select {_SERVICE_COLS} from services s "
                          "where s.organization_id = $1::uuid and s.active order by s.name", org)
    return [Service(*r.values()) for r in rows]


async def business_hours(db: Db, org: str) -> list[tuple[int, time, time]]:
    rows = await db.fetch("select weekday, opens, closes from business_hours "
                          "where organization_id = $1::uuid order by weekday, opens", org)
    return [(r["weekday"], r["opens"], r["closes"]) for r in rows]


async def faq_answers(db: Db, org: str) -> list[tuple[str, str]]:
    rows = await db.fetch("select question, answer from knowledge_entries "
                          "where organization_id = $1::uuid order by created_at", org)
    return [(r["question"], r["answer"]) for r in rows]


# ---- availability -------------------------------------------------------------------------

async def eligible_staff(db: Db, org: str, service_id: str) -> list[str]:
    """Active staff who perform a service (a staff member with no service rows does them all)."""
    rows = await db.fetch("""
        select s.id::text from staff s
        where s.organization_id = $1::uuid and s.active
          and (exists (select 1 from staff_services x where x.staff_id = s.id and x.service_id = $2::uuid)
               or not exists (select 1 from staff_services x where x.staff_id = s.id))
        order by s.created_at, s.name""", org, service_id)
    return [r["id"] for r in rows]


async def availability(db: Db, *, org: str, service: Service, tz: ZoneInfo, days: list[date],
                       time_from: time, time_to: time, not_before: datetime,
                       prefer: time | None = None, step_min: int = 30, limit: int = 3) -> list[Slot]:
    """Free start times for a service on the given local days, between time_from and time_to.

    With `prefer` ("a las 3") the slots closest to that time come first; otherwise they are
    spread over the window so the customer gets a real choice, not three adjacent half hours.
    """
    staff = await eligible_staff(db, org, service.id)
    if not staff or not days:
        return []
    hours: dict[int, list[tuple[time, time]]] = {}
    for weekday, opens, closes in await business_hours(db, org):
        hours.setdefault(weekday, []).append((opens, closes))
    span_from = datetime.combine(min(days), time.min, tz)
    span_to = datetime.combine(max(days) + timedelta(days=1), time.min, tz)
    busy: dict[str, list[tuple[datetime, datetime]]] = {s: [] for s in staff}
    for r in await db.fetch("""
            select staff_id::text, starts_at, ends_at from appointments
            where organization_id = $1::uuid and status <> 'cancelled' and staff_id = any($2::uuid[])
              and starts_at < $4 and ends_at > $3""", org, staff, span_from, span_to):
        busy[r["staff_id"]].append((r["starts_at"], r["ends_at"]))
    duration = timedelta(minutes=service.duration_minutes)
    free: list[Slot] = []
    for day in sorted(days):
        for opens, closes in hours.get(day.weekday(), []):
            start = _round_up(datetime.combine(day, max(opens, time_from), tz), step_min)
            day_close = datetime.combine(day, closes, tz)
            last_start = datetime.combine(day, min(time_to, closes), tz)
            while start < last_start and start + duration <= day_close:
                if start >= not_before:
                    who = next((s for s in staff if not _overlaps(busy[s], start, start + duration)), None)
                    if who:
                        free.append(Slot(start, start + duration, who))
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
            return abs((local - at).total_seconds()) + (local.date() - free[0].starts_at.date()).days * 86400
        return sorted(sorted(free, key=distance)[:limit], key=lambda s: s.starts_at)
    last = len(free) - 1
    picks = sorted({round(i * last / (limit - 1)) for i in range(limit)}) if limit > 1 else [0]
    return [free[i] for i in picks]


# ---- bookings -----------------------------------------------------------------------------

_APPT = """select a.id::text, a.service_id::text, sv.name as service_name, a.staff_id::text,
                  st.name as staff_name, a.starts_at, a.ends_at, a.status
           from appointments a join services sv on sv.id = a.service_id join staff st on st.id = a.staff_id"""


async def appointment_by_key(db: Db, org: str, idempotency_key: str) -> Appointment | None:
    row = await db.fetchrow(_APPT + " where a.organization_id = $1::uuid and a.idempotency_key = $2",
                            org, idempotency_key)
    return Appointment(**dict(row)) if row else None


async def book(pool: asyncpg.Pool, *, org: str, contact_id: str, service: Service,
               starts_at: datetime, idempotency_key: str, preferred_staff: str | None = None,
               contact_name: str | None = None) -> Appointment | None:
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
                        org, contact_id, service.id, staff_id, starts_at, ends_at, idempotency_key)
                    if new_id is None:  # a concurrent redelivery of the same turn won, or no contact
                        return await appointment_by_key(conn, org, idempotency_key)
                    if contact_name:
                        await save_contact_name(conn, org, contact_id, contact_name)
                    await record_opt_in(conn, org, contact_id, source="booking")
            except asyncpg.ExclusionViolationError:
                continue  # this staff member was taken meanwhile; try the next one
            return await appointment_by_key(conn, org, idempotency_key)
    return None


async def list_appointments(db: Db, org: str, contact_id: str, *, since: datetime | None = None,
                            limit: int = 10) -> list[Appointment]:
    """The contact's appointments, upcoming first in time order when `since` is given."""
    if since is not None:
        rows = await db.fetch(_APPT + " where a.organization_id = $1::uuid and a.contact_id = $2::uuid"
                              " and a.status = 'confirmed' and a.starts_at >= $3 order by a.starts_at limit $4",
                              org, contact_id, since, limit)
    else:
        rows = await db.fetch(_APPT + " where a.organization_id = $1::uuid and a.contact_id = $2::uuid"
                              " order by a.starts_at desc limit $3", org, contact_id, limit)
    return [Appointment(**dict(r)) for r in rows]


async def cancel(db: Db, org: str, contact_id: str, appointment_id: str) -> Appointment | None:
    """Cancel the contact's own appointment (idempotent); None if it is not theirs."""
    await db.execute("update appointments set status = 'cancelled', updated_at = now() "
                     "where id = $3::uuid and organization_id = $1::uuid and contact_id = $2::uuid "
                     "and status = 'confirmed'", org, contact_id, appointment_id)
    row = await db.fetchrow(_APPT + " where a.id = $3::uuid and a.organization_id = $1::uuid "
                            "and a.contact_id = $2::uuid", org, contact_id, appointment_id)
    return Appointment(**dict(row)) if row and row["status"] == "cancelled" else None


class NotYours(LookupError):
    """The appointment does not exist for this organization and contact."""


async def reschedule(pool: asyncpg.Pool, *, org: str, contact_id: str, appointment_id: str,
                     starts_at: datetime, preferred_staff: str | None = None) -> Appointment | None:
    """Move the contact's appointment; None when the new time is taken for every staff member.

    Moving onto the time it already has is a no-op, so a retried turn is harmless.
    """
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "select service_id::text, staff_id::text, starts_at from appointments "
            "where id = $3::uuid and organization_id = $1::uuid and contact_id = $2::uuid "
            "and status = 'confirmed' for update", org, contact_id, appointment_id)
        if row is None:
            raise NotYours("esa cita no existe o no está activa")
        service = await get_service(conn, org, row["service_id"])
        if row["starts_at"] == starts_at:
            return await _appointment(conn, org, appointment_id)
        staff = await eligible_staff(conn, org, service.id)
        order = [s for s in (preferred_staff, row["staff_id"]) if s in staff]
        order += [s for s in staff if s not in order]
        for staff_id in order:
            try:
                async with conn.transaction():
                    await conn.execute(
                        "update appointments set starts_at = $2, ends_at = $3, staff_id = $4::uuid,"
                        " updated_at = now() where id = $1::uuid", appointment_id, starts_at,
                        starts_at + timedelta(minutes=service.duration_minutes), staff_id)
            except asyncpg.ExclusionViolationError:
                continue
            return await _appointment(conn, org, appointment_id)
    return None


async def _appointment(db: Db, org: str, appointment_id: str) -> Appointment:
    row = await db.fetchrow(_APPT + " where a.id = $2::uuid and a.organization_id = $1::uuid",
                            org, appointment_id)
    return Appointment(**dict(row))


# ---- contacts -----------------------------------------------------------------------------

async def contact_name(db: Db, org: str, contact_id: str) -> str | None:
    return await db.fetchval("select name from contacts where id = $2::uuid "
                             "and organization_id = $1::uuid", org, contact_id)


async def save_contact_name(db: Db, org: str, contact_id: str, name: str) -> None:
    await db.execute("update contacts set name = $3 where id = $2::uuid and organization_id = $1::uuid",
                     org, contact_id, name.strip()[:120])


async def record_opt_in(db: Db, org: str, contact_id: str, *, source: str,
                        detail: str | None = None) -> None:
    """WhatsApp opt-in: the customer asked us to book, so reminders about it are welcome."""
    await db.execute(
        "insert into contact_authorizations (organization_id, contact_id, channel, status, source, detail) "
        "select $1::uuid, c.id, 'whatsapp', 'opted_in', $3, $4 from contacts c "
        "where c.id = $2::uuid and c.organization_id = $1::uuid "
        "on conflict (contact_id, channel) do update set status = 'opted_in', source = excluded.source,"
        " detail = excluded.detail, updated_at = now()", org, contact_id, source, detail)


async def search_messages(db: Db, org: str, identity_id: str, query: str,
                          limit: int = 5) -> list[tuple[str, str, datetime]]:
    """The chat's earlier messages that match a query: (direction, text, when), newest first."""
    rows = await db.fetch(f"""
        select direction, coalesce(processed_text, message, '') as text, created_at
        from chat_messages
        where organization_id = $1::uuid and chat_identity_id = $3::uuid
          and to_tsvector('spanish', immutable_unaccent(coalesce(processed_text, message, '')))
              @@ {_TSQUERY}
        order by created_at desc limit $4""", org, query, identity_id, limit)
    return [(r["direction"], r["text"], r["created_at"]) for r in rows]


def utc(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc)
