"""The chat's recent messages for the agent's prompt, and its running summary.

A per-chat Redis list (newest first, trimmed) is the fast path; PostgreSQL `chat_messages` is
the source of truth. A list rebuilt from PostgreSQL ends with a start marker, so a short list is
known to be the whole chat; a list without it and shorter than asked for may have lost older
entries (expiry, eviction, a flushed Redis) and is rebuilt.
"""

from __future__ import annotations

import json
from typing import Literal

import asyncpg
import redis.asyncio as aioredis

from ops import metrics
from storage import keys

# "staff": a person of the clinic wrote it (the operator API), so after a hand-back the bot
# knows what was promised in the clinic's name, and does not take it for its own words.
Role = Literal["user", "assistant", "staff"]
RECENT_TTL_S = 14 * 24 * 3600
MAX_ITEMS = 50


async def remember(
    redis: aioredis.Redis, org: str, chat: str, role: Role, text: str, max_items: int = MAX_ITEMS
) -> None:
    """Add a stored message (inbound or outbound) to the chat's recent list."""
    if not text or not text.strip():
        return
    key = keys.recent(org, chat)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.lpush(key, json.dumps([role, text], ensure_ascii=False))
        pipe.ltrim(key, 0, max_items - 1)
        pipe.expire(key, RECENT_TTL_S)
        await pipe.execute()


async def recent_messages(
    redis: aioredis.Redis, pool: asyncpg.Pool, org: str, chat: str, n: int
) -> list[tuple[Role, str]]:
    """The chat's last n messages, oldest first: Redis when it has them, else PostgreSQL."""
    if n <= 0:
        return []
    raw = await redis.lrange(keys.recent(org, chat), 0, n)
    items = [json.loads(r) for r in raw if r != keys.RECENT_START]
    if len(items) >= n or keys.RECENT_START in raw:
        metrics.recent_cache.labels("hit").inc()
        return [(role, text) for role, text in reversed(items[:n])]
    metrics.recent_cache.labels("miss").inc()
    rows = await pool.fetch(
        """
        select m.direction, coalesce(m.processed_text, m.message) as text,
               coalesce(m.author like 'staff:%', false) as by_staff
        from chat_messages m join chat_identities i on i.id = m.chat_identity_id
        where m.organization_id = $1::uuid and i.organization_id = $1::uuid and i.phone = $2
          and coalesce(m.processed_text, m.message, '') <> ''
          and not (m.direction = 'outbound' and m.artifacts ? 'dropped')
        order by m.created_at desc limit $3""",
        org,
        chat,
        MAX_ITEMS,
    )
    history = [
        (
            "user" if r["direction"] == "inbound" else "staff" if r["by_staff"] else "assistant",
            r["text"],
        )
        for r in rows
    ]
    await _rebuild(redis, org, chat, history, complete=len(rows) < MAX_ITEMS)
    return list(reversed(history[:n]))


async def _rebuild(
    redis: aioredis.Redis, org: str, chat: str, newest_first: list[tuple[str, str]], complete: bool
) -> None:
    key = keys.recent(org, chat)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(key)
        if newest_first:
            pipe.rpush(key, *[json.dumps(list(m), ensure_ascii=False) for m in newest_first])
        if complete:
            pipe.rpush(key, keys.RECENT_START)
        pipe.expire(key, RECENT_TTL_S)
        await pipe.execute()


async def load_summary(pool: asyncpg.Pool, org: str, identity_id: str) -> tuple[str, int]:
    """The chat's summary and how many turns it covers; ("", 0) before the first one. Read on
    every turn: the checkpoint that also holds it expires, the table does not."""
    row = await pool.fetchrow(
        "select summary_text, turns_covered from thread_summaries "
        "where organization_id = $1::uuid and chat_identity_id = $2::uuid",
        org,
        identity_id,
    )
    return (row["summary_text"], row["turns_covered"]) if row else ("", 0)


async def save_summary(
    pool: asyncpg.Pool, org: str, identity_id: str, summary: str, turns_covered: int
) -> None:
    await pool.execute(
        "insert into thread_summaries (organization_id, chat_identity_id, summary_text, turns_covered) "
        "select $1::uuid, i.id, $3, $4 from chat_identities i "
        "where i.id = $2::uuid and i.organization_id = $1::uuid "
        "on conflict (chat_identity_id) do update set summary_text = excluded.summary_text,"
        " turns_covered = excluded.turns_covered, updated_at = now()",
        org,
        identity_id,
        summary,
        turns_covered,
    )


async def quoted_text(pool: asyncpg.Pool, org: str, message_id: str) -> str | None:
    """The text of the message a reply quotes (ours or the customer's), by either of its ids."""
    quoted: str | None = await pool.fetchval(
        "select coalesce(processed_text, message) from chat_messages where organization_id = $1::uuid"
        " and (provider_message_id = $2 or whatsapp_message_id = $2) limit 1",
        org,
        message_id,
    )
    return quoted


def with_quote(text: str, quoted: str | None, max_chars: int = 300) -> str:
    """A reply that quotes a message reaches the model with what it quotes: "sí" alone means
    nothing; "sí (en respuesta a: «¿Te agendo el jueves a las 10?»)" does."""
    if not quoted or not quoted.strip():
        return text
    quoted = quoted.strip()
    quoted = quoted if len(quoted) <= max_chars else quoted[: max_chars - 1] + "…"
    return f"{text}\n(en respuesta a: «{quoted}»)"
