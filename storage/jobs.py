"""Scheduled jobs on Redis: due jobs in a sorted set per organization, claimed atomically by
any worker, acknowledged after their effect.

A claim moves a due job to the running set with a lease; a worker killed mid-job leaves it
there, and once the lease ends the next claim moves it back to due, so another worker runs it.
Effects are idempotent (an outgoing message carries the job's idempotency key), so a job that
ran twice because its worker died after the effect still shows once to a person.
Organizations with jobs are indexed by their next due time (JOB_ORGS), so an idle tenant costs
nothing per tick.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from storage import keys
from storage.redis_client import members, scored


@dataclass(frozen=True)
class Job:
    id: str
    due_ms: int
    data: dict[str, Any]


# KEYS: due, running, data. ARGV: now_ms, lease_ms, limit.
# Expired leases go back to due first; then up to `limit` due jobs are leased. Returns
# [id, due_ms, json, ...].
_CLAIM = """
local now, lease, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZADD', KEYS[1], now, id)
end
local out = {}
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
for i = 1, #due, 2 do
  local id = due[i]
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZADD', KEYS[2], now + lease, id)
  table.insert(out, id)
  table.insert(out, due[i + 1])
  table.insert(out, redis.call('HGET', KEYS[3], id) or '{}')
end
return out
"""

# KEYS: due, running. Returns the earliest of the next due job and the next lease end, or false.
_NEXT = """
local a = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2]
local b = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')[2]
if a and b then return tostring(math.min(tonumber(a), tonumber(b))) end
return a or b or false
"""


async def plan(
    redis: aioredis.Redis,
    org: str,
    job_id: str,
    due_ms: int,
    data: dict[str, Any],
    appointment_id: str | None = None,
) -> None:
    """Plan (or re-plan: same id, new time and data) a job."""
    async with redis.pipeline(transaction=True) as p:
        p.hset(keys.jobs_data(org), job_id, json.dumps(data))
        p.zrem(keys.jobs_running(org), job_id)
        p.zadd(keys.jobs_due(org), {job_id: due_ms})
        if appointment_id:
            p.sadd(keys.appointment_jobs(org, appointment_id), job_id)
        await p.execute()
    await redis.zadd(keys.JOB_ORGS, {org: due_ms}, lt=True)  # LT: adds, or only moves earlier


async def unplan_appointment(redis: aioredis.Redis, org: str, appointment_id: str) -> int:
    """Drop every job planned for an appointment (cancelled, or about to be re-planned)."""
    index = keys.appointment_jobs(org, appointment_id)
    ids = list(await redis.smembers(index))
    if ids:
        async with redis.pipeline(transaction=True) as p:
            p.zrem(keys.jobs_due(org), *ids)
            p.zrem(keys.jobs_running(org), *ids)
            p.hdel(keys.jobs_data(org), *ids)
            p.delete(index)
            await p.execute()
    return len(ids)


async def claim(
    redis: aioredis.Redis, org: str, *, now_ms: int, lease_ms: int, limit: int
) -> list[Job]:
    raw = await redis.eval(
        _CLAIM,
        3,
        keys.jobs_due(org),
        keys.jobs_running(org),
        keys.jobs_data(org),
        now_ms,
        lease_ms,
        limit,
    )
    return [
        Job(raw[i], int(float(raw[i + 1])), json.loads(raw[i + 2])) for i in range(0, len(raw), 3)
    ]


async def ack(redis: aioredis.Redis, org: str, job: Job) -> None:
    """The job's effect is done: forget it."""
    async with redis.pipeline(transaction=True) as p:
        p.zrem(keys.jobs_running(org), job.id)
        p.hdel(keys.jobs_data(org), job.id)
        p.hdel(keys.jobs_failures(org), job.id)
        if job.data.get("appointment_id"):
            p.srem(keys.appointment_jobs(org, job.data["appointment_id"]), job.id)
        await p.execute()


async def failed(redis: aioredis.Redis, org: str, job: Job) -> int:
    """Count a failure of the job itself; returns how many so far (the lease brings it back)."""
    return int(await redis.hincrby(keys.jobs_failures(org), job.id, 1))


async def postpone(redis: aioredis.Redis, org: str, job: Job, due_ms: int) -> None:
    """Not now (quiet hours): back to due at a later time."""
    async with redis.pipeline(transaction=True) as p:
        p.zrem(keys.jobs_running(org), job.id)
        p.zadd(keys.jobs_due(org), {job.id: due_ms})
        await p.execute()


async def due_orgs(redis: aioredis.Redis, now_ms: int) -> list[str]:
    return members(await redis.zrangebyscore(keys.JOB_ORGS, "-inf", now_ms))


async def refresh_org(redis: aioredis.Redis, org: str) -> None:
    """Index the organization by its next due job or lease end; drop it when it has none."""
    for _ in range(3):  # a job planned meanwhile may have moved it earlier: settle on the minimum
        nxt = await redis.eval(_NEXT, 2, keys.jobs_due(org), keys.jobs_running(org))
        if nxt is None:
            await redis.zrem(keys.JOB_ORGS, org)
        else:
            await redis.zadd(keys.JOB_ORGS, {org: int(float(nxt))})
        if await redis.eval(_NEXT, 2, keys.jobs_due(org), keys.jobs_running(org)) == nxt:
            return


async def pending(redis: aioredis.Redis, org: str) -> list[Job]:
    """Every planned job, due or running (for tests and `skytide` diagnostics)."""
    ids = scored(await redis.zrange(keys.jobs_due(org), 0, -1, withscores=True))
    ids += scored(await redis.zrange(keys.jobs_running(org), 0, -1, withscores=True))
    data = await redis.hmget(keys.jobs_data(org), [i for i, _ in ids]) if ids else []
    return [Job(i, int(s), json.loads(d or "{}")) for (i, s), d in zip(ids, data)]
