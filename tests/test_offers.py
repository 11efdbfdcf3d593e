"""Closed or full windows: why, and the alternatives (graph/offers.py, storage/schedules.py
`unavailable`), through the offline model and at the storage level. Fixed clock: Wednesday 3
March 2027, 10:00 in Bogotá."""

from __future__ import annotations

from datetime import date, time

import pytest

from graph.receptionist import Receptionist
from graph import replies
from storage import appointments, holds, schedules
from storage.seed import seed_demo
from tests.graph_helpers import BOGOTA, NOW, Chat, redis_saver


@pytest.fixture
async def clinic(deps):
    deps.clock = NOW.timestamp
    return await seed_demo(deps.pool, today=NOW.date())


@pytest.fixture
async def chat(deps, settings, clinic):
    return Chat(deps, Receptionist(deps, await redis_saver(settings)), clinic)


async def andres_away(deps, clinic, first: date, last: date) -> None:
    """Andrés is the only one who gives the deep-tissue massage (Masaje descontracturante)."""
    andres = await deps.pool.fetchval(
        "select id::text from staff where organization_id = $1::uuid and name = 'Andrés Rojas'",
        clinic,
    )
    await schedules.add_time_off(
        deps.pool, clinic, andres, *schedules.day_span(first, last, BOGOTA)
    )


async def test_a_staff_members_day_off_is_named_and_the_next_day_they_work_offered(
    chat, deps, clinic
):
    await andres_away(deps, clinic, date(2027, 3, 5), date(2027, 3, 5))
    await chat.say("quiero un masaje descontracturante el viernes")
    assert "slots_proposed" in chat.actions
    assert "El viernes 5 de marzo no hay nadie del equipo disponible" in chat.text, chat.text
    assert "sábado 6 de marzo" in chat.text and "viernes 5 de marzo," not in chat.text


async def test_no_availability_names_the_days_searched_never_the_coming_days(chat, deps, clinic):
    await andres_away(deps, clinic, date(2027, 3, 4), date(2027, 4, 30))
    await chat.say("quiero un masaje descontracturante mañana")
    assert (
        "No tengo horarios libres para Masaje descontracturante entre el jueves 4 de marzo y el jueves 18 de "
        "marzo" in chat.text
    ), chat.text
    assert "próximos días" not in chat.text


async def test_the_kind_of_closed_of_each_day(deps, clinic):
    staff = await appointments.eligible_staff(
        deps.pool,
        clinic,
        await deps.pool.fetchval(
            "select id::text from services where organization_id = $1::uuid and name = 'Manicure spa'",
            clinic,
        ),
    )
    holiday, closure, sunday, friday = (
        date(2027, 3, 22),
        date(2027, 12, 24),
        date(2027, 3, 7),
        date(2027, 3, 5),
    )
    cal = await schedules.load_calendar(
        deps.pool, clinic, BOGOTA, [holiday, closure, sunday, friday]
    )

    def kind(days, start=time.min, end=time.max):
        return schedules.unavailable(cal, staff, days, start, end)

    assert kind([holiday]).kind == "holiday"
    assert (kind([closure]).kind, kind([closure]).reason) == ("closure", "Nochebuena")
    assert kind([sunday]).kind == "closed_weekday"
    evening = kind([friday], time(18), time(22))
    assert (evening.kind, evening.opens, evening.closes) == ("outside_hours", time(8), time(18))
    assert (
        kind([friday], time(9), time(10)).kind == "full"
    )  # open and staffed: only bookings can fill it
    # One appointment asked at 17:30 for an hour: it starts while open but would end after 18:00.
    assert (
        schedules.unavailable(cal, staff, [friday], time(17, 30), time(18, 30), whole=True).kind
        == "ends_after_closing"
    )
    assert (
        schedules.unavailable(cal, staff, [friday], time(19), time(20), whole=True).kind
        == "outside_hours"
    )
    # Several days: the closed ones do not hide that the open ones close before the evening.
    assert kind([sunday, friday], time(18), time(22)).kind == "outside_hours"
    assert kind([sunday, holiday]).kind == "closed_days"


async def test_the_alternatives_for_a_closed_evening_are_all_held_for_this_chat(chat, deps, clinic):
    """The offer is searched in two parts (that day, the next open day) but held as one: holding
    replaces a chat's earlier holds, so each part held alone would let the first go."""
    await chat.say("quiero manicure spa el lunes 22 de marzo en la noche")
    assert "festivo" in chat.text and "martes 23 de marzo" in chat.text
    offered = chat.results[-1].actions[-1]["data"]["slots"]
    held = await holds.held_by_others(deps.redis, clinic, "another-chat", now_ms=deps.now_ms())
    assert len(offered) == 3 and len(held) == 3
    assert {replies.when(start, BOGOTA) for _, start, _ in held} == {s["label"] for s in offered}
