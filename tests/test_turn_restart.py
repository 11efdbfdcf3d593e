"""A customer who keeps writing while a turn runs is answered once, about everything.

Through the whole pipeline (webhook to the fake Gupshup, real Redis and PostgreSQL, the offline
model): a turn that has done nothing yet when a newer message lands is abandoned and formed
again with every message; one that booked already finishes, and the newer message gets the next
turn. Bookings and replies stay exactly once when the turn is killed at any step.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from graph import checkpoints, receptionist
from ops import metrics
from storage import appointments, keys, turns
from tests import clock
from tests.conftest import eventually
from tests.graph_helpers import redis_saver
from tests.helpers import post_webhook, settled, text_webhook

PHONE = "573001112233"
APP = "DemoClinic"


class Held:
    """Holds the first turn that reads exactly `texts` until the test releases it."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.entered, self.release = asyncio.Event(), asyncio.Event()
        self.seen: list[list[str]] = []

    def builder(self):
        held = self

        class HeldReceptionist(receptionist.Receptionist):
            async def run_turn(self, turn):
                held.seen.append(list(turn.texts))
                if list(turn.texts) == held.texts and not held.entered.is_set():
                    held.entered.set()
                    await held.release.wait()
                return await super().run_turn(turn)

        return HeldReceptionist


async def say(url: str, text: str) -> None:
    await post_webhook(
        url, text_webhook(APP, PHONE, text, f"r-{time.time_ns()}", clock.now_ms(), name="Laura")
    )


async def offered_slots(s, gupshup, deps, org) -> None:
    await say(s.url, "quiero una cita de limpieza facial mañana en la tarde")
    [offer] = await gupshup.wait_for_sent(1, timeout_s=20)
    assert "1." in offer.message["text"], offer.message
    await eventually(lambda: settled(deps.redis, org))


async def newer_marked(deps, org) -> bool:
    return bool(await deps.redis.exists(keys.turn_newer(org, PHONE)))


async def bookings(deps, org) -> list:
    return await deps.pool.fetch(
        "select status from appointments where organization_id = $1::uuid", org
    )


def restarted(at: str) -> float:
    return metrics.turns_restarted.labels(at)._value.get()


async def test_a_message_during_a_booking_turn_restarts_it_and_books_once(
    system, make_org, gupshup, deps
):
    org = await make_org(APP, catalog=True)
    held = Held(["la primera"])
    before = restarted("before_effect")
    async with system(debounce_seconds=0.2, receptionist_builder=held.builder()) as s:
        await offered_slots(s, gupshup, deps, org)
        await say(s.url, "la primera")
        await asyncio.wait_for(held.entered.wait(), 20)
        await say(s.url, "porfa")  # lands while the turn runs, before it booked anything
        await eventually(lambda: newer_marked(deps, org))
        held.release.set()
        sent = await gupshup.wait_for_sent(2, timeout_s=20)
        await eventually(lambda: settled(deps.redis, org), timeout_s=20)
    assert held.seen[1:] == [["la primera"], ["la primera", "porfa"]]
    assert len(gupshup.sent) == 2, [m.message for m in gupshup.sent]
    assert "agendada" in sent[1].message["text"], sent[1].message
    assert [r["status"] for r in await bookings(deps, org)] == ["confirmed"]
    assert restarted("before_effect") == before + 1


async def test_a_message_during_a_plain_turn_gets_one_answer_about_both(
    system, make_org, gupshup, deps
):
    org = await make_org(APP, catalog=True)
    held = Held(["hola"])
    before = restarted("before_reply")
    async with system(debounce_seconds=0.2, receptionist_builder=held.builder()) as s:
        await say(s.url, "hola")
        await asyncio.wait_for(held.entered.wait(), 20)
        await say(s.url, "¿cuánto cuesta el masaje relajante?")
        await eventually(lambda: newer_marked(deps, org))
        held.release.set()
        [answer] = await gupshup.wait_for_sent(1, timeout_s=20)
        await eventually(lambda: settled(deps.redis, org), timeout_s=20)
    assert held.seen == [["hola"], ["hola", "¿cuánto cuesta el masaje relajante?"]]
    assert len(gupshup.sent) == 1 and "150.000" in answer.message["text"], answer.message
    assert restarted("before_reply") == before + 1
    # The abandoned turn's checkpoint was never written: the chat's state counts one turn.
    saver = await redis_saver(deps.settings)  # the deployment's kind (a cluster's, with one)
    saved = await saver.aget_tuple(
        {"configurable": {"thread_id": keys.checkpoint_thread(org, PHONE), "checkpoint_ns": ""}}
    )
    assert saved is not None and saved.checkpoint["channel_values"]["turns"] == 1


async def test_a_message_after_the_booking_goes_to_the_next_turn(
    system, make_org, gupshup, deps, monkeypatch
):
    """Once a turn booked, it is committed: it confirms the booking, and the newer message is
    answered by a turn of its own."""
    org = await make_org(APP, catalog=True)
    booked, release = asyncio.Event(), asyncio.Event()
    real_book = appointments.book

    async def book_then_wait(*args, **kwargs):
        result = await real_book(*args, **kwargs)
        booked.set()
        await release.wait()
        return result

    monkeypatch.setattr(appointments, "book", book_then_wait)
    held = Held([])  # holds nothing; records what each turn read
    async with system(debounce_seconds=0.2, receptionist_builder=held.builder()) as s:
        await offered_slots(s, gupshup, deps, org)
        await say(s.url, "la primera")
        await asyncio.wait_for(booked.wait(), 20)
        await say(s.url, "¿cuánto cuesta el masaje relajante?")
        await eventually(lambda: newer_marked(deps, org))
        release.set()
        sent = await gupshup.wait_for_sent(3, timeout_s=20)
        await eventually(lambda: settled(deps.redis, org), timeout_s=20)
    assert held.seen[1:] == [["la primera"], ["¿cuánto cuesta el masaje relajante?"]]
    assert "agendada" in sent[1].message["text"] and "150.000" in sent[2].message["text"]
    assert len(gupshup.sent) == 3
    assert [r["status"] for r in await bookings(deps, org)] == ["confirmed"]


class Killed(Exception):
    """The worker dies here: nothing after this point of the handler runs; the entry is
    delivered again (the runtime's retry, as a claim after a real crash would)."""


def kill_once(monkeypatch, owner, name: str, *, before: bool = False) -> list[str]:
    """Make the first call of owner.name die before or after its effect."""
    real = getattr(owner, name)
    fired: list[str] = []

    async def dying(*args, **kwargs):
        if before and not fired:
            fired.append(name)
            raise Killed(f"before {name}")
        result = await real(*args, **kwargs)
        if not fired:
            fired.append(name)
            raise Killed(f"after {name}")
        return result

    monkeypatch.setattr(owner, name, dying)
    return fired


STEPS = {
    # where the worker dies: (object, function, before its effect)
    "before the commit point": (turns, "commit", True),
    "after the commit point": (turns, "commit", False),
    "after the booking": (appointments, "book", False),
    "after the state is written": (checkpoints.HeldWrites, "flush", False),
    "after the replies are queued": (turns, "finish", False),
}


@pytest.mark.parametrize("newer", [True, False], ids=["newer-message", "alone"])
@pytest.mark.parametrize("step", list(STEPS))
async def test_a_turn_killed_at_any_step_books_and_replies_once(
    system, make_org, gupshup, deps, monkeypatch, step, newer
):
    org = await make_org(APP, catalog=True)
    held = Held(["la primera"])
    async with system(debounce_seconds=0.2, receptionist_builder=held.builder()) as s:
        await offered_slots(s, gupshup, deps, org)
        owner, name, before = STEPS[step]
        fired = kill_once(monkeypatch, owner, name, before=before)
        await say(s.url, "la primera")
        await asyncio.wait_for(held.entered.wait(), 20)
        if newer:
            await say(s.url, "porfa")
            await eventually(lambda: newer_marked(deps, org))
        held.release.set()
        sent = await gupshup.wait_for_sent(2, timeout_s=30)
        await eventually(lambda: settled(deps.redis, org), timeout_s=30)
    assert fired == [name]  # the worker did die there
    replies = [m.message["text"] for m in gupshup.sent[1:]]
    assert len(replies) == 1 and "agendada" in replies[0], replies
    assert [r["status"] for r in await bookings(deps, org)] == ["confirmed"]
    assert sent[1].message["text"] == replies[0]
