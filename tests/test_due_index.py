"""The due index's invariant (storage/due.py) in whatever order its steps interleave: writers
(write a source, then signal) and visitors (read the index, take, handle what is due, read the
due time, put back) advanced one Redis step at a time in a random order, many times over. Once
all of them finished, every organization with something in its sources is in the index no
later than its due time. A visitor that dies between take and put-back is what the sweep is for.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

from storage import due, keys
from storage.due import DueIndex

NOW_MS = 1_800_000_000_000
ORGS = ("org-a", "org-b")
INDEX = DueIndex("test:due-index", lambda org: (f"{{{org}}}:test-due", f"{{{org}}}:test-running"))
RUNS = 150


async def writer(redis, org: str, source: str, item: str, due_ms: int) -> AsyncIterator[None]:
    await redis.zadd(source, {item: due_ms})
    yield
    await INDEX.signal_now(redis, org, due_ms)


async def visitor(redis, now_ms: int, dies_after_take: bool = False) -> AsyncIterator[None]:
    found = await INDEX.due(redis, now_ms)
    for org, score in found:
        yield
        await INDEX.take(redis, org, score)
        if dies_after_take:
            return
        yield
        for source in INDEX.sources(org):  # what a flush or a claim takes out of the due range
            await redis.zremrangebyscore(source, "-inf", now_ms)
        yield
        due_ms = await INDEX.due_time(redis, org)
        yield
        if due_ms is not None:
            await INDEX.index_at(redis, org, due_ms)


async def interleave(rng: random.Random, steps: list[AsyncIterator[None]]) -> None:
    while steps:
        step = rng.choice(steps)
        try:
            await anext(step)
        except StopAsyncIteration:
            steps.remove(step)


async def uncovered(redis) -> list[str]:
    """Organizations with something due whose index entry is missing or later than it."""
    wrong = []
    for org in ORGS:
        due_ms = await INDEX.due_time(redis, org)
        score = await redis.zscore(INDEX.key, org)
        if due_ms is not None and (score is None or score > due_ms):
            wrong.append(f"{org}: due {due_ms}, indexed {score}")
    return wrong


def actors(redis, rng: random.Random, run: int, dies: bool = False) -> list[AsyncIterator[None]]:
    out: list[AsyncIterator[None]] = []
    for n in range(rng.randint(1, 5)):
        org = rng.choice(ORGS)
        source = rng.choice(INDEX.sources(org))
        due_ms = NOW_MS + rng.choice([-2000, -1, 0, 1, 500, 60_000])
        out.append(writer(redis, org, source, f"{run}-{n}", due_ms))
    out += [
        visitor(redis, NOW_MS, dies_after_take=dies and i == 0) for i in range(rng.randint(1, 3))
    ]
    return out


async def test_no_order_of_writers_and_visitors_leaves_something_due_unindexed(deps):
    redis = deps.redis
    for run in range(RUNS):
        rng = random.Random(run)
        if rng.random() < 0.5:  # some runs start with something indexed already
            await redis.zadd("{org-a}:test-due", {"early": NOW_MS - 10})
            await INDEX.signal_now(redis, "org-a", NOW_MS - 10)
        await interleave(rng, actors(redis, rng, run))
        assert await uncovered(redis) == [], f"run {run}"


async def test_the_sweep_puts_back_what_a_visitor_that_died_took_out(deps):
    redis = deps.redis
    await redis.sadd(keys.ORG_REGISTRY, *ORGS)
    lost = 0
    for run in range(RUNS):
        rng = random.Random(run)
        await interleave(rng, actors(redis, rng, run, dies=True))
        lost += bool(await uncovered(redis))
        await INDEX.sweep(redis)
        assert await uncovered(redis) == [], f"run {run}"
    assert lost  # a dying visitor does drop organizations: the sweep had work to do


async def test_both_indexes_keep_the_keys_earlier_versions_wrote():
    # An upgraded process reads what an old one indexed: the same keys as before.
    assert (due.CHATS.key, due.CHATS.wake, due.CHATS.sources("o")) == (
        "skytide:due-orgs",
        "skytide:due-wake",
        ("{o}:due",),
    )
    assert (due.JOBS.key, due.JOBS.sources("o")) == (
        "skytide:jobs:orgs",
        ("{o}:jobs:due", "{o}:jobs:running"),
    )
