"""Whole conversations through the real pipeline (webhook to fake Gupshup) with the offline model."""

from __future__ import annotations

import time

from ops.settings import ALL_ROLES
from storage import chats
from tests.conftest import eventually
from tests.helpers import post_webhook, text_webhook
from tests import clock
from tests.helpers import settled as pipeline_settled

PHONE = "573001112233"
ADVISOR = "573009998877"


class Chat:
    """A customer writing to the clinic through the webhook, reading replies at the fake Gupshup."""

    def __init__(self, url: str, gupshup, app: str, phone: str = PHONE) -> None:
        self.url, self.gupshup, self.app, self.phone = url, gupshup, app, phone
        self.n = 0

    async def say(self, text: str, expect_replies: int = 1) -> list[str]:
        before = len(self.gupshup.sent)
        self.n += 1
        await post_webhook(
            self.url,
            text_webhook(
                self.app, self.phone, text, f"c-{time.time_ns()}", clock.now_ms(), name="Laura"
            ),
        )
        sent = await self.gupshup.wait_for_sent(before + expect_replies, timeout_s=15)
        return [m.message.get("text", "") for m in sent[before:] if m.destination == self.phone]


async def appointments(deps, org):
    return await deps.pool.fetch(
        "select s.name, a.status, a.starts_at from appointments a join services s on s.id = a.service_id"
        " where a.organization_id = $1::uuid order by a.created_at",
        org,
    )


async def test_book_ask_mid_booking_reschedule_and_cancel(system, make_org, gupshup, deps):
    org = await make_org("DemoClinic", catalog=True)
    # The scheduler's confirmations arrive on their own clock, between the replies this test reads.
    async with system(
        debounce_seconds=0.1, roles=tuple(r for r in ALL_ROLES if r != "scheduler")
    ) as s:
        chat = Chat(s.url, gupshup, "DemoClinic")
        offer = (await chat.say("hola, quiero una cita de limpieza facial mañana en la tarde"))[0]
        assert "1." in offer and "Limpieza facial" in offer
        answer = (await chat.say("¿cuánto cuesta el masaje relajante?"))[0]
        assert "150.000" in answer
        booked = (await chat.say("la primera"))[0]
        assert "agendada" in booked
        rows = await appointments(deps, org)
        assert [(r["name"], r["status"]) for r in rows] == [("Limpieza facial", "confirmed")]
        first_start = rows[0]["starts_at"]
        moved = " ".join(await chat.say("quiero cambiar mi cita para el viernes"))
        if "agend" not in moved and "cambi" not in moved:  # slots offered: take the first
            moved = " ".join(await chat.say("la primera"))
        rows = await appointments(deps, org)
        confirmed = [r for r in rows if r["status"] == "confirmed"]
        assert len(confirmed) == 1 and confirmed[0]["starts_at"] != first_start
        asked = " ".join(await chat.say("quiero cancelar mi cita"))
        assert "¿Confirmas que cancelo tu cita de Limpieza facial" in asked, asked
        assert (await appointments(deps, org))[0]["status"] == "confirmed"  # only asked so far
        await chat.say("sí")
        rows = await eventually(lambda: _all_cancelled(deps, org))
    assert rows


async def test_english_and_portuguese_customers_book_in_their_language(
    system, make_org, gupshup, deps
):
    """Issue 20 item 5: through the real pipeline, an English and a Portuguese customer of the
    Spanish-speaking demo clinic are answered in their language and book, judged by the database."""
    org = await make_org("DemoClinic", catalog=True)
    async with system(
        debounce_seconds=0.1, roles=tuple(r for r in ALL_ROLES if r != "scheduler")
    ) as s:
        english = Chat(s.url, gupshup, "DemoClinic")
        offer = (await english.say("hi, can I book a manicure spa tomorrow afternoon?"))[0]
        assert "Manicure spa" in offer and "Which one do you prefer?" in offer, offer
        booked = (await english.say("the first one"))[0]
        assert "Your Manicure spa appointment is booked" in booked, booked
        portuguese = Chat(s.url, gupshup, "DemoClinic", phone="5511987654321")
        offer = (await portuguese.say("oi, quero marcar uma pedicure spa amanhã à tarde"))[0]
        assert "Pedicure spa" in offer and "Qual você prefere?" in offer, offer
        booked = (await portuguese.say("a primeira"))[0]
        assert "Sua consulta de Pedicure spa ficou marcada" in booked, booked
    rows = await deps.pool.fetch(
        "select ci.phone, s.name, a.status, ci.language from appointments a"
        " join services s on s.id = a.service_id join chat_identities ci on ci.contact_id ="
        " a.contact_id where a.organization_id = $1::uuid order by ci.phone",
        org,
    )
    assert [tuple(r) for r in rows] == [
        ("5511987654321", "Pedicure spa", "confirmed", "pt"),
        (PHONE, "Manicure spa", "confirmed", "en"),
    ]


async def _all_cancelled(deps, org):
    rows = await appointments(deps, org)
    return rows if rows and all(r["status"] == "cancelled" for r in rows) else None


async def test_asking_for_a_person_notifies_the_advisor_and_the_bot_steps_back(
    system, make_org, gupshup, deps
):
    org = await make_org(
        "DemoClinic",
        catalog=True,
        settings={"advisor_phone": ADVISOR, "escalation_template_id": "tmpl-advisor"},
    )
    async with system(debounce_seconds=0.1) as s:
        chat = Chat(s.url, gupshup, "DemoClinic")
        await chat.say("quiero hablar con una persona", expect_replies=2)
        advisor = [m for m in gupshup.sent if m.destination == ADVISOR]
        assert advisor and advisor[0].kind == "template"
        assert (
            advisor[0].template["id"] == "tmpl-advisor" and PHONE in advisor[0].template["params"]
        )
        assert (
            advisor[0].template["params"][0] == "Laura"
        )  # the first name, from the WhatsApp profile
        identity = await chats.find_identity(deps.pool, org, PHONE)
        assert identity.bot_enabled is False
        sent_before = len(gupshup.sent)
        await post_webhook(
            s.url, text_webhook("DemoClinic", PHONE, "¿hola?", "after-esc", clock.now_ms())
        )
        await eventually(
            lambda: deps.pool.fetchval(
                "select count(*) from chat_messages where provider_message_id = 'after-esc'"
            )
        )
        await eventually(lambda: pipeline_settled(deps.redis, org))
    assert len(gupshup.sent) == sent_before  # a person has the chat now: the bot stays quiet


async def test_when_the_advisor_cannot_be_notified_the_bot_stays_and_says_so(
    system, make_org, gupshup, deps
):
    org = await make_org(
        "DemoClinic",
        catalog=True,
        settings={"advisor_phone": ADVISOR, "escalation_template_id": "tmpl-advisor"},
    )
    gupshup.fail_next(400, body={"message": "Invalid Destination", "status": "error"})
    async with system(debounce_seconds=0.1) as s:
        chat = Chat(s.url, gupshup, "DemoClinic")
        replies = await chat.say("quiero hablar con un asesor")
    assert replies and "asesor" in replies[0].lower()
    assert (await chats.find_identity(deps.pool, org, PHONE)).bot_enabled is True


async def test_an_escalation_given_up_on_during_a_gupshup_outage_tells_the_customer(
    system, make_org, gupshup, deps
):
    org = await make_org(
        "DemoClinic",
        catalog=True,
        settings={"advisor_phone": ADVISOR, "escalation_template_id": "tmpl-advisor"},
    )
    gupshup.fail_next(503)  # the advisor's template meets Gupshup down; no outage is waited out
    async with system(debounce_seconds=0.1, dependency_outage_max_s=0) as s:
        chat = Chat(s.url, gupshup, "DemoClinic")
        replies = await chat.say("quiero hablar con un asesor")
    assert replies and "asesor" in replies[0].lower()
    assert not [m for m in gupshup.sent if m.destination == ADVISOR]
    assert (await chats.find_identity(deps.pool, org, PHONE)).bot_enabled is True
