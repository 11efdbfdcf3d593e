"""The Redis client the stages share (the Lua scripts live beside their callers in storage/)."""

from __future__ import annotations

import time

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from ops import metrics

# These wait for data by design: their time says nothing about Redis.
BLOCKING = frozenset({"XREADGROUP", "XREAD", "BLPOP", "BRPOP", "BLMOVE", "BZPOPMIN", "BZPOPMAX"})


class TimedRedis(aioredis.Redis):
    """Each command's round trip in skytide_redis_command_seconds (pipelines are not timed)."""

    async def execute_command(self, *args, **options):
        command = str(args[0]).upper()
        if command in BLOCKING:
            return await super().execute_command(*args, **options)
        started = time.perf_counter()
        try:
            return await super().execute_command(*args, **options)
        finally:
            metrics.redis_seconds.labels(command).observe(time.perf_counter() - started)


class TimedRedisCluster(RedisCluster):
    """The cluster client, timed like TimedRedis (REDIS_CLUSTER=true)."""

    async def execute_command(self, *args, **options):
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
