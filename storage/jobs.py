"""Scheduled jobs on Redis: due jobs in a sorted set per organization, claimed atomically by
any worker, acknowledged after their effect.

A claim moves a due job to the running set with a lease; a worker killed mid-job leaves it
there, and once the lease ends the next claim moves it back to due, so another worker runs it.
Effects are idempotent (an outgoing message carries the job's idempotency key), so a job that
ran twice because its worker died after the effect still shows once to a person.
Organizations with jobs are indexed by their next due time (storage/due.py, `due.JOBS`), so an
idle tenant costs nothing per tick. A job's data is a `ScheduledJob` (storage/events.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import cast

import redis.asyncio as aioredis

from storage import due, keys
from storage.events import BadEvent, ScheduledJob, decode_job, encode_job


@dataclass(frozen=True)
class Job:
    id: str
    due_ms: int
    # None when the stored data decodes to no job: the scheduler counts it as a failure of the
    # job itself, so it is dropped after MAX_DELIVERIES tries like any job that keeps failing.
    data: ScheduledJob | None

    @property
    def kind(self) -> str:
        return self.data.kind if self.data is not None else "?"


class JobOutcome(StrEnum):
    """What running a job came to (the `outcome` label of skytide_scheduled_jobs_total)."""

    SENT = "sent"
    SKIPPED_CANCELLED = "skipped_cancelled"
    SKIPPED_MOVED = "skipped_moved"
    SKIPPED_STALE = "skipped_stale"
    SKIPPED_OPTED_OUT = "skipped_opted_out"
    SKIPPED_QUIET = "skipped_quiet"  # in quiet hours that last until the appointment
    POSTPONED_QUIET = "postponed_quiet"  # in quiet hours: runs again at their end
    # It raised: retried after its lease, dropped after MAX_DELIVERIES failures of its own; never
    # dropped for a dependency that is down.
    FAILED = "failed"
    DROPPED_FAILING = "dropped_failing"
    WAITING_DEPENDENCY = "waiting_dependency"


@dataclass(frozen=True)
class Postponed:
    """Not now: the job runs again at `until_ms` (quiet hours)."""

    until_ms: int


def _decoded(raw: str | None) -> ScheduledJob | None:
    try:
        return decode_job(raw or "{}")
    except BadEvent:
        return None


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


async def plan(
    redis: aioredis.Redis,
    org: str,
    job_id: str,
    due_ms: int,
    data: ScheduledJob,
) -> None:
    """Plan (or re-plan: same id, new time and data) a job."""
    async with redis.pipeline(transaction=True) as p:
        p.hset(keys.jobs_data(org), job_id, encode_job(data))
        p.zrem(keys.jobs_running(org), job_id)
        p.zadd(keys.jobs_due(org), {job_id: due_ms})
        p.sadd(keys.appointment_jobs(org, data.appointment_id), job_id)
        await p.execute()
    await due.JOBS.signal_now(redis, org, due_ms)


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
        Job(raw[i], int(float(raw[i + 1])), _decoded(raw[i + 2])) for i in range(0, len(raw), 3)
    ]


async def ack(redis: aioredis.Redis, org: str, job: Job) -> None:
    """The job's effect is done: forget it."""
    async with redis.pipeline(transaction=True) as p:
        p.zrem(keys.jobs_running(org), job.id)
        p.hdel(keys.jobs_data(org), job.id)
        p.hdel(keys.jobs_failures(org), job.id)
        if job.data is not None:
            p.srem(keys.appointment_jobs(org, job.data.appointment_id), job.id)
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
    await due.JOBS.signal_now(redis, org, due_ms)  # later than its lease end: a no-op, said anyway


async def settle(
    redis: aioredis.Redis, org: str, job: Job, outcome: JobOutcome | Postponed
) -> JobOutcome:
    """The job ran: postponed, or done (acknowledged) whatever else it came to."""
    if isinstance(outcome, Postponed):
        await postpone(redis, org, job, outcome.until_ms)
        return JobOutcome.POSTPONED_QUIET
    await ack(redis, org, job)
    return outcome


async def pending(redis: aioredis.Redis, org: str) -> list[Job]:
    """Every planned job, due or running (for tests and `skytide` diagnostics)."""
    due_ids = await redis.zrange(keys.jobs_due(org), 0, -1, withscores=True)
    running_ids = await redis.zrange(keys.jobs_running(org), 0, -1, withscores=True)
    ids = cast(list[tuple[str, float]], due_ids) + cast(list[tuple[str, float]], running_ids)
    found = await redis.hmget(keys.jobs_data(org), [i for i, _ in ids]) if ids else []
    data = cast(list[str | None], found)
    return [Job(i, int(s), _decoded(d)) for (i, s), d in zip(ids, data)]
