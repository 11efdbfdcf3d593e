"""The conversation checkpointer: langgraph-checkpoint-redis on the project's Redis."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

import redis.asyncio as aioredis
from langgraph.checkpoint.redis.aio import AsyncRedisSaver


@asynccontextmanager
async def open_checkpointer(redis_url: str, ttl_min: int,
                            max_connections: int = 256) -> AsyncIterator[AsyncRedisSaver]:
    """A set-up saver whose checkpoints expire ttl_min minutes after their chat's last turn.

    Its own client, on a blocking pool: hundreds of concurrent turns wait for a connection
    instead of failing with "Too many connections". Entered once per process (the saver's
    connection must outlive every graph that uses it).
    """
    client = aioredis.Redis(connection_pool=aioredis.BlockingConnectionPool.from_url(
        redis_url, max_connections=max_connections, timeout=30))
    try:
        saver = AsyncRedisSaver(redis_client=client,
                                ttl={"default_ttl": ttl_min, "refresh_on_read": True})
        await saver.asetup()
        yield saver
    finally:
        await client.aclose()
