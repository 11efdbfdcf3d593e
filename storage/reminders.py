"""Confirmations and reminders of appointments, planned as scheduled jobs (storage/jobs.py).

After a booking, a move or a cancellation the appointment's jobs are planned anew: a
confirmation due at once, and (unless cancelled) one reminder per offset of the organization
(settings.reminder_offsets_h, 24 h and 2 h by default) whose time has not passed. A job re-reads
the appointment when it runs and does nothing for one that was cancelled or moved since.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import redis.asyncio as aioredis

from storage import jobs, keys, org_settings
from storage.catalog import Db

Change = Literal["booked", "rescheduled", "cancelled"]
BUTTONS = ("Confirmar", "Reprogramar", "Cancelar")


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


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


async def plan(redis: aioredis.Redis, db: Db, org: str, appointment_id: str, change: Change,
               now_ms: int, confirm: bool = True) -> list[str]:
    """Plan the appointment's confirmation (unless not `confirm`) and reminders anew; returns
    the job ids."""
    row = await db.fetchrow("select starts_at from appointments where id = $1::uuid "
                            "and organization_id = $2::uuid", appointment_id, org)
    if row is None:
        return []
    settings = await db.fetchval("select settings from organizations where id = $1::uuid", org) or {}
    starts_ms = _ms(row["starts_at"])
    await jobs.unplan_appointment(redis, org, appointment_id)
    base = {"appointment_id": appointment_id, "starts_ms": starts_ms}
    planned = [f"confirm:{appointment_id}:{change}:{starts_ms}"] if confirm else []
    if confirm:
        await jobs.plan(redis, org, planned[0], now_ms, {**base, "kind": "confirmation", "change": change},
                        appointment_id)
    if change != "cancelled":
        offsets = org_settings.reminder_offsets_h(settings)  # largest first
        for i, hours in enumerate(offsets):
            due = starts_ms - int(hours * 3_600_000)
            # A reminder is stale once the next one is due (a scheduler that was down sends the
            # latest only), and the last one once the appointment starts.
            stale_ms = starts_ms - int(offsets[i + 1] * 3_600_000) if i + 1 < len(offsets) else starts_ms
            if due > now_ms:
                job_id = f"remind:{appointment_id}:{hours:g}h:{starts_ms}"
                await jobs.plan(redis, org, job_id, due, {**base, "kind": "reminder", "offset_h": hours,
                                                          "stale_ms": stale_ms}, appointment_id)
                planned.append(job_id)
    return planned


async def plan_upcoming(redis: aioredis.Redis, db: Db, org: str, now_ms: int) -> int:
    """Reminders for the upcoming appointments that have none planned: those entered in the CRM
    or imported, not booked through the bot (`skytide reminders plan`). No confirmation."""
    rows = await db.fetch("select id::text from appointments where organization_id = $1::uuid "
                          "and status = 'confirmed' and starts_at > to_timestamp($2 / 1000.0)", org, now_ms)
    planned = 0
    for r in rows:
        if not await redis.exists(keys.appointment_jobs(org, r["id"])):
            planned += bool(await plan(redis, db, org, r["id"], "booked", now_ms, confirm=False))
    return planned


async def due_appointment(db: Db, org: str, appointment_id: str) -> Due | None:
    row = await db.fetchrow("""
        select a.id::text, a.status, a.starts_at, sv.name as service_name, st.name as staff_name,
               c.phone, c.id::text as contact_id,
               coalesce(ca.status = 'opted_out', false) as opted_out,
               ci.last_inbound_at, a.confirmed_by_contact_at
        from appointments a join services sv on sv.id = a.service_id join staff st on st.id = a.staff_id
        join contacts c on c.id = a.contact_id
        left join chat_identities ci on ci.contact_id = c.id and ci.organization_id = a.organization_id
        left join contact_authorizations ca on ca.contact_id = c.id and ca.channel = 'whatsapp'
        where a.id = $2::uuid and a.organization_id = $1::uuid""", org, appointment_id)
    return Due(**dict(row)) if row else None


async def confirm_attendance(db: Db, org: str, contact_id: str, appointment_id: str) -> bool:
    """The customer confirmed they will come (idempotent); False if not theirs or not active."""
    done = await db.fetchval(
        "update appointments set confirmed_by_contact_at = coalesce(confirmed_by_contact_at, now()),"
        " updated_at = now() where id = $3::uuid and organization_id = $1::uuid"
        " and contact_id = $2::uuid and status = 'confirmed' returning true",
        org, contact_id, appointment_id)
    return bool(done)


async def remember_reminded(redis: aioredis.Redis, org: str, phone: str, appointment_id: str,
                            ttl_s: int) -> None:
    await redis.set(keys.reminded(org, phone), appointment_id, ex=max(60, ttl_s))


async def reminded_appointment(redis: aioredis.Redis, org: str, phone: str) -> str | None:
    return await redis.get(keys.reminded(org, phone))


async def attendance(db: Db, since: datetime) -> list[tuple[str, str, int]]:
    """(org, outcome, count) of appointments since then whose attendance the CRM marked
    (completed, no_show), and of those the customer confirmed from a reminder."""
    rows = await db.fetch("""
        select organization_id::text as org, status as outcome, count(*) as n from appointments
        where starts_at >= $1 and status in ('completed', 'no_show') group by 1, 2
        union all
        select organization_id::text, 'confirmed_by_contact', count(*) from appointments
        where starts_at >= $1 and confirmed_by_contact_at is not null group by 1""", since)
    return [(r["org"], r["outcome"], r["n"]) for r in rows]
