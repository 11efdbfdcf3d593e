"""Confirmations and reminders of appointments, planned as scheduled jobs (storage/jobs.py).

After a booking, a move or a cancellation the appointment's jobs are planned anew: a
confirmation due at once, and (unless cancelled) one reminder per offset of the organization
(settings.reminder_offsets_h, 24 h and 2 h by default) whose time has not passed. A job re-reads
the appointment when it runs and does nothing for one that was cancelled or moved since.

The jobs live in Redis, the appointments in PostgreSQL, which is the truth: `reconcile` plans
the reminders of every upcoming appointment that has none planned (Redis restarted empty, or the
appointment was entered in the CRM), and the scheduler runs it on start, when Redis lost its
marker, and periodically. A reminder is never sent twice: one that was sent is past due, or
named by its idempotency key in chat_messages, and the sender refuses a key it has seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis

from storage import jobs, keys, org_settings
from storage.db import Db
from storage.events import Change as Change  # re-exported: the tools name reminders.Change
from storage.events import ConfirmationJob, ReminderJob
from storage.redis_client import optional_text


@dataclass(frozen=True)
class Due:
    """What a job needs to know about its appointment when it runs."""

    id: str
    status: str
    starts_at: datetime
    service_name: str
    staff_name: str
    phone: str
    contact_id: str
    opted_out: bool
    last_inbound_at: datetime | None
    confirmed_by_contact_at: datetime | None
    language: str | None = None  # the chat's language (graph/language.py); None: the org's


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


async def plan(
    redis: aioredis.Redis,
    db: Db,
    org: str,
    appointment_id: str,
    change: Change,
    now_ms: int,
    confirm: bool = True,
) -> list[str]:
    """Plan the appointment's confirmation (unless not `confirm`) and reminders anew; returns
    the job ids."""
    row = await db.fetchrow(
        "select starts_at from appointments where id = $1::uuid and organization_id = $2::uuid",
        appointment_id,
        org,
    )
    if row is None:
        return []
    settings = (
        await db.fetchval("select settings from organizations where id = $1::uuid", org) or {}
    )
    starts_ms = _ms(row["starts_at"])
    await jobs.unplan_appointment(redis, org, appointment_id)
    planned = [f"confirm:{appointment_id}:{change}:{starts_ms}"] if confirm else []
    if confirm:
        confirmation = ConfirmationJob(
            appointment_id=appointment_id, starts_ms=starts_ms, change=change
        )
        await jobs.plan(redis, org, planned[0], now_ms, confirmation)
    if change != "cancelled":
        for job_id, due, data in reminder_jobs(appointment_id, starts_ms, settings):
            if due > now_ms:
                await jobs.plan(redis, org, job_id, due, data)
                planned.append(job_id)
    return planned


def reminder_jobs(
    appointment_id: str, starts_ms: int, settings: dict[str, Any]
) -> list[tuple[str, int, ReminderJob]]:
    """(job id, due ms, data) of each reminder of an appointment, whatever its time."""
    offsets = org_settings.reminder_offsets_h(settings)  # largest first
    out: list[tuple[str, int, ReminderJob]] = []
    for i, hours in enumerate(offsets):
        # A reminder is stale once the next one is due (a scheduler that was down sends the
        # latest only), and the last one once the appointment starts.
        stale_ms = (
            starts_ms - int(offsets[i + 1] * 3_600_000) if i + 1 < len(offsets) else starts_ms
        )
        out.append(
            (
                f"remind:{appointment_id}:{hours:g}h:{starts_ms}",
                starts_ms - int(hours * 3_600_000),
                ReminderJob(
                    appointment_id=appointment_id,
                    starts_ms=starts_ms,
                    offset_h=hours,
                    stale_ms=stale_ms,
                ),
            )
        )
    return out


_UPCOMING = """
select a.organization_id::text as org, a.id::text, a.starts_at,
       greatest(a.created_at, a.updated_at) as touched_at, o.settings
from appointments a join organizations o on o.id = a.organization_id
where a.status = 'confirmed' and a.starts_at > to_timestamp($1 / 1000.0)
  and ($2::uuid is null or a.organization_id = $2::uuid)
order by a.organization_id, a.starts_at"""


async def reconcile(redis: aioredis.Redis, db: Db, now_ms: int, org: str | None = None) -> int:
    """Plan the reminders of every upcoming confirmed appointment (of one organization, or of
    all) that has no job planned in Redis; returns how many appointments got some. Idempotent.

    Beside the reminders still to come, one already due but not yet stale is planned (Redis was
    empty when it came due) unless it was sent (its key is in chat_messages) or the appointment
    was booked or changed after it came due: a booking never gets a reminder whose time had
    passed (plan() above). No confirmations: they are due at once, so Redis loses one only in
    the second after a booking, and the table cannot tell a bot's booking from the CRM's.
    """
    rows = await db.fetch(_UPCOMING, now_ms, org)
    async with redis.pipeline(transaction=False) as p:
        for row in rows:
            p.exists(keys.appointment_jobs(row["org"], row["id"]))
        planned_already = await p.execute() if rows else []
    count = 0
    for row, exists in zip(rows, planned_already):
        if exists:
            continue
        planned = 0
        for job_id, due, data in reminder_jobs(
            row["id"], _ms(row["starts_at"]), row["settings"] or {}
        ):
            if due <= now_ms and not (
                now_ms < data.stale_after_ms
                and _ms(row["touched_at"]) < due
                and not await _sent(db, row["org"], job_id)
            ):
                continue
            await jobs.plan(redis, row["org"], job_id, due, data)
            planned += 1
        count += bool(planned)
    return count


async def organization_ids(db: Db) -> list[str]:
    """Every organization, active or not: any may have jobs planned (the jobs index's sweep)."""
    return [row["id"] for row in await db.fetch("select id::text from organizations")]


async def _sent(db: Db, org: str, job_id: str) -> bool:
    """The job's message reached the sender (scheduler.py keys it `job:<id>`)."""
    return bool(
        await db.fetchval(
            "select true from chat_messages where organization_id = $1::uuid"
            " and idempotency_key = $2",
            org,
            f"job:{job_id}",
        )
    )


async def plan_upcoming(redis: aioredis.Redis, db: Db, org: str, now_ms: int) -> int:
    """Reminders for one organization's upcoming appointments that have none planned: those
    entered in the CRM or imported (`skytide reminders plan`; the scheduler also does it on
    its own, see reconcile)."""
    return await reconcile(redis, db, now_ms, org)


async def due_appointment(db: Db, org: str, appointment_id: str) -> Due | None:
    row = await db.fetchrow(
        """
        select a.id::text, a.status, a.starts_at, sv.name as service_name, st.name as staff_name,
               c.phone, c.id::text as contact_id,
               coalesce(ca.status = 'opted_out', false) as opted_out,
               ci.last_inbound_at, a.confirmed_by_contact_at, ci.language
        from appointments a join services sv on sv.id = a.service_id join staff st on st.id = a.staff_id
        join contacts c on c.id = a.contact_id
        left join chat_identities ci on ci.contact_id = c.id and ci.organization_id = a.organization_id
        left join contact_authorizations ca on ca.contact_id = c.id and ca.channel = 'whatsapp'
        where a.id = $2::uuid and a.organization_id = $1::uuid""",
        org,
        appointment_id,
    )
    return Due(**dict(row)) if row else None


async def confirm_attendance(db: Db, org: str, contact_id: str, appointment_id: str) -> bool:
    """The customer confirmed they will come (idempotent); False if not theirs or not active."""
    done = await db.fetchval(
        "update appointments set confirmed_by_contact_at = coalesce(confirmed_by_contact_at, now()),"
        " updated_at = now() where id = $3::uuid and organization_id = $1::uuid"
        " and contact_id = $2::uuid and status = 'confirmed' returning true",
        org,
        contact_id,
        appointment_id,
    )
    return bool(done)


async def remember_reminded(
    redis: aioredis.Redis, org: str, phone: str, appointment_id: str, ttl_s: int
) -> None:
    await redis.set(keys.reminded(org, phone), appointment_id, ex=max(60, ttl_s))


async def reminded_appointment(redis: aioredis.Redis, org: str, phone: str) -> str | None:
    return optional_text(await redis.get(keys.reminded(org, phone)))


async def attendance(db: Db, since: datetime) -> list[tuple[str, str, int]]:
    """(org, outcome, count) of appointments since then whose attendance the CRM marked
    (completed, no_show), and of those the customer confirmed from a reminder."""
    rows = await db.fetch(
        """
        select organization_id::text as org, status as outcome, count(*) as n from appointments
        where starts_at >= $1 and status in ('completed', 'no_show') group by 1, 2
        union all
        select organization_id::text, 'confirmed_by_contact', count(*) from appointments
        where starts_at >= $1 and confirmed_by_contact_at is not null group by 1""",
        since,
    )
    return [(r["org"], r["outcome"], r["n"]) for r in rows]
