"""Registered organizations that send nothing cost nothing per organization: no claim check, no
read, no metric series; what one of them left pending is still claimed back, and the ingress
keeps the active organizations' connections however many others call once."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio.cluster import RedisCluster

from consumers.reads import ReadSet, ensure_groups
from consumers.registry import refresh_connections
from consumers.runtime import StageConfig, StageWorker
from consumers.stream_stats import StreamStats
from ingress.orgs import ConnectionCache
from ops import metrics
from storage import due, keys, streams
from storage.events import StatusEvent, encode
from storage.keys import Stage, Stream
from storage.orgs import publish_connections
from tests.conftest import eventually

ORGS = [f"idle-{i:03d}" for i in range(300)]


async def _calls(redis: Any) -> dict[str, int]:
    """Commands Redis ran so far, by name (summed over a Cluster's primaries)."""
    if isinstance(redis, RedisCluster):
        nodes = list(
            (await redis.info("commandstats", target_nodes=RedisCluster.PRIMARIES)).values()
        )
    else:
        nodes = [await redis.info("commandstats")]
    calls: dict[str, int] = {}
    for stats in nodes:
        for name, stat in stats.items():
            command = name.removeprefix("cmdstat_")
            calls[command] = calls.get(command, 0) + int(stat["calls"])
    return calls


def _config(**overrides: Any) -> StageConfig:
    return StageConfig(
        **{
            "stage": Stage.ENRICH,
            "block_ms": 100,
            "claim_idle_ms": 200,
            "claim_every_s": 0.05,
            "org_refresh_s": 0.05,
            "sweep_every_s": 3600,
            "claim_sweep_every_s": 3600,
            **overrides,
        }
    )


def status(org: str, n: int) -> StatusEvent:
    return StatusEvent(org=org, provider_id=f"{org}-{n}", status="read", at_ms=n)


async def test_an_idle_worker_sends_no_command_per_organization(deps):
    redis = deps.redis
    await redis.sadd(keys.ORG_REGISTRY, *ORGS)
    handled: list[str] = []

    async def handler(event, delivery):
        handled.append(event.provider_id)

    stop = asyncio.Event()
    task = asyncio.create_task(StageWorker(redis, _config(), handler, "w1").run(stop))
    try:
        # One message, so the claim path has had a stream to look at and has let it go.
        await streams.publish(redis, status("idle-007", 1), Stream.INBOUND)
        await eventually(lambda: _is(handled, ["idle-007-1"]))
        await eventually(lambda: _index_empty(redis))
        settled = await _calls(redis)  # and the round that trimmed the stream is over
        await eventually(lambda: _more_than(redis, settled, "scard", 2))
        before = await _calls(redis)
        # Twenty housekeeping rounds (each asks the registry's size once).
        await eventually(lambda: _more_than(redis, before, "scard", 20))
        after = await _calls(redis)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    ran = {name for name, calls in after.items() if calls > before.get(name, 0)}
    # Asking the registry's size, the claim index and the signals; nothing of any organization.
    # (Besides what opens a connection and, on a Cluster, what its nodes say to each other.)
    plumbing = {"hello", "client|setinfo", "select", "ping", "replconf"}
    ran = {name for name in ran - plumbing if not name.startswith("cluster")}
    assert ran <= {"scard", "zrange", "bzpopmin", "info"}, ran


async def test_an_entry_a_killed_worker_left_in_a_quiet_organization_is_claimed_back(deps):
    redis = deps.redis
    await redis.sadd(keys.ORG_REGISTRY, *ORGS)
    await ensure_groups(redis, [keys.stream(o, Stream.INBOUND) for o in ORGS], Stage.ENRICH)
    await streams.publish(redis, status("idle-123", 1), Stream.INBOUND)
    killed = ReadSet(
        redis,
        Stream.INBOUND,
        Stage.ENRICH,
        "killed",
        read_count=16,
        block_ms=100,
        sweep_every_s=3600,
    )
    [(stream, [_])] = await killed.read(64)  # and it dies: the entry stays pending
    assert stream == keys.stream("idle-123", Stream.INBOUND)
    deliveries: list[int] = []

    async def handler(event, delivery):
        deliveries.append(delivery.deliveries)

    stop = asyncio.Event()
    task = asyncio.create_task(StageWorker(redis, _config(), handler, "live").run(stop))
    try:
        await eventually(lambda: _is(deliveries, [2]))  # claimed back: its second delivery
        await eventually(lambda: _index_empty(redis))  # acknowledged: the index lets it go
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_an_entry_pending_without_its_mark_is_found_by_the_sweep(deps):
    """The safety net: the read's mark lost (Redis failed over, or a Cluster ran the pipeline's
    commands out of order), the claim sweep's round robin still reaches the stream."""
    redis = deps.redis
    await redis.sadd(keys.ORG_REGISTRY, *ORGS)
    await ensure_groups(redis, [keys.stream(o, Stream.INBOUND) for o in ORGS], Stage.ENRICH)
    stream = keys.stream("idle-250", Stream.INBOUND)
    await redis.xadd(stream, encode(status("idle-250", 1)))
    await redis.xreadgroup(Stage.ENRICH, "killed", {stream: ">"}, count=1)  # no mark
    deliveries: list[int] = []

    async def handler(event, delivery):
        deliveries.append(delivery.deliveries)

    config = _config(claim_sweep_every_s=0.05, sweep_streams=50)
    stop = asyncio.Event()
    task = asyncio.create_task(StageWorker(redis, config, handler, "live").run(stop))
    try:
        await eventually(lambda: _is(deliveries, [2]))
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_a_scrape_shows_the_busy_organizations_and_finds_an_unsignalled_backlog(deps):
    redis = deps.redis
    await redis.sadd(keys.ORG_REGISTRY, *ORGS)
    await ensure_groups(redis, [keys.stream(o, Stream.INBOUND) for o in ORGS], Stage.ENRICH)
    await streams.publish(redis, status("idle-001", 1), Stream.INBOUND)  # signalled
    for n in range(3):  # added by a producer that died before its signal
        await redis.xadd(keys.stream("idle-299", Stream.INBOUND), encode(status("idle-299", n)))
    sampler = StreamStats(redis, ["enrich"])
    await sampler()
    assert _lag("idle-001") == 1.0  # busy: shown at once
    shown = {s.labels["org"] for s in _lag_samples()}
    assert len(shown & set(ORGS)) < len(ORGS) / 2  # the idle ones have no series
    for _ in range(10):  # the registry, a slice a scrape, reaches it
        if _lag("idle-299"):
            break
        await sampler()
    assert _lag("idle-299") == 3.0


async def test_made_up_tokens_do_not_push_out_a_real_connection(deps, make_org):
    await make_org("real-app", token="token-of-the-real-app")
    cache = ConnectionCache(deps.pool, deps.redis, max_entries=8, max_misses=8)
    assert await cache.by_token("token-of-the-real-app")
    for i in range(100):
        assert await cache.by_token(f"made-up-token-{i}") == []
    misses = _lookups("miss")
    assert await cache.by_token("token-of-the-real-app")
    assert _lookups("miss") == misses  # answered from the cache


async def test_a_connection_is_kept_until_the_published_ones_change(deps, make_org):
    org = await make_org("kept-app", token="token-of-kept-app")
    await publish_connections(deps.redis, deps.pool, 1)
    now = [1000.0]
    cache = ConnectionCache(deps.pool, deps.redis, clock=lambda: now[0])
    [found] = await cache.by_token("token-of-kept-app")
    assert found.is_active
    now[0] += 300  # ten times the old lifetime: nothing changed, nothing asked
    misses = _lookups("miss")
    assert await cache.by_token("token-of-kept-app")
    assert _lookups("miss") == misses
    await deps.pool.execute(
        "update platform_connections set is_active = false where organization_id = $1::uuid", org
    )
    await publish_connections(deps.redis, deps.pool, 2)  # as `skytide org set` does
    now[0] += cache.check_every_s
    [found] = await cache.by_token("token-of-kept-app")
    assert not found.is_active


def _lookups(result: str) -> float:
    return metrics.REGISTRY.get_sample_value("skytide_org_lookups_total", {"result": result}) or 0.0


def _lag_samples() -> list[Any]:
    return [
        sample
        for metric in metrics.REGISTRY.collect()
        if metric.name == "skytide_stream_lag"
        for sample in metric.samples
    ]


def _lag(org: str) -> float:
    return (
        metrics.REGISTRY.get_sample_value("skytide_stream_lag", {"org": org, "stage": "enrich"})
        or 0.0
    )


async def _is(items: list[Any], expected: list[Any]) -> bool:
    return items == expected


async def _index_empty(redis: Any) -> bool:
    return await redis.zcard(keys.claimable(Stage.ENRICH)) == 0


async def _more_than(redis: Any, before: dict[str, int], command: str, n: int) -> bool:
    return (await _calls(redis)).get(command, 0) - before.get(command, 0) > n


async def test_the_batcher_sweep_goes_through_the_registry_a_slice_at_a_time(deps):
    await deps.redis.sadd(keys.ORG_REGISTRY, *(f"many-{i}" for i in range(2500)))
    await deps.redis.zadd(keys.due("many-1234"), {"573001": 5})  # a due chat the index lost
    cursor, calls = await due.CHATS.sweep_next(deps.redis, 0, count=500), 1
    while cursor:
        cursor, calls = await due.CHATS.sweep_next(deps.redis, cursor, count=500), calls + 1
    assert await deps.redis.zscore(keys.DUE_ORGS, "many-1234") == 5
    assert calls > 2  # not the whole registry in one go


async def test_unchanged_connections_are_not_published_again(deps, make_org):
    org = await make_org("steady-app", token="token-of-steady-app")
    assert await refresh_connections(deps, 60) == 1  # Redis had none
    version = await deps.redis.hget(keys.WEBHOOK_CONNECTIONS, keys.WEBHOOK_VERSION)
    await deps.redis.delete(keys.WEBHOOK_CONNECTIONS_FRESH)  # the next period
    assert await refresh_connections(deps, 60) is None  # nothing changed: nothing rewritten
    await deps.pool.execute(
        "update platform_connections set is_active = false where organization_id = $1::uuid", org
    )
    await deps.redis.delete(keys.WEBHOOK_CONNECTIONS_FRESH)
    assert await refresh_connections(deps, 60) == 1
    assert await deps.redis.hget(keys.WEBHOOK_CONNECTIONS, keys.WEBHOOK_VERSION) != version
