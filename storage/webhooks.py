"""Outgoing webhooks for the CRM: the endpoints, the events, their ids and their signature.

An event is emitted once per real change: its id is derived from what changed (the appointment
and, for a move, the turn that moved it; the pause a take-over started or a hand-back ended), and
one script sets `{org}:webhook-emitted:{id}` and adds the entry together, so a replayed turn or a
retried request queues nothing new. consumers/webhooks.py delivers the entries, signed, to each
of the organization's endpoints. docs/operator-api.md ("Webhooks for the CRM") is the contract.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

import redis.asyncio as aioredis

from storage import keys, streams
from storage.db import Db, returned_row
from storage.events import WebhookEvent, encode
from storage.keys import Stream

EventType = Literal[
    "appointment.booked",
    "appointment.moved",
    "appointment.cancelled",
    "appointment.confirmed",
    "chat.escalated",
    "chat.taken_over",
    "chat.handed_back",
]
EVENT_TYPES: tuple[str, ...] = EventType.__args__  # type: ignore[attr-defined]

SIGNATURE_HEADER = "X-Skytide-Signature"  # "sha256=" + hex HMAC-SHA256(secret, f"{ts}.{body}")
TIMESTAMP_HEADER = "X-Skytide-Timestamp"  # Unix seconds when this attempt was signed
EVENT_ID_HEADER = "X-Skytide-Event-Id"
EVENT_TYPE_HEADER = "X-Skytide-Event"
TOLERANCE_S = 300  # what docs/operator-api.md tells receivers to accept (clock skew + transit)
EMITTED_TTL_S = 7 * 24 * 3600  # an event replayed within a week is recognised and not re-queued
DELIVERED_TTL_S = 7 * 24 * 3600
_NAMESPACE = uuid.UUID("6f1e7a52-3c1b-4f0e-9a7e-5b2f0d6c4e21")  # event ids: uuid5 in this space


class BadEndpoint(ValueError):
    """The URL cannot be a webhook endpoint."""


@dataclass(frozen=True)
class Endpoint:
    id: str
    org: str
    url: str
    secret: str
    created_at: datetime
    removed_at: datetime | None = None


# ---- endpoints -----------------------------------------------------------------------------


async def add_endpoint(db: Db, org: str, url: str) -> Endpoint:
    """A new endpoint with a fresh secret (shown once by `skytide webhook add`)."""
    url = url.strip()
    if not url.startswith(("https://", "http://")) or len(url) > 2000:
        raise BadEndpoint(f"{url!r} is not an http(s) URL")
    secret = "whsec_" + secrets.token_urlsafe(32)
    row = await db.fetchrow(
        "insert into webhook_endpoints (organization_id, url, secret) values ($1::uuid, $2, $3) "
        "returning id::text, organization_id::text as org, url, secret, created_at, removed_at",
        org,
        url,
        secret,
    )
    return Endpoint(**dict(returned_row(row)))


async def list_endpoints(db: Db, org: str, *, include_removed: bool = False) -> list[Endpoint]:
    rows = await db.fetch(
        "select id::text, organization_id::text as org, url, secret, created_at, removed_at "
        "from webhook_endpoints where organization_id = $1::uuid "
        "and ($2 or removed_at is null) order by created_at",
        org,
        include_removed,
    )
    return [Endpoint(**dict(r)) for r in rows]


async def remove_endpoint(
    db: Db, org: str, *, url: str | None = None, endpoint_id: str | None = None
) -> int:
    """Stop delivering to an endpoint (by URL or id); how many were removed."""
    result = await db.execute(
        "update webhook_endpoints set removed_at = now() where organization_id = $1::uuid "
        "and removed_at is null and (url = $2 or id::text = $3)",
        org,
        url,
        endpoint_id,
    )
    return int(result.split()[-1])


# ---- signing -------------------------------------------------------------------------------


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The X-Skytide-Signature value: HMAC-SHA256 over `timestamp + "." + body`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secret: str,
    timestamp: str,
    body: bytes,
    header: str,
    now_s: float,
    tolerance_s: int = TOLERANCE_S,
) -> bool:
    """What a receiver does (docs/operator-api.md has the same snippet)."""
    if not timestamp.isdigit() or abs(now_s - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(signature(secret, int(timestamp), body), header)


# ---- emitting ------------------------------------------------------------------------------

# Queue the event unless the same id was queued before, in one step.
# KEYS: emitted marker, stream. ARGV: ttl, type field, data field.
_EMIT = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) == false then return 0 end
redis.call('XADD', KEYS[2], '*', 'type', ARGV[2], 'data', ARGV[3])
return 1
"""


def event_id(org: str, event: str, key: str) -> str:
    """The same change (organization, type, what changed) always gets the same id."""
    return str(uuid.uuid5(_NAMESPACE, f"{org}|{event}|{key}"))


async def emit(
    redis: aioredis.Redis,
    db: Db,
    org: str,
    event: EventType,
    key: str,
    data: dict[str, Any],
    now_ms: int,
) -> bool:
    """Queue an event for the organization's endpoints; False when it was queued already, or
    when the organization has no endpoint (nothing is kept for an organization without a CRM)."""
    if not await db.fetchval(
        "select exists (select 1 from webhook_endpoints where "
        "organization_id = $1::uuid and removed_at is null)",
        org,
    ):
        return False
    created = datetime.fromtimestamp(now_ms / 1000, timezone.utc)
    entry = WebhookEvent(
        org=org,
        id=event_id(org, event, key),
        event=event,
        created_at=created.isoformat().replace("+00:00", "Z"),
        data=data,
    )
    fields = encode(entry)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.eval(
            _EMIT,
            2,
            keys.webhook_emitted(org, entry.id),
            keys.stream(org, Stream.WEBHOOKS),
            EMITTED_TTL_S,
            fields["type"],
            fields["data"],
        )
        streams.signal(pipe, org, Stream.WEBHOOKS)
        added, _ = await pipe.execute()
    return bool(added)


_APPOINTMENT = """
select a.id::text, a.starts_at, a.ends_at, a.status, sv.name as service, st.name as staff,
       c.phone, c.name as contact_name
from appointments a join services sv on sv.id = a.service_id join staff st on st.id = a.staff_id
left join contacts c on c.id = a.contact_id
where a.id = $2::uuid and a.organization_id = $1::uuid"""

Change = Literal["booked", "rescheduled", "cancelled", "confirmed"]
_APPOINTMENT_EVENTS: dict[str, EventType] = {
    "booked": "appointment.booked",
    "rescheduled": "appointment.moved",
    "cancelled": "appointment.cancelled",
    "confirmed": "appointment.confirmed",
}


async def appointment_changed(
    redis: aioredis.Redis,
    db: Db,
    org: str,
    appointment_id: str,
    change: Change,
    *,
    turn_id: str,
    now_ms: int,
) -> bool:
    """appointment.booked|moved|cancelled|confirmed for a change the bot just made.

    The id: the appointment for a booking, a cancel and a confirmation (each happens once to an
    appointment); the appointment, its new start and the turn for a move (it can move again).
    A replayed turn gets its appointment back by its idempotency key, so the same id.
    """
    row = await db.fetchrow(_APPOINTMENT, org, appointment_id)
    if row is None:
        return False
    starts_ms = int(row["starts_at"].timestamp() * 1000)
    key = f"{appointment_id}:{starts_ms}:{turn_id}" if change == "rescheduled" else appointment_id
    data = {
        "appointment_id": row["id"],
        "service": row["service"],
        "staff": row["staff"],
        "starts_at": _iso(row["starts_at"]),
        "ends_at": _iso(row["ends_at"]),
        "status": row["status"],
        # None for an erased patient's appointment (it stays, without its contact).
        "contact": {"phone": row["phone"], "name": row["contact_name"]} if row["phone"] else None,
    }
    return await emit(redis, db, org, _APPOINTMENT_EVENTS[change], key, data, now_ms)


async def chat_event(
    redis: aioredis.Redis,
    db: Db,
    org: str,
    event: EventType,
    *,
    phone: str,
    version: str,
    by: str | None,
    reason: str | None = None,
    now_ms: int,
) -> bool:
    """chat.escalated|taken_over|handed_back. `version` names the change: the escalation's
    idempotency key, or the pause (its start, in ms) a take-over began or a hand-back ended."""
    data: dict[str, Any] = {"phone": phone, "by": by}
    if reason:
        data["reason"] = reason
    return await emit(redis, db, org, event, f"{phone}:{version}", data, now_ms)


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


async def bot_switched(
    redis: aioredis.Redis,
    db: Db,
    org: str,
    phone: str,
    switch: Any,
    *,
    enabled: bool,
    by: str | None,
    reason: str | None,
    now_ms: int,
) -> bool:
    """chat.taken_over or chat.handed_back after chats.switch_bot, when it changed something."""
    if switch is None or not switch.changed:
        return False
    started = switch.pause_started_at
    version = str(int(started.timestamp() * 1000)) if started else "unknown"
    return await chat_event(
        redis,
        db,
        org,
        "chat.handed_back" if enabled else "chat.taken_over",
        phone=phone,
        version=version,
        by=by,
        reason=reason,
        now_ms=now_ms,
    )
