"""The consumer-group runtime on its own: it outlives a Redis outage."""

from __future__ import annotations

import asyncio

from consumers.runtime import StageConfig, StageWorker, ensure_group
from ops import metrics
from ops.embedded import EmbeddedRedis
from storage import keys, streams
from storage.events import StatusEvent, encode
from storage.redis_client import create_redis
from storage.keys import Stage, Stream
from tests.conftest import REDIS_CLUSTER, eventually


async def test_a_stage_survives_a_redis_restart(tmp_path):
    server = EmbeddedRedis(tmp_path / "redis")
    server.start()
    redis = create_redis(server.url)
    handled: list[str] = []

    async def handler(event, delivery):
        handled.append(event.provider_id)

    config = StageConfig(
        stage=Stage.ENRICH,
        block_ms=100,
        claim_every_s=0.2,
        org_refresh_s=0.1,
        retry_max_s=0.5,
    )
    worker = StageWorker(redis, config, handler, "c1")
    stop = asyncio.Event()

    async def send(provider_id: str) -> None:
        await redis.sadd(keys.ORG_REGISTRY, "org-1")
        event = StatusEvent(org="org-1", provider_id=provider_id, status="read", at_ms=1)
        await streams.publish(redis, event, Stream.INBOUND)

    try:
        await send("before")
        task = asyncio.create_task(worker.run(stop))
        await eventually(lambda: _has(handled, "before"))
        failed_reads = _redis_errors()
        server.stop()  # Redis goes away (and comes back empty: no persistence)
        # The worker meets the outage and keeps trying: two failed reads, and it is still there.
        await eventually(lambda: _more_than(failed_reads + 1))
        assert not task.done()
        server.start()
        await send("after")
        await eventually(lambda: _has(handled, "after"), timeout_s=15)
        assert not task.done()
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await redis.aclose()
        server.stop()


async def _has(items: list[str], item: str) -> bool:
    return item in items


def _redis_errors() -> float:
    return sum(
        sample.value
        for metric in metrics.REGISTRY.collect()
        if metric.name == "skytide_dependency_errors"
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels.get("dependency") == "redis"
    )


async def _more_than(count: float) -> bool:
    return _redis_errors() > count


async def test_same_entry_id_on_two_streams_is_handled_without_a_claim(servers):
    """Two organizations' streams can hold the same entry id (XADD in the same millisecond).

    The runtime once tracked in-flight entries by id alone, so the second one was read and then
    ignored: it sat pending until the claim path took it back 30 s later (issue 10, the stall).
    """
    redis = create_redis(servers["redis_url"], cluster=REDIS_CLUSTER)
    orgs = [f"same-id-{i}" for i in range(3)]
    handled: list[tuple[str, str]] = []

    async def handler(event, delivery):
        handled.append((delivery.stream, delivery.entry_id))

    config = StageConfig(
        stage=Stage.ENRICH,
        block_ms=100,
        claim_idle_ms=200,
        claim_every_s=0.1,
        org_refresh_s=0.1,
    )
    worker = StageWorker(redis, config, handler, "c1")
    claimed_before = _claimed(Stage.ENRICH)
    stop = asyncio.Event()
    try:
        await redis.sadd(keys.ORG_REGISTRY, *orgs)
        for org in orgs:  # created before the worker starts, so one read returns all three
            await ensure_group(redis, keys.stream(org, Stream.INBOUND), Stage.ENRICH)
            event = StatusEvent(org=org, provider_id=f"p-{org}", status="read", at_ms=1)
            await redis.xadd(keys.stream(org, Stream.INBOUND), encode(event), id="5-1")
        task = asyncio.create_task(worker.run(stop))
        await eventually(lambda: _count_at_least(handled, 3))
        assert sorted(handled) == sorted((keys.stream(o, Stream.INBOUND), "5-1") for o in orgs)
        assert _claimed(Stage.ENRICH) == claimed_before
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        for org in orgs:
            await redis.srem(keys.ORG_REGISTRY, org)
            await redis.delete(keys.stream(org, Stream.INBOUND))
        await redis.aclose()


def _claimed(stage: str) -> float:
    return metrics.REGISTRY.get_sample_value("skytide_stage_claimed_total", {"stage": stage}) or 0.0


async def _count_at_least(items: list, n: int) -> bool:
    return len(items) >= n


async def test_trimming_keeps_the_entries_a_killed_worker_left_pending(servers):
    """A worker read an entry and died before acknowledging it, between hundreds of entries a
    live worker handles and trims. The stream is trimmed up to the dead worker's entry, never
    past it: the entry is claimed back and handled (the claim path acknowledges an entry that
    was trimmed away without handling it, so a trimmed pending entry would never be handled)."""
    redis = create_redis(servers["redis_url"], cluster=REDIS_CLUSTER)
    org = "trim-killed"
    stream = keys.stream(org, Stream.INBOUND)
    handled: list[str] = []

    async def handler(event, delivery):
        handled.append(event.provider_id)

    async def add(*provider_ids: str) -> None:
        async with redis.pipeline(transaction=False) as pipe:
            for provider_id in provider_ids:
                pipe.xadd(
                    stream,
                    encode(StatusEvent(org=org, provider_id=provider_id, status="read", at_ms=1)),
                )
            await pipe.execute()

    async def run_live(until) -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(StageWorker(redis, config, handler, "live").run(stop))
        try:
            await eventually(until, timeout_s=30)
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)

    # Whole stream nodes (100 entries by default) are trimmed: a few hundred entries show it.
    config = StageConfig(
        stage=Stage.ENRICH,
        block_ms=100,
        claim_idle_ms=1000,
        claim_every_s=0.1,
        org_refresh_s=0.1,
    )
    try:
        await redis.sadd(keys.ORG_REGISTRY, org)
        await ensure_group(redis, stream, Stage.ENRICH)
        await add(*(f"before-{i}" for i in range(250)))
        await run_live(lambda: _count_at_least(handled, 250))
        await add("orphan")
        [[_, [(orphan_id, _)]]] = await redis.xreadgroup(
            Stage.ENRICH, "killed", {stream: ">"}, count=1
        )
        await add(*(f"after-{i}" for i in range(250)))
        await run_live(lambda: _has(handled, "orphan"))
        assert await redis.xlen(stream) < 501  # trimming ran meanwhile
        assert sorted(handled) == sorted(
            ["orphan", *(f"{w}-{i}" for w in ("before", "after") for i in range(250))]
        )
    finally:
        await redis.srem(keys.ORG_REGISTRY, org)
        await redis.delete(stream)
        await redis.aclose()
