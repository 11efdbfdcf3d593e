"""The records that cross a process, in one place, so a producer and its consumer cannot drift.

Each record's encoder sits beside its decoder. The decoders accept everything an earlier
version wrote: a deployment upgrades in place, with old entries still in Redis.

- Stream events: an entry has two fields, `type` (the event's name) and `data` (its JSON).
- Dead letters (`{org}:dead`): the failed entry's fields under `payload.*`, with its stage,
  stream, error and delivery count beside them (`encode_dead_letter`, `decode_dead_letter`).
- Scheduled jobs (`{org}:jobs:data`, storage/jobs.py): JSON discriminated on `kind`
  (`encode_job`, `decode_job`).
- Reminder buttons: what each answers (`ReminderAnswer`); their titles, in each language, are
  the message catalogs' `reminder.buttons` (graph/locales), in the order confirm, reschedule,
  cancel.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

MessageKind = Literal[
    "text",
    "image",
    "audio",
    "voice",
    "video",
    "file",
    "sticker",
    "location",
    "contact",
    "button_reply",
    "list_reply",
    "quick_reply",
    "reaction",
    "unknown",
]


class Media(BaseModel):
    url: str
    content_type: str = "application/octet-stream"
    filename: str | None = None
    expires_at_ms: int | None = None
    sha256: str | None = None


class InboundMessage(BaseModel):
    """A message a user sent to the business, as parsed from either Gupshup format."""

    type: Literal["message"] = "message"
    org: str
    provider_id: str
    phone: str
    name: str | None = None
    kind: MessageKind
    text: str | None = None  # typed text, or the readable form of a reply, location or contact
    caption: str | None = None
    media: Media | None = None
    context_id: str | None = None  # the message this one quotes or answers
    sent_at_ms: int  # when the user sent it: orders a burst
    received_at_ms: int
    raw: dict[str, Any] = Field(default_factory=dict)
    traceparent: str | None = None  # W3C trace context: one trace per message across stages


class StatusEvent(BaseModel):
    """What Gupshup says happened to a message we sent."""

    type: Literal["status"] = "status"
    org: str
    provider_id: str  # Gupshup messageId or WhatsApp id, depending on the status
    gs_id: str | None = None
    status: str  # enqueued, sent, delivered, read, failed, deleted, mismatch, or unknown ones
    destination: str | None = None
    at_ms: int
    code: int | None = None
    reason: str | None = None
    raw: dict[str, Any] = Field(default_factory=dict)


class UserEvent(BaseModel):
    type: Literal["user_event"] = "user_event"
    org: str
    phone: str
    event: str  # opted-in, opted-out, sandbox-start, ...
    at_ms: int
    raw: dict[str, Any] = Field(default_factory=dict)


class TurnRequest(BaseModel):
    """A burst of one chat's messages, ready for the agent."""

    type: Literal["turn"] = "turn"
    org: str
    chat: str  # the customer's phone
    turn_id: str
    message_ids: list[str]


class EscalationNotice(BaseModel):
    """Carried by an advisor notification: what to tell the customer once Gupshup answers."""

    customer_phone: str
    accepted_text: str  # sent, and the bot turned off for the chat, once the notice is accepted
    failed_text: str  # sent, with the bot left on, when it was not accepted


class Origin(BaseModel):
    """The customer message a reply answers: for end-to-end latency and the trace it joins."""

    received_at_ms: int
    traceparent: str | None = None


# Why a message goes out; stored with its row (chat_messages.purpose). The sender treats some
# apart: a continuation never becomes a template, an opt-out confirmation reaches an opted-out
# contact, a reply carries the customer message's origin.
Purpose = Literal[
    "reply",  # the bot's answer in a turn
    "continuation",  # a further part of a long reply (consumers/sender.py)
    "escalation",  # the template to the organization's advisor
    "escalation_notice",  # what the customer is told once the advisor's template went out
    "opt_out_confirmation",
    "opt_in_confirmation",
    "confirmation",  # scheduled job: an appointment booked, moved or cancelled
    "reminder",  # scheduled job: an appointment coming up
    "staff",  # written by a person of the clinic (the operator API)
    "booking_notice",  # a booking, move or cancellation told to staff phones (staff_notices)
]


class OutboundMessage(BaseModel):
    """Something to send to a WhatsApp user; idempotency_key makes a resend impossible."""

    type: Literal["outbound"] = "outbound"
    org: str
    phone: str
    idempotency_key: str
    text: str | None = None
    # Further parts of the same reply (a long answer split for WhatsApp): one entry, so one
    # sender sends them in order, whichever process it is.
    more_texts: list[str] = Field(default_factory=list)
    template_id: str | None = None
    template_params: list[str] = Field(default_factory=list)
    # Quick-reply buttons (at most 3, 20 characters each) under the text: a Gupshup interactive
    # message inside the window. A template carries its own buttons.
    buttons: list[str] = Field(default_factory=list)
    turn_id: str | None = None
    purpose: Purpose = "reply"
    # Checked again just before sending: a reply produced after a person took the chat is dropped.
    requires_bot_enabled: bool = True
    escalation: EscalationNotice | None = None
    origin: Origin | None = None
    # Who wrote it, stored with the row: "staff:<name>" for a person of the clinic (the operator
    # API); None means the bot's reply ("bot") or, for any other purpose, "system".
    author: str | None = None
    # What the bot did in the turn this reply ends (experts, tools, actions), stored with the
    # row so the inbox can show it without the checkpoint (which expires).
    handled_by: dict[str, Any] | None = None

    @property
    def author_name(self) -> str:
        if self.author:
            return self.author
        return "bot" if self.purpose in ("reply", "continuation") else "system"


class WebhookEvent(BaseModel):
    """Something the organization's CRM is told about (storage/webhooks.py): one entry per event,
    delivered to each of its endpoints. `id` is derived from what changed, so the same change
    emitted twice has the same id (the receiver deduplicates on it)."""

    type: Literal["webhook"] = "webhook"
    org: str
    id: str
    event: str  # appointment.booked, appointment.moved, ..., chat.handed_back
    created_at: str  # ISO 8601, UTC
    data: dict[str, Any] = Field(default_factory=dict)

    def body(self) -> bytes:
        """What the endpoints receive (docs/operator-api.md, "Webhooks for the CRM")."""
        return json.dumps(
            {
                "id": self.id,
                "type": self.event,
                "created_at": self.created_at,
                "org": self.org,
                "data": self.data,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()


StreamEvent = Annotated[
    Union[InboundMessage, StatusEvent, UserEvent, TurnRequest, OutboundMessage, WebhookEvent],
    Field(discriminator="type"),
]
_adapter: TypeAdapter[StreamEvent] = TypeAdapter(StreamEvent)


class BadEvent(ValueError):
    """An entry that no retry can fix."""


def encode(event: BaseModel) -> dict[str, str]:
    return {"type": event.type, "data": event.model_dump_json(exclude_none=True)}  # type: ignore[attr-defined]


def decode(fields: dict[Any, Any]) -> StreamEvent:
    data = fields.get("data") or fields.get(b"data")
    if data is None:
        raise BadEvent("stream entry has no 'data' field")
    try:
        return _adapter.validate_json(data)
    except ValidationError as exc:
        raise BadEvent(f"stream entry does not match any event: {exc.errors()[:3]}") from exc


def chat_key(event: StreamEvent) -> str:
    """Entries with the same key are handled in order, one at a time, within a process."""
    if isinstance(event, (InboundMessage, UserEvent, OutboundMessage)):
        return f"{event.org}:{event.phone}"
    if isinstance(event, TurnRequest):
        return f"{event.org}:{event.chat}"
    if isinstance(event, WebhookEvent):
        return f"{event.org}:webhook:{event.id}"  # events are independent: no order among them
    # Status events touch one message row each; they need no order with each other.
    return f"{event.org}:status:{event.gs_id or event.provider_id}"


# ---- dead letters ({org}:dead) ---------------------------------------------------------------

DEAD_LETTER_PAYLOAD_PREFIX = "payload."


@dataclass(frozen=True)
class DeadLetter:
    """An entry a stage gave up on, with why; `payload` is the entry's own fields, whole, so a
    replay puts back exactly what was read."""

    org: str
    id: str  # the dead letter's id in `{org}:dead` ("" until it is written)
    stage: str
    stream: str
    error: str
    deliveries: int
    failed_at_ms: int
    payload: dict[str, str] = field(default_factory=dict)
    entry_id: str = ""  # the entry's id on its own stream

    @property
    def ref(self) -> str:
        """How a person names it on the command line: ORG/ID."""
        return f"{self.org}/{self.id}"


def encode_dead_letter(letter: DeadLetter) -> dict[str, str]:
    """The fields of the dead-letter stream entry (the organization is the stream's, the id is
    the one XADD gives)."""
    return {
        "stage": letter.stage,
        "stream": letter.stream,
        "entry_id": letter.entry_id,
        "error": letter.error,
        "deliveries": str(letter.deliveries),
        "failed_at_ms": str(letter.failed_at_ms),
        **{f"{DEAD_LETTER_PAYLOAD_PREFIX}{k}": v for k, v in letter.payload.items()},
    }


def decode_dead_letter(org: str, letter_id: str, fields: dict[str, str]) -> DeadLetter:
    """Whatever is missing takes a neutral value: a dead letter is read to be looked at, and a
    hand-written or partial one must still list."""
    prefix = DEAD_LETTER_PAYLOAD_PREFIX
    return DeadLetter(
        org=org,
        id=letter_id,
        stage=fields.get("stage", "?"),
        stream=fields.get("stream", ""),
        error=fields.get("error", ""),
        deliveries=int(fields.get("deliveries", "0")),
        failed_at_ms=int(fields.get("failed_at_ms", "0")),
        payload={k[len(prefix) :]: v for k, v in fields.items() if k.startswith(prefix)},
        entry_id=fields.get("entry_id", ""),
    )


# ---- scheduled jobs ({org}:jobs:data, storage/jobs.py) ---------------------------------------

Change = Literal["booked", "rescheduled", "cancelled"]


class ConfirmationJob(BaseModel):
    """Tell the customer an appointment was booked, moved or cancelled (due at once)."""

    kind: Literal["confirmation"] = "confirmation"
    appointment_id: str
    starts_ms: int  # the appointment's start when the job was planned
    change: Change


class ReminderJob(BaseModel):
    """Remind the customer of an appointment `offset_h` hours before it starts."""

    kind: Literal["reminder"] = "reminder"
    appointment_id: str
    starts_ms: int  # the appointment's start when planned: a moved appointment is not reminded
    offset_h: float
    # From then on the reminder is not sent (the next one is due, or the appointment started).
    # Optional since the first scheduler's reader tolerated its absence.
    stale_ms: int | None = None

    @property
    def stale_after_ms(self) -> int:
        return self.starts_ms if self.stale_ms is None else self.stale_ms


ScheduledJob = Annotated[Union[ConfirmationJob, ReminderJob], Field(discriminator="kind")]
_job_adapter: TypeAdapter[ScheduledJob] = TypeAdapter(ScheduledJob)


def encode_job(job: ConfirmationJob | ReminderJob) -> str:
    return job.model_dump_json(exclude_none=True)


def decode_job(data: str | bytes) -> ScheduledJob:
    try:
        return _job_adapter.validate_json(data)
    except ValidationError as exc:
        raise BadEvent(f"job data does not match any job: {exc.errors()[:3]}") from exc


# ---- reminder buttons ---------------------------------------------------------------------

# What a reminder's quick-reply buttons answer, in the order shown. Their titles are in the
# message catalogs (graph/locales, `reminder.buttons`: 20 characters at most, WhatsApp's limit);
# a tap comes back as an inbound message whose text is the title (graph/reminder_answers.py).
ReminderAnswer = Literal["confirm", "reschedule", "cancel"]
