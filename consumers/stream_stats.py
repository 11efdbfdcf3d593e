"""Stream length, pending entries and lag per organization and stage, read when Prometheus
scrapes (ops.metrics.add_sampler): nothing runs between scrapes, however many tenants are idle.

A scrape does not look at every registered organization (with 10,000 of them it took 90,000
commands and answered with 130,000 series): it looks at the busy ones (signalled as having
entries, or in a claim index: they may have pending entries), at those it showed lately, and at
the next SLICE of the registry (SSCAN, round robin), which finds a backlog or dead letters that
no signal points at within len(registry) / SLICE scrapes. An organization's series are shown
while it is busy or has something waiting, and for KEEP_S after; an idle organization has none,
unless the whole registry fits in one slice: then every organization is shown, as it always was.

Every process that runs a stage reports that stage's streams, so with several replicas the
same value comes from each: dashboards and alerts take max() by org and stage.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import redis.asyncio as aioredis

from ops import metrics
from storage import keys
from storage.keys import STAGE_STREAM, Stage
from storage.redis_client import text_set

SLICE = 200  # registered organizations looked at per scrape besides the busy ones
BUSY_MAX = 1000  # organizations taken from each signal and claim index per scrape
KEEP_S = 600.0  # an organization's series stay this long after it last had something


def stages_of(roles: list[str]) -> list[Stage]:
    """The stages a process with these roles runs: a stage's role has its name, and the
    scheduler role runs the webhooks stage."""
    stages = [Stage(role) for role in roles if role in {stage.value for stage in Stage}]
    if "scheduler" in roles:
        stages.append(Stage.WEBHOOKS)
    return stages


class StreamStats:
    def __init__(
        self,
        redis: aioredis.Redis,
        roles: list[str],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis = redis
        self.stages = stages_of(roles)
        self.clock = clock
        self._cursor = 0  # the registry's SSCAN cursor
        self._shown: dict[str, float] = {}  # org -> when it last had something to show

    async def _candidates(self) -> tuple[set[str], list[str], bool]:
        """(the busy organizations, the next slice of the registry, whether that slice is the
        whole registry)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for stage in self.stages:
                pipe.zrange(keys.ready(STAGE_STREAM[stage]), 0, BUSY_MAX - 1)
                pipe.zrange(keys.claimable(stage), 0, BUSY_MAX - 1)
            pipe.sscan(keys.ORG_REGISTRY, self._cursor, count=SLICE)
            *busy, (cursor, sliced) = await pipe.execute()
        whole = self._cursor == 0 and int(cursor) == 0
        self._cursor = int(cursor)
        return set().union(*(set(b) for b in busy)), sorted(text_set(sliced)), whole

    async def __call__(self) -> None:
        if not self.stages:
            return
        busy, sliced, whole = await self._candidates()
        orgs = sorted(busy | set(sliced) | set(self._shown))
        async with self.redis.pipeline(transaction=False) as pipe:
            for org in orgs:
                pipe.xlen(keys.dead_letters(org))
                for stage in self.stages:
                    stream = keys.stream(org, STAGE_STREAM[stage])
                    pipe.xlen(stream)
                    pipe.xinfo_groups(stream)
            replies = iter(await pipe.execute(raise_on_error=False))
        now = self.clock()
        for org in orgs:
            dead = _int(next(replies))
            rows = []
            for stage in self.stages:
                length, groups = _int(next(replies)), next(replies)
                group = (
                    next((g for g in groups if g.get("name") == stage), None)
                    if isinstance(groups, list)
                    else None
                )
                pending = _int(group["pending"]) if group else 0
                # No group yet: all of the stream waits. Redis gives no lag when it cannot tell
                # (entries deleted mid-stream): 0 then.
                lag = _int(group.get("lag")) if group else length
                rows.append((stage, length, pending, lag))
            if whole or org in busy or dead or any(pending or lag for _, _, pending, lag in rows):
                self._shown[org] = now
            shown = self._shown.get(org)
            if shown is None:
                continue  # idle and never shown: no series
            if now - shown > KEEP_S:
                _remove(org, self.stages)
                del self._shown[org]
                continue
            metrics.dead_letters.labels(org).set(dead)
            for stage, length, pending, lag in rows:
                metrics.stream_length.labels(org, STAGE_STREAM[stage]).set(length)
                metrics.stream_pending.labels(org, stage).set(pending)
                metrics.stream_lag.labels(org, stage).set(lag)


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _remove(org: str, stages: list[Stage]) -> None:
    for gauge, labels in (
        (metrics.dead_letters, (org,)),
        *((metrics.stream_length, (org, STAGE_STREAM[s])) for s in stages),
        *((metrics.stream_pending, (org, s)) for s in stages),
        *((metrics.stream_lag, (org, s)) for s in stages),
    ):
        try:
            gauge.remove(*labels)
        except KeyError:
            pass
