"""`skytide contact export`: every row and Redis value about one person, as one JSON document
(`"format": "skytide-contact-export/1"`; docs/operations.md says what each part holds)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis

from storage import keys
from storage.db import Db
from storage.privacy import Person, redis_state
from storage.redis_client import text

FORMAT = "skytide-contact-export/1"


async def export(db: Db, redis: aioredis.Redis, person: Person, *, now: datetime) -> dict[str, Any]:
    """Every row and Redis value about the person, as a JSON-ready document."""
    org = person.org
    q = {
        "contacts": (
            "select * from contacts where organization_id = $1::uuid and id = any($2::uuid[])",
            person.contact_ids,
        ),
        "chat_identities": (
            "select * from chat_identities where organization_id = $1::uuid"
            " and id = any($2::uuid[])",
            person.identity_ids,
        ),
        "chat_messages": (
            "select * from chat_messages where organization_id = $1::uuid"
            " and chat_identity_id = any($2::uuid[]) order by coalesce(sent_at, created_at)",
            person.identity_ids,
        ),
        "appointments": (
            "select a.*, s.name as service_name, st.name as staff_name from appointments a"
            " join services s on s.id = a.service_id join staff st on st.id = a.staff_id"
            " where a.organization_id = $1::uuid and a.contact_id = any($2::uuid[])"
            " order by a.starts_at",
            person.contact_ids,
        ),
        "contact_authorizations": (
            "select * from contact_authorizations where organization_id = $1::uuid"
            " and contact_id = any($2::uuid[])",
            person.contact_ids,
        ),
        "thread_summaries": (
            "select * from thread_summaries where organization_id = $1::uuid"
            " and chat_identity_id = any($2::uuid[])",
            person.identity_ids,
        ),
    }
    postgres = {
        name: [_jsonable(dict(r)) for r in await db.fetch(sql, org, ids)]
        for name, (sql, ids) in q.items()
    }
    media = [
        {
            "message_id": m["id"],
            "path": m["media_url"],
            "type": m["media_type"],
            "mime_type": m["media_mime_type"],
            "size_bytes": m["media_size_bytes"],
            "sha256": m["media_sha256"],
        }
        for m in postgres["chat_messages"]
        if m.get("media_url")
    ]
    state = await redis_state(redis, person)
    entries = {}
    for stream, ids in state.entries.items():
        entries[stream] = [
            {"id": i, "fields": (await redis.xrange(stream, min=i, max=i) or [(i, {})])[0][1]}
            for i in ids
        ]
    job_data = await redis.hmget(keys.jobs_data(org), state.job_ids) if state.job_ids else []
    return {
        "format": FORMAT,
        "organization": org,
        "phone": person.phone,
        "exported_at": now.isoformat(),
        "found": person.found,
        "postgres": postgres,
        "media": media,
        "redis": {
            "keys": {key: _jsonable(await _dump(redis, key)) for key in state.keys},
            "due": state.due_members,
            "held_slots": state.hold_members,
            "scheduled_jobs": [
                {"id": j, "data": json.loads(d) if d else None}
                for j, d in zip(state.job_ids, job_data)
            ],
            "stream_entries": {s: v for s, v in entries.items() if s != keys.dead_letters(org)},
            "dead_letters": entries.get(keys.dead_letters(org), []),
        },
    }


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str, ensure_ascii=False))


async def _dump(redis: aioredis.Redis, key: str) -> dict[str, Any]:
    kind = text(await redis.type(key))
    ttl_ms = await redis.pttl(key)
    if kind == "string":
        raw = await redis.get(key)
        try:
            value: Any = json.loads(raw) if raw is not None else None
        except ValueError:
            value = raw
    elif kind == "list":
        value = await redis.lrange(key, 0, -1)
    elif kind == "hash":
        value = await redis.hgetall(key)
    elif kind == "set":
        value = sorted(await redis.smembers(key))
    elif kind == "zset":
        value = await redis.zrange(key, 0, -1, withscores=True)
    elif kind == "ReJSON-RL":
        # The ignore: redis-py leaves the asyncio client's execute_command unannotated.
        document = await redis.execute_command("JSON.GET", key, "$")  # type: ignore[no-untyped-call]
        value = json.loads(document)
    elif kind == "stream":
        value = await redis.xrange(key)
    else:
        value = f"<{kind}>"
    return {"type": kind, "ttl_ms": ttl_ms if ttl_ms >= 0 else None, "value": value}
