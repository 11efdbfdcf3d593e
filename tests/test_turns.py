"""The chat's turn lifecycle scripts, against the real Redis."""

from __future__ import annotations

import asyncio

from storage import keys, turns

ORG, CHAT = "org-t", "573000000001"
DEBOUNCE = turns.Debounce(quiet_ms=100, max_wait_ms=1000, max_messages=10)


async def hand(redis, provider_id: str, message_id: str, now_ms: int) -> None:
    await redis.incr(keys.enriching(ORG, CHAT))  # what ingress does when it accepts the message
    await turns.hand_off(redis, org=ORG, chat=CHAT, provider_id=provider_id,
                         message_id=message_id, sent_at_ms=now_ms, now_ms=now_ms,
                         debounce=DEBOUNCE)


async def flush(redis, turn_id: str, now_ms: int, lease_ms: int = 60_000) -> str:
    return await turns.flush(redis, org=ORG, chat=CHAT, turn_id=turn_id, now_ms=now_ms,
                             lease_ms=lease_ms, max_wait_ms=DEBOUNCE.max_wait_ms)


async def test_a_turn_that_never_finishes_does_not_strand_the_next_messages(deps):
    redis = deps.redis
    await hand(redis, "p1", "m1", 1000)
    assert await flush(redis, "t1", 2000, lease_ms=300) == "started"
    await hand(redis, "p2", "m2", 2100)
    assert await flush(redis, "t2", 2300) == "busy"  # t1 holds the chat...
    # ...and its worker gives up without `finish`. The chat is due again when the lease ends.
    due = await redis.zscore(keys.due(ORG), CHAT)
    assert due is not None and 2300 < due <= 2300 + 300
    await asyncio.sleep(0.4)
    assert await flush(redis, "t2", int(due)) == "started"
    assert await redis.get(keys.turn_lease(ORG, CHAT)) == "t2"


async def test_a_late_turn_gives_its_messages_to_the_next_turn(deps):
    redis = deps.redis
    await redis.set(keys.turn_lease(ORG, CHAT), "t-running", px=60_000)
    taken = await turns.take_lease(redis, org=ORG, chat=CHAT, turn_id="t-late",
                                   message_ids=["m1", "m2"], now_ms=5000, lease_ms=60_000)
    assert taken is False
    assert await redis.zrange(keys.pending(ORG, CHAT), 0, -1) == ["m1", "m2"]
    assert await redis.zscore(keys.due(ORG), CHAT) is not None
    mine = await turns.take_lease(redis, org=ORG, chat=CHAT, turn_id="t-running",
                                  message_ids=[], now_ms=5000, lease_ms=60_000)
    assert mine is True


async def test_a_redelivered_hand_off_counts_once(deps):
    redis = deps.redis
    await hand(redis, "p1", "m1", 1000)
    again = await turns.hand_off(redis, org=ORG, chat=CHAT, provider_id="p1", message_id="m1",
                                 sent_at_ms=1000, now_ms=1100, debounce=DEBOUNCE)
    assert again is False
    assert await redis.zcard(keys.pending(ORG, CHAT)) == 1
    assert await redis.get(keys.enriching(ORG, CHAT)) is None  # back to zero, not below
