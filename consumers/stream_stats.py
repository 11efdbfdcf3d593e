"""Stream length, pending entries and lag per organization and stage, read when Prometheus
scrapes (ops.metrics.add_sampler): nothing runs between scrapes, however many tenants are idle.

Every process that runs a stage reports that stage's streams, so with several replicas the
same value comes from each: dashboards and alerts take max() by org and stage.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from ops import metrics
from storage import keys
from storage.redis_client import text_set

STREAM_OF = {"enrich": "inbound", "agent": "turns", "sender": "outbound", "webhooks": "webhooks"}


class StreamStats:
    def __init__(self, redis: aioredis.Redis, stages: list[str]) -> None:
        self.redis = redis
        if "scheduler" in stages:  # the scheduler role runs the webhooks stage
            stages = [*stages, "webhooks"]
        self.stages = [s for s in stages if s in STREAM_OF]

    async def __call__(self) -> None:
        orgs = sorted(text_set(await self.redis.smembers(keys.ORG_REGISTRY)))
        if not orgs or not self.stages:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for org in orgs:
                pipe.xlen(keys.dead_letters(org))
                for stage in self.stages:
                    stream = keys.stream(org, STREAM_OF[stage])
                    pipe.xlen(stream)
                    pipe.xinfo_groups(stream)
            replies = iter(await pipe.execute(raise_on_error=False))
        for org in orgs:
            dead = next(replies)
            metrics.dead_letters.labels(org).set(dead if isinstance(dead, int) else 0)
            for stage in self.stages:
                length, groups = next(replies), next(replies)
                metrics.stream_length.labels(org, STREAM_OF[stage]).set(
                    length if isinstance(length, int) else 0
                )
                group = (
                    next((g for g in groups if g.get("name") == stage), None)
                    if isinstance(groups, list)
                    else None
                )
                metrics.stream_pending.labels(org, stage).set(group["pending"] if group else 0)
                # lag is None when Redis cannot tell (entries deleted mid-stream): then the length.
                lag = group.get("lag") if group else length
                metrics.stream_lag.labels(org, stage).set(lag if isinstance(lag, int) else 0)
