"""The sender never sends one message twice: retries only when Gupshup surely did not take it."""

from __future__ import annotations


from storage import chats, streams
from storage.events import OutboundMessage
from storage.keys import Stream
from tests.conftest import eventually
from tests import clock
from tests.helpers import settled as pipeline_settled

PHONE = "919876543210"


async def _open_window(deps, org: str) -> None:
    identity = await chats.upsert_identity(deps.pool, org, PHONE, "Ana")
    await deps.pool.execute(
        "update chat_identities set last_inbound_at = $2 where id = $1::uuid",
        identity.id,
        clock.now_dt(),
    )


async def _row(deps, key: str):
    return await deps.pool.fetchrow(
        "select message_status, provider_message_id, error_reason from chat_messages"
        " where idempotency_key = $1",
        key,
    )


async def test_a_503_is_retried_and_the_message_goes_out_once(system, make_org, gupshup, deps):
    """A 503 (unavailable) is a refusal: Gupshup did not take the message, so it is retried."""
    org = await make_org("DemoApp")
    await _open_window(deps, org)
    gupshup.fail_next(503, times=2)
    async with system(roles=("sender",)):
        await streams.publish(
            deps.redis,
            OutboundMessage(
                org=org, phone=PHONE, text="Tu cita quedó confirmada", idempotency_key="r-1"
            ),
            Stream.OUTBOUND,
        )
        sent = await gupshup.wait_for_sent(1, timeout_s=10)
        await eventually(lambda: _row(deps, "r-1"))
    assert len(gupshup.sent) == 1
    assert (await _row(deps, "r-1"))["provider_message_id"] == sent[0].message_id
    assert len(gupshup.requests_to("/wa/api/v1/msg")) == 3  # two refusals, one acceptance


async def test_a_timeout_is_not_resent_when_a_status_names_the_message(
    system, make_org, gupshup, deps
):
    """Gupshup took a request that timed out (it answers after the sender stopped waiting): the
    status events it then posts name the message, which is not sent again."""
    org = await make_org(gupshup.app_name)
    await _open_window(deps, org)
    gupshup.callback_token = "secret-token"
    gupshup.delay_s = 1.0  # handled (and delivered) after the sender gave up at 0.2 s
    async with system(
        roles=("ingress", "enrich", "sender"), gupshup_timeout_s=0.2, send_doubt_grace_s=3600
    ) as s:
        gupshup.callback_url = s.url + "/webhooks/gupshup"
        await streams.publish(
            deps.redis,
            OutboundMessage(org=org, phone=PHONE, text="hola", idempotency_key="t-1"),
            Stream.OUTBOUND,
        )
        sent = await gupshup.wait_for_sent(1, timeout_s=10)
        row = await eventually(lambda: _with_id(deps, "t-1"))
    assert row["provider_message_id"] == sent[0].message_id
    assert len(gupshup.requests_to("/wa/api/v1/msg")) == 1


async def _with_id(deps, key: str):
    row = await _row(deps, key)
    return row if row and row["provider_message_id"] else None


async def _failed(deps, key: str):
    row = await _row(deps, key)
    return row if row and row["message_status"] == "failed" else None


async def test_the_same_entry_published_twice_is_sent_once(system, make_org, gupshup, deps):
    org = await make_org("DemoApp")
    await _open_window(deps, org)
    message = OutboundMessage(org=org, phone=PHONE, text="hola", idempotency_key="twice")
    async with system(roles=("sender",)):
        await streams.publish(deps.redis, message, Stream.OUTBOUND)
        await streams.publish(deps.redis, message, Stream.OUTBOUND)
        await gupshup.wait_for_sent(1, timeout_s=10)
        await eventually(lambda: pipeline_settled(deps.redis, org))
    assert len(gupshup.sent) == 1


async def test_a_send_interrupted_by_a_crash_is_not_repeated_when_it_arrived(
    system, make_org, gupshup, deps
):
    """A row marked as on the wire, with no Gupshup id, after a crash: the request may have gone
    out. A status event for the chat that no stored message claims says it did."""
    org = await make_org(gupshup.app_name)
    await _open_window(deps, org)
    identity = await chats.find_identity(deps.pool, org, PHONE)
    await deps.pool.execute(
        "insert into chat_messages (organization_id, chat_identity_id, direction, message,"
        " idempotency_key, send_started_at) values ($1::uuid, $2::uuid, 'outbound', 'hola',"
        " 'crashed', $3)",
        org,
        identity.id,
        clock.now_dt(),
    )
    gupshup.callback_token = "secret-token"
    async with system(roles=("ingress", "enrich", "sender"), send_doubt_grace_s=3600) as s:
        gupshup.callback_url = s.url + "/webhooks/gupshup"
        await streams.publish(
            deps.redis,
            OutboundMessage(org=org, phone=PHONE, text="hola", idempotency_key="crashed"),
            Stream.OUTBOUND,
        )
        assert await gupshup.post_status("gs-crashed", "sent", destination=PHONE) == 200
        row = await eventually(lambda: _with_id(deps, "crashed"))
    assert row["provider_message_id"] == "gs-crashed"
    assert gupshup.sent == []


async def test_a_long_reply_goes_out_in_order_once_even_when_a_part_is_retried(
    system, make_org, gupshup, deps
):
    org = await make_org("DemoApp")
    await _open_window(deps, org)
    async with system(roles=("sender",), recipient_interval_ms=300):
        await streams.publish(
            deps.redis,
            OutboundMessage(
                org=org,
                phone=PHONE,
                text="parte 1",
                more_texts=["parte 2", "parte 3"],
                idempotency_key="long-1",
            ),
            Stream.OUTBOUND,
        )
        await gupshup.wait_for_sent(1, timeout_s=10)
        gupshup.fail_next(503, times=1)  # the second part's first try: the entry is retried
        await gupshup.wait_for_sent(3, timeout_s=10)
        await eventually(lambda: pipeline_settled(deps.redis, org))
    assert [m.message["text"] for m in gupshup.sent] == ["parte 1", "parte 2", "parte 3"]
    assert len(gupshup.requests_to("/wa/api/v1/msg")) == 4  # part 2 was refused once
    keys = await deps.pool.fetch(
        "select idempotency_key from chat_messages where direction = 'outbound' order by created_at"
    )
    assert [k["idempotency_key"] for k in keys] == ["long-1", "long-1:1", "long-1:2"]
