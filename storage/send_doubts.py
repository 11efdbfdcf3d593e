"""Sends in doubt: requests that may have reached Gupshup without an answer saying so.

A row goes in doubt (`send_doubt_at`) when its request was written and then timed out, lost its
connection, got a 5xx or an unreadable answer, or its worker died. It leaves doubt in one of
three ways:
- evidence: a status event for the chat that no stored message claims names a Gupshup message
  sent after this one was queued (`adopt`): it is this send, which did arrive;
- a resend: the grace ended with no evidence (`decide` says "resend"), and the sender sends it
  once more, counting it;
- giving up: still in doubt SEND_DOUBT_MAX_S after it was queued; recorded as failed and listed
  by `skytide dlq unknown` (storage/outbound.unknown_outcomes).

Status events that match nothing while a send is still waiting for its answer are kept a while
in Redis (`remember_orphan`), so a send that goes in doubt later can still find its evidence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

import asyncpg
import redis.asyncio as aioredis

from storage import keys

# Statuses that come within seconds of a send, so they can name a send in doubt. A `read` (or
# `deleted`) can come days later, for any older message of the chat: never evidence.
EVIDENCE_STATUSES = ("enqueued", "sent", "delivered", "failed")
CLOCK_SKEW_S = 5.0  # Gupshup's event time against ours
ORPHANS_MAX = 32  # per chat: a handful is all a send in doubt can need


def gupshup_id(status: str, provider_id: str, gs_id: str | None) -> str | None:
    """The Gupshup messageId a status event names, if it names one (docs/gupshup.md 1.5):
    `gsId`, or `id` on `enqueued` and on a synchronous `failed`."""
    if status not in EVIDENCE_STATUSES:
        return None
    if gs_id:
        return gs_id
    return provider_id if status in ("enqueued", "failed") else None


async def mark_in_doubt(pool: asyncpg.Pool, org: str, row_id: str, reason: str) -> bool:
    """The request may have reached Gupshup: wait for evidence. False if it left doubt already
    (accepted or adopted meanwhile)."""
    marked = await pool.fetchval(
        "update chat_messages set send_doubt_at = now(), send_checked_at = null,"
        " error_reason = $3 where id = $2::uuid and organization_id = $1::uuid"
        " and provider_message_id is null and send_started_at is not null returning true",
        org,
        row_id,
        reason[:500],
    )
    return bool(marked)


Decision = Literal["resend", "wait", "given_up", "resolved"]


async def decide(
    pool: asyncpg.Pool, org: str, row_id: str, *, grace_s: float, max_s: float
) -> Decision:
    """What to do now with a send in doubt, decided and recorded atomically: "resend" makes the
    row sendable again (one more resend counted on it), so only one handler ever resends it."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "select send_doubt_at <= now() - make_interval(secs => $2) as due,"
            " created_at <= now() - make_interval(secs => $3) as too_old"
            " from chat_messages where id = $1::uuid and organization_id = $4::uuid"
            " and provider_message_id is null and send_doubt_at is not null"
            " and message_status <> 'failed' for update",
            row_id,
            grace_s,
            max_s,
            org,
        )
        if row is None:
            return "resolved"
        if not row["due"]:
            return "wait"
        if row["too_old"]:
            await conn.execute(
                "update chat_messages set message_status = 'failed', send_doubt_at = null,"
                " error_reason = 'outcome unknown: no status event named it and resending did'"
                " || ' not settle it within SEND_DOUBT_MAX_S; check with the customer',"
                " status_times = status_times || jsonb_build_object('failed', now())"
                " where id = $1::uuid",
                row_id,
            )
            return "given_up"
        await conn.execute(
            "update chat_messages set send_started_at = null, send_doubt_at = null,"
            " send_checked_at = null, send_resends = send_resends + 1, error_reason = null"
            " where id = $1::uuid",
            row_id,
        )
        return "resend"


async def due_for_check(
    pool: asyncpg.Pool, *, grace_s: float, stuck_s: float, limit: int = 100
) -> list[dict[str, Any]]:
    """The queued messages of sends that need a decision, taken for this checker (others skip
    them for a grace): in doubt past the grace, or on the wire for longer than any request can
    take (their worker died and their stream entry is gone)."""
    rows = await pool.fetch(
        "update chat_messages set send_checked_at = now() where id in ("
        " select id from chat_messages"
        " where send_started_at is not null and provider_message_id is null"
        " and direction = 'outbound' and message_status <> 'failed' and send_request is not null"
        " and (send_doubt_at <= now() - make_interval(secs => $1)"
        "   or (send_doubt_at is null and send_started_at <= now() - make_interval(secs => $2)))"
        " and (send_checked_at is null or send_checked_at <= now() - make_interval(secs => $1))"
        " order by send_started_at limit $3 for update skip locked)"
        " returning send_request",
        grace_s,
        stuck_s,
        limit,
    )
    return [row["send_request"] for row in rows]


@dataclass(frozen=True)
class Adopted:
    row_id: str
    gupshup_id: str
    request: dict[str, Any] | None  # the outbound message as queued (consumers/send_outcomes.py)


async def adopt(
    pool: asyncpg.Pool, *, org: str, phone: str, gupshup_message_id: str, at_ms: int
) -> Adopted | None:
    """Give the oldest send in doubt of this chat, queued before the event, the Gupshup id the
    event names: the evidence that it arrived. None if there is no such send (or the id is
    already another message's)."""
    try:
        row = await pool.fetchrow(
            "update chat_messages m set provider_message_id = $3, send_doubt_at = null,"
            " sent_at = coalesce(m.sent_at, now()), error_reason = null,"
            " artifacts = m.artifacts || jsonb_build_object('send_evidence', $3::text)"
            " where m.id = ("
            " select d.id from chat_messages d join chat_identities i on i.id = d.chat_identity_id"
            " where d.organization_id = $1::uuid and i.organization_id = $1::uuid and i.phone = $2"
            " and d.send_started_at is not null and d.provider_message_id is null"
            " and d.direction = 'outbound' and d.send_doubt_at is not null"
            " and d.created_at <= to_timestamp($4::double precision / 1000)"
            "   + make_interval(secs => $5)"
            " order by d.created_at limit 1 for update skip locked)"
            " returning m.id::text, m.send_request",
            org,
            phone,
            gupshup_message_id,
            at_ms,
            CLOCK_SKEW_S,
        )
    except asyncpg.UniqueViolationError:
        return None  # the id is another message's (its own answer came in meanwhile)
    return Adopted(row["id"], gupshup_message_id, row["send_request"]) if row else None


# ---- status events that matched nothing, kept for a send that goes in doubt later -----------


class OrphanStatus(TypedDict):
    """A status event kept in Redis as JSON (these fields of storage.events.StatusEvent, in
    this order: forget_orphans removes an item by its exact JSON)."""

    provider_id: str
    gs_id: str | None
    status: str
    at_ms: int
    code: int | None
    reason: str | None


async def remember_orphan(
    redis: aioredis.Redis, *, org: str, phone: str, event: OrphanStatus, ttl_s: float
) -> None:
    key = keys.orphan_statuses(org, phone)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.rpush(key, json.dumps(event, separators=(",", ":")))
        pipe.ltrim(key, -ORPHANS_MAX, -1)
        pipe.expire(key, max(1, int(ttl_s)))
        await pipe.execute()


async def orphans(redis: aioredis.Redis, org: str, phone: str) -> list[OrphanStatus]:
    """The chat's unmatched status events, oldest first."""
    items = await redis.lrange(keys.orphan_statuses(org, phone), 0, -1)
    found: list[OrphanStatus] = [json.loads(item) for item in items]
    return found


async def forget_orphans(
    redis: aioredis.Redis, org: str, phone: str, events: list[OrphanStatus]
) -> None:
    key = keys.orphan_statuses(org, phone)
    async with redis.pipeline(transaction=False) as pipe:
        for event in events:
            pipe.lrem(key, 1, json.dumps(event, separators=(",", ":")))
        await pipe.execute()
