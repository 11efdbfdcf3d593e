"""Keyword rules and reply templates of the offline model (graph/offline.py).

Texts arrive normalized (lower case, no accents: "mañana" -> "manana"). Replies come from the
message catalogs (graph/i18n.py), in the language of the turn.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from graph import i18n, intents, replies, timeparse

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
    """The time of a slot's label, in any catalog's way: "3:00 p. m.", "3:00 PM", "15:00"."""
    m = re.search(r"(\d{1,2}):(\d{2})(?: ([ap])\.? ?m\.?)?", label, re.I)
    if not m:
        return None
    half = (m.group(3) or "").lower()
    hour = int(m.group(1)) % 12 + (12 if half == "p" else 0) if half else int(m.group(1))
    return hour, int(m.group(2))


def ask_which(listed: list[dict[str, Any]], verb: str) -> str:
    """`verb`: "cancel" or "change"."""
    lines = [f"{a['n']}. {a['label']}" for a in listed]
    which = i18n.text("offline.which_one", verb=i18n.text(f"offline.verb_{verb}"))
    return i18n.text("offline.your_appointments") + "\n" + "\n".join(lines) + f"\n\n{which}"


def _appointment_phrase(label: str) -> str:
    """ "Manicure spa, viernes 5 de marzo, 3:00 p. m." -> "de Manicure spa del viernes 5 de marzo, 3:00 p. m."."""
    weekdays = "|".join(map(re.escape, i18n.words("date.weekdays")))
    m = re.match(r"(.+?), ((?:" + weekdays + r")\b.+)$", label)
    if not m:
        return f"«{label}»"
    return i18n.text("offline.appointment_phrase", service=m.group(1), when=m.group(2))


def confirm_cancel(label: str, again: bool = False) -> str:
    """The question asked once cancel_appointment has marked the appointment "por confirmar"."""
    question = i18n.text("offline.confirm_cancel", appointment=_appointment_phrase(label))
    return f"{question} {i18n.text('offline.yes_or_no')}" if again else question


def kept(label: str | None) -> str:
    if label is None:
        return i18n.text("offline.kept")
    return i18n.text("offline.kept_one", appointment=_appointment_phrase(label))


def compose(turn: Any, greet: bool = False) -> str:
    """The reply from this run's tool results, in the order they happened."""
    out: list[str] = []
    if greet or intents.RX["greeting"].match(turn.t):
        if intents.RX["thanks"].match(turn.t):
            out.append(i18n.text("offline.welcome"))
        else:
            out.append(i18n.text("offline.greeting" if greet else "offline.hello"))
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
                i18n.text("offline.said_before", date=found[0]["fecha"], text=found[0]["texto"])
                if found
                else i18n.text("offline.not_said_before")
            )
        elif action == "facts_given":
            out.append(data["answer"])
            pending_booking = bool(turn.state.get("horarios_propuestos"))
        elif action:
            out.append(_ACTION_TEXT.get(action, _no_text)(data))
            pending_booking = False
    if pending_booking:
        out.append(i18n.text("offline.book_one"))
    text = "\n\n".join(p for p in out if p)
    return text or i18n.text("offline.what_for")


def _answer(results: list[dict[str, Any]]) -> str:
    if not results:
        return i18n.text("offline.not_found")
    top = results[0]
    if top["tipo"] == "servicio":
        return i18n.text(
            "offline.service_line",
            name=top["nombre"],
            price=top["precio"],
            minutes=top["duracion_min"],
            description=top["descripcion"],
        )
    answer: str = top["respuesta"]
    return answer


def _slots(data: dict[str, Any], key: str = "slots") -> str:
    return "\n".join(f"{s['n']}. {s['label']}" for s in data.get(key, []))


def _proposed(d: dict[str, Any]) -> str:
    head = (
        i18n.text("offline.changed_service", service=d["service"]) if d.get("changed_from") else ""
    )
    if d.get("exact") and d["slots"]:
        day, _, clock = d["slots"][0]["label"].rpartition(", ")
        exact = i18n.text(
            "offline.exact", service=d["service"], price=d["price"], day=day, clock=clock
        )
        return head + exact
    why = _why(d) if d.get("why") else ""
    if not d["slots"]:
        searched = d.get("searched")
        span = (
            i18n.text("offline.searched", start=searched["from"], end=searched["to"])
            if searched
            else i18n.text("offline.searched_days")
        )
        return head + why + i18n.text("offline.no_slots", service=d["service"], span=span)
    if d.get("why"):
        return head + why + i18n.text("offline.nearest", service=d["service"], slots=_slots(d))
    return head + i18n.text(
        "offline.slots",
        service=d["service"],
        price=d["price"],
        minutes=d["duration_minutes"],
        slots=_slots(d),
    )


def _why(d: dict[str, Any]) -> str:
    """Why the asked window had nothing, in a few words (the tool's `why`), ending in a space."""
    w, asked = d["why"], d.get("asked")
    kind, day, hours = w["kind"], w["day"], w.get("hours")
    if kind == "holiday":
        text = i18n.text("why.holiday", day=day)
    elif kind == "closure":
        text = i18n.text("why.closure", day=day, reason=w.get("reason") or i18n.text("why.closed"))
    elif kind == "closed_weekday":  # "Los domingos no atendemos": the weekday, not the date
        text = i18n.text("why.closed_weekday", weekdays=_plural_of(day))
    elif kind == "closed_days":
        text = i18n.text("why.closed_days")
    elif kind == "outside_hours" and asked:
        text = i18n.text("why.outside_hours_at", asked=asked, day=day, hours=hours)
    elif kind == "outside_hours":
        text = i18n.text("why.outside_hours", hours=hours)
    elif kind == "ends_after_closing":
        text = i18n.text(
            "why.ends_after_closing",
            service=d["service"],
            minutes=d["duration_minutes"],
            asked=asked,
            day=day,
            hours=hours,
        )
    elif kind == "staff_away":
        text = i18n.text("why.staff_away", day=day, service=d["service"])
    elif kind == "too_soon":
        text = i18n.text("why.too_soon_at", asked=asked) if asked else i18n.text("why.too_soon")
    elif asked:
        text = i18n.text("why.booked_at", asked=asked)
    elif d.get("default_window"):
        text = i18n.text("why.week_full")
    else:
        text = i18n.text("why.nothing")
    return text + " "


def _plural_of(day: str) -> str:
    """ "domingo 7 de marzo" -> "domingos": the weekday a day label starts with, in plural."""
    names = i18n.words("date.weekdays")
    found = next((i for i, name in enumerate(names) if day.startswith(name)), None)
    return replies.weekdays_plural(found) if found is not None else day


def date_conflict(d: dict[str, Any]) -> str:
    """ "el lunes 15" when the 15th is a Tuesday: which of the two days."""
    weekdays = i18n.words("date.weekdays")
    dated_weekday = next((w for w in weekdays if d["dated"].startswith(w)), "")
    date = d["dated"][len(dated_weekday) :].lstrip(", ")
    return i18n.text(
        "offline.date_conflict",
        date=date,
        dated_weekday=dated_weekday,
        weekday=d["weekday"],
        dated=d["dated"],
        other=d["other"],
    )


def which_slot(slots: list[dict[str, Any]]) -> str:
    """A yes to a list of several slots: which one?"""
    numbers = (
        ", ".join(str(i + 1) for i in range(len(slots) - 1))
        + f" {i18n.text('offline.or')} {len(slots)}"
    )
    return i18n.text("offline.which_slot", numbers=numbers)


def slots_again(name: str, slots: list[dict[str, Any]]) -> str:
    lines = "\n".join(f"{i + 1}. {s['label']}" for i, s in enumerate(slots))
    return i18n.text("offline.slots_again", name=name, slots=lines)


def goodbye(pending: bool) -> str:
    return i18n.text("offline.goodbye_pending" if pending else "offline.welcome")


def _numbered(items: list[dict[str, Any]]) -> str:
    return "\n".join(f"{a['n']}. {a['label']}" for a in items)


def _no_text(d: dict[str, Any]) -> str:
    """The text of an action the customer is not told about, or of one not in the table."""
    return ""


_ACTION_TEXT: dict[str, Callable[[dict[str, Any]], str]] = {
    "slots_proposed": _proposed,
    "date_conflict": date_conflict,
    "service_needed": lambda d: i18n.text(
        "offline.service_needed",
        options="\n".join(f"{i + 1}. {o}" for i, o in enumerate(d["options"])),
    ),
    "name_needed": lambda d: i18n.text("offline.name_needed", slot=d["slot"]),
    "slot_taken": lambda d: (
        i18n.text("offline.slot_taken", slot=d["slot"], slots=_slots(d, "alternatives"))
        if d["alternatives"]
        else i18n.text("offline.slot_taken_none", slot=d["slot"])
    ),
    "booked": lambda d: i18n.text(
        "offline.booked",
        name=d["name"],
        service=d["service"],
        when=d["when"],
        staff=d["staff"],
        price=d["price"],
    ),
    "appointments_listed": lambda d: (
        i18n.text("offline.listed", lines=_numbered(d["appointments"]))
        if d["appointments"]
        else i18n.text("offline.listed_none")
    ),
    "cancel_confirmation_needed": lambda d: confirm_cancel(d["label"]),
    "cancelled": lambda d: i18n.text("offline.cancelled", service=d["service"], when=d["when"]),
    "rescheduled": lambda d: i18n.text("offline.rescheduled", service=d["service"], when=d["when"]),
    "name_saved": lambda d: "",
    "retry": lambda d: "",
}
