"""The receptionist with the offline model: Spanish flows through the real graph, tools,
PostgreSQL and the Redis checkpointer."""

from __future__ import annotations

import pytest

from graph.receptionist import Receptionist
from storage import keys
from storage.seed import seed_demo
from tests.graph_helpers import NOW, Chat, redis_saver
from tests import clock


@pytest.fixture
async def clinic(deps):
    deps.clock = NOW.timestamp
    return await seed_demo(deps.pool, today=clock.today())


@pytest.fixture
async def chat(deps, settings, clinic):
    receptionist = Receptionist(deps, await redis_saver(settings))
    return Chat(deps, receptionist, clinic)


async def confirmed(deps) -> list:
    return await deps.pool.fetch(
        "select a.starts_at, s.name from appointments a join services s "
        "on s.id = a.service_id where a.status = 'confirmed' order by a.starts_at"
    )


async def test_booking_from_greeting_to_confirmation(chat, deps):
    await chat.say("hola")
    assert chat.actions == ["routed"] and "Hola" in chat.text
    await chat.say("quiero una cita para limpieza facial mañana en la tarde")
    assert "slots_proposed" in chat.actions
    assert "jueves 4 de marzo" in chat.text and "$120.000" in chat.text and "1." in chat.text
    await chat.say("la primera")
    assert chat.actions == ["name_needed"] and "nombre" in chat.text
    await chat.say("Ana Pérez")
    assert chat.actions == ["booked"], chat.text
    assert "Ana Pérez" in chat.text and "jueves 4 de marzo" in chat.text
    rows = await confirmed(deps)
    assert [r["name"] for r in rows] == ["Limpieza facial"]
    assert rows[0]["starts_at"].astimezone(NOW.tzinfo).hour >= 12
    assert await deps.pool.fetchval("select name from contacts") == "Ana Pérez"
    assert await deps.pool.fetchval("select source from contact_authorizations") == "booking"
    for reply in chat.results[-1].replies:
        assert len(reply) <= 4096 and "-" * 4 not in reply


async def test_first_message_with_price_and_availability(chat):
    await chat.say("hola, ¿cuánto cuesta la limpieza facial? ¿tienen algo mañana en la tarde?")
    assert chat.actions == ["routed", "slots_proposed"]
    assert "$120.000" in chat.text and "jueves 4 de marzo" in chat.text


async def test_price_question_mid_booking_then_back(chat, deps):
    await chat.say("quiero agendar un masaje relajante el viernes")
    assert "slots_proposed" in chat.actions and "viernes 5 de marzo" in chat.text
    await chat.say("¿y cuánto cuesta la pedicure?")
    assert "$55.000" in chat.text and "horarios que te propuse" in chat.text
    assert chat.actions == []  # still in the booking, nothing re-routed or re-offered
    await chat.say(
        "la segunda",
    )
    await chat.say("me llamo Carlos")
    assert chat.actions == ["booked"]
    assert [r["name"] for r in await confirmed(deps)] == ["Masaje relajante"]


async def test_a_bare_price_question_mid_booking_is_about_the_service_being_booked(chat):
    await chat.say("quiero agendar un masaje relajante el viernes")
    await chat.say("¿cuánto cuesta?")
    assert "$150.000" in chat.text and "horarios que te propuse" in chat.text


async def test_switching_service_mid_booking_restarts_the_choice(chat, deps):
    await chat.say("quiero un masaje relajante mañana")
    await chat.say("mejor una limpieza facial")
    last = chat.results[-1].actions[-1]
    assert last["action"] == "slots_proposed"
    assert (
        last["data"]["service"] == "Limpieza facial"
        and last["data"]["changed_from"] == "Masaje relajante"
    )
    assert "jueves 4 de marzo" in chat.text  # the day asked for before still holds
    await chat.say("la primera")
    await chat.say("Ana")
    assert [r["name"] for r in await confirmed(deps)] == ["Limpieza facial"]


async def statuses(deps) -> list[tuple[str, str]]:
    return [
        (r["name"], r["status"])
        for r in await deps.pool.fetch(
            "select s.name, a.status from appointments a join services s on s.id = a.service_id"
            " order by a.starts_at"
        )
    ]


async def saved_state(chat) -> dict:
    """The conversation state the checkpointer holds for this chat."""
    config = {"configurable": {"thread_id": keys.checkpoint_thread(chat.org, chat.phone)}}
    return (await chat.receptionist.graph.aget_state(config)).values


async def book_manicure(chat) -> None:
    await chat.say("quiero una cita de manicure spa el viernes a las 3")
    await chat.say("a las 3")
    await chat.say("Lucía")
    assert chat.actions == ["booked"] and "3:00 p. m." in chat.text


async def test_cancel_asks_first_and_cancels_on_yes(chat, deps):
    await book_manicure(chat)
    await chat.say("necesito cancelar mi cita")
    assert chat.actions == ["routed", "appointments_listed", "cancel_confirmation_needed"], (
        chat.text
    )
    assert (
        chat.text
        == "¿Confirmas que cancelo tu cita de Manicure spa del viernes 5 de marzo, 3:00 p. m.?"
    )
    assert await statuses(deps) == [("Manicure spa", "confirmed")]  # asking changes nothing
    await chat.say("Sí, cancélala")
    assert chat.actions == ["cancelled"], chat.text
    assert "viernes 5 de marzo, 3:00 p. m. quedó cancelada" in chat.text
    assert await statuses(deps) == [("Manicure spa", "cancelled")]


async def test_cancel_answered_no_keeps_the_appointment(chat, deps):
    await book_manicure(chat)
    await chat.say("quiero cancelar mi cita")
    assert "¿Confirmas" in chat.text
    await chat.say("mejor no")
    assert chat.actions == ["appointments_listed"], chat.text
    assert chat.text == (
        "Perfecto, no la cancelo: tu cita de Manicure spa del viernes 5 de marzo, "
        "3:00 p. m. sigue en pie. ¿Te ayudo con algo más?"
    )
    assert (await saved_state(chat)).get("cancel_pending") is None
    await chat.say("sí")  # a later yes is not taken as the cancellation
    assert "cancelled" not in chat.actions
    assert await statuses(deps) == [("Manicure spa", "confirmed")]


async def test_cancel_one_of_several_confirms_the_chosen_one(chat, deps):
    await book_manicure(chat)
    await chat.say("quiero una cita de limpieza facial mañana a las 9")
    await chat.say("la primera")
    assert chat.actions == ["booked"]
    await chat.say("quiero cancelar una cita")
    assert "¿Cuál quieres cancelar?" in chat.text and "2. Manicure spa" in chat.text
    await chat.say("ok")  # not a number and no question asked yet: nothing is cancelled
    # The same list twice in a row is not sent: what we understood, and numbered options.
    assert "cancelled" not in chat.actions and chat.actions[-1] == "loop_guarded"
    assert "quieres cancelar una cita" in chat.text and "2. Manicure spa" in chat.text
    assert "3. Hablar con una persona" in chat.text
    await chat.say("la 2")
    assert (
        chat.text
        == "¿Confirmas que cancelo tu cita de Manicure spa del viernes 5 de marzo, 3:00 p. m.?"
    )
    assert (await saved_state(chat))["cancel_pending"]["n"] == 2
    await chat.say("mmm")  # neither yes nor no: the same question again
    assert "Manicure spa del viernes" in chat.text and "«sí» o «no»" in chat.text
    assert chat.actions == ["cancel_confirmation_needed"]  # asked again: open for the next message
    await chat.say("dale")
    assert chat.actions == ["cancelled"], chat.text
    assert await statuses(deps) == [("Limpieza facial", "confirmed"), ("Manicure spa", "cancelled")]


async def test_a_new_booking_request_leaves_the_cancellation_question_behind(chat, deps):
    await book_manicure(chat)
    await chat.say("quiero cancelar mi cita")
    assert "¿Confirmas" in chat.text
    await chat.say("mejor quiero agendar un masaje relajante el viernes")
    assert "slots_proposed" in chat.actions and "viernes 5 de marzo" in chat.text
    await chat.say("sí")  # not an answer to the old question any more
    assert "cancelled" not in chat.actions
    assert ("Manicure spa", "confirmed") in await statuses(deps)


async def test_cancel_confirmed_after_the_appointment_changed_lists_again(chat, deps):
    await book_manicure(chat)
    await chat.say("quiero cancelar mi cita")
    assert "¿Confirmas" in chat.text
    await deps.pool.execute(
        "update appointments set status = 'completed'"
    )  # meanwhile, at the desk
    await chat.say("sí")
    assert chat.actions == ["appointments_listed"], chat.text  # the tool refused; we looked again
    assert chat.text == "No tienes citas próximas con nosotros."
    assert await statuses(deps) == [("Manicure spa", "completed")]
    assert (await saved_state(chat)).get("cancel_pending") is None


async def test_reschedule(chat, deps):
    await chat.say("quiero una cita de limpieza facial mañana a las 9")
    await chat.say("la primera")
    await chat.say("Sofía Ruiz")
    await chat.say("quiero cambiar mi cita para el viernes en la tarde")
    assert chat.actions == ["routed", "appointments_listed", "slots_proposed"], chat.text
    assert "viernes 5 de marzo" in chat.text
    await chat.say("la primera")
    assert chat.actions == ["rescheduled"], chat.text
    rows = await confirmed(deps)
    assert len(rows) == 1 and rows[0]["starts_at"].astimezone(NOW.tzinfo).day == 5


async def test_escalation_returns_a_request(chat):
    await chat.say("quiero hablar con una persona por favor")
    result = chat.results[-1]
    assert result.replies == [] and result.escalation is not None
    assert result.escalation.reason == "Pide hablar con una persona"
    assert result.escalation.customer_name == "Cliente"  # no name known yet
    assert "asesor" in result.escalation.accepted_text and result.escalation.failed_text
    await chat.say("hola")  # the bot is on again if the notification failed: a fresh route
    assert chat.actions == ["routed"]


async def test_state_survives_a_worker_restart(chat, deps, settings, clinic):
    await chat.say("quiero una cita para limpieza facial mañana en la tarde")
    restarted = Chat(deps, Receptionist(deps, await redis_saver(settings)), clinic, chat.phone)
    await restarted.say("la primera")
    assert restarted.actions == ["name_needed"]
    await restarted.say("Ana")
    assert restarted.actions == ["booked"]


async def test_redelivered_turn_books_once_and_replies_the_same(chat, deps):
    await chat.say("quiero una cita para limpieza facial mañana en la tarde")
    await chat.say("la primera")
    first = await chat.say("Ana", turn_id="turn-ana")
    again = await chat.say("Ana", turn_id="turn-ana")
    assert again.replies == first.replies and [a["action"] for a in again.actions] == ["booked"]
    assert len(await confirmed(deps)) == 1


async def test_questions_and_greetings_without_a_booking(chat):
    await chat.say("¿dónde están ubicados?")
    # The address is a fact from the business's rows (business_info), recorded; nothing booked.
    assert "Calle 93" in chat.text and chat.actions == ["routed", "facts_given"]
    await chat.say("¿cuánto vale la limpiesa facial?")
    assert "$120.000" in chat.text
    await chat.say("gracias")
    assert "gusto" in chat.text


async def test_two_chats_racing_for_the_last_slot_the_held_one_is_offered_once(
    deps, settings, clinic
):
    import asyncio

    from storage import chats as chat_store

    # One staff member left: the first offered slot is the last one at that hour.
    await deps.pool.execute("update staff set active = false where name <> 'Laura Gómez'")
    receptionist = Receptionist(deps, await redis_saver(settings))
    racers = []
    for phone, name in (("573001110001", "Ana"), ("573001110002", "Beto")):
        await chat_store.upsert_identity(deps.pool, clinic, phone, name)
        racer = Chat(deps, receptionist, clinic, phone)
        await racer.say("quiero una cita para limpieza facial mañana en la tarde")
        racers.append(racer)
    # Ana's offer is held for her (SLOT_HOLD_MIN): Beto is offered other times, so picking
    # "the first" at the same moment books two different slots instead of failing one of them.
    assert racers[0].text.split("\n")[1] != racers[1].text.split("\n")[1]
    await asyncio.gather(*(racer.say("la primera") for racer in racers))
    assert [racer.actions[-1] for racer in racers] == ["booked", "booked"]
    starts = [r["starts_at"] for r in await confirmed(deps)]
    assert len(starts) == 2 and starts[0] != starts[1]


async def test_the_chat_language_is_remembered_once_the_customer_says_it(chat, deps):
    """A first "ok" is answered in the clinic's language and decides nothing; an English
    message sets the chat's language, and a later "sí" does not change it back."""
    language = "select language from chat_identities"
    await chat.say("ok")
    assert await deps.pool.fetchval(language) is None
    await chat.say("hi, how much is the relaxing massage?")
    assert "$150.000" in chat.text and "it costs" in chat.text
    assert await deps.pool.fetchval(language) == "en"
    await chat.say("sí")
    assert await deps.pool.fetchval(language) == "en"
    await chat.say("hola, quiero saber cuánto cuesta la limpieza facial")
    assert "cuesta $120.000" in chat.text
    assert await deps.pool.fetchval(language) == "es"
