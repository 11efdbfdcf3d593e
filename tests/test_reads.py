"""A stage reads the streams signalled as having entries, not every organization's stream."""

from __future__ import annotations

from consumers.reads import ReadSet, ensure_groups
from storage import keys, streams
from storage.events import StatusEvent, encode
from storage.keys import Stage, Stream


def status(org: str, n: int) -> StatusEvent:
    return StatusEvent(org=org, provider_id=f"p-{n}", status="read", at_ms=n)


async def test_an_entry_is_read_from_its_signalled_stream_alone(deps):
    redis = deps.redis
    orgs = {f"org-{i}" for i in range(300)}
    await ensure_groups(redis, [keys.stream(o, Stream.INBOUND) for o in orgs], Stage.ENRICH)
    reads = ReadSet(
        redis, Stream.INBOUND, Stage.ENRICH, "c1", read_count=16, block_ms=100, sweep_every_s=3600
    )
    reads.orgs = sorted(orgs)
    assert await reads.read(64) == []  # the first read sweeps every stream: all empty
    assert reads.hot == set()
    await streams.publish(redis, status("org-7", 1), Stream.INBOUND)
    replies = await reads.read(64)
    assert [stream for stream, _ in replies] == [keys.stream("org-7", Stream.INBOUND)]
    assert reads.hot == set()  # fewer entries than asked for: drained, wait on the signals


async def test_a_stream_that_fills_a_read_is_read_again(deps):
    redis = deps.redis
    await ensure_groups(redis, [keys.stream("org-b", Stream.INBOUND)], Stage.ENRICH)
    reads = ReadSet(
        redis, Stream.INBOUND, Stage.ENRICH, "c1", read_count=4, block_ms=100, sweep_every_s=3600
    )
    await reads.read(64)  # the first read's sweep
    for n in range(6):
        await streams.publish(redis, status("org-b", n), Stream.INBOUND)
    got = [len(entries) for _ in range(3) for _, entries in await reads.read(64)]
    assert got == [4, 2]  # the second read needed no new signal
    assert reads.hot == set()


async def test_an_unsignalled_entry_is_found_by_the_sweep(deps):
    redis = deps.redis
    await ensure_groups(redis, [keys.stream("org-a", Stream.INBOUND)], Stage.ENRICH)
    reads = ReadSet(
        redis, Stream.INBOUND, Stage.ENRICH, "c1", read_count=16, block_ms=100, sweep_every_s=0
    )
    reads.orgs = ["org-a"]
    # Added by a producer that died before its signal.
    await redis.xadd(keys.stream("org-a", Stream.INBOUND), encode(status("org-a", 1)))
    replies = await reads.read(64)
    assert [len(entries) for _, entries in replies] == [1]


async def test_a_new_organization_gets_its_group_when_first_signalled(deps):
    redis = deps.redis
    reads = ReadSet(
        redis, Stream.INBOUND, Stage.ENRICH, "c1", read_count=16, block_ms=100, sweep_every_s=3600
    )
    await reads.read(64)  # the first read's sweep: nothing registered yet
    await streams.publish(redis, status("org-new", 1), Stream.INBOUND)
    assert await reads.read(64) == []  # NOGROUP: the group is created from the start
    replies = await reads.read(64)
    assert [len(entries) for _, entries in replies] == [1]
