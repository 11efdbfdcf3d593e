"""`skytide contact erase`: everything about one person in one organization deleted, or
anonymised where the clinic's books need the row.

- PostgreSQL: the contact, its chat identities, messages, summaries and consents are deleted.
  Appointments stay as anonymous remains (service, staff member, time, status, for the clinic's
  accounting and attendance figures) with no contact, no notes and no idempotency key; future
  confirmed ones are cancelled, so the slot is free again and no reminder goes out. Other rows
  that quote the phone (an advisor's notification about this customer) have it, and the
  person's name, replaced by ERASED.
- Media: every object the messages name, and (local store) whatever is left in the chat's folder.
- Redis: everything storage/privacy.py's `redis_state` finds.
- Memory: the workers' cached chat (storage/identity_cache.py), dropped through the change log.

Erasing twice is harmless; what the chat writes after an erasure is new data (erase again).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Awaitable, Callable

import asyncpg
import redis.asyncio as aioredis

from storage import due, keys
from storage.chats import CACHE as chat_cache
from storage.db import Conn
from storage.media_store import MediaStore, object_path
from storage.privacy import Person, RedisState, redis_state

ERASED = "[borrado]"


@dataclass
class Erased:
    phone: str
    found: bool
    postgres: dict[str, int] = field(default_factory=dict)
    media_files: int = 0
    redis: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def erase(
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    store: MediaStore,
    person: Person,
    *,
    now: datetime,
    forget_thread: Callable[[str], Awaitable[None]] | None = None,
) -> Erased:
    """Removes (or anonymises) everything about the person. Media and Redis go first: their names
    come from the rows, so a failure part-way leaves the rows to find them again next time."""
    result = Erased(phone=person.phone, found=person.found)
    result.media_files = await erase_media(store, person)
    state = await redis_state(redis, person)
    if forget_thread is not None:  # the library's own way first (its search index knows them)
        for thread in person.threads():
            await forget_thread(thread)
    result.redis = state.counts()
    await _erase_redis(redis, person.org, state)
    result.postgres = await _erase_rows(pool, person, now)
    # This process's cached chat goes now; every other process's, at its next read of the
    # change log the deleted rows' triggers wrote (storage/identity_cache.py).
    chat_cache.drop(person.org, person.phone)
    for row_id in [*person.identity_ids, *person.contact_ids]:
        chat_cache.drop_row(row_id)
    return result


async def erase_media(store: MediaStore, person: Person) -> int:
    paths = list(person.media_paths)
    for phone in person.phones:  # files no row names (a download cut short, a row rolled back)
        folder = object_path(person.org, phone, "x", "x").rsplit("/", 1)[0]
        paths += [p for p in await store.paths_under(folder) if p not in paths]
    return await store.delete(paths) if paths else 0


async def _erase_redis(redis: aioredis.Redis, org: str, state: RedisState) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        for key in state.keys:
            pipe.delete(key)
        if state.due_members:
            pipe.zrem(keys.due(org), *state.due_members)
        if state.hold_members:
            pipe.zrem(keys.holds(org), *state.hold_members)
        if state.job_ids:
            pipe.zrem(keys.jobs_due(org), *state.job_ids)
            pipe.zrem(keys.jobs_running(org), *state.job_ids)
            pipe.hdel(keys.jobs_data(org), *state.job_ids)
            pipe.hdel(keys.jobs_failures(org), *state.job_ids)
        # A deleted entry still pending in a group is dropped by the next claim (XAUTOCLAIM
        # reports it deleted; consumers/runtime.py acknowledges it); one being handled now
        # finishes, and what it writes is new data.
        for stream, ids in state.entries.items():
            for i in range(0, len(ids), 500):
                pipe.xdel(stream, *ids[i : i + 500])
        await pipe.execute()
    if state.job_ids:
        await due.JOBS.reindex(redis, org)


async def _erase_rows(pool: asyncpg.Pool, person: Person, now: datetime) -> dict[str, int]:
    org = person.org
    counts: dict[str, int] = {}
    async with pool.acquire() as conn, conn.transaction():

        async def run(name: str, sql: str, *args: Any) -> None:
            status = await conn.execute(sql, org, *args)
            counts[name] = counts.get(name, 0) + int(status.rsplit(" ", 1)[-1] or 0)

        await run(
            "appointments_cancelled",
            "update appointments set status = 'cancelled', updated_at = now()"
            " where organization_id = $1::uuid and contact_id = any($2::uuid[])"
            " and status = 'confirmed' and starts_at > $3",
            person.contact_ids,
            now,
        )
        await run(
            "appointments_anonymised",
            "update appointments set contact_id = null, notes = null, idempotency_key = null,"
            " updated_at = now() where organization_id = $1::uuid and contact_id = any($2::uuid[])",
            person.contact_ids,
        )
        await run(
            "thread_summaries",
            "delete from thread_summaries where organization_id = $1::uuid"
            " and chat_identity_id = any($2::uuid[])",
            person.identity_ids,
        )
        await run(
            "chat_messages",
            "delete from chat_messages where organization_id = $1::uuid"
            " and chat_identity_id = any($2::uuid[])",
            person.identity_ids,
        )
        await run(
            "contact_authorizations",
            "delete from contact_authorizations where"
            " organization_id = $1::uuid and contact_id = any($2::uuid[])",
            person.contact_ids,
        )
        await run(
            "chat_identities",
            "delete from chat_identities where organization_id = $1::uuid"
            " and (id = any($2::uuid[]) or contact_id = any($3::uuid[]))",
            person.identity_ids,
            person.contact_ids,
        )
        await run(
            "contacts",
            "delete from contacts where organization_id = $1::uuid and id = any($2::uuid[])",
            person.contact_ids,
        )
        counts["messages_redacted"] = await _redact_mentions(conn, person)
    return counts


async def _redact_mentions(conn: Conn, person: Person) -> int:
    """Other chats' messages that quote the phone (an advisor told about this customer): the
    phone, and there the person's name, become ERASED. A name alone proves nothing, so rows
    that only share a name are left alone."""
    rows = await conn.fetch(
        "select id::text, message, processed_text, error_reason, artifacts::text as artifacts"
        " from chat_messages where organization_id = $1::uuid and exists ("
        "  select 1 from unnest($2::text[]) p where message like '%' || p || '%'"
        "  or processed_text like '%' || p || '%' or error_reason like '%' || p || '%'"
        "  or artifacts::text like '%' || p || '%')",
        person.org,
        person.phones,
    )
    # Longest first, so "Ana María" goes before "Ana"; names JSON would have to escape stay out
    # of the jsonb column (replacing them there could break the document).
    needles = sorted(
        {*person.phones, *(n for n in person.names if len(n) >= 3)}, key=len, reverse=True
    )
    json_safe = [n for n in needles if json.dumps(n)[1:-1] == n]
    for r in rows:
        await conn.execute(
            "update chat_messages set message = $3, processed_text = $4, error_reason = $5,"
            " artifacts = $6::text::jsonb where organization_id = $1::uuid and id = $2::uuid",
            person.org,
            r["id"],
            _replace(r["message"], needles),
            _replace(r["processed_text"], needles),
            _replace(r["error_reason"], needles),
            _replace(r["artifacts"], json_safe),
        )
    return len(rows)


def _replace(text: str | None, needles: list[str]) -> str | None:
    if text is None:
        return None
    for needle in needles:
        text = text.replace(needle, ERASED)
    return text
