"""A reminder's buttons answered: Confirmar, Reprogramar, Cancelar (their titles in each
language: the catalogs' `reminder.buttons`, graph/locales).

The answer arrives as a button or quick-reply event ("[botón] Confirmar"), or typed. It refers
to the appointment the contact was last reminded of (storage/reminders.remember_reminded).
Confirmar marks the appointment confirmed by the customer at once; Cancelar and Reprogramar
enter the appointment expert with that appointment already listed, so cancelling still asks
the usual yes and rescheduling offers times for that appointment. The buttons are titled in the
chat's language (graph/locales, reminder.buttons); a title of any language is read.
"""

from __future__ import annotations

import re
from typing import Any

from graph import i18n, intents, replies
from graph.contract import TurnInput, TurnResult
from graph.state import ConversationState
from ops import metrics
from ops.deps import Deps
from storage import reminders, webhooks
from storage.catalog import OrgProfile
from storage.events import ReminderAnswer

# Each language's button titles, in the order confirm, reschedule, cancel.
_IN_ORDER: tuple[ReminderAnswer, ...] = ("confirm", "reschedule", "cancel")
_ANSWERS: dict[str, ReminderAnswer] = {
    intents.normalize(title): answer
    for titles in i18n.in_every_language("reminder.buttons").values()
    for title, answer in zip(titles, _IN_ORDER)
}
_BUTTON = re.compile(
    r"^\s*(\[(?:boton|button|botao)\]\s*)?("
    + "|".join(map(re.escape, sorted(_ANSWERS, key=len, reverse=True)))
    + r")\s*[.!]*\s*$"
)


async def reminder_answer(deps: Deps, turn: TurnInput, org: OrgProfile) -> dict[str, Any] | None:
    """{"answer", "appointment": {"id", "label"}} when this turn answers a reminder's button."""
    if len(turn.texts) != 1:
        return None
    match = _BUTTON.match(intents.normalize(turn.texts[0]))
    if match is None:
        return None
    appointment_id = await reminders.reminded_appointment(deps.redis, turn.org, turn.chat)
    if appointment_id is None:
        return None
    due = await reminders.due_appointment(deps.pool, turn.org, appointment_id)
    if due is None or due.contact_id != turn.contact_id or due.status != "confirmed":
        return None
    label = f"{due.service_name}, {replies.when(due.starts_at, org.tz)}"
    return {"answer": _ANSWERS[match.group(2)], "appointment": {"id": due.id, "label": label}}


async def confirm(deps: Deps, turn: TurnInput, found: dict[str, Any]) -> TurnResult:
    appointment = found["appointment"]
    await turn.before_effect()  # newer messages came: answered with them by the next turn
    if await reminders.confirm_attendance(deps.pool, turn.org, turn.contact_id, appointment["id"]):
        await webhooks.appointment_changed(
            deps.redis,
            deps.pool,
            turn.org,
            appointment["id"],
            "confirmed",
            turn_id=turn.turn_id,
            now_ms=deps.now_ms(),
        )
    metrics.reminder_answers.labels(turn.org, "confirmed").inc()
    return TurnResult(
        replies=[i18n.text("system.attendance_confirmed", label=appointment["label"])],
        actions=[{"action": "attendance_confirmed", "data": {"label": appointment["label"]}}],
        experts=["appointment"],
    )


def state_for(found: dict[str, Any], org: str) -> ConversationState:
    """The appointment expert's state for Cancelar or Reprogramar on that appointment."""
    purpose = "cancelar" if found["answer"] == "cancel" else "reprogramar"
    metrics.reminder_answers.labels(org, f"{found['answer']}_asked").inc()
    return {
        "flow": "appointment",
        "appointments": [found["appointment"]],
        "purpose": purpose,
        "reschedule_of": None,
        "cancel_pending": None,
        "proposed_slots": [],
        "chosen_slot": None,
    }
