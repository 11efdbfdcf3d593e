"""Keyword rules and reply templates of the offline model (graph/offline.py).

Texts arrive normalized (lower case, no accents: "mañana" -> "manana").
"""

from __future__ import annotations

import re
from typing import Any, Callable

from graph import intents, replies, timeparse

# The offline model's kinds of message, from the shared intent table (graph/intents.py).
_KIND = {
    "person": "escalate",
    "upset": "escalate",
    "cancel": "cancel",
    "reschedule": "reschedule",
    "list": "list",
    "book": "book",
    "price": "info",
    "hours": "info",
    "address": "info",
    "info": "info",
    "greeting": "chat",
    "thanks": "chat",
    "goodbye": "chat",
}


def intent(t: str) -> str:
    """escalate, cancel, reschedule, list, book, info, chat, or "other" (a pick, a yes or no,
    a name, or nothing we know): read in the context of the conversation."""
    return _KIND.get(intents.classify(t), "other") if t.strip() else "chat"


def pick_slot(t: str, slots: list[dict[str, Any]]) -> int | None:
    """The proposed slot the customer chose: "la primera", "2", "la de las 3", "a las 3", "sí" (one offered)."""
    if n := intents.pick_number(t):
        return n if n <= len(slots) else None
    if re.search(r"\b(ultima|ultimo)\b", t):
        return len(slots)
    asked = timeparse.parse(t, intents.ANY_NOW)
    # "a las 3", "la de las 3" pick from the list; "para las 5" asks for that time (a new search).
    if (
        asked.prefer
        and not intents.mentions_day(t)
        and re.match(r"^\W*((la|el) de )?(a )?(la|las) \d", t)
    ):
        for i, slot in enumerate(slots):
            if _label_time(slot["label"]) == (asked.prefer.hour, asked.prefer.minute):
                return i + 1
    if len(slots) == 1 and (
        intents.says_yes(t) or re.search(r"^\W*(si|dale|esa|ese|perfecto|listo|de una)\b", t)
    ):
        return 1
    return None


def _label_time(label: str) -> tuple[int, int] | None:
    m = re.search(r"(\d{1,2}):(\d{2}) (a|p)\. m\.", label)
    if not m:
        return None
    hour = int(m.group(1)) % 12 + (12 if m.group(3) == "p" else 0)
    return hour, int(m.group(2))


def ask_which(listed: list[dict[str, Any]], verb: str) -> str:
    lines = [f"{a['n']}. {a['label']}" for a in listed]
    return (
        "Tienes estas citas:\n"
        + "\n".join(lines)
        + f"\n\n¿Cuál quieres {verb}? Respóndeme con el número."
    )


def _appointment_phrase(label: str) -> str:
    """ "Manicure spa, viernes 5 de marzo, 3:00 p. m." -> "de Manicure spa del viernes 5 de marzo, 3:00 p. m."."""
    m = re.match(r"(.+?), ((?:" + "|".join(replies.WEEKDAYS) + r") .+)$", label)
    return f"de {m.group(1)} del {m.group(2)}" if m else f"«{label}»"


def confirm_cancel(label: str, again: bool = False) -> str:
    """The question asked once cancel_appointment has marked the appointment "por confirmar"."""
    question = f"¿Confirmas que cancelo tu cita {_appointment_phrase(label)}?"
    return f"{question} Respóndeme «sí» o «no»." if again else question


def kept(label: str | None) -> str:
    if label is None:
        return "Perfecto, no cancelo nada. ¿Te ayudo con algo más?"
    return f"Perfecto, no la cancelo: tu cita {_appointment_phrase(label)} sigue en pie. ¿Te ayudo con algo más?"


def compose(turn: Any, greet: bool = False) -> str:
    """The reply from this run's tool results, in the order they happened."""
    out: list[str] = []
    if greet or re.match(r"^\W*(hola|buenas|buenos dias)", turn.t):
        if re.match(r"^\W*(gracias|muchas gracias|perfecto|listo|ok)\b", turn.t):
            out.append("¡Con gusto! Aquí estoy si necesitas algo más. 😊")
        else:
            out.append(
                "¡Hola! Soy la asistente virtual. Te puedo contar de nuestros servicios y precios, "
                "o agendar, cambiar o cancelar tu cita. ¿En qué te ayudo?"
                if greet
                else "¡Hola!"
            )
    pending_booking = False
    for name, result in turn.results:
        action = result.get("action") if isinstance(result, dict) else None
        data = result.get("data", {}) if isinstance(result, dict) else {}
        if name == "search_knowledge" and action is None:
            out.append(_answer(result.get("resultados", [])))
            pending_booking = bool(turn.state.get("horarios_propuestos"))
        elif name == "search_my_messages" and action is None:
            found = [m for m in result.get("mensajes", []) if m["de"] == "nosotros"]
            out.append(
                f"Esto fue lo que te escribimos el {found[0]['fecha']}: «{found[0]['texto']}»"
                if found
                else "No encontré eso en nuestros mensajes anteriores."
            )
        elif action == "facts_given":
            out.append(data["answer"])
            pending_booking = bool(turn.state.get("horarios_propuestos"))
        elif action:
            out.append(_ACTION_TEXT.get(action, _no_text)(data))
            pending_booking = False
    if pending_booking:
        out.append("¿Te reservo alguno de los horarios que te propuse?")
    text = "\n\n".join(p for p in out if p)
    return text or "¿En qué te puedo ayudar con tu cita?"


def _answer(results: list[dict[str, Any]]) -> str:
    if not results:
        return (
            "No encontré información sobre eso. Si quieres, te comunico con una persona del equipo."
        )
    top = results[0]
    if top["tipo"] == "servicio":
        return f"{top['nombre']}: cuesta {top['precio']} y dura {top['duracion_min']} minutos. {top['descripcion']}"
    answer: str = top["respuesta"]
    return answer


def _slots(data: dict[str, Any], key: str = "slots") -> str:
    return "\n".join(f"{s['n']}. {s['label']}" for s in data.get(key, []))


def _proposed(d: dict[str, Any]) -> str:
    head = f"Perfecto, cambiamos a {d['service']}. " if d.get("changed_from") else ""
    if d.get("exact") and d["slots"]:
        day, _, clock = d["slots"][0]["label"].partition(", ")
        return f"{head}¿Te agendo {d['service']} ({d['price']}) el {day} a las {clock}?"
    why = _why(d) if d.get("why") else ""
    if not d["slots"]:
        searched = d.get("searched")
        span = (
            f"entre el {searched['from']} y el {searched['to']}"
            if searched
            else "en los días que busqué"
        )
        return (
            f"{head}{why}No tengo horarios libres para {d['service']} {span}. "
            "¿Quieres que te comunique con una persona?"
        )
    if d.get("why"):
        return f"{head}{why}Lo más cercano que tengo para {d['service']}:\n{_slots(d)}\n\n¿Cuál prefieres?"
    return (
        f"{head}Para {d['service']} ({d['price']}, {d['duration_minutes']} min) tengo estos horarios:\n"
        f"{_slots(d)}\n\n¿Cuál prefieres?"
    )


def _why(d: dict[str, Any]) -> str:
    """Why the asked window had nothing, in a few words (the tool's `why`), ending in a space."""
    w, asked = d["why"], d.get("asked")
    kind, day, hours = w["kind"], w["day"], w.get("hours")
    if kind == "holiday":
        text = f"El {day} es festivo y no atendemos."
    elif kind == "closure":
        text = f"El {day} no atendemos ({w.get('reason') or 'cerrado'})."
    elif (
        kind == "closed_weekday"
    ):  # "Los domingos no atendemos": the weekday is the reason, not the date
        weekday = day.split()[0]
        text = f"Los {weekday if weekday.endswith('s') else weekday + 's'} no atendemos."
    elif kind == "closed_days":
        text = "Esos días no atendemos."
    elif kind == "outside_hours" and asked:
        text = f"A las {asked} no atendemos: el {day} abrimos de {hours}."
    elif kind == "outside_hours":
        text = f"En ese horario no atendemos (abrimos de {hours})."
    elif kind == "ends_after_closing":
        text = (
            f"{d['service']} dura {d['duration_minutes']} minutos: a las {asked} terminaría después del "
            f"cierre (el {day} abrimos de {hours})."
        )
    elif kind == "staff_away":
        text = f"El {day} no hay nadie del equipo disponible para {d['service']}."
    elif kind == "too_soon":
        text = (
            f"Para las {asked} ya no alcanzo a agendarte."
            if asked
            else "Para ese momento ya no alcanzo a agendarte."
        )
    elif asked:
        text = f"A las {asked} ya no tengo espacio."
    elif d.get("default_window"):
        text = "Esta semana ya no me quedan horarios."
    else:
        text = "No me quedan horarios en lo que pediste."
    return text + " "


def date_conflict(d: dict[str, Any]) -> str:
    """ "el lunes 15" when the 15th is a Tuesday: which of the two days."""
    dated_weekday = d["dated"].split()[0]
    return (
        f"El {d['dated'].split(' ', 1)[1]} es {dated_weekday}, no {d['weekday']}. "
        f"¿Lo quieres el {d['dated']} o el {d['other']}?"
    )


def which_slot(slots: list[dict[str, Any]]) -> str:
    """A yes to a list of several slots: which one?"""
    numbers = ", ".join(str(i + 1) for i in range(len(slots) - 1)) + f" o {len(slots)}"
    return f"¡Claro! ¿Cuál de los horarios te agendo? Respóndeme con el número ({numbers})."


def slots_again(name: str, slots: list[dict[str, Any]]) -> str:
    lines = "\n".join(f"{i + 1}. {s['label']}" for i, s in enumerate(slots))
    return f"¡Gracias, {name}! ¿Cuál de estos horarios prefieres?\n{lines}"


def goodbye(pending: bool) -> str:
    if pending:
        return "¡Con gusto! Si más tarde quieres alguno de esos horarios, escríbeme. 😊"
    return "¡Con gusto! Aquí estoy si necesitas algo más. 😊"


def _no_text(d: dict[str, Any]) -> str:
    """The text of an action the customer is not told about, or of one not in the table."""
    return ""


_ACTION_TEXT: dict[str, Callable[[dict[str, Any]], str]] = {
    "slots_proposed": _proposed,
    "date_conflict": date_conflict,
    "service_needed": lambda d: (
        "¿Para qué servicio quieres la cita? Tenemos:\n"
        + "\n".join(f"{i + 1}. {o}" for i, o in enumerate(d["options"]))
    ),
    "name_needed": lambda d: (
        f"¡Perfecto! Te reservo el {d['slot']}. ¿A nombre de quién agendo la cita?"
    ),
    "slot_taken": lambda d: (
        f"Uy, el {d['slot']} se acaba de ocupar. 😕 Te puedo ofrecer:\n"
        f"{_slots(d, 'alternatives')}\n\n¿Cuál prefieres?"
        if d["alternatives"]
        else f"Uy, el {d['slot']} se acaba de ocupar y no veo otros horarios cercanos."
    ),
    "booked": lambda d: (
        f"¡Listo, {d['name']}! Tu cita de {d['service']} quedó agendada para el {d['when']} "
        f"con {d['staff']}. Valor: {d['price']}. Te esperamos. 💆"
    ),
    "appointments_listed": lambda d: (
        "Tus próximas citas:\n" + "\n".join(f"{a['n']}. {a['label']}" for a in d["appointments"])
        if d["appointments"]
        else "No tienes citas próximas con nosotros."
    ),
    "cancel_confirmation_needed": lambda d: confirm_cancel(d["label"]),
    "cancelled": lambda d: (
        f"Listo, tu cita de {d['service']} del {d['when']} quedó cancelada. ¿Te ayudo con algo más?"
    ),
    "rescheduled": lambda d: (
        f"¡Hecho! Tu cita de {d['service']} quedó para el {d['when']}: ¡te esperamos!"
    ),
    "name_saved": lambda d: "",
    "retry": lambda d: "",
}
