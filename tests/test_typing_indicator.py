"""While the customer waits: when a turn starts, their message is marked read with WhatsApp's
typing indicator through Gupshup's partner API (consumers/typing_indicator.py), best effort."""

from __future__ import annotations

from ops import metrics
from tests import clock
from tests.conftest import eventually
from tests.helpers import post_webhook, settled, text_webhook

PHONE = "573001112233"


def partner(gupshup) -> dict:
    return {"app_id": gupshup.app_id, "settings": {"gupshup_partner_token": gupshup.partner_token}}


async def test_a_turn_marks_the_message_read_with_a_typing_indicator(
    system, make_org, gupshup, deps
):
    org = await make_org("clinic", **partner(gupshup))
    async with system(gupshup_partner_api_url=gupshup.url) as s:
        await post_webhook(s.url, text_webhook("clinic", PHONE, "hola", "typing-1", clock.now_ms()))
        await gupshup.wait_for_sent(1, timeout_s=10)
        await eventually(lambda: settled(deps.redis, org))
        await eventually(lambda: _count(gupshup.events))
    [(app_id, token, body)] = gupshup.events
    assert (app_id, token) == (gupshup.app_id, gupshup.partner_token)
    assert body == {
        "type": "message-event",
        "message": {
            "messaging_product": "whatsapp",
            "status": "read",
            "message_id": "typing-1",
            "typing_indicator": {"type": "text"},
        },
    }


async def test_without_a_partner_token_nothing_is_asked(system, make_org, gupshup, deps):
    org = await make_org("clinic", app_id=gupshup.app_id)
    async with system(gupshup_partner_api_url=gupshup.url) as s:
        await post_webhook(s.url, text_webhook("clinic", PHONE, "hola", "typing-2", clock.now_ms()))
        await gupshup.wait_for_sent(1, timeout_s=10)
        await eventually(lambda: settled(deps.redis, org))
    assert gupshup.events == []


async def test_a_partner_api_that_fails_costs_the_customer_nothing(system, make_org, gupshup, deps):
    org = await make_org("clinic", **partner(gupshup))
    gupshup.event_status = 500
    refused = metrics.typing_indicators.labels("refused")._value.get()
    async with system(gupshup_partner_api_url=gupshup.url) as s:
        await post_webhook(s.url, text_webhook("clinic", PHONE, "hola", "typing-3", clock.now_ms()))
        [reply] = await gupshup.wait_for_sent(1, timeout_s=10)
        await eventually(lambda: settled(deps.redis, org))
        await eventually(lambda: _refused(refused))  # asked, refused, counted
    assert reply.message["text"] and len(gupshup.events) == 1


async def _refused(before: float) -> bool:
    return metrics.typing_indicators.labels("refused")._value.get() == before + 1


async def _count(items: list) -> int:
    return len(items)
