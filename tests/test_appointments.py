"""storage/catalog.py and storage/appointments.py against the real PostgreSQL: search,
availability, bookings, tenant isolation."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from storage import appointments, catalog, chats, schedules
from storage.seed import seed_demo
from tests import clock

BOGOTA = ZoneInfo("America/Bogota")
NOW = datetime(2027, 3, 3, 10, 0, tzinfo=BOGOTA)  # a Wednesday
TOMORROW = date(2027, 3, 4)


@pytest.fixture
async def clinic(deps):
    return await seed_demo(deps.pool, today=clock.today())


async def contact(deps, org: str, phone: str = "573001112233") -> str:
    return (await chats.upsert_identity(deps.pool, org, phone, None)).contact_id


async def service(deps, org: str, name: str) -> catalog.Service:
    return await catalog.find_service(deps.pool, org, name)


async def test_search_finds_services_despite_typos_and_accents(deps, clinic):
    hits = await catalog.search_knowledge(deps.pool, clinic, "limpiesa facial")
    assert hits[0].title == "Limpieza facial"
    hits = await catalog.search_knowledge(
        deps.pool, clinic, "hola, ¿cuánto cuesta la limpieza facial?"
    )
    assert hits[0].title == "Limpieza facial" and hits[0].service.price == 120000
    hits = await catalog.search_knowledge(deps.pool, clinic, "que medios de pago aceptan")
    assert hits[0].kind == "faq" and "Nequi" in hits[0].text
    assert (
        await catalog.find_service(deps.pool, clinic, "microdermoabrasion")
    ).name == "Microdermoabrasión"
    assert await catalog.find_service(deps.pool, clinic, "mañana en la tarde") is None


async def test_availability_follows_hours_duration_and_timezone(deps, clinic):
    facial = await service(deps, clinic, "limpieza facial")
    slots = await appointments.availability(
        deps.pool,
        org=clinic,
        service=facial,
        tz=BOGOTA,
        days=[TOMORROW],
        time_from=time(12),
        time_to=time(18),
        not_before=NOW,
        limit=50,
    )
    assert slots, "the clinic is open on Thursday afternoon"
    for slot in slots:
        assert slot.starts_at.utcoffset() == timedelta(hours=-5)
        assert time(12) <= slot.starts_at.timetz().replace(tzinfo=None) and slot.ends_at.hour <= 18
    saturday = date(2027, 3, 6)
    late = await appointments.availability(
        deps.pool,
        org=clinic,
        service=facial,
        tz=BOGOTA,
        days=[saturday],
        time_from=time(12),
        time_to=time(23),
        not_before=NOW,
        limit=50,
    )
    assert [s.starts_at.strftime("%H:%M") for s in late] == [
        "12:00",
        "12:30",
        "13:00",
    ]  # closes at 14
    sunday = await appointments.availability(
        deps.pool,
        org=clinic,
        service=facial,
        tz=BOGOTA,
        days=[date(2027, 3, 7)],
        time_from=time.min,
        time_to=time.max,
        not_before=NOW,
    )
    assert sunday == []


async def open_every_day(deps, org) -> None:
    await deps.pool.executemany(
        "insert into business_hours (organization_id, weekday, opens, closes) "
        "values ($1::uuid, $2, '08:00', '18:00')",
        [(org, d) for d in range(7)],
    )


async def test_booking_is_idempotent_and_records_name_and_opt_in(deps, clinic):
    who = await contact(deps, clinic)
    facial = await service(deps, clinic, "limpieza facial")
    start = datetime(2027, 3, 4, 15, 0, tzinfo=BOGOTA)
    first = await appointments.book(
        deps.pool,
        org=clinic,
        contact_id=who,
        service=facial,
        starts_at=start,
        idempotency_key="turn-1:1",
        contact_name="Ana Pérez",
    )
    again = await appointments.book(
        deps.pool,
        org=clinic,
        contact_id=who,
        service=facial,
        starts_at=start,
        idempotency_key="turn-1:1",
        contact_name="Ana Pérez",
    )
    assert first.id == again.id and first.ends_at - first.starts_at == timedelta(minutes=60)
    assert await deps.pool.fetchval("select count(*) from appointments") == 1
    assert await chats.contact_name(deps.pool, clinic, who) == "Ana Pérez"
    assert (
        await deps.pool.fetchval(
            "select status from contact_authorizations where contact_id = $1::uuid", who
        )
        == "opted_in"
    )
    # The same contact at the same time under another key (a turn formed anew after Redis lost
    # writes, say) gets no second appointment with another staff member.
    assert (
        await appointments.book(
            deps.pool,
            org=clinic,
            contact_id=who,
            service=facial,
            starts_at=start,
            idempotency_key="turn-2:1",
        )
        is None
    )
    # Another contact at that time goes to the next free staff member, not a double booking.
    someone = await contact(deps, clinic, "573009998888")
    other = await appointments.book(
        deps.pool,
        org=clinic,
        contact_id=someone,
        service=facial,
        starts_at=start,
        idempotency_key="turn-3:1",
    )
    assert other.staff_id != first.staff_id
    assert await deps.pool.fetchval("select count(*) from appointments") == 2


async def test_the_fallback_to_a_colleague_respects_every_schedule(deps, clinic):
    """The offered staff member was taken after the hold expired: the booking goes only to a
    colleague who works then (hours, time off, closures, holidays), or nowhere."""
    facial = await service(deps, clinic, "limpieza facial")
    staff = await appointments.eligible_staff(deps.pool, clinic, facial.id)
    assert len(staff) >= 2
    start = datetime(2027, 3, 4, 15, 0, tzinfo=BOGOTA)  # Thursday afternoon, open
    rivals = [await contact(deps, clinic, f"57300111{i:04d}") for i in range(len(staff))]
    # Everyone but the last eligible staff member is away that afternoon.
    for staff_id in staff[:-1]:
        await schedules.add_time_off(
            deps.pool,
            clinic,
            staff_id,
            start - timedelta(hours=1),
            start + timedelta(hours=3),
            reason="cita médica",
        )
    # The last one is booked by someone else at that time.
    taken = await appointments.book(
        deps.pool,
        org=clinic,
        contact_id=rivals[0],
        service=facial,
        starts_at=start,
        idempotency_key="rival:1",
        preferred_staff=staff[-1],
    )
    assert taken.staff_id == staff[-1]
    who = await contact(deps, clinic)
    # The customer picked that slot with staff[0] (offered before the time off was entered).
    assert (
        await appointments.book(
            deps.pool,
            org=clinic,
            contact_id=who,
            service=facial,
            starts_at=start,
            idempotency_key="late:1",
            preferred_staff=staff[0],
        )
        is None
    )
    # A public holiday (1 November 2027, All Saints' Day, Monday) gets nobody either.
    holiday = datetime(2027, 11, 1, 10, 0, tzinfo=BOGOTA)
    assert (
        await appointments.book(
            deps.pool,
            org=clinic,
            contact_id=who,
            service=facial,
            starts_at=holiday,
            idempotency_key="late:2",
        )
        is None
    )
    # A closure too, and outside opening hours.
    await deps.pool.execute(
        "insert into closures (organization_id, day, reason) values ($1::uuid, $2, 'inventario')",
        clinic,
        date(2027, 3, 5),
    )
    for when in (
        datetime(2027, 3, 5, 10, 0, tzinfo=BOGOTA),
        datetime(2027, 3, 4, 22, 0, tzinfo=BOGOTA),
    ):
        assert (
            await appointments.book(
                deps.pool,
                org=clinic,
                contact_id=who,
                service=facial,
                starts_at=when,
                idempotency_key=f"late:{when.isoformat()}",
            )
            is None
        )
    assert await deps.pool.fetchval("select count(*) from appointments") == 1


async def test_two_chats_racing_for_the_last_slot_one_wins(deps, make_org):
    org = await make_org()
    await deps.pool.execute(
        "insert into staff (organization_id, name) values ($1::uuid, 'Sola')", org
    )
    await open_every_day(deps, org)
    await deps.pool.execute(
        "insert into services (organization_id, name, duration_minutes, price) "
        "values ($1::uuid, 'Masaje', 60, 100)",
        org,
    )
    massage = await service(deps, org, "masaje")
    start = datetime(2027, 3, 4, 9, 0, tzinfo=BOGOTA)
    a, b = await contact(deps, org, "571"), await contact(deps, org, "572")
    results = await asyncio.gather(
        *[
            appointments.book(
                deps.pool,
                org=org,
                contact_id=who,
                service=massage,
                starts_at=start,
                idempotency_key=key,
            )
            for who, key in ((a, "ta:1"), (b, "tb:1"))
        ]
    )
    assert sorted(r is None for r in results) == [False, True]
    assert (
        await deps.pool.fetchval("select count(*) from appointments where status = 'confirmed'")
        == 1
    )


async def test_cancel_and_reschedule_own_appointments(deps, clinic):
    who = await contact(deps, clinic)
    facial = await service(deps, clinic, "limpieza facial")
    start = datetime(2027, 3, 4, 15, 0, tzinfo=BOGOTA)
    booked = await appointments.book(
        deps.pool,
        org=clinic,
        contact_id=who,
        service=facial,
        starts_at=start,
        idempotency_key="k:1",
    )
    later = start + timedelta(days=1)
    moved = await appointments.reschedule(
        deps.pool, org=clinic, contact_id=who, appointment_id=booked.id, starts_at=later
    )
    assert moved.starts_at == later and moved.ends_at == later + timedelta(minutes=60)
    assert (
        await appointments.reschedule(
            deps.pool, org=clinic, contact_id=who, appointment_id=booked.id, starts_at=later
        )
    ).id == booked.id  # a retried turn is harmless
    upcoming = await appointments.list_appointments(deps.pool, clinic, who, since=NOW)
    assert [a.id for a in upcoming] == [booked.id]
    assert (await appointments.cancel(deps.pool, clinic, who, booked.id)).status == "cancelled"
    assert (
        await appointments.cancel(deps.pool, clinic, who, booked.id)
    ).status == "cancelled"  # idempotent
    assert await appointments.list_appointments(deps.pool, clinic, who, since=NOW) == []


async def test_another_organizations_ids_reach_nothing(deps, clinic, make_org):
    other = await make_org()
    await deps.pool.execute(
        "insert into services (organization_id, name, duration_minutes, price) "
        "values ($1::uuid, 'Tratamiento secreto', 30, 1)",
        other,
    )
    await deps.pool.execute(
        "insert into staff (organization_id, name) values ($1::uuid, 'X')", other
    )
    await open_every_day(deps, other)
    secret = await service(deps, other, "tratamiento secreto")
    victim = await contact(deps, other, "579")
    theirs = await appointments.book(
        deps.pool,
        org=other,
        contact_id=victim,
        service=secret,
        starts_at=datetime(2027, 3, 4, 9, tzinfo=BOGOTA),
        idempotency_key="o:1",
    )
    me = await contact(deps, clinic)
    found = await catalog.search_knowledge(deps.pool, clinic, "tratamiento secreto")
    assert "Tratamiento secreto" not in [h.title for h in found]
    assert await catalog.get_service(deps.pool, clinic, secret.id) is None
    assert await appointments.cancel(deps.pool, clinic, me, theirs.id) is None
    assert (
        await appointments.cancel(deps.pool, clinic, victim, theirs.id) is None
    )  # right contact, wrong org
    with pytest.raises(appointments.NotYours):
        await appointments.reschedule(
            deps.pool,
            org=clinic,
            contact_id=me,
            appointment_id=theirs.id,
            starts_at=datetime(2027, 3, 5, 9, tzinfo=BOGOTA),
        )
    assert await appointments.list_appointments(deps.pool, clinic, victim) == []
    # Booking another org's service for my contact inserts nothing.
    facial = await service(deps, clinic, "limpieza facial")
    assert (
        await appointments.book(
            deps.pool,
            org=clinic,
            contact_id=victim,
            service=facial,
            starts_at=datetime(2027, 3, 4, 9, tzinfo=BOGOTA),
            idempotency_key="x:1",
        )
        is None
    )
    assert (await catalog.get_service(deps.pool, other, secret.id)).name == "Tratamiento secreto"
    assert (await appointments.cancel(deps.pool, other, victim, theirs.id)).status == "cancelled"
