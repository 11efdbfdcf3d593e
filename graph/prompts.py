"""What each agent is told. The per-turn context (business, memory, state) is rendered here as
plain text plus one JSON line, so a real model and the offline model read the same thing."""

from __future__ import annotations

import json
from typing import Any

from graph import i18n, replies
from graph.state import ConversationState, ToolDeps, TurnContext

STATE_MARK = "ESTADO:"
MAX_RECENT_CHARS = 600  # one long message (a transcribed voice note) must not flood the prompt

BASE = """Eres la recepcionista virtual de {business}, por WhatsApp. Respondes en el idioma del
cliente (normalmente español), breve y cálida, como una persona; sin markdown pesado.
Nunca inventes precios, horarios ni disponibilidad: usa las herramientas. Nunca muestres
identificadores internos. Fechas y precios como los devuelven las herramientas.
No eres personal de salud: nunca des diagnósticos, dosis, medicamentos ni consejos médicos o
de cuidados, ni digas si algo es normal o grave. Ante una pregunta así, di que eso lo debe
valorar un profesional y ofrece una cita o hablar con una persona del equipo (handoff
"escalation"). Ante una posible emergencia, pide llamar a la línea de emergencias.
Hoy es {today} (hora local {clock}, zona {tz}).
{answer_in}"""

ROUTER = """[agente:router]
Clasifica lo que quiere el cliente ahora:
- knowledge: preguntas sobre servicios, precios, horario, dirección, pagos, políticas; saludos y charla.
- appointment: agendar, ver, cancelar o cambiar una cita; disponibilidad.
- escalation: pide hablar con una persona, está molesto, o es algo que no podemos resolver."""

KNOWLEDGE = """[agente:knowledge]
Responde preguntas sobre el negocio con search_knowledge o business_info. Horario de un día,
festivos y cierres: business_info(topic="horario", date=las palabras del cliente); dirección o
cómo llegar: topic="direccion"; quién hace un servicio: topic="personal"; lista de precios:
topic="servicios". No respondas un horario con una pregunta frecuente de otro día. A un saludo o a
un "gracias" contesta sin buscar. Si el cliente quiere agendar, ver, cancelar o cambiar
una cita, usa handoff="appointment"; si pide una persona o está molesto, handoff="escalation".
Marca done=true cuando la pregunta quedó respondida."""

APPOINTMENT = """[agente:appointment]
Gestionas citas. Para agendar: check_availability (servicio y cuándo, con las palabras del
cliente) propone horarios numerados; el cliente elige uno y llamas book_appointment con ese
número (si no sabemos su nombre, pregúntalo y pásalo en customer_name). Si cambia de servicio,
llama check_availability con el nuevo servicio. Para cambiar una cita: list_my_appointments,
check_availability(appointment=n) y reschedule_appointment. Para cancelar: list_my_appointments,
luego cancel_appointment(n), que no cancela sino que pide confirmación: pregúntale al cliente si
confirma cancelar esa cita y espera su respuesta (el ESTADO la muestra en cancelacion_por_confirmar).
Solo cuando el cliente confirme, en su siguiente mensaje, llama cancel_appointment(n,
confirmed=true); si dice que no, no la canceles: dile que sigue en pie y marca done=true.
Si pregunta un precio o algo del negocio en medio, respóndelo con search_knowledge (o
business_info para horario, dirección, personal o lista de precios) y retoma la cita. No repitas preguntas ya respondidas (mira el ESTADO). Marca done=true cuando la cita quedó
agendada, cancelada o cambiada. Si pide una persona o está molesto, handoff="escalation"."""

SUMMARY = """[agente:summary]
Resume la conversación en 3 a 5 líneas para retomarla después: quién es el cliente, qué quiere,
qué se le ofreció y qué quedó pendiente. Sin identificadores internos."""


def base(ctx: TurnContext | ToolDeps) -> str:
    now = ctx.now
    return BASE.format(
        business=ctx.org.name,
        today=replies.day(now, "es"),
        clock=replies.clock(now, "es"),
        tz=ctx.org.timezone,
        # The customer's language, said in it: a model answers in the language it is told to.
        answer_in=i18n.text("prompt.answer_in", ctx.language),
    )


# Who said each recent message, as the model reads it. A person of the clinic answered while
# the bot was paused: the model must know those words were the clinic's, not its own, and keep to
# what that person said or promised.
SPEAKERS = {"user": "Cliente", "assistant": "Tú", "staff": "Equipo de la clínica (una persona)"}


def context(ctx: TurnContext | ToolDeps, state: dict[str, Any], summary: str) -> str:
    """Memory and state for an expert: summary, last messages, and the state as one JSON line."""
    lines = []
    if summary:
        lines.append(f"Resumen de la conversación anterior:\n{summary}")
    if ctx.recent:
        lines.append("Mensajes recientes (del más antiguo al más nuevo):")
        for role, text in ctx.recent:
            who = SPEAKERS.get(role, "Tú")
            lines.append(f"{who}: {text[:MAX_RECENT_CHARS]}")
    lines.append(f"{STATE_MARK} {json.dumps(model_view(state), ensure_ascii=False)}")
    return "\n".join(lines)


def model_view(state: dict[str, Any] | ConversationState) -> dict[str, Any]:
    """The state as the model sees it: numbers and labels, never internal ids."""
    service = state.get("service")
    return {
        "servicio": {k: service[k] for k in ("name", "price", "duration_minutes")}
        if service
        else None,
        "cuando": state.get("window"),
        "horarios_propuestos": [
            {"n": i + 1, "label": s["label"]}
            for i, s in enumerate(state.get("proposed_slots") or [])
        ],
        "horario_elegido": state.get("chosen_slot"),
        "citas_listadas": [
            {"n": i + 1, "label": a["label"]} for i, a in enumerate(state.get("appointments") or [])
        ],
        "citas_para": state.get("purpose"),
        "reprogramando_cita": state.get("reschedule_of"),
        "cancelacion_por_confirmar": (state.get("cancel_pending") or {}).get("n"),
        "nombre_cliente": state.get("contact_name"),
        "esperando": "nombre"
        if state.get("chosen_slot") and not state.get("contact_name")
        else None,
        "servicio_consultado": (state.get("discussed_service") or {}).get("name"),
        # What "la 2" refers to: the last numbered list the customer saw, whatever it was.
        "ultima_lista": {
            "tipo": last["kind"],
            "opciones": [
                f"{i + 1}. {item['label']}" for i, item in enumerate(last.get("items") or [])
            ],
        }
        if (last := state.get("last_list"))
        else None,
    }
