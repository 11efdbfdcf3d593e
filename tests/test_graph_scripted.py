"""The receptionist driven by scripted models: Pydantic AI FunctionModel for the logic, and the
fake OpenAI server for the wire format (tool_calls), through the real graph, tools and DB."""

from __future__ import annotations

import json
import re

import pytest
from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from graph import prompts
from graph.models import build_model
from graph.receptionist import APOLOGY, Receptionist
from ops import metrics
from ops.outages import Dependency, DependencyDown
from storage import chats
from storage.seed import seed_demo
from tests.fakes.openai import FakeOpenAI, tool_call
from tests.graph_helpers import NOW, Chat, redis_saver
from tests import clock


@pytest.fixture
async def clinic(deps):
    deps.clock = NOW.timestamp
    return await seed_demo(deps.pool, today=clock.today())


def scripted(**per_agent):
    """A FunctionModel answering each agent (found by its [agente:x] mark) with its own script."""

    def respond(messages, info: AgentInfo) -> ModelResponse:
        agent = re.search(r"\[agente:(\w+)\]", info.instructions or "").group(1)
        returns = [
            p for m in messages for p in getattr(m, "parts", []) if isinstance(p, ToolReturnPart)
        ]
        step = per_agent[agent](returns, info)
        if isinstance(step, str):
            return ModelResponse(parts=[TextPart(step)])
        name, args = step
        return ModelResponse(
            parts=[ToolCallPart(info.output_tools[0].name if name == "final" else name, args)]
        )

    return FunctionModel(respond)


async def test_function_model_books_through_the_tools(deps, settings, clinic):
    def appointment(returns, info):
        if not returns:
            return (
                "check_availability",
                {"service": "Limpieza facial", "when": "mañana en la tarde"},
            )
        if len(returns) == 1:
            return ("book_appointment", {"slot": 2, "customer_name": "Marta Gil"})
        return ("final", {"reply": "Listo, agendada.", "done": True})

    model = scripted(
        router=lambda r, i: ("final", {"flow": "appointment"}), appointment=appointment
    )
    chat = Chat(deps, Receptionist(deps, await redis_saver(settings), model=model), clinic)
    await chat.say("agéndame limpieza facial mañana en la tarde a nombre de Marta Gil")
    assert chat.actions == ["routed", "slots_proposed", "booked"]
    booked = chat.results[-1].actions[-1]["data"]
    assert booked["name"] == "Marta Gil" and booked["service"] == "Limpieza facial"
    assert "jueves 4 de marzo" in booked["when"]
    assert chat.results[-1].replies == ["Listo, agendada."]


async def test_a_tool_given_another_organizations_id_cannot_reach_its_data(
    deps, settings, clinic, make_org
):
    other = await make_org()
    await deps.pool.execute(
        "insert into services (organization_id, name, duration_minutes, price) "
        "values ($1::uuid, 'Tratamiento secreto', 30, 1)",
        other,
    )
    seen = []

    def knowledge(returns, info):
        if not returns:
            return (
                "search_knowledge",
                {"query": "Tratamiento secreto", "organization_id": other, "org": other},
            )
        seen.extend(r.content for r in returns)
        return ("final", {"reply": "No lo tenemos.", "done": True})

    model = scripted(router=lambda r, i: ("final", {"flow": "knowledge"}), knowledge=knowledge)
    chat = Chat(deps, Receptionist(deps, await redis_saver(settings), model=model), clinic)
    await chat.say("¿tienen el tratamiento secreto?")
    assert seen and "Tratamiento secreto" not in str(seen)


async def test_router_output_that_fails_validation_defaults_to_knowledge(deps, settings, clinic):
    model = scripted(
        router=lambda r, i: ("final", {"flow": "banana"}),
        knowledge=lambda r, i: ("final", {"reply": "¿En qué te ayudo?", "done": True}),
    )
    chat = Chat(deps, Receptionist(deps, await redis_saver(settings), model=model), clinic)
    await chat.say("hmm")
    assert chat.results[-1].actions[0] == {
        "action": "routed",
        "data": {"flow": "knowledge", "by": "model"},
    }
    assert chat.results[-1].replies == ["¿En qué te ayudo?"]


def no_router(returns, info):
    raise AssertionError(
        "the model router was asked about a message that says plainly what it wants"
    )


@pytest.mark.parametrize(
    "text, flow",
    [
        ("hola", "knowledge"),
        ("¿Cuánto cuesta la limpieza facial?", "knowledge"),
        ("quiero agendar una cita", "appointment"),
        ("necesito cancelar mi cita", "appointment"),
        ("quiero hablar con una persona", "escalation"),
    ],
)
async def test_a_plain_message_is_routed_by_keywords_without_a_model_request(
    deps, settings, clinic, text, flow
):
    requests = []

    def expert(returns, info):
        requests.append(info)
        return (
            "final",
            {"reply": "ok", "done": True}
            if flow != "escalation"
            else {"reason": "pide una persona", "summary": "quiere hablar con alguien"},
        )

    model = scripted(router=no_router, knowledge=expert, appointment=expert, escalation=expert)
    chat = Chat(deps, Receptionist(deps, await redis_saver(settings), model=model), clinic)
    await chat.say(text)
    assert chat.results[-1].actions[0] == {
        "action": "routed",
        "data": {"flow": flow, "by": "keywords"},
    }
    # One model request for the whole turn; none for a person (escalation is deterministic).
    assert len(requests) == (0 if flow == "escalation" else 1)


@pytest.mark.parametrize(
    "text",
    [
        "hola, ¿cuánto cuesta la limpieza facial? ¿tienen algo mañana en la tarde?",  # a question and a booking
        "esto es terrible, nadie me contesta",  # upset: the model judges
        "mmm no sé",
    ],
)
async def test_a_mixed_or_unclear_message_goes_to_the_model_router(deps, settings, clinic, text):
    asked = []

    def router(returns, info):
        asked.append(text)
        return ("final", {"flow": "knowledge"})

    model = scripted(router=router, knowledge=lambda r, i: ("final", {"reply": "ok", "done": True}))
    chat = Chat(deps, Receptionist(deps, await redis_saver(settings), model=model), clinic)
    await chat.say(text)
    assert asked == [text]
    assert chat.results[-1].actions[0]["data"] == {"flow": "knowledge", "by": "model"}


async def test_the_keyword_route_can_be_turned_off(deps, settings, clinic):
    deps.settings = deps.settings.model_copy(update={"router_keywords": False})
    asked = []
    model = scripted(
        router=lambda r, i: asked.append(1) or ("final", {"flow": "knowledge"}),
        knowledge=lambda r, i: ("final", {"reply": "¡Hola!", "done": True}),
    )
    chat = Chat(deps, Receptionist(deps, await redis_saver(settings), model=model), clinic)
    await chat.say("hola")
    assert asked == [1] and chat.results[-1].actions[0]["data"]["by"] == "model"


def estado(info: AgentInfo) -> dict:
    """The ESTADO line of the instructions: the state as the model sees it."""
    line = next(
        line
        for line in (info.instructions or "").splitlines()
        if line.startswith(prompts.STATE_MARK)
    )
    return json.loads(line[len(prompts.STATE_MARK) :])


async def statuses(deps) -> list[str]:
    return [
        r["status"]
        for r in await deps.pool.fetch("select status from appointments order by starts_at")
    ]


async def booked_chat(deps, settings, clinic):
    """A chat whose customer has one appointment, booked through the tools, and the plan (one step
    per tool result so far) the appointment agent follows on the next turn."""
    plan = [
        ("check_availability", {"service": "Limpieza facial", "when": "mañana en la tarde"}),
        ("book_appointment", {"slot": 1, "customer_name": "Marta Gil"}),
        ("final", {"reply": "Listo, agendada.", "done": True}),
    ]
    seen = []

    def appointment(returns, info):
        seen.append(estado(info))
        return plan[len(returns)]

    model = scripted(router=no_router, appointment=appointment)
    chat = Chat(deps, Receptionist(deps, await redis_saver(settings), model=model), clinic)
    await chat.say("agéndame limpieza facial mañana en la tarde a nombre de Marta Gil")
    assert chat.actions == ["routed", "slots_proposed", "booked"] and await statuses(deps) == [
        "confirmed"
    ]
    return chat, plan, seen


async def test_a_cancellation_is_confirmed_by_the_customer_in_a_later_turn(deps, settings, clinic):
    chat, plan, seen = await booked_chat(deps, settings, clinic)
    # A model that skips the question: confirmed=true, but the customer was never asked.
    plan[:] = [
        ("list_my_appointments", {"purpose": "cancelar"}),
        ("cancel_appointment", {"appointment": 1, "confirmed": True}),
        ("final", {"reply": "¿Confirmas que cancelo tu cita de Limpieza facial?"}),
    ]
    await chat.say("quiero cancelar mi cita")
    assert chat.actions == ["routed", "appointments_listed", "cancel_confirmation_needed"]
    asked = chat.results[-1].actions[-1]["data"]
    assert asked["appointment"] == 1 and asked["label"].startswith(
        "Limpieza facial, jueves 4 de marzo"
    )
    assert await statuses(deps) == ["confirmed"]  # nothing cancelled yet
    assert seen[-1]["cancelacion_por_confirmar"] == 1  # the model sees what awaits the yes

    seen.clear()
    plan[:] = [
        ("cancel_appointment", {"appointment": 1, "confirmed": True}),
        ("final", {"reply": "Listo, cancelada.", "done": True}),
    ]
    await chat.say("sí")
    assert seen[0]["cancelacion_por_confirmar"] == 1
    assert chat.actions == ["cancelled"] and chat.results[-1].replies == ["Listo, cancelada."]
    assert await statuses(deps) == ["cancelled"]
    assert seen[-1]["cancelacion_por_confirmar"] is None


@pytest.mark.parametrize(
    "second_turn",
    [
        [],  # asking and confirming in the same run: the customer has not answered
        [("list_my_appointments", {"purpose": "cancelar"})],  # a new listing drops what was asked
        [
            ("check_availability", {"service": "Masaje relajante", "when": "el viernes"})
        ],  # another task
    ],
)
async def test_a_cancellation_not_confirmed_in_a_later_turn_cancels_nothing(
    deps, settings, clinic, second_turn
):
    chat, plan, seen = await booked_chat(deps, settings, clinic)
    plan[:] = [
        ("list_my_appointments", {"purpose": "cancelar"}),
        ("cancel_appointment", {"appointment": 1}),
    ]
    if second_turn:
        plan.append(("final", {"reply": "¿Confirmas?"}))
        await chat.say("quiero cancelar mi cita")
        plan[:] = second_turn
    plan += [
        ("cancel_appointment", {"appointment": 1, "confirmed": True}),
        ("final", {"reply": "¿Confirmas?"}),
    ]
    await chat.say("sí" if second_turn else "quiero cancelar mi cita")
    # "¿Confirmas?" twice in a row is replaced by the loop guard; the question stays open.
    assert [a for a in chat.actions if a != "loop_guarded"][-1] == "cancel_confirmation_needed", (
        chat.actions
    )
    assert "cancelled" not in chat.actions and await statuses(deps) == ["confirmed"]
    assert seen[-1]["cancelacion_por_confirmar"] == 1


async def test_a_cancellation_question_left_by_a_finished_task_cannot_be_confirmed_later(
    deps, settings, clinic
):
    chat, plan, seen = await booked_chat(deps, settings, clinic)
    plan[:] = [
        ("list_my_appointments", {"purpose": "cancelar"}),
        ("cancel_appointment", {"appointment": 1}),
        ("final", {"reply": "Entendido, la dejamos.", "done": True}),
    ]  # the model closed the task
    await chat.say("quiero cancelar mi cita")
    plan[:] = [
        ("cancel_appointment", {"appointment": 1, "confirmed": True}),
        ("final", {"reply": "¿Confirmas?"}),
    ]
    await chat.say("quiero cancelar mi cita")  # a new request: it must be asked again
    assert chat.actions[-1] == "cancel_confirmation_needed" and await statuses(deps) == [
        "confirmed"
    ]


async def test_a_model_that_confirms_after_the_customer_said_no_cancels_nothing(
    deps, settings, clinic
):
    chat, plan, seen = await booked_chat(deps, settings, clinic)
    plan[:] = [
        ("list_my_appointments", {"purpose": "cancelar"}),
        ("cancel_appointment", {"appointment": 1}),
        ("final", {"reply": "¿Confirmas?"}),
    ]
    await chat.say("quiero cancelar mi cita")
    plan[:] = [
        ("cancel_appointment", {"appointment": 1, "confirmed": True}),
        ("final", {"reply": "Tu cita sigue en pie.", "done": True}),
    ]
    await chat.say("no, mejor no")
    assert "cancelled" not in chat.actions and await statuses(deps) == ["confirmed"]


async def test_a_cancellation_question_is_answered_by_the_next_message_or_not_at_all(
    deps, settings, clinic
):
    chat, plan, seen = await booked_chat(deps, settings, clinic)
    plan[:] = [
        ("list_my_appointments", {"purpose": "cancelar"}),
        ("cancel_appointment", {"appointment": 1}),
        ("final", {"reply": "¿Confirmas?"}),
    ]
    await chat.say("quiero cancelar mi cita")
    plan[:] = [("final", {"reply": "Estamos en la Calle 93."})]  # another question in between
    await chat.say("¿dónde quedan?")
    plan[:] = [
        ("cancel_appointment", {"appointment": 1, "confirmed": True}),
        ("final", {"reply": "¿Confirmas?"}),
    ]
    await chat.say("ok gracias")
    assert chat.actions == ["cancel_confirmation_needed"] and await statuses(deps) == ["confirmed"]


async def test_long_replies_are_split_for_whatsapp_and_hide_ids(deps, settings, clinic):
    long = ("Párrafo con detalle. " * 150 + "\n\n") * 3 + "id 123e4567-e89b-12d3-a456-426614174000"
    model = scripted(
        router=lambda r, i: ("final", {"flow": "knowledge"}),
        knowledge=lambda r, i: ("final", {"reply": long, "done": True}),
    )
    chat = Chat(deps, Receptionist(deps, await redis_saver(settings), model=model), clinic)
    await chat.say("cuéntame todo")
    replies = chat.results[-1].replies
    assert len(replies) > 1 and all(len(r) <= 4096 for r in replies)
    assert "123e4567" not in "".join(replies)


@pytest.fixture
async def fake_openai(allow_model_requests):
    async with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
async def openai_model(settings, fake_openai: FakeOpenAI):
    """The production model (graph.models.build_model) pointed at the fake server."""
    model = build_model(
        settings.model_copy(
            update={
                "llm_model": "openai:gpt-4o-mini",
                "openai_api_key": "sk-test",
                "openai_base_url": fake_openai.url + "/v1",
            }
        )
    )
    yield model
    await model.client.close()


async def test_openai_wire_format_with_tool_calls(
    deps, settings, clinic, fake_openai, openai_model
):
    deps.settings = deps.settings.model_copy(
        update={"router_keywords": False}
    )  # the router's wire too
    fake_openai.script(
        tool_call("final_result", flow="appointment"),
        tool_call("check_availability", service="limpiesa facial", when="el viernes a las 3"),
        tool_call(
            "final_result",
            reply="Tengo el viernes a las 3:00 p. m. ¿Te sirve?",
            done=False,
            handoff=None,
        ),
    )
    chat = Chat(deps, Receptionist(deps, await redis_saver(settings), model=openai_model), clinic)
    await chat.say("¿tienen limpiesa facial el viernes a las 3?")
    assert chat.actions == ["routed", "slots_proposed"]
    slots = chat.results[-1].actions[-1]["data"]["slots"]
    assert any("viernes 5 de marzo, 3:00 p. m." == s["label"] for s in slots)
    expert_request = fake_openai.calls[1]
    # The lean client posts the body as built: omitted arguments are left out, not sent as null.
    assert expert_request["model"] == "gpt-4o-mini" and None not in expert_request.values()
    offered = {t["function"]["name"] for t in expert_request["tools"]}
    assert {"check_availability", "book_appointment", "final_result"} <= offered
    tool_result = fake_openai.calls[2]["messages"][-1]
    assert tool_result["role"] == "tool" and "slots_proposed" in tool_result["content"]
    system = " ".join(
        m["content"] for m in fake_openai.calls[2]["messages"] if m["role"] == "system"
    )
    assert "ESTADO:" in system and '"servicio": {"name": "Limpieza facial"' in system
    assert chat.results[-1].replies == ["Tengo el viernes a las 3:00 p. m. ¿Te sirve?"]


async def test_every_model_request_carries_the_token_limit(deps, settings, clinic, fake_openai):
    # A server not told a limit lets a small model ramble until the turn timeout (issue 18).
    bounded = settings.model_copy(update={"llm_max_tokens": 77, "router_keywords": False})
    deps.settings = bounded
    model = build_model(
        bounded.model_copy(
            update={
                "llm_model": "openai:gpt-4o-mini",
                "openai_api_key": "sk-test",
                "openai_base_url": fake_openai.url + "/v1",
            }
        )
    )
    fake_openai.script(tool_call("final_result", flow="knowledge"))
    chat = Chat(deps, Receptionist(deps, await redis_saver(settings), model=model), clinic)
    try:
        await chat.say("hola")
    finally:
        await model.client.close()
    assert len(fake_openai.calls) == 2  # the router, then the knowledge expert
    assert [call.get("max_completion_tokens") for call in fake_openai.calls] == [77, 77]


async def test_a_model_handed_in_is_bounded_as_well(deps, settings, clinic):
    seen = []

    def respond(messages, info: AgentInfo) -> ModelResponse:
        seen.append((info.model_settings or {}).get("max_tokens"))
        name = info.output_tools[0].name
        if "[agente:router]" in (info.instructions or ""):
            return ModelResponse(parts=[ToolCallPart(name, {"flow": "knowledge"})])
        return ModelResponse(parts=[ToolCallPart(name, {"reply": "Hola", "done": True})])

    deps.settings = settings.model_copy(update={"llm_max_tokens": 33, "router_keywords": False})
    chat = Chat(
        deps, Receptionist(deps, await redis_saver(settings), model=FunctionModel(respond)), clinic
    )
    await chat.say("hola")
    assert seen == [33, 33]


async def test_a_reply_cut_off_at_the_token_limit_gets_the_apology(
    deps, settings, clinic, fake_openai, openai_model
):
    cut = {
        "tool_calls": [
            {"name": "final_result", "arguments": '{"reply": "Hola, te cuento que nuestros'}
        ],
        "finish_reason": "length",
    }
    fake_openai.responder = lambda body: cut
    chat = Chat(deps, Receptionist(deps, await redis_saver(settings), model=openai_model), clinic)
    await chat.say("¿qué servicios tienen?")
    assert chat.results[-1].replies == [APOLOGY]


async def test_a_model_that_refuses_the_turn_gives_an_apology_and_is_counted(
    deps, settings, clinic, fake_openai, openai_model
):
    fake_openai.fail_next(400)  # the model server answers, but not this turn
    labels = ("ModelHTTPError", "ModelRequestRejectedError")
    before = sum(metrics.model_failures.labels(r)._value.get() for r in labels)
    chat = Chat(deps, Receptionist(deps, await redis_saver(settings), model=openai_model), clinic)
    await chat.say("hola")
    assert chat.results[-1].replies == [APOLOGY]
    assert sum(metrics.model_failures.labels(r)._value.get() for r in labels) > before


async def test_a_model_server_that_is_down_makes_the_turn_wait_not_apologise(
    deps, settings, clinic, fake_openai, openai_model
):
    fake_openai.fail_next(500, times=2)  # the client retries once
    chat = Chat(deps, Receptionist(deps, await redis_saver(settings), model=openai_model), clinic)
    with pytest.raises(DependencyDown) as down:
        await chat.say("hola")
    assert (
        down.value.dependency == Dependency.MODEL
    )  # the runtime retries the turn; no apology was sent


async def test_a_person_is_reached_even_when_the_model_is_down(deps, settings, clinic):
    def down(messages, info):
        raise ConnectionError("model server unreachable")

    chat = Chat(
        deps, Receptionist(deps, await redis_saver(settings), model=FunctionModel(down)), clinic
    )
    await chats.upsert_identity(deps.pool, clinic, chat.phone, "Marta Gil")
    await chat.say("necesito hablar con un asesor ya")
    escalation = chat.results[-1].escalation
    assert escalation is not None and escalation.reason == "Pide hablar con una persona"
    assert escalation.customer_name == "Marta"
    assert "necesito hablar con un asesor ya" in escalation.summary
