"""Outgoing chat_messages rows: written before the send, so a resend can be recognised."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from storage.chats import Identity
from storage.db import returned_row
from storage.events import Purpose


@dataclass(frozen=True)
class OutgoingRow:
    id: str
    provider_message_id: str | None
    send_started_at: datetime | None  # set while the request may be on the wire (or in doubt)
    message_status: str
    dropped: bool
    send_doubt_at: datetime | None = None  # the request may have arrived; evidence is awaited

    @property
    def may_send(self) -> bool:
        """Nothing accepted, nothing possibly on the wire, not dropped on purpose."""
        return not (self.provider_message_id or self.send_started_at or self.dropped)


async def claim(
    pool: asyncpg.Pool,
    *,
    org: str,
    identity: Identity,
    idempotency_key: str,
    text: str | None,
    turn_id: str | None,
    purpose: Purpose,
    author: str | None = None,
    artifacts: dict[str, Any] | None = None,
) -> OutgoingRow:
    """The row of this outgoing message, created on first sight (status pending), with who
    wrote it ("bot", "system", "staff:<name>") and what the inbox shows beside it."""
    row = await pool.fetchrow(
        "insert into chat_messages (organization_id, chat_identity_id, direction, message,"
        " processed_text, idempotency_key, turn_id, purpose, message_status, author, artifacts) "
        "values ($1::uuid, $2::uuid, 'outbound', $3, $3, $4, $5, $6, 'pending', $7, $8) "
        "on conflict (organization_id, idempotency_key) where idempotency_key is not null "
        "do update set idempotency_key = excluded.idempotency_key "
        "returning id::text, provider_message_id, send_started_at, message_status,"
        " artifacts ? 'dropped' as dropped, send_doubt_at",
        org,
        identity.id,
        text,
        idempotency_key,
        turn_id,
        purpose,
        author,
        artifacts or {},
    )
    return OutgoingRow(**dict(returned_row(row)))


async def mark_sending(pool: asyncpg.Pool, row_id: str, request: dict[str, Any]) -> bool:
    """Claim the right to send this row, right before the request is written (the connection is
    open): from now on the request may be on the wire. `request` is the outbound message, kept
    so the send can be re-queued while it is in doubt. False if another handler has it."""
    claimed = await pool.fetchval(
        "update chat_messages set send_started_at = now(), send_request = $2, send_doubt_at = null"
        " where id = $1::uuid and send_started_at is null and provider_message_id is null"
        " and not (artifacts ? 'dropped') returning true",
        row_id,
        request,
    )
    return bool(claimed)


async def clear_sending(pool: asyncpg.Pool, row_id: str) -> None:
    """The request surely did not reach Gupshup (a 429): sending again is safe."""
    await pool.execute(
        "update chat_messages set send_started_at = null, send_request = null where id = $1::uuid",
        row_id,
    )


_ACCEPTED = (
    "update chat_messages set provider_message_id = $2, sent_at = now(), send_started_at = null,"
    " send_doubt_at = null, send_checked_at = null, send_request = null,"
    " message_status = 'pending', error_code = null, error_reason = null where id = $1::uuid"
)


async def mark_accepted(pool: asyncpg.Pool, row_id: str, provider_message_id: str) -> None:
    try:
        await pool.execute(_ACCEPTED, row_id, provider_message_id)
    except asyncpg.UniqueViolationError:
        # Another send of this chat that was in doubt took this id from a status event (storage/
        # send_doubts.adopt) while this request was still waiting for its answer: the answer is
        # the better evidence. That send goes back to doubt, and this one keeps its id.
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "update chat_messages set provider_message_id = null, whatsapp_message_id = null,"
                " message_status = 'pending', send_started_at = coalesce(send_started_at, now()),"
                " send_doubt_at = now(), artifacts = artifacts - 'send_evidence'"
                " where organization_id = (select organization_id from chat_messages"
                "   where id = $1::uuid) and provider_message_id = $2 and id <> $1::uuid"
                " and artifacts ? 'send_evidence'",
                row_id,
                provider_message_id,
            )
            await conn.execute(_ACCEPTED, row_id, provider_message_id)


async def mark_failed(
    pool: asyncpg.Pool, row_id: str, *, code: int | None, reason: str, outcome_unknown: bool = False
) -> None:
    """Record a failed send. Unless the outcome is unknown, a replay may send it again."""
    await pool.execute(
        "update chat_messages set message_status = 'failed', error_code = $2, error_reason = $3,"
        " send_started_at = case when $4 then send_started_at else null end,"
        " status_times = status_times || jsonb_build_object('failed', now())"
        " where id = $1::uuid",
        row_id,
        code,
        reason[:500],
        outcome_unknown,
    )


async def mark_dropped(pool: asyncpg.Pool, row_id: str, reason: str) -> None:
    """Not sent on purpose (bot turned off, opted out, window closed): recorded, never sent."""
    await pool.execute(
        "update chat_messages set message_status = 'failed', error_reason = $2,"
        " artifacts = artifacts || jsonb_build_object('dropped', $2::text) where id = $1::uuid",
        row_id,
        reason,
    )


@dataclass(frozen=True)
class UnknownOutcome:
    org: str
    phone: str
    idempotency_key: str
    text: str | None
    send_started_at: datetime
    reason: str


async def unknown_outcomes(
    pool: asyncpg.Pool, *, org: str | None = None, limit: int = 1000
) -> list[UnknownOutcome]:
    """Outgoing messages whose send stayed in doubt past SEND_DOUBT_MAX_S (no status event named
    them and resending did not settle it): given up on by the sender, so a person decides. Sends
    still in doubt are resolved on their own (storage/send_doubts.py) and are not listed."""
    rows = await pool.fetch(
        "select m.organization_id::text as org, i.phone, m.idempotency_key, m.message as text,"
        " m.send_started_at, coalesce(m.error_reason, '') as reason"
        " from chat_messages m join chat_identities i on i.id = m.chat_identity_id"
        " where m.direction = 'outbound' and m.message_status = 'failed'"
        " and m.send_started_at is not null and m.provider_message_id is null"
        " and ($1::uuid is null or m.organization_id = $1::uuid)"
        " order by m.send_started_at limit $2",
        org,
        limit,
    )
    return [UnknownOutcome(**dict(row)) for row in rows]
