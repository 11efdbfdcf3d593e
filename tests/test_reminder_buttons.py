"""A booking through the conversation, its confirmation, the reminder at T-24h, and the
reminder's buttons changing the appointment, on a controllable clock (offline model, real graph,
Redis and PostgreSQL); then the same through POST /chat with the development clock."""

from __future__ import annotations

from datetime import date, timedelta

import aiohttp
import pytest

from consumers.scheduler import Scheduler
from graph.receptionist import Receptionist
from ops import metrics
from ops.settings import ALL_ROLES
from storage import jobs, keys
from storage.seed import seed_demo
from tests.conftest import eventually
from tests.graph_helpers import NOW, Chat, redis_saver
from tests.test_reminders import Clock, outbound
from tests import clock


@pytest.fixture
async def booked(deps, settings):
    """Ana books a facial through the conversation; the confirmation goes out; then the clock
    reaches the 24-hour reminder. Returns (chat, clinic, appointment row, scheduler)."""
    deps.clock = Clock(NOW)
    clinic = await seed_demo(deps.pool, today=date(2027, 3, 1))
    chat = Chat(deps, Receptionist(deps, await redis_saver(settings)), clinic)
    await chat.say("quiero una cita para limpieza facial mañana en la tarde")
    await chat.say("la primera")
    await chat.say("Ana Pérez")
    assert chat.actions == ["booked"], chat.text
    scheduler = Scheduler(deps)
    await scheduler.tick()
    assert [m.purpose for m in await outbound(deps, clinic)] == ["confirmation"]
    appt = await deps.pool.fetchrow("select id::text, starts_at from appointments")
    deps.clock.at = appt["starts_at"] - timedelta(hours=24)
    await scheduler.tick()
    reminder = (await outbound(deps, clinic))[-1]
    assert reminder.purpose == "reminder" and reminder.phone == chat.phone
    return chat, clinic, appt, scheduler


def answers(org: str, answer: str) -> float:
    return (
        metrics.REGISTRY.get_sample_value(
            "skytide_reminder_answers_total", {"org": org, "answer": answer}
        )
        or 0
    )


async def test_the_confirm_button_marks_the_appointment_confirmed(deps, booked):
    chat, clinic, appt, _ = booked
    await chat.say("[botón] Confirmar")
    assert chat.actions == ["attendance_confirmed"] and "Gracias por confirmar" in chat.text
    assert "jueves 4 de marzo" in chat.text
    assert await deps.pool.fetchval("select confirmed_by_contact_at is not null from appointments")
    assert answers(clinic, "confirmed") == 1


async def test_a_second_tap_on_confirm_is_not_answered_in_the_same_words(deps, booked):
    chat, *_ = booked  # the answer is made outside the graph: the loop guard holds there too
    first = (await chat.say("[botón] Confirmar")).replies
    second = (await chat.say("[botón] Confirmar")).replies
    assert first != second and "Gracias por confirmar" in second[0]


async def test_the_cancel_button_asks_the_usual_yes_then_cancels_and_drops_the_reminders(
    deps, booked
):
    chat, clinic, appt, scheduler = booked
    await chat.say("[botón] Cancelar")
    assert "¿Confirmas que cancelo tu cita de Limpieza facial" in chat.text, chat.text
    assert await deps.pool.fetchval("select status from appointments") == "confirmed"
    await chat.say("sí")
    assert "cancelled" in chat.actions, chat.text
    assert await deps.pool.fetchval("select status from appointments") == "cancelled"
    assert [j.kind for j in await jobs.pending(deps.redis, clinic)] == [
        "confirmation"
    ]  # no 2 h reminder
    await scheduler.tick()
    assert (await outbound(deps, clinic))[-1].text.startswith("❌ Cita cancelada")
    assert answers(clinic, "cancel_asked") == 1 and answers(clinic, "cancelled") == 1


async def test_the_reschedule_button_offers_times_for_that_appointment(deps, booked):
    chat, clinic, appt, _ = booked
    await chat.say("[botón] Reprogramar")
    assert "slots_proposed" in chat.actions, chat.text
    await chat.say("la segunda")
    assert "rescheduled" in chat.actions, chat.text
    moved = await deps.pool.fetchval(
        "select starts_at from appointments where id = $1::uuid", appt["id"]
    )
    assert moved != appt["starts_at"]
    reminders_due = sorted(
        j.data.starts_ms for j in await jobs.pending(deps.redis, clinic) if j.kind == "reminder"
    )
    assert reminders_due and set(reminders_due) == {int(moved.timestamp() * 1000)}  # re-planned
    assert answers(clinic, "rescheduled") == 1


async def test_through_chat_booking_confirmation_reminder_and_button(system, deps):
    """The issue's "done when": POST /chat, the development clock, the simulator's outbox."""
    clinic = await seed_demo(deps.pool, today=clock.today())
    await deps.redis.sadd(keys.ORG_REGISTRY, clinic)
    phone = "573005550000"
    async with system(
        roles=ALL_ROLES,
        gupshup_api_url=None,
        dev_clock=True,
        scheduler_tick_s=0.05,
        debounce_seconds=0.1,
    ) as s:

        async def say(text: str) -> list[str]:
            async with aiohttp.ClientSession() as http:
                async with http.post(
                    s.url + "/chat",
                    json={"app": "DemoClinic", "phone": phone, "name": "Ana", "text": text},
                ) as r:
                    return (await r.json())["replies"]

        offer = " ".join(await say("quiero una cita de limpieza facial mañana en la tarde"))
        assert "1." in offer, offer
        await say("la primera")
        starts = await eventually(lambda: deps.pool.fetchval("select starts_at from appointments"))
        outbox = keys.simulator_outbox("DemoClinic", phone)

        async def sent_text(word):
            return [m for m in await deps.redis.lrange(outbox, 0, -1) if word in m] or None

        # The confirmation may have been read by the /chat call above; wait for its job instead.
        await eventually(lambda: _no_jobs_due_before(deps, clinic, starts))
        await deps.redis.delete(outbox)
        now_ms = int(deps.clock() * 1000)
        # The first reminder still ahead (24 h before, or 2 h before when booked for the next
        # morning late at night), reached by moving the development clock.
        first = min(await jobs.pending(deps.redis, clinic), key=lambda j: j.due_ms)
        await deps.redis.incrby(keys.DEV_CLOCK_OFFSET, max(0, first.due_ms - now_ms) + 1000)
        window_ms = (s.deps.settings.window_hours * 3600 - s.deps.settings.window_margin_s) * 1000
        if first.due_ms + 1000 - now_ms < window_ms:  # the window "la primera" opened is still open
            [reminder] = await eventually(lambda: sent_text("Te recordamos"))
            assert "[Confirmar] [Reprogramar] [Cancelar]" in reminder
        else:  # outside the 24-hour window only the approved template may go
            await eventually(lambda: sent_text("demo-reminder-template"))
        await deps.redis.delete(outbox)
        assert "Gracias por confirmar" in " ".join(await say("Confirmar"))
        # Days later by the development clock, a message opens the window on that clock too: the
        # answer is free text, not the re-engagement template.
        await deps.redis.incrby(keys.DEV_CLOCK_OFFSET, 3 * 86_400_000)
        await eventually(lambda: _clock_moved(s.deps, now_ms + 2 * 86_400_000))
        answer = await say("hola")
        assert answer and not answer[0].startswith("{"), answer
    assert await deps.pool.fetchval("select confirmed_by_contact_at is not null from appointments")


async def _clock_moved(deps, past_ms: int) -> bool:
    return deps.clock() * 1000 > past_ms


async def _no_jobs_due_before(deps, org, starts) -> bool:
    pending = await jobs.pending(deps.redis, org)
    return bool(pending) and all(j.kind == "reminder" for j in pending)


async def test_a_gupshup_button_reply_confirms_the_reminded_appointment(
    system, make_org, deps, gupshup
):
    """The provider's button event (v2 button_reply) through ingress, enrich, batcher and agent."""
    from storage import appointments as appts, catalog, chats, reminders
    from tests.helpers import fixture, post_webhook

    org = await make_org("ButtonClinic", catalog=True)
    phone = "573004440000"
    identity = await chats.upsert_identity(deps.pool, org, phone, "Ana")
    facial = await catalog.find_service(deps.pool, org, "limpieza facial")
    booked = await appts.book(
        deps.pool,
        org=org,
        contact_id=identity.contact_id,
        service=facial,
        starts_at=NOW + timedelta(days=30),
        idempotency_key="b:1",
    )
    await reminders.remember_reminded(
        deps.redis, org, phone, booked.id, 3600
    )  # the reminder went out
    body = fixture("gupshup/gupshup_v2_button_reply.json", app="ButtonClinic")
    body["timestamp"] = int(deps.clock() * 1000)
    body["payload"].update(source=phone, id="button-answer-1")
    body["payload"]["sender"]["phone"] = phone
    body["payload"]["payload"] = {"title": "Confirmar", "id": "qr1", "reply": "Confirmar 1"}
    async with system(debounce_seconds=0.1) as s:
        assert (await post_webhook(s.url, body))[0] == 200
        sent = await gupshup.wait_for_sent(1, timeout_s=15)
    assert "Gracias por confirmar" in sent[0].message["text"]
    assert await deps.pool.fetchval("select confirmed_by_contact_at is not null from appointments")
