"""The Redis client the stages share (the Lua scripts live beside their callers in storage/)."""

from __future__ import annotations

import redis.asyncio as aioredis


def create_redis(url: str, *, max_connections: int = 200, wait_s: float = 30.0) -> aioredis.Redis:
    # A blocking pool: under a burst (hundreds of turns at once) a command waits up to wait_s
    # for a free connection instead of failing at once with "Too many connections".
    # decode_responses keeps stream fields and keys as str everywhere.
    pool = aioredis.BlockingConnectionPool.from_url(url, decode_responses=True, max_connections=max_connections,
                                                    timeout=wait_s, health_check_interval=30)
    return aioredis.Redis.from_pool(pool)  # the client owns the pool: aclose() closes it
