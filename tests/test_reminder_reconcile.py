"""The scheduler rebuilds its jobs from PostgreSQL: after Redis comes back empty every upcoming
appointment still gets each of its reminders, once; an appointment entered in the CRM gets them
too; a reminder already sent, or whose time passed before the booking, is not planned again."""

from __future__ import annotations

from datetime import datetime, timedelta

from consumers.scheduler import Scheduler
from storage import appointments, catalog, chats, jobs, keys, reminders
from storage.seed import seed_demo
from tests.conftest import eventually
from tests.graph_helpers import BOGOTA
from tests.test_reminders import THURSDAY_3PM, Clock, book, clinic, clock, outbound  # noqa: F401
from tests import clock as session_clock


async def _reminders_sent(deps) -> dict[str, int]:
    """Reminders that reached Gupshup's send API, per phone (the sender's rows)."""
    rows = await deps.pool.fetch(
        "select i.phone, count(*) as n from chat_messages m join chat_identities i on i.id = m.chat_identity_id"
        " where m.purpose = 'reminder' and m.provider_message_id is not null group by i.phone"
    )
    return {r["phone"]: r["n"] for r in rows}


async def test_after_redis_comes_back_empty_every_appointment_gets_each_reminder_once(
    system, deps, gupshup
):
    clinic = await seed_demo(deps.pool, today=session_clock.today())
    await deps.redis.sadd(keys.ORG_REGISTRY, clinic)
    facial = await catalog.find_service(deps.pool, clinic, "limpieza facial")
    today = session_clock.today()
    booked: dict[str, datetime] = {}  # phone -> start
    days = iter(range(2, 30))
    for i in range(3):
        phone = f"57300777000{i}"
        identity = await chats.upsert_identity(deps.pool, clinic, phone, f"Cliente {i}")
        appt = None
        while appt is None:  # the next days the clinic is open at 15:00, whatever today is
            starts = datetime.combine(
                today + timedelta(days=next(days)), datetime.min.time(), BOGOTA
            ).replace(hour=15)
            appt = await appointments.book(
                deps.pool,
                org=clinic,
                contact_id=identity.contact_id,
                service=facial,
                starts_at=starts,
                idempotency_key=f"r:{i}",
            )
        if i < 2:  # booked through the bot: planned at once; the third was entered in the CRM
            await reminders.plan(deps.redis, deps.pool, clinic, appt.id, "booked", deps.now_ms())
        booked[phone] = starts
    # Every reminder time, in order: 24 h and 2 h before each start (the demo clinic's offsets).
    due = sorted(
        (starts - timedelta(hours=h), phone) for phone, starts in booked.items() for h in (24, 2)
    )

    async with system(
        roles=("sender", "scheduler"),
        dev_clock=True,
        scheduler_tick_s=0.05,
        recipient_interval_ms=0,
    ) as s:
        await gupshup.wait_for_sent(2, timeout_s=20)  # the two bookings' confirmations

        async def reach(moment: datetime) -> None:
            """Move the development clock just past `moment` (it only moves forward)."""
            offset_ms = max(0, int((moment.timestamp() - session_clock.now()) * 1000) + 1000)
            await deps.redis.set(keys.DEV_CLOCK_OFFSET, offset_ms)
            await eventually(lambda: _past(s.deps, moment), timeout_s=10)

        expected: dict[str, int] = {}
        for n, (moment, phone) in enumerate(due):
            if n == 1:
                # Redis restarts empty (no persistence, or an empty replica promoted) after the
                # first reminder went out: the jobs, the streams and the marker are gone; only
                # the development clock's offset is put back, in the same transaction.
                offset = await deps.redis.get(keys.DEV_CLOCK_OFFSET)
                async with deps.redis.pipeline(transaction=True) as p:
                    p.flushdb()
                    p.set(keys.DEV_CLOCK_OFFSET, offset)
                    await p.execute()
                await eventually(lambda: deps.redis.exists(keys.JOBS_RECONCILED), timeout_s=20)
            await reach(moment)
            expected[phone] = expected.get(phone, 0) + 1
            await eventually(lambda: _equal(_reminders_sent(deps), expected), timeout_s=20)
        assert await _reminders_sent(deps) == {phone: 2 for phone in booked}
        # Rebuilding again plans nothing: every reminder was sent or is past.
        assert await reminders.reconcile(deps.redis, deps.pool, s.deps.now_ms()) == 0
        assert await jobs.pending(deps.redis, clinic) == []
    assert (
        len([m for m in gupshup.sent if m.destination in booked]) == 2 + 6
    )  # confirmations, reminders


async def _past(deps, moment: datetime) -> bool:
    return deps.clock() > moment.timestamp()


async def _equal(found, expected) -> bool:
    return await found == expected


async def test_reconcile_is_idempotent_and_plans_only_what_is_missing(deps, clinic, clock):
    await book(deps, clinic, clock, THURSDAY_3PM)
    await book(
        deps, clinic, clock, THURSDAY_3PM + timedelta(days=1), phone="573001112244", key="t:2"
    )
    planned = sorted(j.id for j in await jobs.pending(deps.redis, clinic) if j.kind == "reminder")
    assert await reminders.reconcile(deps.redis, deps.pool, clock.ms()) == 0  # nothing missing
    await deps.redis.flushdb()
    assert await reminders.reconcile(deps.redis, deps.pool, clock.ms()) == 2
    assert (
        sorted(j.id for j in await jobs.pending(deps.redis, clinic)) == planned
    )  # no confirmations
    assert await reminders.reconcile(deps.redis, deps.pool, clock.ms()) == 0


async def test_a_reminder_that_came_due_while_redis_was_empty_is_sent_late_but_once(
    deps, clinic, clock
):
    scheduler = Scheduler(deps)
    identity, appt = await book(deps, clinic, clock, THURSDAY_3PM)
    await scheduler.tick()  # the confirmation
    await deps.redis.flushdb()
    # Redis was empty from before the 24-hour reminder until an hour after it.
    clock.at = THURSDAY_3PM - timedelta(hours=23)
    await scheduler.tick()  # no marker: rebuilt, and the late reminder goes out
    sent = [m for m in await outbound(deps, clinic) if m.purpose == "reminder"]
    assert (
        len(sent) == 1
        and sent[0].idempotency_key
        == f"job:remind:{appt.id}:24h:{int(THURSDAY_3PM.timestamp() * 1000)}"
    )
    # The sender stored it under that key: a rebuild after another loss does not plan it again.
    await deps.pool.execute(
        "insert into chat_messages (organization_id, chat_identity_id, direction, message, idempotency_key,"
        " purpose) values ($1::uuid, $2::uuid, 'outbound', 'x', $3, 'reminder')",
        clinic,
        identity.id,
        sent[0].idempotency_key,
    )
    await deps.redis.flushdb()
    assert await reminders.reconcile(deps.redis, deps.pool, clock.ms()) == 1  # the 2-hour one only
    assert [j.data.offset_h for j in await jobs.pending(deps.redis, clinic)] == [2]


async def test_a_booking_made_after_a_reminder_time_never_gets_that_reminder(deps, clinic, clock):
    clock.at = THURSDAY_3PM - timedelta(hours=5)  # booked 5 hours before: the 24-hour one is past
    _, appt = await book(deps, clinic, clock, THURSDAY_3PM)
    # The row's times come from PostgreSQL's clock, not the test's: put them at the booking.
    await deps.pool.execute(
        "update appointments set created_at = $2, updated_at = $2 where id = $1::uuid",
        appt.id,
        clock.at,
    )
    await deps.redis.flushdb()
    assert await reminders.reconcile(deps.redis, deps.pool, clock.ms()) == 1
    assert [j.data.offset_h for j in await jobs.pending(deps.redis, clinic)] == [2]


async def test_one_scheduler_rebuilds_at_a_time_and_the_others_keep_sending(deps, clinic, clock):
    await book(deps, clinic, clock, THURSDAY_3PM)
    scheduler = Scheduler(deps)
    await deps.redis.set(keys.JOBS_RECONCILING, "another scheduler", ex=60)
    await scheduler.tick()  # another scheduler holds the rebuild: this one sends what is due
    assert [m.purpose for m in await outbound(deps, clinic)] == ["confirmation"]
    assert not await deps.redis.exists(keys.JOBS_RECONCILED)
