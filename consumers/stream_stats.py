"""Stream length, pending entries and lag per organization and stage, read when Prometheus
scrapes (ops.metrics.add_sampler): nothing runs between scrapes, however many tenants are idle.

Every process that runs a stage reports that stage's streams, so with several replicas the
same value comes from each: dashboards and alerts take max() by org and stage.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from ops import metrics
from storage import keys
from storage.keys import STAGE_STREAM, Stage
from storage.redis_client import text_set


def stages_of(roles: list[str]) -> list[Stage]:
    """The stages a process with these roles runs: a stage's role has its name, and the
    scheduler role runs the webhooks stage."""
    stages = [Stage(role) for role in roles if role in {stage.value for stage in Stage}]
    if "scheduler" in roles:
        stages.append(Stage.WEBHOOKS)
    return stages


class StreamStats:
    def __init__(self, redis: aioredis.Redis, roles: list[str]) -> None:
        self.redis = redis
        self.stages = stages_of(roles)

    async def __call__(self) -> None:
        orgs = sorted(text_set(await self.redis.smembers(keys.ORG_REGISTRY)))
        if not orgs or not self.stages:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for org in orgs:
                pipe.xlen(keys.dead_letters(org))
                for stage in self.stages:
                    stream = keys.stream(org, STAGE_STREAM[stage])
                    pipe.xlen(stream)
                    pipe.xinfo_groups(stream)
            replies = iter(await pipe.execute(raise_on_error=False))
        for org in orgs:
            dead = next(replies)
            metrics.dead_letters.labels(org).set(dead if isinstance(dead, int) else 0)
            for stage in self.stages:
                length, groups = next(replies), next(replies)
                metrics.stream_length.labels(org, STAGE_STREAM[stage]).set(
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
