"""Confirmations and reminders on a controllable clock: planned at booking, moved by a
reschedule, dropped by a cancel, sent once however many schedulers run, never to an opted-out
contact, held back in quiet hours; through the outbound stream, so the sender's rules apply."""

from __future__ import annotations

import asyncio
import json
from datetime import date, datetime, timedelta, timezone

import pytest

from consumers.scheduler import Scheduler
from ops import metrics
from graph import i18n
from storage import (
    appointments,
    catalog,
    chats,
    consent,
    events,
    jobs,
    keys,
    org_settings,
    reminders,
)
from storage.seed import seed_demo
from storage.keys import Stream
from tests.graph_helpers import BOGOTA, NOW


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at.timestamp()

    def ms(self) -> int:
        return int(self.at.timestamp() * 1000)


@pytest.fixture
async def clock(deps):
    deps.clock = Clock(NOW)
    return deps.clock


@pytest.fixture
async def clinic(deps, clock):
    return await seed_demo(deps.pool, today=date(2027, 3, 1))


async def outbound(deps, org) -> list[events.OutboundMessage]:
    entries = await deps.redis.xrange(keys.stream(org, Stream.OUTBOUND))
    return [events.decode(fields) for _, fields in entries]


async def book(deps, org, clock, start: datetime, phone="573001112233", key="t:1", inbound=True):
    identity = await chats.upsert_identity(deps.pool, org, phone, "Ana")
    if inbound:  # the customer wrote just now: the 24-hour window is open
        await deps.pool.execute(
            "update chat_identities set last_inbound_at = $2 where id = $1::uuid",
            identity.id,
            clock.at,
        )
    facial = await catalog.find_service(deps.pool, org, "limpieza facial")
    appt = await appointments.book(
        deps.pool,
        org=org,
        contact_id=identity.contact_id,
        service=facial,
        starts_at=start,
        idempotency_key=key,
    )
    await reminders.plan(deps.redis, deps.pool, org, appt.id, "booked", clock.ms())
    return identity, appt


THURSDAY_3PM = datetime(2027, 3, 4, 15, 0, tzinfo=BOGOTA)


async def test_confirmation_then_the_reminders_at_their_offsets(deps, clinic, clock):
    scheduler = Scheduler(deps)
    identity, appt = await book(deps, clinic, clock, THURSDAY_3PM)
    await scheduler.tick()
    [confirmation] = await outbound(deps, clinic)
    assert (
        confirmation.purpose == "confirmation"
        and "Cita confirmada: Limpieza facial" in confirmation.text
    )
    assert "jueves 4 de marzo" in confirmation.text and "3:00 p. m." in confirmation.text
    assert "Calle 93 # 12-45" in confirmation.text
    await scheduler.tick()
    assert len(await outbound(deps, clinic)) == 1  # nothing else is due yet
    clock.at = THURSDAY_3PM - timedelta(hours=24, seconds=1)
    await scheduler.tick()
    assert len(await outbound(deps, clinic)) == 1  # one second early
    clock.at = THURSDAY_3PM - timedelta(hours=24)
    await scheduler.tick()
    reminder = (await outbound(deps, clinic))[-1]
    assert reminder.purpose == "reminder" and reminder.buttons == [
        "Confirmar",
        "Reprogramar",
        "Cancelar",
    ]
    assert "Limpieza facial el jueves 4 de marzo a las 3:00 p. m. en Calle 93" in reminder.text
    # Confirmed from the reminder's button: a later reminder inside the window asks no more.
    await reminders.confirm_attendance(deps.pool, clinic, identity.contact_id, appt.id)
    clock.at = THURSDAY_3PM - timedelta(hours=2)
    await deps.pool.execute("update chat_identities set last_inbound_at = $1", clock.at)
    await scheduler.tick()
    confirmed = (await outbound(deps, clinic))[-1]
    assert confirmed.text.endswith("¡Te esperamos!") and confirmed.buttons == [
        "Reprogramar",
        "Cancelar",
    ]


async def test_outside_the_window_the_reminder_is_the_template(deps, clinic, clock):
    scheduler = Scheduler(deps)
    await book(deps, clinic, clock, THURSDAY_3PM)
    await scheduler.tick()
    # Two hours before, the window (opened 29 hours earlier) is closed: the approved template.
    clock.at = THURSDAY_3PM - timedelta(hours=2)
    await scheduler.tick()
    late = (await outbound(deps, clinic))[-1]
    assert late.template_id == "demo-reminder-template" and late.text is None
    assert late.template_params == [
        "Limpieza facial",
        "jueves 4 de marzo",
        "3:00 p. m.",
        "Calle 93 # 12-45, Chicó, Bogotá",
    ]
    assert await jobs.pending(deps.redis, clinic) == []
    assert await deps.redis.zcard(keys.JOB_ORGS) == 0  # an idle tenant costs the scheduler nothing


async def test_a_chat_in_english_gets_its_confirmation_reminder_and_template_in_english(
    deps, clinic, clock
):
    await org_settings.update(deps.pool, clinic, {"reminder_template_id_en": "reminder-en"})
    scheduler = Scheduler(deps)
    identity = await chats.upsert_identity(deps.pool, clinic, "573001112233", "Ana")
    await chats.save_chat_language(deps.pool, clinic, identity.id, "en")
    await book(deps, clinic, clock, THURSDAY_3PM)
    await scheduler.tick()
    [confirmation] = await outbound(deps, clinic)
    assert confirmation.text.startswith("✅ Appointment confirmed: Limpieza facial")
    assert "Thursday, March 4" in confirmation.text and "3:00 PM" in confirmation.text
    clock.at = THURSDAY_3PM - timedelta(hours=24)
    await scheduler.tick()
    reminder = (await outbound(deps, clinic))[-1]
    assert reminder.text.endswith("Can you confirm you'll come?")
    assert reminder.buttons == ["Confirm", "Reschedule", "Cancel"]
    clock.at = THURSDAY_3PM - timedelta(hours=2)  # the window closed: the English template
    await scheduler.tick()
    late = (await outbound(deps, clinic))[-1]
    assert late.template_id == "reminder-en"
    assert late.template_params[1:3] == ["Thursday, March 4", "3:00 PM"]


async def test_a_reschedule_moves_the_reminders_and_a_cancel_removes_them(deps, clinic, clock):
    identity, appt = await book(deps, clinic, clock, THURSDAY_3PM)
    due = sorted(j.due_ms for j in await jobs.pending(deps.redis, clinic))
    assert due == [
        clock.ms(),
        int((THURSDAY_3PM - timedelta(hours=24)).timestamp() * 1000),
        int((THURSDAY_3PM - timedelta(hours=2)).timestamp() * 1000),
    ]
    friday = THURSDAY_3PM + timedelta(days=1)
    await appointments.reschedule(
        deps.pool,
        org=clinic,
        contact_id=identity.contact_id,
        appointment_id=appt.id,
        starts_at=friday,
    )
    await reminders.plan(deps.redis, deps.pool, clinic, appt.id, "rescheduled", clock.ms())
    kinds = sorted((j.kind, j.due_ms) for j in await jobs.pending(deps.redis, clinic))
    assert kinds == [
        ("confirmation", clock.ms()),
        ("reminder", int((friday - timedelta(hours=24)).timestamp() * 1000)),
        ("reminder", int((friday - timedelta(hours=2)).timestamp() * 1000)),
    ]
    await appointments.cancel(deps.pool, clinic, identity.contact_id, appt.id)
    await reminders.plan(deps.redis, deps.pool, clinic, appt.id, "cancelled", clock.ms())
    [job] = await jobs.pending(deps.redis, clinic)
    assert job.data.change == "cancelled"
    clock.at = friday
    await Scheduler(deps).tick()
    [message] = await outbound(deps, clinic)
    assert message.text.startswith("❌ Cita cancelada: Limpieza facial")


async def test_a_job_left_over_from_before_a_move_sends_nothing(deps, clinic, clock):
    identity, appt = await book(deps, clinic, clock, THURSDAY_3PM)
    [old] = [
        j for j in await jobs.pending(deps.redis, clinic) if getattr(j.data, "offset_h", None) == 24
    ]
    await appointments.reschedule(
        deps.pool,
        org=clinic,
        contact_id=identity.contact_id,
        appointment_id=appt.id,
        starts_at=THURSDAY_3PM + timedelta(days=1),
    )
    # A worker claimed the old reminder before the move re-planned it: it must not go out.
    await Scheduler(deps).run_job(clinic, old)
    assert [m.purpose for m in await outbound(deps, clinic)] == []


async def test_two_workers_never_send_one_reminder_twice(deps, clinic, clock):
    friday = datetime(2027, 3, 5, 8, 0, tzinfo=BOGOTA)
    for i in range(10):  # Friday 8:00 to 17:00
        await book(
            deps, clinic, clock, friday + timedelta(hours=i), phone=f"57300000{i:04d}", key=f"t:{i}"
        )
    workers = [Scheduler(deps) for _ in range(3)]
    await asyncio.gather(*(w.tick() for w in workers * 2))
    assert [m.purpose for m in await outbound(deps, clinic)] == ["confirmation"] * 10
    clock.at = friday + timedelta(hours=9) - timedelta(hours=24)  # every 24 h reminder is due
    await asyncio.gather(*(w.tick() for w in workers * 2))
    sent = await outbound(deps, clinic)
    assert [m.purpose for m in sent] == ["confirmation"] * 10 + ["reminder"] * 10
    assert len({m.idempotency_key for m in sent}) == 20 and len({m.phone for m in sent[10:]}) == 10


async def test_a_late_scheduler_sends_only_the_latest_reminder(deps, clinic, clock):
    await book(deps, clinic, clock, THURSDAY_3PM)
    clock.at = THURSDAY_3PM - timedelta(hours=1)  # the scheduler was down since yesterday
    await Scheduler(deps).tick()
    assert [m.purpose for m in await outbound(deps, clinic)] == ["confirmation", "reminder"]
    clock.at = THURSDAY_3PM + timedelta(hours=2)
    await book(deps, clinic, clock, THURSDAY_3PM + timedelta(days=7), key="t:2")
    await reminders.plan(
        deps.redis,
        deps.pool,
        clinic,
        await deps.pool.fetchval("select id::text from appointments where idempotency_key = 't:2'"),
        "booked",
        clock.ms(),
    )
    clock.at = THURSDAY_3PM + timedelta(
        days=8
    )  # down for longer than the appointment: nothing late
    await Scheduler(deps).tick()
    assert [m.purpose for m in await outbound(deps, clinic)] == [
        "confirmation",
        "reminder",
        "confirmation",
    ]


async def test_a_worker_killed_mid_job_leaves_it_to_another(deps, clinic, clock):
    await book(deps, clinic, clock, THURSDAY_3PM)
    lease_ms = int(deps.settings.job_lease_s * 1000)
    # A worker claims the confirmation and dies before running it.
    [claimed] = await jobs.claim(deps.redis, clinic, now_ms=clock.ms(), lease_ms=lease_ms, limit=10)
    await Scheduler(deps).tick()
    assert await outbound(deps, clinic) == []  # still leased to the dead worker
    clock.at = NOW + timedelta(milliseconds=lease_ms + 1)
    await Scheduler(deps).tick()
    [message] = await outbound(deps, clinic)
    assert message.idempotency_key == f"job:{claimed.id}"


async def test_an_opted_out_contact_gets_no_reminder(deps, clinic, clock):
    identity, _ = await book(deps, clinic, clock, THURSDAY_3PM)
    await consent.record(
        deps.pool, org=clinic, contact_id=identity.contact_id, status="opted_out", source="keyword"
    )
    clock.at = THURSDAY_3PM - timedelta(hours=1)
    await Scheduler(deps).tick()
    assert await outbound(deps, clinic) == []
    assert await jobs.pending(deps.redis, clinic) == []  # acknowledged, not retried


async def test_quiet_hours_hold_a_reminder_until_morning(deps, clinic, clock):
    monday_8am = datetime(2027, 3, 8, 8, 0, tzinfo=BOGOTA)
    await org_settings.update(deps.pool, clinic, {"reminder_offsets_h": [12]})
    await book(deps, clinic, clock, monday_8am)  # the reminder is due Sunday 20:00
    await org_settings.update(deps.pool, clinic, {"quiet_hours": "19:00-07:00"})
    clock.at = monday_8am - timedelta(hours=12)
    scheduler = Scheduler(deps)
    await scheduler.tick()
    assert [m.purpose for m in await outbound(deps, clinic)] == ["confirmation"]
    [held] = await jobs.pending(deps.redis, clinic)
    assert held.due_ms == int(datetime(2027, 3, 8, 7, 0, tzinfo=BOGOTA).timestamp() * 1000)
    clock.at = datetime(2027, 3, 8, 7, 0, tzinfo=BOGOTA)
    await scheduler.tick()
    assert [m.purpose for m in await outbound(deps, clinic)] == ["confirmation", "reminder"]
    # The dashboards read what each run came to.
    runs = {
        (s.labels["kind"], s.labels["outcome"]): s.value
        for m in metrics.REGISTRY.collect()
        if m.name == "skytide_scheduled_jobs"
        for s in m.samples
        if s.name.endswith("_total") and s.labels["org"] == clinic
    }
    assert runs == {
        ("confirmation", "sent"): 1,
        ("reminder", "postponed_quiet"): 1,
        ("reminder", "sent"): 1,
    }


async def test_attendance_counts_no_shows_by_organization(deps, clinic, clock):
    from consumers.scheduler import AttendanceStats

    identity, appt = await book(deps, clinic, clock, THURSDAY_3PM)
    await book(deps, clinic, clock, THURSDAY_3PM + timedelta(days=1), key="t:2")
    await deps.pool.execute(
        "update appointments set status = 'no_show' where id = $1::uuid", appt.id
    )
    await reminders.confirm_attendance(
        deps.pool, clinic, identity.contact_id, appt.id
    )  # not active: no
    second = await deps.pool.fetchval(
        "select id::text from appointments where idempotency_key = 't:2'"
    )
    assert await reminders.confirm_attendance(deps.pool, clinic, identity.contact_id, second)
    await AttendanceStats(deps)()
    value = metrics.REGISTRY.get_sample_value
    assert value("skytide_appointment_attendance", {"org": clinic, "outcome": "no_show"}) == 1
    assert (
        value("skytide_appointment_attendance", {"org": clinic, "outcome": "confirmed_by_contact"})
        == 1
    )


async def test_the_sender_sends_a_reminder_as_an_interactive_quick_reply(
    system, make_org, gupshup, deps
):
    from storage import streams

    org = await make_org("RemindApp")
    identity = await chats.upsert_identity(deps.pool, org, "573001230000", "Ana")
    await deps.pool.execute(
        "update chat_identities set last_inbound_at = $2 where id = $1::uuid",
        identity.id,
        datetime.fromtimestamp(deps.clock(), timezone.utc),
    )
    async with system(roles=("sender",)):
        await streams.publish(
            deps.redis,
            events.OutboundMessage(
                org=org,
                phone="573001230000",
                text="⏰ Te recordamos tu cita",
                idempotency_key="job:r1",
                buttons=list(i18n.words("reminder.buttons", "es")),
                purpose="reminder",
                requires_bot_enabled=False,
            ),
            Stream.OUTBOUND,
        )
        [sent] = await gupshup.wait_for_sent(1, timeout_s=10)
    assert sent.kind == "session" and sent.message["type"] == "quick_reply"
    assert sent.message["content"] == {"type": "text", "text": "⏰ Te recordamos tu cita"}
    assert [o["title"] for o in sent.message["options"]] == ["Confirmar", "Reprogramar", "Cancelar"]


async def test_appointments_entered_in_the_crm_get_reminders_once_planned(deps, clinic, clock):
    identity = await chats.upsert_identity(deps.pool, clinic, "573001239999", "Eva")
    facial = await catalog.find_service(deps.pool, clinic, "limpieza facial")
    crm = await appointments.book(
        deps.pool,
        org=clinic,
        contact_id=identity.contact_id,
        service=facial,
        starts_at=THURSDAY_3PM,
        idempotency_key="crm:1",
    )  # no jobs planned
    await book(deps, clinic, clock, THURSDAY_3PM + timedelta(days=1))  # booked by the bot: planned
    assert await reminders.plan_upcoming(deps.redis, deps.pool, clinic, clock.ms()) == 1
    assert await reminders.plan_upcoming(deps.redis, deps.pool, clinic, clock.ms()) == 0  # once
    mine = [j for j in await jobs.pending(deps.redis, clinic) if j.data.appointment_id == crm.id]
    assert sorted(j.kind for j in mine) == ["reminder", "reminder"]  # no confirmation


async def test_a_job_that_fails_on_its_own_is_dropped_after_max_deliveries(deps, clinic, clock):
    await jobs.plan(
        deps.redis,
        clinic,
        "bad",
        clock.ms(),
        events.ReminderJob(appointment_id="not-a-uuid", starts_ms=0, offset_h=24),
    )
    scheduler = Scheduler(deps)
    for attempt in range(1, deps.settings.max_deliveries + 1):
        assert [j.id for j in await jobs.pending(deps.redis, clinic)] == ["bad"], attempt
        await scheduler.tick()
        clock.at += timedelta(seconds=deps.settings.job_lease_s + 1)  # its lease ends: tried again
    assert await jobs.pending(deps.redis, clinic) == []
    assert await deps.redis.hlen(keys.jobs_failures(clinic)) == 0
    assert await outbound(deps, clinic) == []


async def test_a_reminder_the_previous_version_planned_is_sent(deps, clinic, clock):
    """A deployment upgraded in place: the jobs in Redis were written by the previous code."""
    _, appt = await book(deps, clinic, clock, THURSDAY_3PM)
    await jobs.unplan_appointment(deps.redis, clinic, appt.id)
    starts_ms = int(THURSDAY_3PM.timestamp() * 1000)
    due_ms = starts_ms - 24 * 3_600_000
    job_id = f"remind:{appt.id}:24h:{starts_ms}"
    old = {  # what the previous storage/jobs.py plan() wrote, json.dumps of an untyped dict
        "appointment_id": appt.id,
        "starts_ms": starts_ms,
        "kind": "reminder",
        "offset_h": 24,
        "stale_ms": starts_ms - 2 * 3_600_000,
    }
    await deps.redis.hset(keys.jobs_data(clinic), job_id, json.dumps(old))
    await deps.redis.zadd(keys.jobs_due(clinic), {job_id: due_ms})
    await deps.redis.sadd(keys.appointment_jobs(clinic, appt.id), job_id)
    await deps.redis.zadd(keys.JOB_ORGS, {clinic: due_ms})
    clock.at = THURSDAY_3PM - timedelta(hours=24)
    await Scheduler(deps).tick()
    [reminder] = await outbound(deps, clinic)
    assert (reminder.purpose, reminder.idempotency_key) == ("reminder", f"job:{job_id}")
    assert await jobs.pending(deps.redis, clinic) == []


async def test_job_data_that_is_no_job_is_dropped_after_max_deliveries(deps, clinic, clock):
    await deps.redis.hset(keys.jobs_data(clinic), "garbled", '{"kind": "invoice"}')
    await deps.redis.zadd(keys.jobs_due(clinic), {"garbled": clock.ms()})
    await deps.redis.zadd(keys.JOB_ORGS, {clinic: clock.ms()})
    scheduler = Scheduler(deps)
    for attempt in range(1, deps.settings.max_deliveries + 1):
        assert [j.id for j in await jobs.pending(deps.redis, clinic)] == ["garbled"], attempt
        await scheduler.tick()
        clock.at += timedelta(seconds=deps.settings.job_lease_s + 1)  # its lease ends: tried again
    assert await jobs.pending(deps.redis, clinic) == []
    assert await outbound(deps, clinic) == []


async def test_jobs_a_dead_scheduler_dropped_from_the_index_are_found_by_the_next_one(
    deps, clinic, clock
):
    await book(deps, clinic, clock, THURSDAY_3PM)
    await Scheduler(deps).tick()  # the confirmation
    # A scheduler took the organization out of the index and died before putting it back.
    await deps.redis.zrem(keys.JOB_ORGS, clinic)
    clock.at = THURSDAY_3PM - timedelta(hours=24)
    await Scheduler(deps).tick()  # a scheduler (re)started: it sweeps the index as it reconciles
    assert [m.purpose for m in await outbound(deps, clinic)] == ["confirmation", "reminder"]
