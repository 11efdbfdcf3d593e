"""The loop guard: the bot never sends the same reply twice in a row to a chat.

A reply that repeats the previous turn's question or list means the customer's message was not
understood, whatever the model; so does a reply in the very same words while the task goes on
(even when the state moved: the customer cannot see that). Then we say what we understood and
offer a way forward as a short numbered list (always ending with a person), which the next
message can pick by number (`resolve`); counted in skytide_loop_guard_total. A finished task's
same words (a second goodbye) are said again differently (`said_again`). Whatever produced the
reply (an expert, a tool's fallback, the greeting, this guard), nodes._end_turn checks it here.

The last list shown (ConversationState.last_list) is what "la primera" or "la 2" refers to:
the slots, the customer's appointments, the services, or this guard's menu. Its texts come from
the message catalogs (graph/i18n.py), in the language of the turn; a menu entry's `say` is what
the customer would have written, in that language, so the router reads it like any message.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from graph import i18n, intents

_MENU = ("book", "list", "change", "cancel", "services")
MAX_SERVICES = 6


def person() -> dict[str, Any]:
    return {"label": i18n.text("guard.person"), "person": True}


def menu() -> list[dict[str, Any]]:
    """What the bot can do, in the language of the turn."""
    return [
        {"label": i18n.text(f"guard.menu_{k}"), "say": i18n.text(f"guard.menu_{k}_say")}
        for k in _MENU
    ]


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
    return [i18n.text("guard.as_i_said", text=first), *rest]


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
        parts.append(i18n.text("guard.understood_service", service=service["name"]))
    window = state.get("window") or ""
    if window and len(window) <= 30:  # "el viernes en la tarde", not the whole message it came in
        parts.append(i18n.text("guard.understood_window", window=window))
    purpose = state.get("purpose")
    if purpose == "cancelar":
        return i18n.text("guard.understood_cancel")
    if purpose == "reprogramar":
        return i18n.text("guard.understood_change")
    if parts:
        return i18n.text("guard.understood", what=" ".join(parts))
    return i18n.text("guard.not_understood")


def options(state: Mapping[str, Any]) -> tuple[str | None, str, list[dict[str, Any]]]:
    """The way forward: the kind of list on the table (None: our menu), the heading, and its
    items plus a person."""
    last = state.get("last_list") or {}
    kind, items = last.get("kind"), list(last.get("items") or [])
    if kind == "slots" and items:
        other = {"label": i18n.text("guard.other_times"), "say": i18n.text("guard.other_times_say")}
        return kind, i18n.text("guard.choose_slot"), items + [other, person()]
    if kind == "appointments" and items:
        return kind, i18n.text("guard.choose_appointment"), items + [person()]
    if kind == "services" and items:
        return kind, i18n.text("guard.choose_service"), items[:MAX_SERVICES] + [person()]
    return None, i18n.text("guard.can_help"), menu() + [person()]


def missed_again(state: Mapping[str, Any], replies: list[str]) -> bool:
    """The expert repeats the question our options replaced: the options did not help either."""
    last = state.get("last_list") or {}
    return (
        last.get("kind") == "menu"
        and bool(last.get("repeated"))
        and last["repeated"] == signature(replies)
    )


def offer_person(state: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    return i18n.text("guard.offer_person"), {"kind": "menu", "items": [person()], "yes_is": 1}


def guard_reply(
    state: Mapping[str, Any], repeated: list[str], after_menu: bool = False
) -> tuple[str, dict[str, Any]]:
    """The reply that replaces a repeated one, and the numbered list it shows; after our own
    options did not help, a person."""
    if after_menu:
        return offer_person(state)
    kind, head, items = options(state)
    lines = "\n".join(f"{i + 1}. {item['label']}" for i, item in enumerate(items))
    text = f"{understood(state)} {head}:\n{lines}\n\n{i18n.text('guard.pick_number')}"
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
    if last.get("kind") == "services" and len(items) == 1 and intents.says_yes(t):
        only: dict[str, Any] = items[0]
        return only  # "¿Para qué servicio? 1. Masaje relajante" answered "yes please"
    n = intents.pick_number(t)
    if intents.classify(t) != "pick" or not n or n > len(items):
        return None
    item = items[n - 1]
    return item if (item.get("say") or item.get("person")) else None
