"""The batcher visits organizations with a chat due, not every registered organization."""

from __future__ import annotations

import json

from consumers.batcher import Batcher
from consumers.enrich import debounce_of
from storage import due, keys, turns
from storage.keys import Stream


async def hand(deps, org: str, chat: str, n: int) -> None:
    await turns.hand_off(
        deps.redis,
        org=org,
        chat=chat,
        provider_id=f"p-{org}-{n}",
        message_id=f"m-{org}-{n}",
        sent_at_ms=deps.now_ms(),
        now_ms=deps.now_ms(),
        debounce=debounce_of(deps),
    )


async def test_a_tick_visits_only_organizations_with_a_chat_due(deps):
    idle = [f"idle-{i}" for i in range(500)]
    await deps.redis.sadd(keys.ORG_REGISTRY, *idle, "busy")
    deps.settings = deps.settings.model_copy(update={"debounce_seconds": 0})
    batcher = Batcher(deps)
    assert await batcher.tick() == (0, 0)
    await hand(deps, "busy", "573001", 1)
    assert await batcher.tick() == (1, 1)
    assert await deps.redis.xlen(keys.stream("busy", Stream.TURNS)) == 1
    assert await batcher.tick() == (0, 0)  # nothing left due: the organization left the index


async def test_a_chat_not_yet_due_comes_back_at_its_due_time(deps):
    deps.settings = deps.settings.model_copy(update={"debounce_seconds": 60})
    batcher = Batcher(deps)
    await hand(deps, "org-a", "573002", 1)
    assert await batcher.tick() == (1, 0)  # signalled at once, due only after the quiet window
    due_ms = await deps.redis.zscore(keys.DUE_ORGS, "org-a")
    assert due_ms == await deps.redis.zscore(keys.due("org-a"), "573002")
    assert await batcher.tick() == (0, 0)


async def test_the_sweep_finds_an_organization_a_dead_batcher_took_out_of_the_index(deps):
    deps.settings = deps.settings.model_copy(update={"debounce_seconds": 0})
    await deps.redis.sadd(keys.ORG_REGISTRY, "org-b")
    batcher = Batcher(deps)
    await hand(deps, "org-b", "573003", 1)
    await deps.redis.delete(keys.DUE_ORGS)  # a batcher died after taking it, before putting it back
    assert await batcher.tick() == (0, 0)
    assert await due.CHATS.sweep(deps.redis) == 1
    assert await batcher.tick() == (1, 1)


async def test_a_released_lease_brings_the_waiting_messages_to_the_batcher_at_once(deps):
    deps.settings = deps.settings.model_copy(update={"debounce_seconds": 0})
    batcher = Batcher(deps)
    await hand(deps, "org-c", "573004", 1)
    assert await batcher.tick() == (1, 1)  # turn t1 holds the chat
    [(_, [(_, fields)])] = await deps.redis.xread({keys.stream("org-c", Stream.TURNS): "0"})
    turn_id = json.loads(fields["data"])["turn_id"]
    await hand(deps, "org-c", "573004", 2)
    assert await batcher.tick() == (1, 0)  # busy: due again when the lease runs out
    await turns.release_lease(
        deps.redis, org="org-c", chat="573004", turn_id=turn_id, now_ms=deps.now_ms()
    )  # the turn was dead-lettered
    assert await batcher.tick() == (1, 1)
