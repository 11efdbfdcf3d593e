"""The Redis client the stages share (the Lua scripts live beside their callers in storage/)."""

from __future__ import annotations

import redis.asyncio as aioredis


def create_redis(url: str, *, max_connections: int = 200) -> aioredis.Redis:
    # decode_responses keeps stream fields and keys as str everywhere.
    return aioredis.Redis.from_url(url, decode_responses=True, max_connections=max_connections,
                                   health_check_interval=30)
