"""The consumer-group runtime on its own: it outlives a Redis outage."""

from __future__ import annotations

import asyncio

from consumers.runtime import StageConfig, StageWorker
from ops.embedded import EmbeddedRedis
from storage import keys
from storage.events import StatusEvent, encode
from storage.redis_client import create_redis
from tests.conftest import eventually


async def test_a_stage_survives_a_redis_restart(tmp_path):
    server = EmbeddedRedis(tmp_path / "redis")
    server.start()
    redis = create_redis(server.url)
    handled: list[str] = []

    async def handler(event, delivery):
        handled.append(event.provider_id)

    config = StageConfig(stage="enrich", stream="inbound", block_ms=100, claim_every_s=0.2,
                         org_refresh_s=0.1, retry_max_s=0.5)
    worker = StageWorker(redis, config, handler, "c1")
    stop = asyncio.Event()

    async def send(provider_id: str) -> None:
        await redis.sadd(keys.ORG_REGISTRY, "org-1")
        event = StatusEvent(org="org-1", provider_id=provider_id, status="read", at_ms=1)
        await redis.xadd(keys.stream("org-1", "inbound"), encode(event))

    try:
        await send("before")
        task = asyncio.create_task(worker.run(stop))
        await eventually(lambda: _has(handled, "before"))
        server.stop()  # Redis goes away (and comes back empty: no persistence)
        await asyncio.sleep(2.0)
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
