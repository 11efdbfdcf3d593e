"""The chat's turn lifecycle scripts, against the real Redis."""

from __future__ import annotations

import json

from storage import keys, turns
from storage.keys import Stream
from tests.conftest import eventually

ORG, CHAT = "org-t", "573000000001"
DEBOUNCE = turns.Debounce(quiet_ms=100, max_wait_ms=1000, max_messages=10)


async def hand(redis, provider_id: str, message_id: str, now_ms: int, text: str = "hola") -> None:
    await redis.incr(keys.enriching(ORG, CHAT))  # what ingress does when it accepts the message
    await turns.hand_off(
        redis,
        org=ORG,
        chat=CHAT,
        provider_id=provider_id,
        message_id=message_id,
        sent_at_ms=now_ms,
        now_ms=now_ms,
        debounce=DEBOUNCE,
        chars=len(text),
    )


async def flush(
    redis, now_ms: int, lease_ms: int = 60_000, max_messages: int = 20, max_chars: int = 4000
) -> str:
    return await turns.flush(
        redis,
        org=ORG,
        chat=CHAT,
        now_ms=now_ms,
        lease_ms=lease_ms,
        max_wait_ms=DEBOUNCE.max_wait_ms,
        max_messages=max_messages,
        max_chars=max_chars,
    )


async def started_turns(redis) -> list[dict]:
    entries = await redis.xrange(keys.stream(ORG, Stream.TURNS))
    return [json.loads(fields["data"]) for _, fields in entries]


async def test_a_turn_that_never_finishes_does_not_strand_the_next_messages(deps):
    redis = deps.redis
    await hand(redis, "p1", "m1", 1000)
    assert await flush(redis, 2000, lease_ms=300) == "started"
    await hand(redis, "p2", "m2", 2100)
    assert await flush(redis, 2300) == "busy"  # the first turn holds the chat...
    # ...and its worker gives up without `finish`. The chat is due again when the lease ends.
    due = await redis.zscore(keys.due(ORG), CHAT)
    assert due is not None and 2300 < due <= 2300 + 300
    await eventually(lambda: _lease_gone(redis))
    assert await flush(redis, int(due)) == "started"
    first, second = await started_turns(redis)
    assert second["message_ids"] == ["m2"]
    assert await redis.get(keys.turn_lease(ORG, CHAT)) == second["turn_id"] != first["turn_id"]


async def _lease_gone(redis) -> bool:
    return not await redis.exists(keys.turn_lease(ORG, CHAT))


async def test_a_turn_formed_again_after_redis_lost_writes_is_the_same_turn(deps):
    """Its id comes from its organization, chat and messages, so its bookings' and replies'
    idempotency keys are the ones the first run used: nothing is done twice."""
    redis = deps.redis
    await hand(redis, "p1", "m1", 1000)
    await hand(redis, "p2", "m2", 1500)
    assert await flush(redis, 3000) == "started"
    [before] = await started_turns(redis)
    await redis.flushdb()  # the snapshot Redis restarts from predates the flush
    await hand(redis, "p1", "m1", 1000)
    await hand(redis, "p2", "m2", 1500)
    assert await flush(redis, 9000) == "started"
    [after] = await started_turns(redis)
    assert after == before
    await redis.flushdb()
    await hand(redis, "p1", "m1", 1000)  # another set of messages is another turn
    assert await flush(redis, 9000) == "started"
    [other] = await started_turns(redis)
    assert other["turn_id"] != before["turn_id"]


async def test_a_flood_is_split_into_turns_of_bounded_size(deps):
    redis = deps.redis
    for i in range(5):
        await hand(redis, f"p{i}", f"m{i}", 1000 + i, text="x" * 30)
    await hand(redis, "p-long", "m-long", 2000, text="y" * 500)
    sizes = []
    for step in range(5):
        await redis.delete(keys.turn_lease(ORG, CHAT))  # each turn finished
        if await flush(redis, 5000 + step, max_messages=2, max_chars=100) == "started":
            sizes.append((await started_turns(redis))[-1]["message_ids"])
    # Two messages at most, 100 characters at most unless one message alone is longer.
    assert sizes == [["m0", "m1"], ["m2", "m3"], ["m4"], ["m-long"]]
    assert not await redis.exists(keys.pending(ORG, CHAT), keys.pending_chars(ORG, CHAT))


async def test_a_late_turn_gives_its_messages_to_the_next_turn(deps):
    redis = deps.redis
    await redis.set(keys.turn_lease(ORG, CHAT), "t-running", px=60_000)
    taken = await turns.take_lease(
        redis,
        org=ORG,
        chat=CHAT,
        turn_id="t-late",
        message_ids=["m1", "m2"],
        now_ms=5000,
        lease_ms=60_000,
    )
    assert taken is False
    assert await redis.zrange(keys.pending(ORG, CHAT), 0, -1) == ["m1", "m2"]
    assert await redis.zscore(keys.due(ORG), CHAT) is not None
    mine = await turns.take_lease(
        redis, org=ORG, chat=CHAT, turn_id="t-running", message_ids=[], now_ms=5000, lease_ms=60_000
    )
    assert mine is True


async def test_a_redelivered_hand_off_counts_once(deps):
    redis = deps.redis
    await hand(redis, "p1", "m1", 1000)
    again = await turns.hand_off(
        redis,
        org=ORG,
        chat=CHAT,
        provider_id="p1",
        message_id="m1",
        sent_at_ms=1000,
        now_ms=1100,
        debounce=DEBOUNCE,
    )
    assert again is False
    assert await redis.zcard(keys.pending(ORG, CHAT)) == 1
    assert await redis.get(keys.enriching(ORG, CHAT)) is None  # back to zero, not below


async def commit(redis, turn: dict, now_ms: int, first_ms: int = 1000) -> bool:
    return await turns.commit(
        redis,
        org=ORG,
        chat=CHAT,
        turn_id=turn["turn_id"],
        message_ids=turn["message_ids"],
        first_ms=first_ms,
        now_ms=now_ms,
        max_wait_ms=DEBOUNCE.max_wait_ms,
    )


async def test_a_turn_with_newer_messages_gives_way_to_one_with_all_of_them(deps):
    redis = deps.redis
    await hand(redis, "p1", "m1", 1000)
    await hand(redis, "p2", "m2", 1010)
    assert await flush(redis, 1200) == "started"
    [first] = await started_turns(redis)
    await hand(redis, "p3", "m3", 1300)  # the customer writes on while the turn runs
    assert await commit(redis, first, 1400) is False
    # Abandoned for good: a redelivery of it decides the same, and the chat is free at once.
    assert await commit(redis, first, 1500) is False
    assert await redis.get(keys.turn_done(ORG, first["turn_id"])) == "abandoned"
    assert not await redis.exists(keys.turn_lease(ORG, CHAT))
    assert await redis.zscore(keys.due(ORG), CHAT) == 1300 + DEBOUNCE.quiet_ms
    assert await flush(redis, 1400) == "started"
    [_, again] = await started_turns(redis)
    assert again["message_ids"] == ["m1", "m2", "m3"]  # in the customer's order
    assert await commit(redis, again, 1500) is True


async def test_a_committed_turn_is_never_abandoned(deps):
    redis = deps.redis
    await hand(redis, "p1", "m1", 1000)
    assert await flush(redis, 1200) == "started"
    [first] = await started_turns(redis)
    assert await commit(redis, first, 1300) is True  # say, before its booking
    await hand(redis, "p2", "m2", 1400)
    assert await commit(redis, first, 1500) is True  # before its replies, and when redelivered
    assert await redis.zrange(keys.pending(ORG, CHAT), 0, -1) == ["m2"]  # for the next turn


async def test_a_burst_past_its_cap_is_answered_instead_of_restarted_again(deps):
    """The customer who never stops writing still gets an answer: once the burst's first message
    is DEBOUNCE_MAX_WAIT old, the turn goes out and the newer messages get the next one."""
    redis = deps.redis
    await hand(redis, "p1", "m1", 1000)
    assert await flush(redis, 1200) == "started"
    [first] = await started_turns(redis)
    await hand(redis, "p2", "m2", 1900)
    assert await commit(redis, first, 1000 + DEBOUNCE.max_wait_ms, first_ms=1000) is True
