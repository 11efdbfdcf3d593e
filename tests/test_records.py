"""The records that cross a process (storage/events.py): each decoder reads back what its encoder
wrote, whatever the values; it reads what the previous version wrote, as it wrote it; and what
it writes still reads in the previous version's reader (a fleet upgrades one process at a time).
"""

from __future__ import annotations

import json
from typing import get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from graph import i18n, intents, reminder_answers
from storage.events import (
    ReminderAnswer,
    BadEvent,
    Change,
    ConfirmationJob,
    DeadLetter,
    OutboundMessage,
    Purpose,
    ReminderJob,
    decode,
    decode_dead_letter,
    decode_job,
    encode,
    encode_dead_letter,
    encode_job,
)

MS = st.integers(min_value=0, max_value=2**53)
JOBS = st.one_of(
    st.builds(
        ConfirmationJob,
        appointment_id=st.text(max_size=40),
        starts_ms=MS,
        change=st.sampled_from(get_args(Change)),
    ),
    st.builds(
        ReminderJob,
        appointment_id=st.text(max_size=40),
        starts_ms=MS,
        offset_h=st.floats(min_value=0, max_value=24 * 60, allow_nan=False),
        stale_ms=st.none() | MS,
    ),
)
FIELDS = st.dictionaries(st.text(max_size=20), st.text(max_size=200), max_size=6)


@given(JOBS)
def test_a_job_reads_back_as_it_was_planned(job):
    assert decode_job(encode_job(job)) == job


@given(
    letter=st.builds(
        DeadLetter,
        org=st.text(min_size=1, max_size=20),
        id=st.from_regex(r"\A[0-9]{1,13}-[0-9]{1,3}\Z"),
        stage=st.sampled_from(["enrich", "agent", "sender", "webhooks"]),
        stream=st.text(max_size=40),
        error=st.text(max_size=200),
        deliveries=st.integers(min_value=0, max_value=10**6),
        failed_at_ms=MS,
        payload=FIELDS,
        entry_id=st.from_regex(r"\A[0-9]{1,13}-[0-9]{1,3}\Z"),
    )
)
def test_a_dead_letter_reads_back_with_its_payload_whole(letter):
    assert decode_dead_letter(letter.org, letter.id, encode_dead_letter(letter)) == letter


# ---- what the previous version wrote ----------------------------------------------------------

STARTS_MS = 1_804_100_000_000


def test_jobs_planned_by_the_previous_version_decode():
    # Byte for byte what storage/reminders.py wrote with json.dumps before the jobs were typed.
    reminder = json.dumps(
        {
            "appointment_id": "a1",
            "starts_ms": STARTS_MS,
            "kind": "reminder",
            "offset_h": 24,
            "stale_ms": STARTS_MS - 2 * 3_600_000,
        }
    )
    confirmation = json.dumps(
        {"appointment_id": "a1", "starts_ms": STARTS_MS, "kind": "confirmation", "change": "booked"}
    )
    assert decode_job(reminder) == ReminderJob(
        appointment_id="a1",
        starts_ms=STARTS_MS,
        offset_h=24,
        stale_ms=STARTS_MS - 2 * 3_600_000,
    )
    assert decode_job(confirmation) == ConfirmationJob(
        appointment_id="a1", starts_ms=STARTS_MS, change="booked"
    )


def test_a_reminder_without_stale_ms_is_stale_when_the_appointment_starts():
    # The first scheduler read data.get("stale_ms", data["starts_ms"]): the same default.
    old = json.dumps(
        {"appointment_id": "a1", "starts_ms": STARTS_MS, "kind": "reminder", "offset_h": 2}
    )
    job = decode_job(old)
    assert isinstance(job, ReminderJob) and job.stale_after_ms == STARTS_MS


@given(JOBS)
def test_a_job_planned_now_reads_in_the_previous_versions_scheduler(job):
    data = json.loads(encode_job(job))
    # Every field the previous scheduler read, with the value it expects.
    assert (data["kind"], data["appointment_id"], data["starts_ms"]) == (
        job.kind,
        job.appointment_id,
        job.starts_ms,
    )
    if isinstance(job, ReminderJob):
        assert data.get("stale_ms", data["starts_ms"]) == job.stale_after_ms
    else:
        assert data["change"] == job.change


def test_data_that_is_no_job_is_refused_as_a_bad_record():
    for raw in ("{}", "not json", json.dumps({"kind": "invoice", "appointment_id": "a1"})):
        with pytest.raises(BadEvent):
            decode_job(raw)


def test_a_dead_letter_written_by_the_previous_runtime_decodes():
    event = OutboundMessage(org="o1", phone="573001112233", idempotency_key="k1", text="hola")
    fields = {  # as consumers/runtime.py built it by hand before the encoder existed
        "stage": "sender",
        "stream": "{o1}:outbound",
        "entry_id": "1700000000000-0",
        "error": "poison: boom",
        "deliveries": "5",
        "failed_at_ms": "1700000000123",
        **{f"payload.{k}": v for k, v in encode(event).items()},
    }
    letter = decode_dead_letter("o1", "1700000000200-0", fields)
    assert (letter.ref, letter.stage, letter.stream, letter.deliveries) == (
        "o1/1700000000200-0",
        "sender",
        "{o1}:outbound",
        5,
    )
    assert decode(letter.payload) == event  # the replay puts back the entry as it was
    assert encode_dead_letter(letter) == fields


def test_a_partial_dead_letter_still_lists():
    letter = decode_dead_letter("o1", "1-0", {"stage": "enrich", "error": "new"})
    assert (letter.stage, letter.error, letter.stream, letter.payload) == ("enrich", "new", "", {})


# Every purpose an earlier version put on the outbound stream (git log -p, chat_messages.purpose).
PREVIOUS_PURPOSES = (
    "reply",
    "continuation",
    "escalation",
    "escalation_notice",
    "opt_out_confirmation",
    "opt_in_confirmation",
    "confirmation",
    "reminder",
    "staff",
    "booking_notice",
)


@pytest.mark.parametrize("purpose", PREVIOUS_PURPOSES)
def test_an_outbound_entry_of_the_previous_version_decodes_with_its_purpose(purpose):
    data = {
        "type": "outbound",
        "org": "o1",
        "phone": "573001112233",
        "idempotency_key": "k1",
        "text": "hola",
        "purpose": purpose,
    }
    event = decode({"type": "outbound", "data": json.dumps(data)})
    assert isinstance(event, OutboundMessage) and event.purpose == purpose


def test_a_purpose_no_consumer_knows_is_refused_where_the_message_is_made():
    assert set(get_args(Purpose)) == set(PREVIOUS_PURPOSES)
    with pytest.raises(ValidationError):
        OutboundMessage(org="o1", phone="5730", idempotency_key="k", purpose="reminders")


BUTTONS = [
    (lang, answer, title)
    for lang, titles in i18n.in_every_language("reminder.buttons").items()
    for answer, title in zip(get_args(ReminderAnswer), titles)
]


@pytest.mark.parametrize("lang,answer,title", BUTTONS)
def test_a_tap_on_each_reminder_button_is_read_as_its_answer(lang, answer, title):
    assert len(title) <= 20  # WhatsApp's limit for a quick-reply title
    for text in (f"[botón] {title}", title, title.upper() + "!"):
        match = reminder_answers._BUTTON.match(intents.normalize(text))
        assert match is not None and reminder_answers._ANSWERS[match.group(2)] == answer
