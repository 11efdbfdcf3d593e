"""The loop guard: the bot never sends the same reply twice in a row to a chat.

A reply that repeats the previous turn's question or list means the customer's message was not
understood, whatever the model; so does a reply in the very same words while the task goes on
(even when the state moved: the customer cannot see that). Then we say what we understood and
offer a way forward as a short numbered list (always ending with a person), which the next
message can pick by number (`resolve`); counted in skytide_loop_guard_total. A finished task's
same words (a second goodbye) are said again differently (`said_again`). Whatever produced the
reply (an expert, a tool's fallback, the greeting, this guard), nodes._end_turn checks it here.

The last list shown (ConversationState.last_list) is what "la primera" or "la 2" refers to:
the slots, the customer's appointments, the services, or this guard's menu.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from graph import intents

PERSON = {"label": "Hablar con una persona del equipo", "person": True}
MENU = [
    {"label": "Agendar una cita", "say": "quiero agendar una cita"},
    {"label": "Ver mis citas", "say": "qué citas tengo"},
    {"label": "Cambiar una cita", "say": "quiero cambiar mi cita"},
    {"label": "Cancelar una cita", "say": "quiero cancelar mi cita"},
    {"label": "Servicios y precios", "say": "qué servicios tienen y cuánto cuestan"},
]
MAX_SERVICES = 6


def signature(replies: list[str]) -> str:
    """What a reply asks: its questions and list lines, normalized (a greeting in front of the
    same question is still the same question). Empty when it neither asks nor lists."""
    text = intents.normalize("\n".join(replies))
    asked = re.findall(r"¿[^?]*\?", text)
    listed = re.findall(r"^\s*\d+\.\s.*$", text, re.M)
    return "\n".join(asked + listed)


def repeats(previous: list[str] | None, replies: list[str]) -> bool:
    now = signature(replies)
    return bool(now) and previous is not None and signature(previous) == now


def _words(replies: list[str]) -> str:
    return re.sub(r"\W+", " ", intents.normalize("\n".join(replies))).strip()


def same_words(previous: list[str] | None, replies: list[str]) -> bool:
    """The customer would read the very same message again (case, accents, punctuation aside),
    whether or not it asks anything: "¡Claro! Cuéntame qué necesitas…" has no question mark."""
    if not previous or not replies:
        return False
    return _words(previous) == _words(replies)


def said_again(replies: list[str]) -> list[str]:
    """A statement that stays true (a goodbye, an answer to a second question with the same
    answer) is said again in other words, never in the same ones."""
    first, *rest = replies
    return [f"Como te decía: {first}", *rest]


# What moving forward changes: a new service or day with the same free times is not a loop.
PROGRESS_KEYS = (
    "service",
    "window",
    "chosen_slot",
    "purpose",
    "reschedule_of",
    "cancel_pending",
    "contact_name",
)


def progressed(state: Mapping[str, Any], update: Mapping[str, Any]) -> bool:
    return any(k in update and update[k] != state.get(k) for k in PROGRESS_KEYS)


def understood(state: Mapping[str, Any]) -> str:
    """What we understood so far, in one sentence, from the state (never from the model)."""
    parts = []
    if service := state.get("service"):
        parts.append(f"una cita de {service['name']}")
    window = state.get("window") or ""
    if window and len(window) <= 30:  # "el viernes en la tarde", not the whole message it came in
        parts.append(f"para «{window}»")
    purpose = state.get("purpose")
    if purpose == "cancelar":
        return "Entendí que quieres cancelar una cita."
    if purpose == "reprogramar":
        return "Entendí que quieres cambiar una cita."
    if parts:
        return f"Entendí que buscas {' '.join(parts)}."
    return "Perdona, no logré entender tu mensaje."


def options(state: Mapping[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """The way forward: the items on the table plus a person, and how to ask for them."""
    last = state.get("last_list") or {}
    kind, items = last.get("kind"), list(last.get("items") or [])
    if kind == "slots" and items:
        return "Elige un horario", items + [
            {"label": "Ver otros días u horas", "say": "otros horarios"},
            PERSON,
        ]
    if kind == "appointments" and items:
        return "Elige la cita", items + [PERSON]
    if kind == "services" and items:
        return "Elige el servicio", items[:MAX_SERVICES] + [PERSON]
    return "Puedo ayudarte con", MENU + [PERSON]


def missed_again(state: Mapping[str, Any], replies: list[str]) -> bool:
    """The expert repeats the question our options replaced: the options did not help either."""
    last = state.get("last_list") or {}
    return (
        last.get("kind") == "menu"
        and bool(last.get("repeated"))
        and last["repeated"] == signature(replies)
    )


def offer_person(state: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    text = (
        "Perdona, sigo sin entenderte 🙏. ¿Quieres que te comunique con una persona del equipo? "
        "Respóndeme «sí», o cuéntame con otras palabras qué necesitas."
    )
    return text, {"kind": "menu", "items": [PERSON], "yes_is": 1}


def guard_reply(
    state: Mapping[str, Any], repeated: list[str], after_menu: bool = False
) -> tuple[str, dict[str, Any]]:
    """The reply that replaces a repeated one, and the numbered list it shows; after our own
    options did not help, a person."""
    if after_menu:
        return offer_person(state)
    head, items = options(state)
    lines = "\n".join(f"{i + 1}. {item['label']}" for i, item in enumerate(items))
    kind = (state.get("last_list") or {}).get("kind") if head != "Puedo ayudarte con" else None
    text = f"{understood(state)} {head}:\n{lines}\n\nRespóndeme solo con el número de la opción."
    return text, {"kind": "menu", "of": kind, "items": items, "repeated": signature(repeated)}


def resolve(state: Mapping[str, Any], texts: list[str]) -> dict[str, Any] | None:
    """The item of the last list the customer's message picks by number, if that item carries
    its own meaning (a menu entry, a service, a person); slots and appointments keep their
    numbers and are read by the expert with the proposed slots or listed appointments."""
    last = state.get("last_list") or {}
    items: list[dict[str, Any]] = last.get("items") or []
    if not items or last.get("kind") not in ("menu", "services"):
        return None
    t = intents.normalize(" ".join(texts).strip())
    yes_is: int = last.get("yes_is") or 0  # the number that "sí" picks, on offer_person's list
    if yes_is and intents.says_yes(t):
        return items[yes_is - 1]
    n = intents.pick_number(t)
    if intents.classify(t) != "pick" or not n or n > len(items):
        return None
    item = items[n - 1]
    return item if (item.get("say") or item.get("person")) else None
