"""Held slots: a slot offered to one chat is not offered to another until booked, declined or
expired; two chats racing for the last slot never both get it (real Redis, real graph)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from graph.receptionist import Receptionist
from storage import holds
from tests.graph_helpers import BOGOTA, NOW, Chat, redis_saver

NINE = datetime(2027, 3, 4, 9, 0, tzinfo=BOGOTA)  # Thursday, the only slot of the day


@pytest.fixture
async def one_slot_a_day(deps, make_org):
    """One masseuse, open 9:00 to 10:00 every weekday: one 60-minute slot a day."""
    deps.clock = NOW.timestamp
    org = await make_org()
    await deps.pool.execute(
        "insert into staff (organization_id, name) values ($1::uuid, 'Sola')", org
    )
    await deps.pool.execute(
        "insert into services (organization_id, name, duration_minutes, price) "
        "values ($1::uuid, 'Masaje relajante', 60, 100000)",
        org,
    )
    await deps.pool.execute(
        "insert into business_hours (organization_id, weekday, opens, closes) "
        "select $1::uuid, d, '09:00', '10:00' from generate_series(0, 4) d",
        org,
    )
    return org


async def test_two_chats_racing_for_one_slot_one_holds_it(deps):
    slot = [("staff-1", NINE, NINE + timedelta(hours=1))]
    now = int(NOW.timestamp() * 1000)
    a, b = await asyncio.gather(
        *[
            holds.hold(deps.redis, "org", chat, slot, now_ms=now, ttl_ms=600_000)
            for chat in ("chat-a", "chat-b")
        ]
    )
    assert sorted([a[0], b[0]]) == [False, True]
    winner, loser = ("chat-a", "chat-b") if a[0] else ("chat-b", "chat-a")
    assert await holds.held_by_others(deps.redis, "org", winner, now_ms=now) == []
    assert [s for s, *_ in await holds.held_by_others(deps.redis, "org", loser, now_ms=now)] == [
        "staff-1"
    ]
    # A half-overlapping slot of the same person is held too; another person's is free.
    later = [
        ("staff-1", NINE + timedelta(minutes=30), NINE + timedelta(minutes=90)),
        ("staff-2", NINE, NINE + timedelta(hours=1)),
    ]
    assert await holds.hold(deps.redis, "org", loser, later, now_ms=now, ttl_ms=600_000) == [
        False,
        True,
    ]
    # The hold expires with the clock: ten minutes later the loser can hold it.
    expired = now + 600_001
    assert await holds.hold(deps.redis, "org", loser, slot, now_ms=expired, ttl_ms=600_000) == [
        True
    ]
    await holds.release(deps.redis, "org", loser)
    assert await holds.held_by_others(deps.redis, "org", winner, now_ms=expired) == []


async def test_one_chat_holds_at_most_a_few_slots_whatever_it_asks_for(deps):
    now = int(NOW.timestamp() * 1000)
    day = [("staff-1", NINE + timedelta(hours=h), NINE + timedelta(hours=h + 1)) for h in range(10)]
    held = await holds.hold(deps.redis, "org", "greedy", day, now_ms=now, ttl_ms=600_000)
    assert held == [True] * holds.MAX_HELD_PER_CHAT + [False] * (10 - holds.MAX_HELD_PER_CHAT)
    others = await holds.held_by_others(deps.redis, "org", "someone-else", now_ms=now)
    assert len(others) == holds.MAX_HELD_PER_CHAT
    # Asking again replaces the chat's holds; it never adds to them.
    await holds.hold(deps.redis, "org", "greedy", day[5:], now_ms=now, ttl_ms=600_000)
    assert len(await holds.held_by_others(deps.redis, "org", "someone-else", now_ms=now)) == 5


async def test_the_held_slot_is_not_offered_to_a_second_chat(deps, settings, one_slot_a_day):
    org = one_slot_a_day
    receptionist = Receptionist(deps, await redis_saver(settings))
    ana, beto = Chat(deps, receptionist, org, "571111"), Chat(deps, receptionist, org, "572222")
    await ana.say("quiero un masaje relajante mañana")
    assert "slots_proposed" in ana.actions and "jueves 4 de marzo" in ana.text
    await beto.say("quiero un masaje relajante mañana")
    assert "slots_proposed" in beto.actions and "jueves 4 de marzo" not in beto.text, beto.text
    await ana.say("la primera")
    await ana.say("Ana Pérez")
    assert ana.actions == ["booked"], ana.text
    # Booked: the slot is an appointment now, still not offered; Beto's own offer is untouched.
    await beto.say("¿y el jueves?")
    assert "jueves 4 de marzo, 9:00" not in beto.text
    assert await deps.pool.fetchval("select count(*) from appointments") == 1


async def test_a_no_or_the_clock_frees_the_held_slot(deps, settings, one_slot_a_day):
    org = one_slot_a_day
    receptionist = Receptionist(deps, await redis_saver(settings))
    ana, beto = Chat(deps, receptionist, org, "571111"), Chat(deps, receptionist, org, "572222")
    await ana.say("quiero un masaje relajante mañana")
    assert "jueves 4 de marzo" in ana.text
    await ana.say("no, gracias")
    await beto.say("quiero un masaje relajante mañana")
    assert "jueves 4 de marzo" in beto.text, beto.text  # Ana declined: the slot is free again
    # Beto holds it now; Ana comes back: not offered to her until Beto's hold expires.
    ana2 = Chat(deps, receptionist, org, "573333")
    await ana2.say("quiero un masaje relajante mañana")
    assert "jueves 4 de marzo" not in ana2.text
    deps.clock = (NOW + timedelta(minutes=settings.slot_hold_min, seconds=1)).timestamp
    await ana2.say("quiero un masaje relajante el jueves")
    assert "jueves 4 de marzo" in ana2.text, ana2.text
