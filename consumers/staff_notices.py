"""Booking notices for the clinic's staff: a WhatsApp template to each staff phone (the advisor
and `staff_phones`) when an appointment is booked, moved or cancelled, for organizations that set
`booking_notice_template_id`.

They ride on the CRM's events (`{org}:webhooks`, consumers/webhooks.py), which every change of
an appointment emits once, whoever made it. Each notice is an outbound message with an
idempotency key of the event and the phone, so a retried or replayed event never notifies twice;
the sender applies pacing and status tracking like to any message (a template needs no 24-hour
window).

The template's parameters: {{1}} what happened, {{2}} the service, {{3}} when (in the
organization's timezone), {{4}} with whom, {{5}} the customer (name and phone).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from graph import replies
from storage.events import OutboundMessage, WebhookEvent
from storage.org_settings import staff_phones

# What each event says to the staff (the organization's language is the template's).
WHAT: dict[str, str] = {
    "appointment.booked": "Nueva cita",
    "appointment.moved": "Cita reprogramada",
    "appointment.cancelled": "Cita cancelada",
}


def notices(event: WebhookEvent, settings: dict[str, Any], timezone: str) -> list[OutboundMessage]:
    """The notices an event calls for (none when the organization set no template)."""
    template = settings.get("booking_notice_template_id")
    what = WHAT.get(event.event)
    if not template or what is None:
        return []
    data = event.data
    starts = datetime.fromisoformat(str(data["starts_at"]).replace("Z", "+00:00"))
    contact = data.get("contact") or {}
    customer = " ".join(filter(None, [contact.get("name"), contact.get("phone")])) or "-"
    params = [
        what,
        str(data.get("service") or "-"),
        replies.when(starts, ZoneInfo(timezone)),
        str(data.get("staff") or "-"),
        customer,
    ]
    return [
        OutboundMessage(
            org=event.org,
            phone=phone,
            template_id=str(template),
            template_params=params,
            idempotency_key=f"notice:{event.id}:{phone}",
            purpose="booking_notice",
            requires_bot_enabled=False,
        )
        for phone in sorted(staff_phones(settings))
    ]
