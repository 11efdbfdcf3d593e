"""The stream pipeline end to end for text messages: webhook in, one reply out at the fake Gupshup."""

from __future__ import annotations

import asyncio

import pytest

from graph import receptionist
from storage import chats, keys
from storage.keys import Stage, Stream
from tests.conftest import eventually, recording_receptionist
from tests.helpers import fixture, fresh, post_webhook, settled, text_webhook
from tests import clock

PHONE = "919876543210"


def now_ms() -> int:
    return clock.now_ms()


async def inbound_rows(deps, org):
    return await deps.pool.fetch(
        "select message, processed_text, direction from chat_messages "
        "where organization_id = $1::uuid and direction = 'inbound' order by sent_at",
        org,
    )


async def test_fixture_text_webhook_gets_exactly_one_reply(system, make_org, gupshup, deps):
    org = await make_org("docdeck")
    async with system() as s:
        status, body = await post_webhook(s.url, fresh("gupshup/gupshup_v2_text.json"))
        assert (status, body) == (200, "")
        sent = await gupshup.wait_for_sent(1, timeout_s=10)
        await eventually(
            lambda: settled(deps.redis, org)
        )  # a wrong second reply would be out by now
    assert len(gupshup.sent) == 1
    assert sent[0].destination == PHONE and sent[0].app == "docdeck"
    assert sent[0].message["type"] == "text" and sent[0].message["text"].strip()
    rows = await deps.pool.fetch(
        "select direction, provider_message_id, message_status from chat_messages "
        "where organization_id = $1::uuid order by created_at",
        org,
    )
    assert [r["direction"] for r in rows] == ["inbound", "outbound"]
    assert rows[1]["provider_message_id"] == sent[0].message_id


async def test_same_webhook_twice_gets_one_reply(system, make_org, gupshup, deps):
    org = await make_org("docdeck")
    body = fresh("gupshup/gupshup_v2_text.json")
    async with system() as s:
        assert (await post_webhook(s.url, body))[0] == 200
        assert (await post_webhook(s.url, body))[0] == 200
        await gupshup.wait_for_sent(1, timeout_s=10)
        await eventually(lambda: settled(deps.redis, org))
    assert len(gupshup.sent) == 1
    assert len(await inbound_rows(deps, org)) == 1


async def test_two_different_messages_with_same_text_are_both_kept(system, make_org, gupshup, deps):
    """Dedupe is on the provider's message id, never on content."""
    org = await make_org("clinic")
    async with system() as s:
        t = now_ms()
        await post_webhook(s.url, text_webhook("clinic", PHONE, "ok", "m-1", t))
        await post_webhook(s.url, text_webhook("clinic", PHONE, "ok", "m-2", t + 1))
        await gupshup.wait_for_sent(1, timeout_s=10)
    assert [r["message"] for r in await inbound_rows(deps, org)] == ["ok", "ok"]


async def test_burst_inside_the_window_makes_one_turn_that_sees_all(
    system, make_org, gupshup, deps
):
    org = await make_org("clinic", catalog=True)
    seen: list[list[str]] = []
    # The fixed window: this is about what one window holds (tests/test_bursts.py has the
    # adaptive one's choices).
    async with system(
        debounce_seconds=0.6,
        debounce_adaptive=False,
        receptionist_builder=recording_receptionist(seen),
    ) as s:
        t = now_ms()
        for i, text in enumerate(["hola", "quiero una cita", "para mañana"]):
            await post_webhook(s.url, text_webhook("clinic", PHONE, text, f"burst-{i}", t + i))
            await asyncio.sleep(0.1)
        sent = await gupshup.wait_for_sent(1, timeout_s=10)
        await eventually(lambda: settled(deps.redis, org))
    assert seen == [["hola", "quiero una cita", "para mañana"]]
    assert len(gupshup.sent) == 1 and "servicio" in sent[0].message["text"]


async def test_out_of_order_delivery_keeps_the_users_order(system, make_org, gupshup):
    await make_org("clinic")
    seen: list[list[str]] = []
    async with system(debounce_seconds=0.6, receptionist_builder=recording_receptionist(seen)) as s:
        t = now_ms()
        await post_webhook(s.url, text_webhook("clinic", PHONE, "segundo", "o-2", t + 1000))
        await post_webhook(s.url, text_webhook("clinic", PHONE, "primero", "o-1", t))
        await gupshup.wait_for_sent(1, timeout_s=10)
    assert seen == [["primero", "segundo"]]


def held_receptionist(
    release: asyncio.Event, entered: asyncio.Event, seen: list[list[str]] | None = None
):
    """The real receptionist, but each turn waits until the test releases it."""

    class Held(receptionist.Receptionist):
        async def run_turn(self, turn):
            if seen is not None:
                seen.append(list(turn.texts))
            entered.set()
            await release.wait()
            return await super().run_turn(turn)

    return Held


async def test_message_during_a_turn_goes_into_the_next_turn(system, make_org, gupshup, deps):
    """With TURN_RESTART off (tests/test_turn_restart.py has it on: one answer about both)."""
    org = await make_org("clinic")
    release, entered = asyncio.Event(), asyncio.Event()
    seen: list[list[str]] = []
    async with system(
        receptionist_builder=held_receptionist(release, entered, seen), turn_restart=False
    ) as s:
        t = now_ms()
        await post_webhook(s.url, text_webhook("clinic", PHONE, "primero", "d-1", t))
        await asyncio.wait_for(entered.wait(), 10)
        await post_webhook(s.url, text_webhook("clinic", PHONE, "segundo", "d-2", t + 5000))
        await asyncio.sleep(1.0)  # well past the debounce: a second turn must still not start
        assert await deps.redis.xlen(keys.stream(org, Stream.TURNS)) == 1
        release.set()
        sent = await gupshup.wait_for_sent(2, timeout_s=10)
        await eventually(lambda: settled(deps.redis, org))
    assert seen == [["primero"], ["segundo"]]
    assert len(gupshup.sent) == 2 and all(m.message["text"] for m in sent)


async def test_chat_with_bot_off_keeps_messages_and_starts_no_turn(system, make_org, gupshup, deps):
    org = await make_org("clinic")
    async with system() as s:
        await post_webhook(s.url, text_webhook("clinic", PHONE, "hola", "b-1", now_ms()))
        await gupshup.wait_for_sent(1, timeout_s=10)
        await deps.pool.execute(
            "update chat_identities set bot_enabled = false where organization_id = $1::uuid", org
        )
        # enrich's cached chat is dropped at its next read of the change log; a message before
        # that starts a turn the agent skips (tests/test_identity_cache.py).
        await eventually(lambda: _forgotten(org))
        await post_webhook(s.url, text_webhook("clinic", PHONE, "¿hay alguien?", "b-2", now_ms()))
        await eventually(lambda: _count_inbound(deps, org, 2))
        await eventually(lambda: settled(deps.redis, org))
    assert len(gupshup.sent) == 1
    assert await deps.redis.xlen(keys.stream(org, Stream.TURNS)) == 1


@pytest.mark.parametrize("paused_hours_ago, answered", [(5, True), (3, False)])
async def test_a_paused_chat_comes_back_on_after_the_organizations_hours(
    system, make_org, gupshup, deps, paused_hours_ago, answered
):
    org = await make_org("clinic")
    await deps.pool.execute(
        "update organizations set settings = settings || '{\"bot_resume_after_hours\": 4}' "
        "where id = $1::uuid",
        org,
    )
    async with system() as s:
        await post_webhook(s.url, text_webhook("clinic", PHONE, "hola", "r-1", now_ms()))
        await gupshup.wait_for_sent(1, timeout_s=10)
        assert await chats.set_bot_enabled(
            deps.pool, org, PHONE, False, reason="taken over", at=clock.now_dt()
        )
        await deps.pool.execute(
            "update chat_identities set bot_paused_at = $3::timestamptz - make_interval(hours => $2) "
            "where organization_id = $1::uuid",
            org,
            paused_hours_ago,
            clock.now_dt(),
        )
        await post_webhook(s.url, text_webhook("clinic", PHONE, "¿siguen ahí?", "r-2", now_ms()))
        await eventually(lambda: _count_inbound(deps, org, 2))
        if answered:
            await gupshup.wait_for_sent(2, timeout_s=10)
        await eventually(lambda: settled(deps.redis, org))
    assert len(gupshup.sent) == (2 if answered else 1)
    assert (
        await deps.pool.fetchval(
            "select bot_enabled from chat_identities where organization_id = $1::uuid", org
        )
        is answered
    )


async def _forgotten(org):
    return chats.CACHE.get(org, PHONE) is None


async def _count_inbound(deps, org, n):
    return len(await inbound_rows(deps, org)) == n


async def test_status_event_starts_no_turn(system, make_org, gupshup, deps):
    org = await make_org("DemoAPI")
    async with system() as s:
        for name in ("gupshup_message_event_sent.json", "gupshup_message_event_delivered.json"):
            status, _ = await post_webhook(s.url, fixture(f"gupshup/{name}"))
            assert status == 200
        await eventually(lambda: settled(deps.redis, org))
        assert await deps.redis.xlen(keys.stream(org, Stream.TURNS)) == 0
    assert gupshup.sent == []


async def test_poison_entry_lands_in_dead_letters_with_its_error(system, make_org, gupshup, deps):
    org = await make_org("clinic")
    async with system() as s:
        await deps.redis.xadd(
            keys.stream(org, Stream.INBOUND), {"type": "message", "data": "{not json"}
        )
        await deps.redis.zadd(keys.ready(Stream.INBOUND), {org: 0})  # as every producer signals
        dead = await eventually(lambda: deps.redis.xrange(keys.dead_letters(org)))
        # The pipeline goes on after the poison entry.
        await post_webhook(s.url, text_webhook("clinic", PHONE, "hola", "after-poison", now_ms()))
        await gupshup.wait_for_sent(1, timeout_s=10)
    _, record = dead[0]
    assert record["stage"] == "enrich"
    assert "does not match any event" in record["error"]
    assert record["payload.data"] == "{not json"
    pending = await deps.redis.xpending(keys.stream(org, Stream.INBOUND), Stage.ENRICH)
    assert pending["pending"] == 0


async def test_reply_produced_after_a_person_took_over_is_dropped(system, make_org, gupshup, deps):
    org = await make_org("clinic")
    release, entered = asyncio.Event(), asyncio.Event()
    async with system(receptionist_builder=held_receptionist(release, entered)) as s:
        await post_webhook(s.url, text_webhook("clinic", PHONE, "hola", "t-1", now_ms()))
        await asyncio.wait_for(entered.wait(), 10)
        # A person takes the chat over from the CRM while the model is still thinking.
        assert await chats.set_bot_enabled(
            deps.pool, org, PHONE, False, reason="taken over", at=clock.now_dt()
        )
        release.set()
        reason = await eventually(
            lambda: deps.pool.fetchval(
                "select error_reason from chat_messages where direction = 'outbound'"
            )
        )
        await eventually(lambda: settled(deps.redis, org))
    assert reason == "bot turned off for this chat"
    assert gupshup.sent == []
