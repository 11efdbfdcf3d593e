"""The sender never sends one message twice: retries only when Gupshup surely did not take it."""

from __future__ import annotations

import asyncio

from storage import chats, streams
from storage.events import OutboundMessage
from tests.conftest import eventually
from tests import clock

PHONE = "919876543210"


async def _open_window(deps, org: str) -> None:
    identity = await chats.upsert_identity(deps.pool, org, PHONE, "Ana")
    await deps.pool.execute("update chat_identities set last_inbound_at = $2 where id = $1::uuid",
                            identity.id, clock.now_dt())


async def _row(deps, key: str):
    return await deps.pool.fetchrow(
        "select message_status, provider_message_id, error_reason from chat_messages"
        " where idempotency_key = $1", key)


async def test_a_5xx_is_retried_and_the_message_goes_out_once(system, make_org, gupshup, deps):
    org = await make_org("DemoApp")
    await _open_window(deps, org)
    gupshup.fail_next(500, times=2, body={"status": "error", "message": "Internal server error"})
    async with system(roles=("sender",)):
        await streams.publish(deps.redis, OutboundMessage(
            org=org, phone=PHONE, text="Tu cita quedó confirmada", idempotency_key="r-1"),
            "outbound")
        sent = await gupshup.wait_for_sent(1, timeout_s=10)
        await asyncio.sleep(0.5)
    assert len(gupshup.sent) == 1
    assert (await _row(deps, "r-1"))["provider_message_id"] == sent[0].message_id
    assert len(gupshup.requests_to("/wa/api/v1/msg")) == 3  # two refusals, one acceptance


async def test_a_timeout_is_never_resent(system, make_org, gupshup, deps):
    """Gupshup may have taken a request that timed out: sending again could show it twice."""
    org = await make_org("DemoApp")
    await _open_window(deps, org)
    gupshup.delay_s = 1.0
    async with system(roles=("sender",), gupshup_timeout_s=0.2):
        await streams.publish(deps.redis, OutboundMessage(
            org=org, phone=PHONE, text="hola", idempotency_key="t-1"), "outbound")
        row = await eventually(lambda: _failed(deps, "t-1"))
        await asyncio.sleep(1.5)
    assert len(gupshup.requests_to("/wa/api/v1/msg")) == 1
    assert "Timeout" in row["error_reason"]


async def _failed(deps, key: str):
    row = await _row(deps, key)
    return row if row and row["message_status"] == "failed" else None


async def test_the_same_entry_published_twice_is_sent_once(system, make_org, gupshup, deps):
    org = await make_org("DemoApp")
    await _open_window(deps, org)
    message = OutboundMessage(org=org, phone=PHONE, text="hola", idempotency_key="twice")
    async with system(roles=("sender",)):
        await streams.publish(deps.redis, message, "outbound")
        await streams.publish(deps.redis, message, "outbound")
        await gupshup.wait_for_sent(1, timeout_s=10)
        await asyncio.sleep(0.8)
    assert len(gupshup.sent) == 1


async def test_a_send_interrupted_by_a_crash_is_not_repeated(system, make_org, gupshup, deps):
    """A row marked 'sending' with no Gupshup id means the request may have gone out."""
    org = await make_org("DemoApp")
    await _open_window(deps, org)
    identity = await chats.find_identity(deps.pool, org, PHONE)
    await deps.pool.execute(
        "insert into chat_messages (organization_id, chat_identity_id, direction, message,"
        " idempotency_key, send_started_at) values ($1::uuid, $2::uuid, 'outbound', 'hola',"
        " 'crashed', $3)", org, identity.id, clock.now_dt())
    async with system(roles=("sender",)):
        await streams.publish(deps.redis, OutboundMessage(
            org=org, phone=PHONE, text="hola", idempotency_key="crashed"), "outbound")
        row = await eventually(lambda: _failed(deps, "crashed"))
    assert "outcome unknown" in row["error_reason"]
    assert gupshup.sent == []


async def test_a_long_reply_goes_out_in_order_once_even_when_a_part_is_retried(
        system, make_org, gupshup, deps):
    org = await make_org("DemoApp")
    await _open_window(deps, org)
    async with system(roles=("sender",), recipient_interval_ms=300):
        await streams.publish(deps.redis, OutboundMessage(
            org=org, phone=PHONE, text="parte 1", more_texts=["parte 2", "parte 3"],
            idempotency_key="long-1"), "outbound")
        await gupshup.wait_for_sent(1, timeout_s=10)
        gupshup.fail_next(500, times=1)  # the second part's first try: the entry is retried
        await gupshup.wait_for_sent(3, timeout_s=10)
        await asyncio.sleep(0.5)
    assert [m.message["text"] for m in gupshup.sent] == ["parte 1", "parte 2", "parte 3"]
    assert len(gupshup.requests_to("/wa/api/v1/msg")) == 4  # part 2 was refused once
    keys = await deps.pool.fetch("select idempotency_key from chat_messages"
                                 " where direction = 'outbound' order by created_at")
    assert [k["idempotency_key"] for k in keys] == ["long-1", "long-1:1", "long-1:2"]
