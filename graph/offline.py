"""The deterministic offline model: a Pydantic AI FunctionModel that reads plain Spanish,
English and Portuguese.

It is not an LLM. It plays each agent's part with keyword rules over the customer's message
and the ESTADO line of the instructions (the intent table of graph/intents.py knows the three
languages), answers from the message catalogs in the language of the turn (graph/i18n.py), and calls the same tools a real model would, so
`make run` without an OPENAI_API_KEY shows the real system (router, experts, CRM tools,
checkpoints) booking, cancelling, rescheduling, answering and escalating.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    RetryPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

from graph import i18n, intents, prompts
from graph.intents import (
    extract_name,
    greeting_only,
    is_info_question,
    mentions_day,
    mentions_when,
    normalize,
    pick_number,
    says_no,
    says_thanks_or_bye,
    says_yes,
)
from graph.offline_rules import (
    ask_which,
    compose,
    confirm_cancel,
    goodbye,
    intent,
    kept,
    pick_slot,
    slots_again,
    which_slot,
)

OFFLINE_NAME = "offline-es (deterministic offline model, not an LLM)"

# One step of an agent's run: call a tool ("tool", name, arguments) or give the agent's output
# ("final", its fields).
ToolStep = tuple[Literal["tool"], str, dict[str, Any]]
FinalStep = tuple[Literal["final"], dict[str, Any]]
Step = ToolStep | FinalStep


def offline_model() -> FunctionModel:
    return FunctionModel(respond, model_name="offline-es")


async def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    # Async on purpose: FunctionModel runs a plain function in a thread, a needless hop per request.
    instructions = info.instructions or ""
    agent = m.group(1) if (m := re.search(r"\[agente:(\w+)\]", instructions)) else "summary"
    user, results, first = _this_run(messages)
    if agent == "summary" or not info.output_tools:
        return ModelResponse(parts=[TextPart(_summary(user))])
    state = _state(instructions)
    turn = Turn(
        user=user,
        t=normalize(user),
        state=state,
        results=results,
        before=_state(first) if first is not None else state,
    )
    action = {"router": _router, "knowledge": _knowledge, "appointment": _appointment}[agent](turn)
    if action[0] == "tool":
        return ModelResponse(parts=[ToolCallPart(action[1], action[2])])
    return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, action[1])])


class Turn:
    def __init__(
        self,
        user: str,
        t: str,
        state: dict[str, Any],
        results: list[tuple[str, Any]],
        before: dict[str, Any] | None = None,
    ) -> None:
        self.user, self.t, self.state, self.results = user, t, state, results
        # `state` is the ESTADO as the tools left it for this step; `before`, as the customer's
        # message found it (a tool may since have cleared what the customer was answering).
        self.before = state if before is None else before
        self.called = [name for name, _ in results]


def _this_run(messages: list[ModelMessage]) -> tuple[str, list[tuple[str, Any]], str | None]:
    """The customer's message, this run's tool results, and the instructions of its first request."""
    results: list[tuple[str, Any]]
    first: str | None
    user, results, first = "", [], None
    for message in messages:
        if not isinstance(message, ModelRequest):
            continue
        for part in message.parts:
            if isinstance(part, UserPromptPart) and isinstance(part.content, str):
                user, results, first = part.content, [], message.instructions
            elif isinstance(part, ToolReturnPart) and getattr(part, "outcome", None) == "retried":
                # A tool's ModelRetry: this Pydantic AI returns it as a ToolReturnPart, not a RetryPromptPart.
                results.append(
                    (part.tool_name, {"action": "retry", "data": {"reason": str(part.content)}})
                )
            elif isinstance(part, ToolReturnPart):
                results.append((part.tool_name, part.content))
            elif isinstance(part, RetryPromptPart) and part.tool_name:
                results.append(
                    (part.tool_name, {"action": "retry", "data": {"reason": str(part.content)}})
                )
    return user, results, first


def _state(instructions: str) -> dict[str, Any]:
    for line in instructions.splitlines():
        if line.startswith(prompts.STATE_MARK):
            state: dict[str, Any] = json.loads(line[len(prompts.STATE_MARK) :])
            return state
    return {}


def tool(name: str, /, **args: Any) -> ToolStep:
    return ("tool", name, args)


def final(**args: Any) -> FinalStep:
    return ("final", args)


def _router(turn: Turn) -> Step:
    kind = intent(turn.t)
    flow = {"escalate": "escalation", "chat": "knowledge", "info": "knowledge"}.get(
        kind, "appointment"
    )
    return final(flow=flow)


def _knowledge(turn: Turn) -> Step:
    kind = intent(turn.t)
    if kind == "escalate":
        return final(handoff="escalation")
    if kind not in ("chat", "info"):
        return final(handoff="appointment")
    if says_thanks_or_bye(turn.t) and not intents.RX["greeting"].match(turn.t):
        return final(reply=goodbye(pending=False), done=True)
    if greeting_only(turn.t):
        return final(reply=compose(turn, greet=True), done=True)
    if re.search(r"ultima vez|me recomendaron|me dijeron|la vez pasada", turn.t):
        if "search_my_messages" not in turn.called:
            return tool("search_my_messages", query=turn.user)
    elif (ask := _fact(turn)) is not None:
        return ask
    elif "search_knowledge" not in turn.called and "business_info" not in turn.called:
        return tool("search_knowledge", query=turn.user)
    return final(reply=compose(turn), done=True)


def _fact(turn: Turn) -> ToolStep | None:
    """business_info for a question about hours, address, staff or the price list: the answer
    comes from the business's rows (calendar, settings, staff), not from an FAQ entry that
    happens to share a word ("¿abren el sábado?" must not get "los domingos cerramos")."""
    topic = intents.fact_topic(turn.t)
    if topic is None or "business_info" in turn.called:
        return None
    return tool(
        "business_info",
        topic=topic,
        date=turn.user if topic == "horario" else None,
        service=turn.user if topic == "personal" else None,
    )


_ABOUT_A_SERVICE = re.compile(
    r"cuanto (cuesta|vale|sale|cobran|dura)|\bprecio|\bvalor\b|\bcosto|que incluye"
    r"|how much|\bprice|\bcost|how long|what'?s included|quanto (custa|dura|fica)|\bpreco|o que inclui"
)


def _about_chosen_service(user: str, t: str, s: dict[str, Any]) -> str:
    """ "¿Cuánto cuesta?" in the middle of a booking asks about the service being booked."""
    service = (s.get("servicio") or {}).get("name")
    if (
        service
        and _ABOUT_A_SERVICE.search(t)
        and not re.search(r"\b(la|el|los|las|un|una|the|an?|o|os|um|uma) \w{4,}", t)
    ):
        return f"{user} {service}"
    return user


def _appointment(turn: Turn) -> Step:
    t, s, called = turn.t, turn.state, turn.called
    kind = intent(t)
    finished = {"booked", "cancelled", "rescheduled"} & {
        r.get("action") for _, r in turn.results if isinstance(r, dict)
    }
    if finished:
        return final(reply=compose(turn), done=True)
    if (declined := _declined(turn)) is not None:
        return final(reply=declined, done=True)
    if kind == "escalate":
        return final(handoff="escalation")
    if kind == "info" and (ask := _fact(turn)) is not None:
        return ask  # "¿y abren el sábado?" in the middle of a booking
    if "business_info" in called:  # answered; the day named was a question, not a booking
        return final(reply=compose(turn))
    if is_info_question(t) and "search_knowledge" not in called and "business_info" not in called:
        return tool("search_knowledge", query=_about_chosen_service(turn.user, t, s))
    pending = s.get("cancelacion_por_confirmar")
    if (
        pending
        and kind == "book"
        and mentions_when(t)
        and not intents.RX["book"].search(t)
        and "check_availability" not in called
    ):
        # "¿Confirmas que cancelo...?" answered "para el lunes": they want it moved, not cancelled.
        return tool("check_availability", appointment=pending, when=turn.user)
    # A new booking, reschedule or list request leaves a cancellation question behind.
    moved_on = kind in ("book", "reschedule", "list")
    if (
        kind == "cancel"
        or "cancel_appointment" in called
        or (
            not moved_on
            and (
                s.get("cancelacion_por_confirmar")
                or (s.get("citas_para") == "cancelar" and s.get("citas_listadas"))
            )
        )
    ):
        return _cancel(turn)
    if kind == "reschedule" or s.get("citas_para") == "reprogramar":
        return _reschedule(turn)
    if kind == "list" and "list_my_appointments" not in called:
        return tool("list_my_appointments", purpose="ver")
    listed = s.get("citas_listadas") or []
    if (
        kind == "other"
        and s.get("citas_para") == "ver"
        and (n := pick_number(t))
        and n <= len(listed)
        and not called
    ):
        # "la 2" after the list of their appointments: that one, and what can be done with it.
        return final(reply=i18n.text("offline.appointment_n", n=n, label=listed[n - 1]["label"]))
    if "book_appointment" not in called and "check_availability" not in called:
        return _book(turn, kind)
    done = any(isinstance(r, dict) and r.get("action") == "booked" for _, r in turn.results)
    return final(reply=compose(turn), done=done)


def _book(turn: Turn, kind: str) -> Step:
    """The booking step for this message, with the slots and the name the state holds."""
    t, s = turn.t, turn.state
    slots = s.get("horarios_propuestos") or []
    if s.get("esperando") == "nombre" and (name := extract_name(turn.user)):
        return tool("book_appointment", slot=s["horario_elegido"], customer_name=name)
    if (
        (name := extract_name(turn.user, explicit=True))
        and name != s.get("nombre_cliente")
        and "save_contact_name" not in turn.called
    ):
        return tool("save_contact_name", name=name)  # "hola, soy Ana y quiero una cita..."
    if slots and (n := pick_slot(t, slots)):
        return tool("book_appointment", slot=n)
    if "save_contact_name" in turn.called and not slots and kind == "other":
        name = s.get("nombre_cliente")
        if s.get("servicio"):  # a task already done: nothing to offer again
            return final(reply=i18n.text("offline.name_kept_done", name=name), done=True)
        return final(reply=i18n.text("offline.name_kept", name=name))
    if says_thanks_or_bye(t):
        return final(reply=goodbye(pending=bool(slots)), done=True)
    if slots and kind == "other":
        if says_yes(t):
            return final(reply=which_slot(slots))
        if (name := extract_name(turn.user)) and "save_contact_name" not in turn.called:
            return tool("save_contact_name", name=name)
        if "save_contact_name" in turn.called and not kind == "book":
            return final(reply=slots_again(s.get("nombre_cliente") or "", slots))
        if says_no(t):
            return final(reply=i18n.text("offline.another_time"))
    if not slots and kind == "other" and says_yes(t) and not s.get("horario_elegido"):
        return final(reply=i18n.text("offline.what_you_need"))
    if intents.asks_other_times(t) and not mentions_when(t):
        return tool("check_availability", when=i18n.text("offline.next_week"))
    info_only = is_info_question(t) and kind == "info" and not mentions_when(t)
    if info_only or kind == "list":
        return final(reply=compose(turn))
    return tool("check_availability", service=turn.user, when=_when(turn))


def _when(turn: Turn) -> str | None:
    if not mentions_when(turn.t):
        return None
    days_given = mentions_day(turn.t)
    previous = turn.state.get("cuando")
    # "a las 4" after "mañana en la tarde" still means tomorrow.
    return turn.user if days_given or not previous else f"{previous} {turn.user}"


def _listed(turn: Turn, purpose: str) -> list[dict[str, Any]] | None:
    for name, result in reversed(turn.results):
        if name == "list_my_appointments" and isinstance(result, dict):
            appointments: list[dict[str, Any]] = result["data"]["appointments"]
            return appointments
    if turn.state.get("citas_para") == purpose:
        return turn.state.get("citas_listadas") or []
    return None


def _cancel(turn: Turn) -> Step:
    """Cancelling takes two turns, and the tool enforces it: cancel_appointment(n) only marks the
    appointment "por confirmar" (ESTADO cancelacion_por_confirmar) and we ask "¿Confirmas...?";
    the customer's yes, the next turn, is cancel_appointment(n, confirmed=True)."""
    t, s, called = turn.t, turn.state, turn.called
    if asked := _result(turn, "cancel_confirmation_needed"):
        again = asked["appointment"] == turn.before.get("cancelacion_por_confirmar")
        return final(reply=confirm_cancel(asked["label"], again=again))
    if "cancel_appointment" in called and "list_my_appointments" not in called:
        return tool(
            "list_my_appointments", purpose="cancelar"
        )  # it could not be cancelled: look again
    pending = s.get("cancelacion_por_confirmar")
    listed = s.get("citas_listadas") if pending else _listed(turn, "cancelar")
    if listed is None:
        return tool("list_my_appointments", purpose="cancelar")
    if not listed:
        return final(reply=compose(turn), done=True)
    n = pick_number(t)
    if pending and not (
        n and n != pending and n <= len(listed)
    ):  # another number: ask about that one
        if says_no(t):
            # Listing them again "to see" clears the pending cancellation (and "cancelar" from the
            # state), so a later "sí" or "la primera" is not read as this one; _declined replies.
            return tool("list_my_appointments", purpose="ver")
        if says_yes(t) and "cancel_appointment" not in called:
            return tool("cancel_appointment", appointment=pending, confirmed=True)
        # Neither yes nor no: the same question, with a hint; it never cancels by itself. Asked
        # through the tool, so the question stays open for the customer's next message.
        if "cancel_appointment" not in called:
            return tool("cancel_appointment", appointment=pending)
        return final(reply=confirm_cancel(listed[pending - 1]["label"], again=True))
    if "cancel_appointment" in called:  # it could not be cancelled and was listed again
        return final(reply=ask_which(listed, "cancel"))
    n = n or (1 if len(listed) == 1 else None)
    if n and n <= len(listed):
        return tool("cancel_appointment", appointment=n)
    return final(reply=ask_which(listed, "cancel"))


def _result(turn: Turn, action: str) -> dict[str, Any] | None:
    """The data of this run's latest tool result with that action."""
    return next(
        (
            r["data"]
            for _, r in reversed(turn.results)
            if isinstance(r, dict) and r.get("action") == action
        ),
        None,
    )


def _declined(turn: Turn) -> str | None:
    """The reply to a "no" to our question, once _cancel has re-listed the appointments to see."""
    listing = _result(turn, "appointments_listed")
    # Only _cancel lists "to see" on a "no"; a "no, ¿qué citas tengo?" lists them on its own.
    if (
        listing is None
        or listing["purpose"] != "ver"
        or not says_no(turn.t)
        or intent(turn.t) == "list"
    ):
        return None
    n, asked = turn.before.get("cancelacion_por_confirmar"), turn.before.get("citas_listadas") or []
    return kept(asked[n - 1]["label"] if n and n <= len(asked) else None)


def _reschedule(turn: Turn) -> Step:
    s, called = turn.state, turn.called
    listed = _listed(turn, "reprogramar")
    if listed is None:
        return tool("list_my_appointments", purpose="reprogramar")
    if not listed:
        return final(reply=compose(turn), done=True)
    target = s.get("reprogramando_cita")
    if "check_availability" not in called and "reschedule_appointment" not in called:
        if target is None:
            n = pick_number(turn.t) or (1 if len(listed) == 1 else None)
            if not n:
                return final(reply=ask_which(listed, "change"))
            return tool("check_availability", appointment=n, when=_when(turn))
        if s.get("horarios_propuestos") and (k := pick_slot(turn.t, s["horarios_propuestos"])):
            return tool("reschedule_appointment", appointment=target, slot=k)
        if s.get("horarios_propuestos") and says_yes(turn.t):
            return final(reply=which_slot(s["horarios_propuestos"]))
        if mentions_when(turn.t):
            return tool("check_availability", when=_when(turn))
    done = any(isinstance(r, dict) and r.get("action") == "rescheduled" for _, r in turn.results)
    return final(reply=compose(turn), done=done)


def _summary(prompt: str) -> str:
    said = [
        line.split(":", 1)[1].strip() for line in prompt.splitlines() if line.startswith("Cliente:")
    ]
    previous = next(
        (
            line.split(":", 1)[1].strip()
            for line in prompt.splitlines()
            if line.startswith("Resumen anterior:")
        ),
        "",
    )
    recent = "; ".join(said[-4:])
    text = f"El cliente ha escrito: {recent}." if recent else "Sin mensajes del cliente."
    if previous and previous != "(ninguno)":
        text = f"{previous[:600]}\n{text}"
    return text[:1200]
