"""Which organizations have a chat due: the batcher's index, so its work follows the traffic.

Each organization's chats wait in `{org}:due` (storage/turns.py). Scanning every organization's
ZSET each tick made the batcher's work grow with the number of tenants, idle or not. Instead,
whoever makes a chat due also signals its organization here: `skytide:due-orgs` holds each
organization scored no later than its earliest due chat, and `skytide:due-wake` wakes a batcher
that waits with nothing due.

The invariant: after any writer finished, an organization with due chats is in the index with a
score no later than its earliest one. Writers signal after their script (`ZADD LT` lowers, never
raises); a batcher visiting an organization first takes it out of the index (only if the score is
still the one it read), flushes, and then puts it back with its next due time if any is left. A
writer that lands between the take and the put-back is either seen by the put-back or signals
after it. Only a process dying between take and put-back can drop an organization, so `sweep`
rebuilds the index from every organization now and then.

The index lives in its own keys (not in a script with `{org}` keys), so it stays legal in a
Redis Cluster.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from storage import keys
from storage.redis_client import members, scored, text_set

WAKE_MAX = 64  # a handful of wake-ups is as good as thousands

# KEYS: due_orgs. ARGV: org, score read by the batcher.
_TAKE = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) == tonumber(ARGV[2]) then redis.call('ZREM', KEYS[1], ARGV[1]) end
return 1
"""


def signal(pipe: aioredis.client.Pipeline, org: str, due_ms: int) -> None:
    """Queue, on a pipeline, the signal that `org` has a chat due at `due_ms` (or later)."""
    pipe.zadd(keys.DUE_ORGS, {org: due_ms}, lt=True)
    pipe.lpush(keys.DUE_WAKE, org)
    pipe.ltrim(keys.DUE_WAKE, 0, WAKE_MAX - 1)


async def signal_now(redis: aioredis.Redis, org: str, due_ms: int) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        signal(pipe, org, due_ms)
        await pipe.execute()


async def due_orgs(redis: aioredis.Redis, now_ms: int, limit: int = 200) -> list[tuple[str, float]]:
    """Organizations with a chat due by now_ms, with the score each was read at."""
    return scored(
        await redis.zrangebyscore(
            keys.DUE_ORGS, "-inf", now_ms, start=0, num=limit, withscores=True
        )
    )


async def take_and_read(
    redis: aioredis.Redis, org: str, score: float, now_ms: int, limit: int = 100
) -> list[str]:
    """Take the organization out of the index and read its due chats, in one round trip."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.eval(_TAKE, 1, keys.DUE_ORGS, org, repr(score))
        pipe.zrangebyscore(keys.due(org), "-inf", now_ms, start=0, num=limit)
        _, chats = await pipe.execute()
    return members(chats)


async def put_back(redis: aioredis.Redis, org: str) -> None:
    """Put the organization back in the index at its next due chat, if it has one."""
    nxt = await redis.zrange(keys.due(org), 0, 0, withscores=True)
    if nxt:
        await redis.zadd(keys.DUE_ORGS, {org: int(nxt[0][1])}, lt=True)


async def next_due_ms(redis: aioredis.Redis) -> int | None:
    first = await redis.zrange(keys.DUE_ORGS, 0, 0, withscores=True)
    return int(first[0][1]) if first else None


async def wait(redis: aioredis.Redis, timeout_s: float) -> None:
    """Wait until a writer signals or timeout_s passes (BLPOP takes fractional seconds)."""
    await redis.blpop([keys.DUE_WAKE], timeout=max(0.01, timeout_s))


async def sweep(redis: aioredis.Redis) -> int:
    """Rebuild the index from every organization's due chats; returns how many have some."""
    orgs = sorted(text_set(await redis.smembers(keys.ORG_REGISTRY)))
    found = 0
    for i in range(0, len(orgs), 500):
        chunk = orgs[i : i + 500]
        async with redis.pipeline(transaction=False) as pipe:
            for org in chunk:
                pipe.zrange(keys.due(org), 0, 0, withscores=True)
            firsts = await pipe.execute()
        due = {org: int(first[0][1]) for org, first in zip(chunk, firsts) if first}
        if due:
            await redis.zadd(keys.DUE_ORGS, due, lt=True)
            found += len(due)
    return found
