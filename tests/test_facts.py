"""The business's facts (storage/facts.py, graph/facts.py): a day's hours are the hours
availability offers (holidays, closures, open_on_holidays), the address, who performs a service
by the booking rule (generalists too), the price list. On the session's fixed clock."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic_ai.messages import ToolReturnPart

from graph import facts as said
from graph import replies
from graph.receptionist import Receptionist
from storage import appointments, catalog, catalog_file, facts, org_settings, schedules
from storage.seed import seed_demo
from tests import clock
from tests.graph_helpers import NOW, Chat, redis_saver
from tests.test_graph_scripted import scripted

BOGOTA = ZoneInfo("America/Bogota")
OPEN_WEEKDAYS = range(6)  # the demo clinic opens Monday to Saturday


@pytest.fixture
async def clinic(deps):
    return await seed_demo(deps.pool, today=clock.today())


@pytest.fixture
def now() -> datetime:
    return clock.now_dt().astimezone(BOGOTA)


def _day_text(day) -> str:
    return replies.day(datetime.combine(day, time(12)))


def _next_holiday(now: datetime, weekdays=OPEN_WEEKDAYS):
    """The first Colombian public holiday after today on a day the clinic would otherwise open."""
    days = [now.date() + timedelta(days=n) for n in range(1, 400)]
    return min(d for d in schedules.public_holidays("CO", days) if d.weekday() in weekdays)


def _next_plain_open_day(now: datetime, after_days: int = 3):
    days = [now.date() + timedelta(days=n) for n in range(after_days, after_days + 30)]
    holidays = schedules.public_holidays("CO", days)
    return next(d for d in days if d.weekday() in OPEN_WEEKDAYS and d not in holidays)


async def _free(deps, org, day):
    service = await catalog.find_service(deps.pool, org, "limpieza facial")
    return await appointments.availability(
        deps.pool,
        org=org,
        service=service,
        tz=BOGOTA,
        days=[day],
        time_from=time.min,
        time_to=time.max,
        not_before=clock.now_dt(),
        limit=5,
    )


async def test_a_holiday_is_closed_exactly_when_availability_offers_nothing(deps, clinic, now):
    holiday = _next_holiday(now)
    [h] = await facts.hours_on(deps.pool, clinic, BOGOTA, [holiday])
    assert not h.is_open and h.closed_because == "festivo"
    assert await _free(deps, clinic, holiday) == []
    text = await said.hours(
        deps.pool,
        clinic,
        BOGOTA,
        now,
        f"¿abren el {holiday.day} de {replies.MONTHS[holiday.month - 1]}?",
    )
    assert f"{_day_text(holiday)} es festivo y no atendemos" in text
    assert "Volvemos a atender" in text

    await org_settings.update(deps.pool, clinic, {"open_on_holidays": True})
    [h] = await facts.hours_on(deps.pool, clinic, BOGOTA, [holiday])
    assert h.is_open and await _free(deps, clinic, holiday)


async def test_a_closure_gives_its_reason_and_nothing_is_offered(deps, clinic, now):
    day = _next_plain_open_day(now)
    await deps.pool.execute(
        "insert into closures (organization_id, day, reason) values ($1::uuid, $2, $3)",
        clinic,
        day,
        "Inventario",
    )
    [h] = await facts.hours_on(deps.pool, clinic, BOGOTA, [day])
    assert h.closed_because == "Inventario" and await _free(deps, clinic, day) == []
    text = await said.hours(
        deps.pool,
        clinic,
        BOGOTA,
        now,
        f"¿atienden el {day.day} de {replies.MONTHS[day.month - 1]}?",
    )
    assert f"El {_day_text(day)} no atendemos (Inventario)." in text


async def test_a_weekday_gets_its_own_hours_not_the_sunday_faq(deps, clinic, now):
    text = await said.hours(deps.pool, clinic, BOGOTA, now, "¿a qué hora abren el sábado?")
    assert "atendemos de 9:00 a. m. a 2:00 p. m." in text or "es festivo" in text
    assert "domingo" not in text
    assert "Los domingos no atendemos." in await said.hours(
        deps.pool, clinic, BOGOTA, now, "¿y el domingo?"
    )


async def test_the_monday_holiday_is_the_next_monday_that_is_one(deps, clinic, now):
    monday = _next_holiday(now, weekdays=(0,))
    text = await said.hours(deps.pool, clinic, BOGOTA, now, "¿atienden el lunes festivo?")
    assert f"{_day_text(monday)} es festivo" in text


async def test_today_after_closing_says_we_closed(deps, clinic):
    day = _next_plain_open_day(clock.now_dt().astimezone(BOGOTA))
    evening = datetime.combine(day, time(20), BOGOTA)
    text = await said.hours(deps.pool, clinic, BOGOTA, evening, "¿hasta qué hora están hoy?")
    assert text.startswith("Hoy ya cerramos: atendimos de ")
    morning = datetime.combine(day, time(7), BOGOTA)
    assert (await said.hours(deps.pool, clinic, BOGOTA, morning, "¿abren hoy?")).startswith(
        f"Hoy, {_day_text(day)}, atendemos de "
    )


async def test_a_weekday_and_date_that_disagree_get_both_days(deps, clinic):
    text = await said.hours(
        deps.pool, clinic, BOGOTA, NOW, "¿abren el martes 15?"
    )  # 15 March 2027: Monday
    assert text.startswith("Ojo: el 15 es lunes, no martes.")
    assert "lunes 15 de marzo atendemos" in text and "martes 16 de marzo atendemos" in text


async def test_the_week_without_a_day(deps, clinic, now):
    text = await said.hours(deps.pool, clinic, BOGOTA, now, "¿qué horario manejan?")
    assert text == (
        "Nuestro horario: lunes a viernes de 8:00 a. m. a 6:00 p. m.; "
        "sábado de 9:00 a. m. a 2:00 p. m.; domingo cerrado."
    )
    assert (await said.hours(deps.pool, clinic, BOGOTA, now, "¿abren en festivos?")).startswith(
        "Los festivos no atendemos."
    )


async def test_the_address_from_the_settings_and_the_faq_without_repeating_it(deps, clinic):
    text = await said.address(deps.pool, clinic)
    assert text.startswith("Estamos en Calle 93 # 12-45, Chicó, Bogotá.")
    assert text.count("Calle 93") == 1  # the FAQ answer repeats the address: left out
    await org_settings.update(deps.pool, clinic, {"address": "Carrera 7 # 80-10, Bogotá"})
    text = await said.address(deps.pool, clinic)
    assert text.startswith("Estamos en Carrera 7 # 80-10, Bogotá.") and "parqueadero" in text


async def test_no_address_is_said_plainly(deps, make_org):
    org = await make_org()
    assert (await said.address(deps.pool, org)).startswith("No tengo la dirección registrada")


async def test_who_performs_a_service_follows_the_booking_rule(deps, clinic):
    assert (
        await said.staff(deps.pool, clinic, "¿quién hace el masaje descontracturante?")
        == "Masaje descontracturante lo hace Andrés Rojas."
    )
    text = await said.staff(deps.pool, clinic, "limpieza facial")
    assert (
        text.startswith("Limpieza facial lo hacen ")
        and "Laura Gómez" in text
        and "Camila Torres" in text
    )
    # A service that lists nobody is done by the generalists (staff listed for no service).
    await catalog_file.import_catalog(
        deps.pool,
        clinic,
        {
            "staff": [{"name": "Sofía Pardo", "role": "Esteticista"}],
            "services": [
                {
                    "name": "Lifting de pestañas",
                    "duration_min": 45,
                    "price": 90000,
                    "description": "Curvatura de pestañas",
                }
            ],
        },
    )
    service = await catalog.find_service(deps.pool, clinic, "lifting de pestañas")
    assert [n for n, _ in await facts.staff_for(deps.pool, clinic, service)] == ["Sofía Pardo"]
    assert set(await appointments.eligible_staff(deps.pool, clinic, service.id)) == {
        await deps.pool.fetchval(
            "select id::text from staff where organization_id = $1::uuid and name = $2",
            clinic,
            "Sofía Pardo",
        )
    }
    team = await said.staff(
        deps.pool, clinic, "¿quién atiende?"
    )  # no service named: the whole team
    assert (
        team.startswith("Nuestro equipo: ")
        and "Laura Gómez (Cosmetóloga)" in team
        and "Sofía Pardo" in team
    )


async def test_the_price_list(deps, clinic):
    text = await said.price_list(deps.pool, clinic)
    for service in await catalog.list_services(deps.pool, clinic):
        assert (
            f"• {service.name}: {replies.price(service.price, service.currency)} "
            f"({service.duration_minutes} min)" in text
        )
    assert "Valoración estética: sin costo" in text


async def test_a_real_model_gets_the_same_answer_through_business_info(deps, settings, clinic):
    """A model that calls business_info(topic, date) reads what the offline model says: the
    hours of that day from the calendar, and the bad topic comes back as a retry it can fix."""
    deps.clock = NOW.timestamp
    holiday = _next_holiday(NOW)
    asked = f"el {holiday.day} de {replies.MONTHS[holiday.month - 1]}"
    seen: list[str] = []

    def knowledge(returns: list[ToolReturnPart], info):
        if not returns:
            return ("business_info", {"topic": "horas", "date": asked})
        if len(returns) == 1:  # the retry: "horas" is not a topic
            return ("business_info", {"topic": "horario", "date": asked})
        seen.append(returns[-1].content["data"]["answer"])
        return ("final", {"reply": returns[-1].content["data"]["answer"], "done": True})

    model = scripted(router=lambda r, i: ("final", {"flow": "knowledge"}), knowledge=knowledge)
    chat = Chat(deps, Receptionist(deps, await redis_saver(settings), model=model), clinic)
    await chat.say(f"¿abren {asked}?")
    expected = await said.hours(deps.pool, clinic, BOGOTA, NOW.astimezone(BOGOTA), asked)
    assert seen == [expected] and "es festivo y no atendemos" in expected
    assert chat.actions == ["routed", "facts_given"]
