"""What reaches the conversation from WhatsApp's replies and reactions: a reply that quotes a
message carries the quoted text to the model; an emoji reaction is kept but starts no turn."""

from __future__ import annotations


from storage import chats, keys
from storage.keys import Stream
from tests.conftest import eventually
from tests.helpers import post_webhook, text_webhook
from tests import clock
from tests.helpers import settled as pipeline_settled

PHONE = "573001112233"


async def test_a_quoted_reply_reaches_the_model_with_the_text_it_quotes(system, make_org, deps):
    org = await make_org("DemoClinic")
    identity = await chats.upsert_identity(deps.pool, org, PHONE, "Ana")
    await deps.pool.execute(
        "insert into chat_messages (organization_id, chat_identity_id, direction, message, provider_message_id)"
        " values ($1::uuid, $2::uuid, 'outbound', '¿Te agendo el jueves a las 10:00 a. m.?', 'gBEG-quoted')",
        org,
        identity.id,
    )
    body = text_webhook("DemoClinic", PHONE, "sí", "in-1", clock.now_ms())
    body["payload"]["context"] = {
        "id": "gBEG-quoted",
        "gsId": "9b71295f-f7af-4c1f-b2b4-31b4a4867bad",
    }
    async with system(roles=("ingress", "enrich")) as s:
        await post_webhook(s.url, body)
        text = await eventually(
            lambda: deps.pool.fetchval(
                "select processed_text from chat_messages where provider_message_id = 'in-1'"
            )
        )
    assert text == "sí\n(en respuesta a: «¿Te agendo el jueves a las 10:00 a. m.?»)"
    assert (
        await deps.pool.fetchval(
            "select message from chat_messages where provider_message_id = 'in-1'"
        )
        == "sí"
    )


async def test_a_quote_of_an_unknown_message_is_the_text_alone(system, make_org, deps):
    await make_org("DemoClinic")
    body = text_webhook("DemoClinic", PHONE, "sí", "in-2", clock.now_ms())
    body["payload"]["context"] = {"id": "gBEG-never-seen"}
    async with system(roles=("ingress", "enrich")) as s:
        await post_webhook(s.url, body)
        text = await eventually(
            lambda: deps.pool.fetchval(
                "select processed_text from chat_messages where provider_message_id = 'in-2'"
            )
        )
    assert text == "sí"


async def test_an_emoji_reaction_is_stored_but_starts_no_turn(system, make_org, gupshup, deps):
    org = await make_org("DemoClinic", catalog=True)
    body = text_webhook("DemoClinic", PHONE, "", "react-1", clock.now_ms())
    body["payload"]["type"] = "reaction"
    body["payload"]["payload"] = {"emoji": "👍", "id": "gBEG-ours"}
    async with system(debounce_seconds=0.1) as s:
        await post_webhook(s.url, body)
        await eventually(
            lambda: deps.pool.fetchval(
                "select count(*) from chat_messages where provider_message_id = 'react-1'"
            )
        )
        await eventually(
            lambda: pipeline_settled(deps.redis, org)
        )  # a wrong turn would have replied by now
        assert gupshup.sent == []
        assert await deps.redis.xlen(keys.stream(org, Stream.TURNS)) == 0
        await post_webhook(
            s.url, text_webhook("DemoClinic", PHONE, "hola", "text-1", clock.now_ms())
        )
        sent = await gupshup.wait_for_sent(1, timeout_s=15)  # the next real message is answered
    assert "Hola" in sent[0].message["text"]
