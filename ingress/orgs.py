"""Finding the organization of a webhook, cached: every callback needs it, it rarely changes."""

from __future__ import annotations

import time

import asyncpg
import redis.asyncio as aioredis

from storage import keys
from storage.orgs import Connection, find_connection


class ConnectionCache:
    def __init__(self, pool: asyncpg.Pool, redis: aioredis.Redis, ttl_s: float = 30.0,
                 miss_ttl_s: float = 5.0) -> None:
        self.pool = pool
        self.redis = redis
        self.ttl_s = ttl_s
        self.miss_ttl_s = miss_ttl_s  # short, so a newly provisioned app works within seconds
        self._entries: dict[tuple[str | None, str | None], tuple[float, Connection | None]] = {}
        self._registered: set[str] = set()

    async def get(self, app_name: str | None, app_id: str | None) -> Connection | None:
        key = (app_name, None) if app_name else (None, app_id)
        cached = self._entries.get(key)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        connection = await find_connection(self.pool, app_name=app_name, app_id=app_id)
        ttl = self.ttl_s if connection else self.miss_ttl_s
        self._entries[key] = (time.monotonic() + ttl, connection)
        return connection

    async def register(self, org: str) -> None:
        """Make the organization's streams known to the workers (once per process)."""
        if org not in self._registered:
            await self.redis.sadd(keys.ORG_REGISTRY, org)
            self._registered.add(org)
