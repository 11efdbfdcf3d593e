"""Delivery benchmarks: status events per second by one enrich worker, and send pacing.

python -m bench.delivery

Prints figures and ratios against bare baselines measured in the same run; asserts nothing.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Iterable, cast

import redis.asyncio as aioredis
from pydantic import BaseModel

from consumers.enrich import EnrichStage
from consumers.runtime import StageWorker
from ops.app.wiring import open_deps, run_async, running_system, stage_config
from ops.deps import Deps
from ops.settings import Settings
from ops.system import services
from storage import chats, keys
from storage.db import migrate
from storage.events import OutboundMessage, StatusEvent, encode
from storage.keys import Stage, Stream
from storage.orgs import add_org
from tests.fakes.gupshup import FakeGupshup

STATUS_EVENTS = 5000
SENDS = 400
RATE_PER_S = 80.0


async def _drained(redis: aioredis.Redis, stream: str, group: str) -> None:
    while True:
        info = next((g for g in await redis.xinfo_groups(stream) if g["name"] == group), None)
        if info and info["lag"] == 0 and info["pending"] == 0:
            return
        await asyncio.sleep(0.01)


async def _fill(redis: aioredis.Redis, stream: str, events: Iterable[BaseModel]) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        for event in events:
            fields: dict[Any, Any] = encode(event)  # xadd's parameter is a dict of any key type
            pipe.xadd(stream, fields)
        await pipe.execute()


async def bare_consumer_rate(deps: Deps, org: str) -> float:
    """Read and acknowledge the same entries with no handling: the floor of the runtime."""
    stream = keys.stream(org, "bare")  # type: ignore[arg-type]  # a bench stream no stage reads
    await deps.redis.xgroup_create(stream, "bare", id="0", mkstream=True)
    await _fill(
        deps.redis,
        stream,
        (
            StatusEvent(org=org, provider_id=f"x{i}", status="read", at_ms=i)
            for i in range(STATUS_EVENTS)
        ),
    )
    started = time.perf_counter()
    done = 0
    while done < STATUS_EVENTS:
        # RESP2 (storage/redis_client.py): [[stream, [(id, fields), ...]], ...]
        replies = cast(
            list[list[Any]], await deps.redis.xreadgroup("bare", "c", {stream: ">"}, count=64)
        )
        ids = [entry_id for _, entries in replies for entry_id, _ in entries]
        await deps.redis.xack(stream, "bare", *ids)
        done += len(ids)
    return STATUS_EVENTS / (time.perf_counter() - started)


async def status_rate(deps: Deps, org: str) -> float:
    identity = await chats.upsert_identity(deps.pool, org, "573000000000", None)
    await deps.pool.executemany(
        "insert into chat_messages (organization_id, chat_identity_id, direction,"
        " provider_message_id) values ($1::uuid, $2::uuid, 'outbound', $3)",
        [(org, identity.id, f"gs-{i}") for i in range(STATUS_EVENTS)],
    )
    stream = keys.stream(org, Stream.INBOUND)
    now_ms = int(time.time() * 1000)
    await _fill(
        deps.redis,
        stream,
        (
            StatusEvent(
                org=org, provider_id=f"wamid-{i}", gs_id=f"gs-{i}", status="delivered", at_ms=now_ms
            )
            for i in range(STATUS_EVENTS)
        ),
    )
    worker = StageWorker(
        deps.redis,
        stage_config(deps.settings, Stage.ENRICH),
        EnrichStage(deps).handle,
        "bench",
    )
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(worker.run(stop))
    await _drained(deps.redis, stream, Stage.ENRICH)
    elapsed = time.perf_counter() - started
    stop.set()
    await task
    return STATUS_EVENTS / elapsed


async def send_rate(settings: Settings, deps: Deps, rate_per_s: float) -> float:
    """Messages per second the sender achieved against the fake Gupshup."""
    async with FakeGupshup() as gupshup:
        org = await add_org(
            deps.pool,
            name="Bench",
            app_name=f"bench-{uuid.uuid4().hex[:6]}",
            api_key="k",
            source_phone="573009990000",
        )
        await deps.redis.sadd(keys.ORG_REGISTRY, org)
        phones = [f"57300{i:07d}" for i in range(SENDS)]
        for phone in phones:  # inside the 24-hour window
            identity = await chats.upsert_identity(deps.pool, org, phone, None)
            await deps.pool.execute(
                "update chat_identities set last_inbound_at = now() where id = $1::uuid",
                identity.id,
            )
        run_settings = settings.model_copy(
            update={
                "gupshup_api_url": gupshup.url,
                "send_rate_per_s": rate_per_s,
                "recipient_interval_ms": 0,
            }
        )
        bench_deps = Deps(settings=run_settings, redis=deps.redis, pool=deps.pool, http=deps.http)
        await _fill(
            deps.redis,
            keys.stream(org, Stream.OUTBOUND),
            (
                OutboundMessage(org=org, phone=p, text="hola", idempotency_key=f"b{i}")
                for i, p in enumerate(phones)
            ),
        )
        async with running_system(run_settings, ("sender",), deps=bench_deps):
            sent = await gupshup.wait_for_sent(SENDS, timeout_s=120)
        times = sorted(m.received_at for m in sent)
        return (len(times) - 1) / (times[-1] - times[0])


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Settings(
            skytide_env="development", data_dir=Path(tmp), log_level="WARNING", http_port=0
        )
        async with services(base) as settings, open_deps(settings) as deps:
            await migrate(deps.pool)
            org = await add_org(
                deps.pool,
                name="Bench",
                app_name="bench-status",
                api_key="k",
                source_phone="573009990000",
            )
            await deps.redis.sadd(keys.ORG_REGISTRY, org)
            bare = await bare_consumer_rate(deps, org)
            statuses = await status_rate(deps, org)
            print(
                f"status events: {statuses:,.0f}/s by one enrich worker "
                f"(target >= 2,000/s); bare XREADGROUP+XACK loop {bare:,.0f}/s; "
                f"ratio {statuses / bare:.2f}"
            )
            unpaced = await send_rate(settings, deps, rate_per_s=100_000)
            paced = await send_rate(settings, deps, rate_per_s=RATE_PER_S)
            print(
                f"sends: paced at {paced:.1f}/s with the limit at {RATE_PER_S:.0f}/s "
                f"(deviation {abs(paced - RATE_PER_S) / RATE_PER_S:.1%}, target within 5%); "
                f"unpaced sender {unpaced:,.0f}/s against the fake Gupshup"
            )


if __name__ == "__main__":
    run_async(main())
