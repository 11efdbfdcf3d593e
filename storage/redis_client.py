"""The Redis client the stages share (the Lua scripts live beside their callers in storage/)."""

from __future__ import annotations

import time
from typing import Any, TypedDict, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.typing import (
    BlockingZSetPopResponse,
    StreamRangeResponse,
    XClaimResponse,
    ZSetRangeResponse,
)

from ops import metrics

# These wait for data by design: their time says nothing about Redis.
BLOCKING = frozenset({"XREADGROUP", "XREAD", "BLPOP", "BRPOP", "BLMOVE", "BZPOPMIN", "BZPOPMAX"})


class TimedRedis(aioredis.Redis):
    """Each command's round trip in skytide_redis_command_seconds (pipelines are not timed)."""

    # Any, as in redis-py: a command's reply depends on the command and the client's options.
    # The ignores: redis-py leaves the asyncio client's execute_command unannotated.
    async def execute_command(self, *args: Any, **options: Any) -> Any:
        command = str(args[0]).upper()
        if command in BLOCKING:
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        started = time.perf_counter()
        try:
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        finally:
            metrics.redis_seconds.labels(command).observe(time.perf_counter() - started)


class TimedRedisCluster(RedisCluster):
    """The cluster client, timed like TimedRedis (REDIS_CLUSTER=true)."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        command = str(args[0]).upper()
        if command in BLOCKING:
            return await super().execute_command(*args, **options)
        started = time.perf_counter()
        try:
            return await super().execute_command(*args, **options)
        finally:
            metrics.redis_seconds.labels(command).observe(time.perf_counter() - started)


def create_redis(
    url: str, *, max_connections: int = 200, wait_s: float = 30.0, cluster: bool = False
) -> aioredis.Redis:
    if cluster:
        # One pool per node, discovered from the seed node of the URL; a MOVED or ASK after a
        # failover refreshes the slot table and the command is sent again.
        return TimedRedisCluster.from_url(  # type: ignore[return-value]
            url,
            decode_responses=True,
            max_connections=max_connections,
            health_check_interval=30,
        )
    # A blocking pool: under a burst (hundreds of turns at once) a command waits up to wait_s
    # for a free connection instead of failing at once with "Too many connections".
    # decode_responses keeps stream fields and keys as str everywhere.
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        decode_responses=True,
        max_connections=max_connections,
        timeout=wait_s,
        health_check_interval=30,
    )
    return TimedRedis.from_pool(pool)  # the client owns the pool: aclose() closes it


# The shared client decodes every reply (decode_responses=True above), which redis-py's types
# cannot know: they say bytes | str, and for a sorted-set range every shape its options could
# give. These name what a reply of this client is, at no cost (casts, nothing is converted).


def text(reply: bytes | str) -> str:
    return cast(str, reply)


def optional_text(reply: bytes | str | None) -> str | None:
    return cast(str | None, reply)


def text_set(reply: set[bytes | str]) -> set[str]:
    """SMEMBERS."""
    return cast(set[str], reply)


def blocking_pop(reply: BlockingZSetPopResponse) -> tuple[str, str, float] | None:
    """BZPOPMIN's (key, member, score); None when it timed out."""
    return cast(tuple[str, str, float] | None, reply)


def members(reply: ZSetRangeResponse) -> list[str]:
    """A sorted-set range read without scores."""
    return cast(list[str], reply)


def scored(reply: ZSetRangeResponse) -> list[tuple[str, float]]:
    """A sorted-set range read withscores=True: (member, score) pairs."""
    return cast(list[tuple[str, float]], reply)


def entries(reply: StreamRangeResponse | None) -> list[tuple[str, dict[str, str]]]:
    """XRANGE's entries: (entry id, fields). Never None (redis-py's types allow a nil reply,
    which XRANGE does not give), and a range holds only entries that exist."""
    return cast(list[tuple[str, dict[str, str]]], reply)


def claimed(reply: XClaimResponse) -> list[tuple[str, dict[str, str] | None]]:
    """XCLAIM's entries (without justid): (entry id, fields). Redis 7 and later leave an entry
    deleted while pending out of the reply (an older server answered nil, which redis-py turns
    into (None, None)); fields stay optional, as the stage treats none as such an entry."""
    return cast(list[tuple[str, dict[str, str] | None]], reply)


class PendingEntry(TypedDict):
    """One entry of XPENDING's extended form (redis-py's xpending_range)."""

    message_id: str
    consumer: str
    time_since_delivered: int
    times_delivered: int
