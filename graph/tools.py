"""The experts' tools. The organization, contact, clock and timezone come from RunContext.deps (a
flat ToolDeps, graph/state.py), never from the model's arguments: the model refers to things by
the numbers it was shown ("horario 1", "cita 2"), so no prompt can name another tenant's rows.

Tools that change the conversation return `{"action": name, "data": {...}}` (ToolDeps.act).
A bad argument is a ModelRetry with the reason, which the model reads and corrects.
"""

from __future__ import annotations

import functools
import logging
from datetime import date, datetime, time, timedelta
from typing import Any, Awaitable, Callable, Concatenate, Coroutine, ParamSpec, TypeVar
from zoneinfo import ZoneInfo

from pydantic_ai import ModelRetry, RunContext
from pydantic_ai.tools import ToolFuncContext

from graph import facts, intents, offers, replies, timeparse
from graph.contract import TurnSuperseded
from graph.state import ToolDeps
from ops import metrics
from ops.logs import bound
from ops.outages import Dependency
from storage import appointments, catalog, chats, holds, reminders, webhooks

log = logging.getLogger(__name__)
Ctx = RunContext[ToolDeps]
P = ParamSpec("P")
R = TypeVar("R")


def counted(
    fn: Callable[Concatenate[Ctx, P], Awaitable[R]],
) -> Callable[Concatenate[Ctx, P], Coroutine[Any, Any, R]]:
    """Count every tool call by outcome (ok, retry, error) for the metrics."""

    @functools.wraps(fn)
    async def wrapper(ctx: Ctx, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            ctx.deps.tools_used.append(fn.__name__)
            with bound(tool=fn.__name__, tool_call_id=ctx.tool_call_id):
                result = await fn(ctx, *args, **kwargs)
                log.debug("tool %s answered", fn.__name__)
        except ModelRetry:
            metrics.tool_calls.labels(fn.__name__, "retry").inc()
            raise
        except TurnSuperseded:
            raise  # not the tool failing: its turn gives way to a newer one
        except Exception:
            metrics.tool_calls.labels(fn.__name__, "error").inc()
            raise
        metrics.tool_calls.labels(fn.__name__, "ok").inc()
        return result

    return wrapper


def _service_view(service: catalog.Service) -> dict[str, Any]:
    return {
        "id": service.id,
        "name": service.name,
        "duration_minutes": service.duration_minutes,
        "price": replies.price(service.price, service.currency),
    }


async def _query_vector(d: ToolDeps, query: str) -> list[float] | None:
    """The question's embedding for the hybrid search; None (lexical only) if unavailable."""
    if d.embedder is None:
        return None
    try:
        return (await d.embedder.embed([query]))[0]
    except Exception as exc:  # noqa: BLE001 - the lexical search still answers
        metrics.dependency_errors.labels(Dependency.EMBEDDINGS, type(exc).__name__).inc()
        log.warning("embedding the question failed, searching by words only: %s", exc)
        return None


@counted
async def search_knowledge(ctx: Ctx, query: str) -> dict[str, Any]:
    """Busca en los servicios (precio, duración) y en las preguntas frecuentes del negocio
    (dirección, pagos, políticas). Úsala para cualquier pregunta sobre el negocio."""
    d = ctx.deps
    hits = await catalog.search_knowledge(
        d.pool, d.org.id, query, query_vector=await _query_vector(d, query)
    )
    results: list[dict[str, Any]] = []
    if hits and hits[0].service:  # "¿cuánto cuesta el masaje?" then "¿tienen algo mañana?"
        ctx.deps.state["discussed_service"] = _service_view(hits[0].service)
    for hit in hits:
        if hit.service:
            s = hit.service
            results.append(
                {
                    "tipo": "servicio",
                    "nombre": s.name,
                    "descripcion": s.description,
                    "precio": replies.price(s.price, s.currency),
                    "duracion_min": s.duration_minutes,
                }
            )
        else:
            results.append(
                {"tipo": "pregunta_frecuente", "pregunta": hit.title, "respuesta": hit.text}
            )
    return {"resultados": results}


@counted
async def business_info(
    ctx: Ctx, topic: facts.Topic | None = None, date: str | None = None, service: str | None = None
) -> dict[str, Any]:
    """Datos del negocio tomados de su propia información. `topic`: "horario" (con `date`, las
    palabras del cliente: "el 24", "el lunes festivo", "hoy"; da el horario de ese día con
    festivos y cierres, el mismo que usa la agenda), "direccion" (dirección y cómo llegar),
    "personal" (quién hace el servicio `service`, en palabras del cliente) o "servicios" (lista
    de servicios con precio y duración). Sin `topic`: nombre, horario semanal, servicios y
    preguntas frecuentes. Responde con `answer` tal cual o en tus palabras, sin cambiar datos."""
    d = ctx.deps
    if topic is not None:
        if topic not in ("horario", "direccion", "personal", "servicios"):
            raise ModelRetry('topic debe ser "horario", "direccion", "personal" o "servicios"')
        text = await facts.answer(
            d.pool, d.org.id, d.org.tz, d.now, topic, when=date, service=service
        )
        # Recorded like an action so the turn's log (and the scenario judge) sees the hours given.
        return d.act("facts_given", topic=topic, answer=text)
    hours = await catalog.business_hours(d.pool, d.org.id)
    services = await catalog.list_services(d.pool, d.org.id)
    faq = await catalog.faq_answers(d.pool, d.org.id)
    return {
        "nombre": d.org.name,
        "horario": [
            f"{replies.WEEKDAYS[wd]}: {o.strftime('%H:%M')} a {c.strftime('%H:%M')}"
            for wd, o, c in hours
        ],
        "servicios": [
            f"{s.name}: {replies.price(s.price, s.currency)} ({s.duration_minutes} min)"
            for s in services
        ],
        "preguntas_frecuentes": [{"pregunta": q, "respuesta": a} for q, a in faq],
    }


@counted
async def check_availability(
    ctx: Ctx, service: str | None = None, when: str | None = None, appointment: int | None = None
) -> dict[str, Any]:
    """Busca horarios libres y los propone numerados. `service`: el servicio con las palabras del
    cliente (vacío para seguir con el ya elegido; otro servicio reinicia la elección).
    `when`: las palabras del cliente ("mañana en la tarde", "el viernes", "15 de diciembre a
    las 3"). `appointment`: número de la cita listada que se quiere reprogramar.
    Si el día y la fecha no coinciden ("el lunes 15" y el 15 es martes) responde date_conflict:
    pregunta cuál de los dos días, sin adivinar. Si en lo pedido no hay nada, `why` dice por qué
    (festivo, cerrado, fuera del horario, sin personal, ocupado): díselo en pocas palabras y
    ofrece los horarios propuestos; `searched` son los días buscados cuando no hubo ninguno."""
    d = ctx.deps
    pool, org = d.pool, d.org.id
    d.state["cancel_pending"] = None  # another task: a cancellation asked about is dropped
    changed_from = None
    if appointment is not None:
        listed = _listed(d, appointment)
        appt = await appointments.list_appointments(pool, org, d.contact_id, since=None, limit=50)
        mine = next((a for a in appt if a.id == listed["id"]), None)
        if mine is None:
            raise ModelRetry("esa cita ya no existe; vuelve a listar las citas")
        found = await catalog.get_service(pool, org, mine.service_id)
        assert found is not None  # an appointment's service row is never deleted (deactivated)
        d.state.update(
            reschedule_of=appointment, purpose="reprogramar", service=_service_view(found)
        )
    understood = timeparse.parse(when or "", d.now).understood if when else False
    if understood and when:  # kept even while we still ask for the service
        d.state["window"] = _window(d.state.get("window"), when, d.now)
    if appointment is None and service and service.strip():
        found = await catalog.find_service(pool, org, service)
        current = d.state.get("service") or d.state.get("discussed_service")
        if found is None and current is None:
            options = [s.name for s, _ in await catalog.search_services(pool, org, service, 4)]
            options = options or [s.name for s in await catalog.list_services(pool, org)]
            return _service_needed(d, options)
        found_view = _service_view(found) if found is not None else current
        assert found_view is not None  # with neither, the service was asked for above
        if d.state.get("service") is None or d.state["service"]["id"] != found_view["id"]:
            changed_from = d.state["service"]["name"] if d.state.get("service") else None
            d.state.update(service=found_view, proposed_slots=[], chosen_slot=None)
            if d.state.get("reschedule_of") is None:
                d.state["purpose"] = None
    if d.state.get("service") is None and d.state.get("discussed_service"):
        d.state["service"] = d.state["discussed_service"]
    if d.state.get("service") is None:
        return _service_needed(d, [s.name for s in await catalog.list_services(pool, org)])
    window_text = d.state.get("window") or ""
    anchor = await _moving_day(d) if timeparse.counts_from_a_day(window_text) else None
    window = timeparse.parse(window_text, d.now, anchor=anchor)
    chosen = await catalog.get_service(pool, org, d.state["service"]["id"])
    assert chosen is not None  # service rows are deactivated, never deleted
    if window.conflict is not None:
        return _date_conflict(d, window.conflict)
    offer = await offers.find(d, chosen, window)
    note = None
    if offer.asked is not None:
        note = "hora_pedida_ocupada"
    elif offer.why is not None:
        note = "sin_cupo_en_lo_pedido"
    return _propose(
        d,
        chosen,
        window_text,
        changed_from,
        offer.slots,
        note=note,
        exact=offer.exact,
        asked=replies.clock(offer.asked) if offer.asked is not None else None,
        default_window=not window.understood,
        **offer.data(),
    )


def _propose(
    d: ToolDeps,
    chosen: catalog.Service,
    window_text: str,
    changed_from: str | None,
    slots: list[appointments.Slot],
    note: str | None,
    exact: bool = False,
    asked: str | None = None,
    **why: Any,
) -> dict[str, Any]:
    d.state["proposed_slots"] = [_slot_view(s, d.org.tz) for s in slots]
    d.state["chosen_slot"] = None
    d.state["last_list"] = {
        "kind": "slots",
        "items": [{"label": s["label"]} for s in d.state["proposed_slots"]],
    }
    return d.act(
        "slots_proposed",
        service=chosen.name,
        price=d.state["service"]["price"],
        duration_minutes=chosen.duration_minutes,
        window=window_text or None,
        changed_from=changed_from,
        note=note,
        exact=exact,
        asked=asked,
        **why,
        slots=[{"n": i + 1, "label": s["label"]} for i, s in enumerate(d.state["proposed_slots"])],
    )


def _date_conflict(d: ToolDeps, conflict: timeparse.Conflict) -> dict[str, Any]:
    """ "el lunes 15" when the 15th is a Tuesday: ask which day, search neither."""
    d.state.update(proposed_slots=[], chosen_slot=None, last_list=None)  # "la 1" now names no slot
    noon = time(12)
    return d.act(
        "date_conflict",
        weekday=replies.weekday(conflict.weekday),
        dated=replies.day(datetime.combine(conflict.dated, noon)),
        other=replies.day(datetime.combine(conflict.other, noon)),
    )


async def _moving_day(d: ToolDeps) -> date | None:
    """The local day of the appointment being moved: what "al día siguiente" counts from."""
    n, listed = d.state.get("reschedule_of"), d.state.get("appointments") or []
    if not n or n > len(listed):
        return None
    found = await appointments.list_appointments(
        d.pool, d.org.id, d.contact_id, since=None, limit=50
    )
    mine = next((a for a in found if a.id == listed[n - 1]["id"]), None)
    return mine.starts_at.astimezone(d.org.tz).date() if mine else None


def _window(previous: str | None, when: str, now: datetime) -> str:
    """The window after the customer's `when`. An answer to our "¿el martes 15 o el lunes 14?"
    ("el martes", "el 14") names one reading: that date, written out, leads the earlier words
    (the time they asked stays; a time in the answer comes later, and the latest time wins)."""
    conflict = timeparse.parse(previous or "", now).conflict
    day = timeparse.pick_reading(conflict, when, now) if conflict is not None else None
    if day is None:
        return when
    return f"{replies.day(datetime.combine(day, time(12)))} de {day.year} {previous} {when}"


def _service_needed(d: ToolDeps, options: list[str]) -> dict[str, Any]:
    d.state["last_list"] = {"kind": "services", "items": [{"label": o, "say": o} for o in options]}
    return d.act("service_needed", options=options)


async def _hold_chosen(d: ToolDeps, chosen: dict[str, Any], duration_min: int) -> bool:
    """Hold the picked slot alone (the other offers are let go); False if another chat has it."""
    start = datetime.fromisoformat(chosen["starts_at"])
    return (
        await offers.hold(d, [(chosen["staff_id"], start, start + timedelta(minutes=duration_min))])
    )[0]


async def _plan_reminders(d: ToolDeps, appointment_id: str, change: reminders.Change) -> None:
    """The confirmation now, the reminders later (a move re-plans them, a cancel drops them)."""
    await reminders.plan(d.redis, d.pool, d.org.id, appointment_id, change, d.now_ms())
    await webhooks.appointment_changed(
        d.redis,
        d.pool,
        d.org.id,
        appointment_id,
        change,
        turn_id=d.turn_id,
        now_ms=d.now_ms(),
    )  # the CRM is told
    if (
        change != "booked"
        and await reminders.reminded_appointment(d.redis, d.org.id, d.chat) == appointment_id
    ):
        metrics.reminder_answers.labels(d.org.id, change).inc()  # the reminder led to it


def _slot_view(slot: appointments.Slot, tz: ZoneInfo) -> dict[str, Any]:
    return {
        "starts_at": slot.starts_at.isoformat(),
        "staff_id": slot.staff_id,
        "label": replies.when(slot.starts_at, tz),
    }


def _proposed(d: ToolDeps, slot: int) -> dict[str, Any]:
    slots: list[dict[str, Any]] = d.state.get("proposed_slots") or []
    if not slots:
        raise ModelRetry("no hay horarios propuestos: usa check_availability primero")
    if not 1 <= slot <= len(slots):
        raise ModelRetry(f"el horario debe ser un número entre 1 y {len(slots)}")
    return slots[slot - 1]


def _listed(d: ToolDeps, appointment: int) -> dict[str, Any]:
    listed: list[dict[str, Any]] = d.state.get("appointments") or []
    if not listed:
        raise ModelRetry("primero lista las citas del cliente con list_my_appointments")
    if not 1 <= appointment <= len(listed):
        raise ModelRetry(f"la cita debe ser un número entre 1 y {len(listed)}")
    return listed[appointment - 1]


@counted
async def book_appointment(ctx: Ctx, slot: int, customer_name: str | None = None) -> dict[str, Any]:
    """Agenda el horario propuesto número `slot` para el servicio elegido. Si no conocemos el
    nombre del cliente, pásalo en `customer_name` (si falta, la respuesta pide preguntarlo)."""
    d = ctx.deps
    d.state["cancel_pending"] = None
    chosen = _proposed(d, slot)
    name = (customer_name or "").strip() or d.state.get("contact_name")
    service = await catalog.get_service(d.pool, d.org.id, d.state["service"]["id"])
    assert service is not None  # service rows are deactivated, never deleted
    held = await _hold_chosen(d, chosen, service.duration_minutes)
    if held and not name:
        d.state["chosen_slot"] = slot
        return d.act("name_needed", slot=chosen["label"])
    d.bookings += 1
    key = f"{d.turn_id}:{d.bookings}"
    if held:
        await d.before_effect()  # newer messages came: this turn gives way, books nothing
    booked = held and await appointments.book(
        d.pool,
        org=d.org.id,
        contact_id=d.contact_id,
        service=service,
        starts_at=datetime.fromisoformat(chosen["starts_at"]),
        idempotency_key=key,
        preferred_staff=chosen["staff_id"],
        contact_name=name if customer_name else None,
    )
    if not booked:
        taken = chosen["label"]
        # Fresh alternatives for the same service and window, not counted as a call of its own.
        # functools.wraps set __wrapped__; the decorator's declared Callable type does not show it.
        await check_availability.__wrapped__(ctx)  # type: ignore[attr-defined]
        return d.act(
            "slot_taken",
            slot=taken,
            alternatives=[
                {"n": i + 1, "label": s["label"]} for i, s in enumerate(d.state["proposed_slots"])
            ],
        )
    await holds.release(d.redis, d.org.id, d.chat)
    await _plan_reminders(d, booked.id, "booked")
    d.state.update(contact_name=name, proposed_slots=[], chosen_slot=None, window=None)
    return d.act(
        "booked",
        service=booked.service_name,
        when=replies.when(booked.starts_at, d.org.tz),
        staff=booked.staff_name,
        price=d.state["service"]["price"],
        name=name,
    )


@counted
async def save_contact_name(ctx: Ctx, name: str) -> dict[str, Any]:
    """Guarda el nombre con el que el cliente quiere que agendemos sus citas."""
    d = ctx.deps
    if not name.strip() or len(name) > 120:
        raise ModelRetry("el nombre está vacío o es demasiado largo")
    await chats.save_contact_name(d.pool, d.org.id, d.contact_id, name)
    d.state["contact_name"] = name.strip()
    return d.act("name_saved", name=name.strip())


@counted
async def list_my_appointments(ctx: Ctx, purpose: str = "ver") -> dict[str, Any]:
    """Las próximas citas del cliente, numeradas. `purpose`: "ver", "cancelar" o "reprogramar"."""
    d = ctx.deps
    upcoming = await appointments.list_appointments(
        d.pool, d.org.id, d.contact_id, since=d.now - timedelta(hours=1)
    )
    d.state["appointments"] = [
        {"id": a.id, "label": f"{a.service_name}, {replies.when(a.starts_at, d.org.tz)}"}
        for a in upcoming
    ]
    d.state["purpose"] = purpose if purpose in ("ver", "cancelar", "reprogramar") else "ver"
    d.state.update(reschedule_of=None, cancel_pending=None)  # the numbers may have changed
    d.state["last_list"] = {
        "kind": "appointments",
        "items": [{"label": a["label"]} for a in d.state["appointments"]],
    }
    return d.act(
        "appointments_listed",
        purpose=d.state["purpose"],
        appointments=[
            {"n": i + 1, "label": a["label"]} for i, a in enumerate(d.state["appointments"])
        ],
    )


@counted
async def my_past_appointments(ctx: Ctx) -> dict[str, Any]:
    """Historial de citas del cliente (pasadas y canceladas incluidas), la más reciente primero."""
    d = ctx.deps
    history = await appointments.list_appointments(d.pool, d.org.id, d.contact_id, limit=10)
    return {
        "citas": [
            {
                "servicio": a.service_name,
                "fecha": replies.when(a.starts_at, d.org.tz),
                "estado": a.status,
            }
            for a in history
        ]
    }


@counted
async def cancel_appointment(ctx: Ctx, appointment: int, confirmed: bool = False) -> dict[str, Any]:
    """Cancela la cita listada número `appointment` (de list_my_appointments), en dos pasos.
    Sin `confirmed` no cancela nada: deja la cita por confirmar (cancel_confirmation_needed) y
    tú le preguntas al cliente si confirma cancelarla. Solo cuando el cliente responda que sí,
    en su siguiente mensaje, llama de nuevo con la misma cita y confirmed=true. Con
    confirmed=true sobre una cita que el cliente aún no confirmó, tampoco cancela: pide confirmar."""
    d = ctx.deps
    listed = _listed(d, appointment)
    pending = d.state.get("cancel_pending")
    # The yes must come in a later turn than the question, so the customer has seen it: a model
    # that asks and confirms in the same run (or across a hand-off) only asks again.
    if not (
        confirmed and pending and pending["n"] == appointment and pending["turn_id"] != d.turn_id
    ):
        d.state["cancel_pending"] = {"n": appointment, "turn_id": d.turn_id}
        return d.act("cancel_confirmation_needed", appointment=appointment, label=listed["label"])
    if any(intents.says_no(intents.normalize(text)) for text in d.texts):
        d.state["cancel_pending"] = None
        raise ModelRetry("el cliente dijo que no: no canceles; dile que su cita sigue en pie")
    d.state["cancel_pending"] = None
    await d.before_effect()
    cancelled = await appointments.cancel(d.pool, d.org.id, d.contact_id, listed["id"])
    if cancelled is None:
        raise ModelRetry("esa cita no se puede cancelar (no existe o ya pasó); vuelve a listar")
    await _plan_reminders(d, cancelled.id, "cancelled")
    d.state.update(appointments=[], purpose=None)
    return d.act(
        "cancelled",
        service=cancelled.service_name,
        when=replies.when(cancelled.starts_at, d.org.tz),
    )


@counted
async def reschedule_appointment(ctx: Ctx, appointment: int, slot: int) -> dict[str, Any]:
    """Mueve la cita listada número `appointment` al horario propuesto número `slot`."""
    d = ctx.deps
    d.state["cancel_pending"] = None
    listed = _listed(d, appointment)
    chosen = _proposed(d, slot)
    moved = None
    if await _hold_chosen(d, chosen, d.state["service"]["duration_minutes"]):
        await d.before_effect()
        try:
            moved = await appointments.reschedule(
                d.pool,
                org=d.org.id,
                contact_id=d.contact_id,
                appointment_id=listed["id"],
                starts_at=datetime.fromisoformat(chosen["starts_at"]),
                preferred_staff=chosen["staff_id"],
            )
        except appointments.NotYours as exc:
            raise ModelRetry(str(exc)) from None
    if moved is None:
        taken = chosen["label"]
        # Uncounted, as in book_appointment (the same type: ignore and its reason).
        await check_availability.__wrapped__(ctx)  # type: ignore[attr-defined]
        return d.act(
            "slot_taken",
            slot=taken,
            alternatives=[
                {"n": i + 1, "label": s["label"]} for i, s in enumerate(d.state["proposed_slots"])
            ],
        )
    await holds.release(d.redis, d.org.id, d.chat)
    await _plan_reminders(d, moved.id, "rescheduled")
    d.state.update(
        appointments=[], purpose=None, reschedule_of=None, proposed_slots=[], window=None
    )
    return d.act(
        "rescheduled", service=moved.service_name, when=replies.when(moved.starts_at, d.org.tz)
    )


@counted
async def search_my_messages(ctx: Ctx, query: str) -> dict[str, Any]:
    """Busca en los mensajes anteriores de este chat ("¿qué me recomendaron la última vez?")."""
    d = ctx.deps
    found = await chats.search_messages(d.pool, d.org.id, d.identity_id, query)
    return {
        "mensajes": [
            {
                "de": "cliente" if who == "inbound" else "nosotros",
                "texto": text[:500],
                "fecha": replies.day(at.astimezone(d.org.tz)),
            }
            for who, text, at in found
        ]
    }


KNOWLEDGE_TOOLS: list[ToolFuncContext[ToolDeps, ...]] = [
    search_knowledge,
    business_info,
    search_my_messages,
    my_past_appointments,
]
APPOINTMENT_TOOLS: list[ToolFuncContext[ToolDeps, ...]] = [
    search_knowledge,
    business_info,
    check_availability,
    book_appointment,
    save_contact_name,
    list_my_appointments,
    my_past_appointments,
    cancel_appointment,
    reschedule_appointment,
]
