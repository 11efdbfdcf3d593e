"""A send is neither dropped nor repeated when Gupshup does not say what it did with it.

Three Gupshup behaviours, 20 customers each: every customer ends with exactly one reply
delivered at the fake, and nothing is left for a person to resend (`skytide dlq unknown`).
"""

from __future__ import annotations

from collections import Counter

import pytest

from consumers import gupshup_api
from consumers.runtime import ensure_group
from ops import metrics
from ops.embedded import free_port
from storage import chats, keys, streams
from storage.events import EscalationNotice, OutboundMessage, encode
from storage.orgs import Connection
from storage.outbound import unknown_outcomes
from storage.keys import Stage, Stream
from tests.conftest import eventually
from tests import clock

CUSTOMERS = [f"5730055{i:05d}" for i in range(20)]


def _counted(outcome: str) -> float:
    return sum(
        sample.value
        for family in metrics.REGISTRY.collect()
        if family.name == "skytide_unknown_sends"
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels.get("outcome") == outcome
    )


async def _open_windows(deps, org: str, phones: list[str]) -> None:
    for phone in phones:
        identity = await chats.upsert_identity(deps.pool, org, phone, None)
        await deps.pool.execute(
            "update chat_identities set last_inbound_at = $2 where id = $1::uuid",
            identity.id,
            clock.now_dt(),
        )


async def _all_settled(deps, count: int) -> bool:
    """Every reply has its Gupshup id: none on the wire, none in doubt."""
    settled = await deps.pool.fetchval(
        "select count(*) from chat_messages where direction = 'outbound'"
        " and provider_message_id is not null"
    )
    return settled == count


async def _reply_to_everyone(system, make_org, gupshup, deps, fault, **overrides) -> Counter:
    """Every customer gets a reply while `fault` holds; returns the deliveries per customer."""
    org = await make_org(gupshup.app_name)  # the app its status callbacks name
    await _open_windows(deps, org, CUSTOMERS)
    gupshup.callback_token = "secret-token"
    async with system(
        roles=("ingress", "enrich", "sender"),
        gupshup_timeout_s=1.0,
        recipient_interval_ms=0,
        send_doubt_check_s=0.1,
        **overrides,
    ) as s:
        gupshup.callback_url = s.url + "/webhooks/gupshup"
        fault()
        for phone in CUSTOMERS:
            await streams.publish(
                deps.redis,
                OutboundMessage(
                    org=org, phone=phone, text=f"Hola {phone}", idempotency_key=f"reply-{phone}"
                ),
                Stream.OUTBOUND,
            )
        await eventually(lambda: _all_settled(deps, len(CUSTOMERS)), timeout_s=90, interval_s=0.2)
    # The system has stopped (its in-flight work drained): what the fake holds is final.
    assert await unknown_outcomes(deps.pool) == []
    assert (
        await deps.pool.fetchval(
            "select count(*) from chat_messages where direction = 'outbound'"
            " and message_status = 'failed'"
        )
        == 0
    )
    return Counter(message.destination for message in gupshup.sent)


async def test_a_gupshup_that_hangs_gets_each_reply_once_it_answers(
    system, make_org, gupshup, deps
):
    """Connections accepted, never answered, nothing delivered, for a while: every send is in
    doubt, finds no evidence, and is sent once more after the grace, until one goes through."""
    resent_before = _counted("resent")
    delivered = await _reply_to_everyone(
        system, make_org, gupshup, deps, lambda: gupshup.hang_for(4.0), send_doubt_grace_s=0.5
    )
    assert delivered == {phone: 1 for phone in CUSTOMERS}
    assert gupshup.hung >= len(CUSTOMERS)
    assert _counted("resent") >= resent_before + len(CUSTOMERS)


async def test_a_gupshup_that_delivers_and_answers_502_sends_each_reply_once(
    system, make_org, gupshup, deps
):
    """Delivered, then a 502: the status events Gupshup posts for the message it created name
    the send, so it is not sent again. (A grace far longer than the test: no resend may rescue
    a wrong answer here.)"""
    confirmed_before = _counted("confirmed")
    delivered = await _reply_to_everyone(
        system,
        make_org,
        gupshup,
        deps,
        lambda: gupshup.deliver_then_fail_for(3600, 502),
        send_doubt_grace_s=3600,
    )
    assert delivered == {phone: 1 for phone in CUSTOMERS}
    assert _counted("confirmed") >= confirmed_before + len(CUSTOMERS)


async def test_a_gupshup_that_answers_after_the_timeout_sends_each_reply_once(
    system, make_org, gupshup, deps
):
    """Delivered at once, answered after 20 s (the client waits 1 s): the status events came
    while the request was still waiting; they are kept and settle the send when it goes in doubt."""
    confirmed_before = _counted("confirmed")
    delivered = await _reply_to_everyone(
        system,
        make_org,
        gupshup,
        deps,
        lambda: gupshup.deliver_then_answer_late_for(3600, 20.0),
        send_doubt_grace_s=3600,
    )
    assert delivered == {phone: 1 for phone in CUSTOMERS}
    assert _counted("confirmed") >= confirmed_before + len(CUSTOMERS)


async def test_a_worker_killed_after_marking_the_send_gets_the_reply_resent(
    system, make_org, gupshup, deps
):
    """What the soak found (`lost 1`): a worker killed once its row said "on the wire" and before
    its request reached Gupshup. Another worker claims the entry back; with no status event
    naming the message, it is sent once, after the grace."""
    org = await make_org("DemoApp")
    phone = CUSTOMERS[0]
    await _open_windows(deps, org, [phone])
    message = OutboundMessage(
        org=org, phone=phone, text="Tu cita quedó confirmada", idempotency_key="killed-1"
    )
    identity = await chats.find_identity(deps.pool, org, phone)
    # The dead worker's leftovers: the row marked right before the write, and its entry read
    # but never acknowledged.
    await deps.pool.execute(
        "insert into chat_messages (organization_id, chat_identity_id, direction, message,"
        " idempotency_key, send_started_at, send_request) values ($1::uuid, $2::uuid,"
        " 'outbound', $3, 'killed-1', now(), $4)",
        org,
        identity.id,
        message.text,
        message.model_dump(mode="json"),
    )
    stream = keys.stream(org, Stream.OUTBOUND)
    await ensure_group(deps.redis, stream, Stage.SENDER)
    await deps.redis.xadd(stream, encode(message))
    assert await deps.redis.xreadgroup(Stage.SENDER, "killed-worker", {stream: ">"}, count=1)
    async with system(roles=("sender",), send_doubt_grace_s=0.3, send_doubt_check_s=0.1):
        sent = await gupshup.wait_for_sent(1, timeout_s=30)
        await eventually(lambda: _all_settled(deps, 1))
    assert [m.destination for m in gupshup.sent] == [phone]
    assert sent[0].message["text"] == "Tu cita quedó confirmada"
    row = await deps.pool.fetchrow(
        "select provider_message_id, send_resends from chat_messages"
        " where idempotency_key = 'killed-1'"
    )
    assert row["provider_message_id"] == sent[0].message_id and row["send_resends"] == 1
    assert await unknown_outcomes(deps.pool) == []


async def test_never_left_and_may_have_arrived_are_told_apart(deps, gupshup):
    """Refused before a byte was written: never left (retried freely), and the row was never
    marked. Written, then no answer: may have arrived (in doubt), marked before the write."""
    marks: list[str] = []

    async def before_write() -> None:
        marks.append("on the wire")

    connection = Connection(
        org_id="o",
        org_name="O",
        timezone="UTC",
        settings={},
        app_name="DemoApp",
        app_id=None,
        api_key="k",
        source_phone="919999999999",
        webhook_token="t",
        is_active=True,
    )
    timeouts = gupshup_api.Timeouts(total_s=0.5, connect_s=0.5)
    with pytest.raises(gupshup_api.SendRetryable, match="cannot reach Gupshup"):
        await gupshup_api.send_text(
            deps.http,
            f"http://127.0.0.1:{free_port()}",
            connection,
            CUSTOMERS[0],
            "hola",
            timeouts,
            before_write,
        )
    assert marks == []
    gupshup.hang_for(3600)
    with pytest.raises(gupshup_api.SendOutcomeUnknown, match="after the request was written"):
        await gupshup_api.send_text(
            deps.http, gupshup.url, connection, CUSTOMERS[0], "hola", timeouts, before_write
        )
    assert marks == ["on the wire"] and gupshup.sent == []


async def test_an_escalation_confirmed_by_a_status_turns_the_bot_off_and_tells_the_customer(
    system, make_org, gupshup, deps
):
    """The advisor's template is delivered and answered 502: its status event settles it, and
    what Gupshup's answer would have done follows (the bot off, the customer told once)."""
    org = await make_org(gupshup.app_name)
    customer, advisor = CUSTOMERS[0], CUSTOMERS[1]
    await _open_windows(deps, org, [customer])
    gupshup.callback_token = "secret-token"
    async with system(
        roles=("ingress", "enrich", "sender"), gupshup_timeout_s=1.0, send_doubt_grace_s=3600
    ) as s:
        gupshup.callback_url = s.url + "/webhooks/gupshup"
        gupshup.deliver_then_fail_for(3600, 502)
        await streams.publish(
            deps.redis,
            OutboundMessage(
                org=org,
                phone=advisor,
                template_id="tmpl-advisor",
                template_params=["Ana"],
                idempotency_key="esc-1",
                purpose="escalation",
                requires_bot_enabled=False,
                escalation=EscalationNotice(
                    customer_phone=customer,
                    accepted_text="Un asesor te escribirá.",
                    failed_text="No pude avisar a un asesor; sigo aquí.",
                ),
            ),
            Stream.OUTBOUND,
        )
        await eventually(lambda: _all_settled(deps, 2))
    assert sorted((m.destination, m.kind) for m in gupshup.sent) == [
        (customer, "session"),
        (advisor, "template"),
    ]
    told = next(m for m in gupshup.sent if m.destination == customer)
    assert told.message["text"] == "Un asesor te escribirá."
    assert (await chats.find_identity(deps.pool, org, customer)).bot_enabled is False
