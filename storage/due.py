"""Which organizations have something due: the index a worker reads instead of visiting every
tenant, so its work follows the traffic and an idle organization costs it nothing.

Two indexes share this one type and one protocol:

- `CHATS` (`skytide:due-orgs`, woken through `skytide:due-wake`): organizations with a chat due
  to become a turn, read by the batcher; an organization's source is `{org}:due`
  (storage/turns.py).
- `JOBS` (`skytide:jobs:orgs`): organizations with a scheduled job due, read by the scheduler;
  its sources are `{org}:jobs:due` and `{org}:jobs:running`, whose scores are lease ends: a job
  whose worker died comes due again then (storage/jobs.py).

An organization's due time is the earliest score over its sources.

The invariant: once a writer has finished, an organization with something in its sources is in
the index with a score no later than its due time. A score earlier than that is harmless: the
visit finds nothing due and puts the organization back at its real time.

Writers change the sources first, then signal (`ZADD LT`: adds, or moves earlier, never later).
A visitor takes the organization out, moves what it handles out of the due range (the batcher
flushes the chats, the scheduler leases the jobs), then puts it back at its due time read anew,
again with `ZADD LT`. A writer whose signal came before the take wrote its sources before the
put-back read them; a writer whose signal comes after the take adds the organization itself.
Nothing ever raises a score or removes an organization except the take, so no signal is lost.
Only a process dying between take and put-back drops an organization: `sweep` puts back every
organization with something in its sources, and each worker runs it now and then. (The take
removes the organization only if its score is still the one the visitor read, so a visitor that
read late does not take out what another one already put back, and then die.)

The index lives in keys of its own (not in a script with `{org}` keys), so it stays legal in a
Redis Cluster. Its keys are the ones earlier versions used, so an upgraded process reads what an
old one indexed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import redis.asyncio as aioredis

from storage import keys

WAKE_MAX = 64  # a handful of wake-ups is as good as thousands
SWEEP_CHUNK = 500
SWEEP_SLICE = 1000  # registered organizations a periodic sweep looks at (sweep_next)

# KEYS: index. ARGV: org, score the visitor read.
_TAKE = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) == tonumber(ARGV[2]) then redis.call('ZREM', KEYS[1], ARGV[1]) end
return 1
"""


@dataclass(frozen=True)
class DueIndex:
    key: str  # ZSET of organizations scored no later than their due time (ms)
    sources: Callable[[str], tuple[str, ...]]  # an organization's ZSETs scored by due time (ms)
    wake: str | None = None  # LIST pushed by every signal, for a visitor that blocks when idle

    def signal(self, pipe: aioredis.client.Pipeline, org: str, due_ms: int) -> None:
        """Queue, on a pipeline, the signal that `org` has something due at `due_ms` (or
        later); queue it after (or with) the write to its sources."""
        pipe.zadd(self.key, {org: due_ms}, lt=True)
        if self.wake is not None:
            pipe.lpush(self.wake, org)
            pipe.ltrim(self.wake, 0, WAKE_MAX - 1)

    async def signal_now(self, redis: aioredis.Redis, org: str, due_ms: int) -> None:
        async with redis.pipeline(transaction=False) as pipe:
            self.signal(pipe, org, due_ms)
            await pipe.execute()

    async def due(
        self, redis: aioredis.Redis, now_ms: int, limit: int = 200
    ) -> list[tuple[str, float]]:
        """Organizations due by now_ms, with the score each was read at (for `take`)."""
        found = await redis.zrangebyscore(
            self.key, "-inf", now_ms, start=0, num=limit, withscores=True
        )
        return cast(list[tuple[str, float]], found)

    def queue_take(self, pipe: aioredis.client.Pipeline, org: str, score: float) -> None:
        """Queue the take on a pipeline (the batcher reads the due chats in the same trip)."""
        pipe.eval(_TAKE, 1, self.key, org, repr(score))

    async def take(self, redis: aioredis.Redis, org: str, score: float) -> None:
        """Take the organization out of the index, unless a signal moved it since it was read."""
        await redis.eval(_TAKE, 1, self.key, org, repr(score))

    async def due_time(self, redis: aioredis.Redis, org: str) -> int | None:
        """The earliest score over the organization's sources; None when they are empty."""
        async with redis.pipeline(transaction=False) as pipe:
            for source in self.sources(org):
                pipe.zrange(source, 0, 0, withscores=True)
            firsts = await pipe.execute()
        scores = [int(first[0][1]) for first in firsts if first]
        return min(scores) if scores else None

    async def index_at(self, redis: aioredis.Redis, org: str, due_ms: int) -> None:
        """Index the organization at due_ms unless it is indexed earlier already."""
        await redis.zadd(self.key, {org: due_ms}, lt=True)

    async def put_back(self, redis: aioredis.Redis, org: str) -> int | None:
        """Put the organization back at its due time, if it has one; returns that time."""
        due_ms = await self.due_time(redis, org)
        if due_ms is not None:
            await self.index_at(redis, org, due_ms)
        return due_ms

    async def refresh(self, redis: aioredis.Redis, org: str, score: float) -> int | None:
        """Take and put back: the score read was stale (what was due is done)."""
        await self.take(redis, org, score)
        return await self.put_back(redis, org)

    async def reindex(self, redis: aioredis.Redis, org: str) -> int | None:
        """Index the organization at its due time after its sources lost entries (an erasure):
        a refresh at whatever score it has now."""
        score = await redis.zscore(self.key, org)
        if score is None:
            return await self.put_back(redis, org)
        return await self.refresh(redis, org, score)

    async def next_due_ms(self, redis: aioredis.Redis) -> int | None:
        first = await redis.zrange(self.key, 0, 0, withscores=True)
        return int(first[0][1]) if first else None

    async def wait(self, redis: aioredis.Redis, timeout_s: float) -> None:
        """Wait until a writer signals or timeout_s passes (BLPOP takes fractional seconds)."""
        if self.wake is None:
            raise ValueError(f"the index {self.key} has no wake-up list")
        await redis.blpop([self.wake], timeout=max(0.01, timeout_s))

    async def sweep(self, redis: aioredis.Redis, orgs: list[str] | None = None) -> int:
        """Put back every organization (of `orgs`, or of the registry) that has something in
        its sources; returns how many have."""
        if orgs is None:
            orgs = sorted(cast(set[str], await redis.smembers(keys.ORG_REGISTRY)))
        found = 0
        for i in range(0, len(orgs), SWEEP_CHUNK):
            chunk = orgs[i : i + SWEEP_CHUNK]
            async with redis.pipeline(transaction=False) as pipe:
                for org in chunk:
                    for source in self.sources(org):
                        pipe.zrange(source, 0, 0, withscores=True)
                firsts = iter(await pipe.execute())
            due: dict[str, int] = {}
            for org in chunk:
                scores = [int(f[0][1]) for f in (next(firsts) for _ in self.sources(org)) if f]
                if scores:
                    due[org] = min(scores)
            if due:
                await redis.zadd(self.key, due, lt=True)
                found += len(due)
        return found

    async def sweep_next(self, redis: aioredis.Redis, cursor: int, count: int = SWEEP_SLICE) -> int:
        """`sweep` the next `count` or so registered organizations (SSCAN from `cursor`); returns
        the cursor for the next call (0 when the registry has been gone through). A periodic
        sweep then costs the same with 10,000 organizations as with 1,000 (a whole sweep of
        10,000 held the batcher for a third of a second) and reaches each one within
        len(registry) / count calls."""
        cursor, orgs = await redis.sscan(keys.ORG_REGISTRY, cursor, count=count)
        if orgs:
            await self.sweep(redis, sorted(cast(list[str], orgs)))
        return int(cursor)


CHATS = DueIndex(keys.DUE_ORGS, lambda org: (keys.due(org),), wake=keys.DUE_WAKE)
JOBS = DueIndex(keys.JOB_ORGS, lambda org: (keys.jobs_due(org), keys.jobs_running(org)))


# The chats index as storage/turns.py signals it (its scripts write `{org}:due`).
def signal(pipe: aioredis.client.Pipeline, org: str, due_ms: int) -> None:
    CHATS.signal(pipe, org, due_ms)


async def signal_now(redis: aioredis.Redis, org: str, due_ms: int) -> None:
    await CHATS.signal_now(redis, org, due_ms)


async def take_and_read(
    redis: aioredis.Redis, org: str, score: float, now_ms: int, limit: int = 100
) -> list[str]:
    """The batcher's take: out of the chats index, and its due chats read, in one round trip."""
    async with redis.pipeline(transaction=False) as pipe:
        CHATS.queue_take(pipe, org, score)
        pipe.zrangebyscore(keys.due(org), "-inf", now_ms, start=0, num=limit)
        _, chats = await pipe.execute()
    return list(chats)
