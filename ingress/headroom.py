"""Refuse webhooks before Redis refuses writes.

With `maxmemory` and the `noeviction` policy (the only one that never drops a queued message),
Redis answers every write with an OOM error once it is full. A webhook accepted then would be
lost; one refused with a 503 is retried by Gupshup. So the ingress answers 503 while Redis's
used memory is within `redis_memory_reserve` of its limit, which leaves the stages room to
finish what is queued (their writes free memory: acknowledged entries are trimmed, turns
consume their bursts) and the pipeline drains; webhooks are taken again once memory is back.
"""

from __future__ import annotations

import logging
import time

import redis.asyncio as aioredis

from ops import metrics

log = logging.getLogger(__name__)

SAMPLE_EVERY_S = 0.5  # INFO memory at most twice a second, whatever the webhook rate


class RedisHeadroom:
    def __init__(self, redis: aioredis.Redis, reserve: float) -> None:
        self.redis = redis
        self.reserve = reserve
        self._checked_at = float("-inf")
        self._full = False

    async def full(self) -> bool:
        """True while Redis's used memory is within the reserve of its maxmemory."""
        if time.monotonic() - self._checked_at >= SAMPLE_EVERY_S:
            self._checked_at = time.monotonic()
            info = await self.redis.info("memory")
            limit = int(info.get("maxmemory") or 0)
            used = int(info.get("used_memory") or 0)
            full = bool(limit) and used >= limit * (1 - self.reserve)
            if full != self._full:
                log.warning(
                    "redis memory %s: %d of %d bytes used; webhooks %s",
                    "nearly full" if full else "back",
                    used,
                    limit,
                    "refused with 503" if full else "accepted again",
                )
            self._full = full
            metrics.redis_memory_full.set(1 if full else 0)
        return self._full
