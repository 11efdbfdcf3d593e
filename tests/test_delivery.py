"""Delivery you can trust: status tracking, consent, the 24-hour window, pacing, dead letters."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

from ops import metrics
from storage import chats, dead_letters, keys, ratelimit, streams
from storage.events import EscalationNotice, OutboundMessage
from storage.keys import Stage, Stream
from tests.conftest import eventually
from tests.helpers import fixture, post_webhook, text_webhook
from tests import clock
from tests.helpers import settled as pipeline_settled

PHONE = "919876543210"
V3_APP_ID = "82ed52f4-30c0-4f12-81b4-e7ad07bd41de"  # gs_app_id of the v3 status fixtures
GS_SENT = "7daeb742-f2dc-4c09-90e0-d879d20f7b98"


async def outgoing(deps, org: str, provider_id: str, phone: str = PHONE) -> str:
    identity = await chats.upsert_identity(deps.pool, org, phone, None)
    return await deps.pool.fetchval(
        "insert into chat_messages (organization_id, chat_identity_id, direction, message,"
        " provider_message_id, message_status) values ($1::uuid, $2::uuid, 'outbound', 'hola',"
        " $3, 'pending') returning id::text",
        org,
        identity.id,
        provider_id,
    )


async def stored(deps, message_id: str):
    return await deps.pool.fetchrow(
        "select message_status, status_times, error_code, error_reason, whatsapp_message_id"
        " from chat_messages where id = $1::uuid",
        message_id,
    )


async def settled(deps, org: str) -> bool:
    """Every inbound entry of the organization has been handled."""
    stream = keys.stream(org, Stream.INBOUND)
    groups = await deps.redis.xinfo_groups(stream)
    group = next((g for g in groups if g["name"] == Stage.ENRICH), None)
    return bool(group) and group["lag"] == 0 and group["pending"] == 0


async def test_every_status_fixture_drives_the_right_status(system, make_org, deps):
    org = await make_org("DemoAPI")
    v3_org = await make_org("v3app", app_id=V3_APP_ID)
    rows = {
        name: await outgoing(deps, org, gs)
        for name, gs in {
            "sent_delivered": GS_SENT,
            "enqueued": "59f8db90-c37e-4408-90ab-cc54ef8246ad",
            "failed_async": "72f61f22-5aa4-4615-a970-943edf6da01c",
            "failed_sync": "ee4a68a0-1203-4c85-8dc3-49d0b3226a35",
            "read": "7b8f0910-db98-4cce-be5f-e6e1e847b4bd",
        }.items()
    }
    v3_row = await outgoing(deps, v3_org, GS_SENT)
    v2 = ["sent", "delivered", "enqueued", "failed_async", "failed_sync", "read"]
    v3 = ["enqueued", "sent", "delivered", "read", "failed"]
    async with system(roles=("ingress", "enrich")) as s:
        for name in v2:
            body = fixture(f"gupshup/gupshup_message_event_{name}.json", app="DemoAPI")
            assert (await post_webhook(s.url, body))[0] == 200
        for name in v3:
            assert (await post_webhook(s.url, fixture(f"gupshup/gupshup_v3_status_{name}.json")))[
                0
            ] == 200
        await eventually(lambda: settled(deps, org))
        await eventually(lambda: settled(deps, v3_org))
    got = {name: await stored(deps, row) for name, row in rows.items()}
    assert got["sent_delivered"]["message_status"] == "delivered"
    assert got["sent_delivered"]["whatsapp_message_id"].startswith("wamid.")
    assert set(got["sent_delivered"]["status_times"]) == {"sent", "delivered"}
    assert got["enqueued"]["message_status"] == "pending"  # accepted, not yet sent
    assert "enqueued" in got["enqueued"]["status_times"]
    for name in ("failed_async", "failed_sync"):
        assert (got[name]["message_status"], got[name]["error_code"]) == ("failed", 1002)
        assert "Number Does Not Exists" in got[name]["error_reason"]
    assert got["read"]["message_status"] == "read"
    # v3: the late 'failed' (131047) does not hide that the message was read; it is kept.
    v3_final = await stored(deps, v3_row)
    assert v3_final["message_status"] == "read"
    assert set(v3_final["status_times"]) == {"enqueued", "sent", "delivered", "read", "failed"}
    assert v3_final["error_code"] == 131047


async def test_out_of_order_and_duplicate_statuses_only_move_forward(
    system, make_org, gupshup, deps
):
    org = await make_org(gupshup.app_name, app_id=gupshup.app_id)
    gupshup.callback_token = "secret-token"
    row = await outgoing(deps, org, "gs-1")
    async with system(roles=("ingress", "enrich")) as s:
        gupshup.callback_url = s.url + "/webhooks/gupshup"
        wamid = "wamid.ABC"
        for status, layout in (
            ("read", "v2"),
            ("delivered", "v2_bsuid"),
            ("sent", "v3"),
            ("read", "v2"),
            ("delivered", "v2"),
        ):
            assert await gupshup.post_status("gs-1", status, layout=layout, wamid=wamid) == 200
        await eventually(lambda: settled(deps, org))
    final = await stored(deps, row)
    assert final["message_status"] == "read"
    assert set(final["status_times"]) == {"read", "delivered", "sent"}
    assert final["whatsapp_message_id"] == "wamid.ABC"


async def test_failure_1012_opts_the_contact_out_and_is_counted(system, make_org, gupshup, deps):
    org = await make_org(gupshup.app_name)
    gupshup.callback_token = "secret-token"
    await outgoing(deps, org, "gs-9")
    before = (
        metrics.REGISTRY.get_sample_value(
            "skytide_send_failures_total", {"org": org, "code": "1012"}
        )
        or 0
    )
    async with system(roles=("ingress", "enrich")) as s:
        gupshup.callback_url = s.url + "/webhooks/gupshup"
        await gupshup.post_status("gs-9", "failed", code=1012, reason="Number opted out")
        await eventually(lambda: settled(deps, org))
    consent = await deps.pool.fetchrow("select status, source from contact_authorizations")
    assert (consent["status"], consent["source"]) == ("opted_out", "provider_error_1012")
    assert (
        metrics.REGISTRY.get_sample_value(
            "skytide_send_failures_total", {"org": org, "code": "1012"}
        )
        == before + 1
    )


async def test_opted_out_contact_gets_nothing(system, make_org, gupshup, deps):
    org = await make_org("DemoApp")
    async with system() as s:
        await post_webhook(s.url, text_webhook("DemoApp", PHONE, "hola", "w-1", clock.now_ms()))
        await gupshup.wait_for_sent(1, timeout_s=10)
        opted_out = fixture("gupshup/gupshup_user_event_opted_out.json", app="DemoApp")
        opted_out["payload"]["phone"] = PHONE
        assert (await post_webhook(s.url, opted_out))[0] == 200
        await eventually(lambda: settled(deps, org))
        await streams.publish(
            deps.redis,
            OutboundMessage(
                org=org, phone=PHONE, text="¿Te esperamos mañana?", idempotency_key="reminder-1"
            ),
            Stream.OUTBOUND,
        )
        dropped = await eventually(
            lambda: deps.pool.fetchval(
                "select error_reason from chat_messages where idempotency_key = 'reminder-1'"
                " and message_status = 'failed'"
            )
        )
    assert dropped == "contact opted out"
    assert len(gupshup.sent) == 1


async def test_stop_keyword_opts_out_with_one_confirmation(system, make_org, gupshup, deps):
    org = await make_org("DemoApp")
    t = clock.now_ms()
    async with system() as s:
        await post_webhook(s.url, text_webhook("DemoApp", PHONE, "No más mensajes!", "s-1", t))
        sent = await gupshup.wait_for_sent(1, timeout_s=10)
        await post_webhook(s.url, text_webhook("DemoApp", PHONE, "STOP", "s-2", t + 1))
        await post_webhook(s.url, text_webhook("DemoApp", PHONE, "hola?", "s-3", t + 2))
        await eventually(lambda: settled(deps, org))
        await eventually(
            lambda: pipeline_settled(deps.redis, org)
        )  # a wrong reply would be out by now
    assert len(gupshup.sent) == 1
    assert "no te enviaremos más mensajes" in sent[0].message["text"]
    assert await deps.redis.xlen(keys.stream(org, Stream.TURNS)) == 0
    assert await deps.pool.fetchval("select status from contact_authorizations") == "opted_out"


async def test_the_opt_out_is_confirmed_in_the_chat_language(system, make_org, gupshup, deps):
    """A chat in Portuguese that writes PARAR (Spanish too) is answered in Portuguese; a new chat
    whose first message is STOP, in English (the keyword's own language)."""
    org = await make_org("DemoApp")
    identity = await chats.upsert_identity(deps.pool, org, PHONE, "Ana")
    await chats.save_chat_language(deps.pool, org, identity.id, "pt")
    t = clock.now_ms()
    async with system() as s:
        await post_webhook(s.url, text_webhook("DemoApp", PHONE, "PARAR", "s-1", t))
        [portuguese] = await gupshup.wait_for_sent(1, timeout_s=10)
        await post_webhook(s.url, text_webhook("DemoApp", "573009998877", "STOP", "s-2", t + 1))
        english = (await gupshup.wait_for_sent(2, timeout_s=10))[-1]
    assert "não vamos mais enviar mensagens" in portuguese.message["text"]
    assert "we won't send you any more WhatsApp messages" in english.message["text"]


async def _last_inbound(deps, org: str, hours_ago: float) -> None:
    identity = await chats.upsert_identity(deps.pool, org, PHONE, "Ana")
    await deps.pool.execute(
        "update chat_identities set last_inbound_at = $2 where id = $1::uuid",
        identity.id,
        clock.now_dt() - timedelta(hours=hours_ago),
    )


async def test_outside_the_window_the_template_goes_out(system, make_org, gupshup, deps):
    org = await make_org("DemoApp", settings={"reengagement_template_id": "tmpl-123"})
    await _last_inbound(deps, org, hours_ago=25)
    async with system(roles=("sender",)):
        await streams.publish(
            deps.redis,
            OutboundMessage(
                org=org, phone=PHONE, text="Tu cita es mañana", idempotency_key="late-1"
            ),
            Stream.OUTBOUND,
        )
        sent = await gupshup.wait_for_sent(1, timeout_s=10)
    assert sent[0].kind == "template" and sent[0].template["id"] == "tmpl-123"


async def test_outside_the_window_without_template_nothing_is_sent(system, make_org, gupshup, deps):
    org = await make_org("DemoApp")
    await _last_inbound(deps, org, hours_ago=23.9)  # inside 24 h but within the safety margin
    async with system(roles=("sender",)):
        await streams.publish(
            deps.redis,
            OutboundMessage(
                org=org, phone=PHONE, text="Tu cita es mañana", idempotency_key="late-2"
            ),
            Stream.OUTBOUND,
        )
        reason = await eventually(
            lambda: deps.pool.fetchval(
                "select error_reason from chat_messages where idempotency_key = 'late-2'"
            )
        )
    assert "24-hour window" in reason
    assert gupshup.sent == []


async def test_429_slows_down_and_nothing_is_lost(system, make_org, gupshup, deps):
    org = await make_org("DemoApp")
    await _last_inbound(deps, org, hours_ago=1)
    retryable = (
        "skytide_dependency_errors_total",
        {"dependency": "gupshup", "reason": "retryable"},
    )
    before = metrics.REGISTRY.get_sample_value(*retryable) or 0
    gupshup.fail_next(429, times=2, body={"status": "error", "message": "Too Many Requests"})
    async with system(roles=("sender",), cooldown_ms=200):
        for i in range(3):
            await streams.publish(
                deps.redis,
                OutboundMessage(
                    org=org, phone=PHONE, text=f"parte {i}", idempotency_key=f"burst-{i}"
                ),
                Stream.OUTBOUND,
            )
        sent = await gupshup.wait_for_sent(3, timeout_s=20)
        await eventually(lambda: pipeline_settled(deps.redis, org))
    assert [m.message["text"] for m in gupshup.sent] == ["parte 0", "parte 1", "parte 2"]
    assert metrics.REGISTRY.get_sample_value(*retryable) == before + 2
    assert len(sent) == 3


async def test_pacing_is_shared_and_a_cooldown_stops_everyone(deps):
    pace = ratelimit.Pace(per_second=10, burst=2, recipient_interval_ms=0)
    waits = [await ratelimit.acquire(deps.redis, "org-x", f"p{i}", pace) for i in range(3)]
    assert waits[:2] == [0, 0] and waits[2] > 0  # the burst, then the rate
    recipient = ratelimit.Pace(per_second=1000, burst=100, recipient_interval_ms=5000)
    assert await ratelimit.acquire(deps.redis, "org-y", "same", recipient) == 0
    assert await ratelimit.acquire(deps.redis, "org-y", "same", recipient) > 0
    assert await ratelimit.acquire(deps.redis, "org-y", "other", recipient) == 0
    await ratelimit.cool_down(deps.redis, "org-y", 5000)
    assert await ratelimit.acquire(deps.redis, "org-y", "third", recipient) > 0


async def test_replay_of_a_dead_letter_delivers_once(system, make_org, gupshup, deps, settings):
    org = await make_org("DemoApp")
    await _last_inbound(deps, org, hours_ago=1)
    gupshup.fail_next(401, body={"message": "Authentication Failed", "status": "error"})
    async with system(roles=("sender",)):
        await streams.publish(
            deps.redis,
            OutboundMessage(
                org=org, phone=PHONE, text="Confirmada tu cita", idempotency_key="dl-1"
            ),
            Stream.OUTBOUND,
        )
        letters = await eventually(lambda: dead_letters.list_letters(deps.redis, org=org))
        assert "Authentication Failed" in letters[0].error and letters[0].stage == "sender"
        env = {**os.environ, "REDIS_URL": settings.redis_url, "DATABASE_URL": settings.database_url}
        listed = subprocess.run(
            [sys.executable, "-m", "ops", "dlq", "list"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert letters[0].ref in listed.stdout and "1 dead letter(s)" in listed.stdout
        shown = subprocess.run(
            [sys.executable, "-m", "ops", "dlq", "show", letters[0].ref],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "Authentication Failed" in shown.stdout and "Confirmada tu cita" in shown.stdout
        replayed = subprocess.run(
            [sys.executable, "-m", "ops", "dlq", "replay", "--stage", "sender"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "replayed 1 of 1" in replayed.stdout, replayed.stderr
        sent = await gupshup.wait_for_sent(1, timeout_s=10)
        assert await dead_letters.replay(deps.redis, letters[0]) is False  # already put back
        await eventually(lambda: pipeline_settled(deps.redis, org))
    assert len(gupshup.sent) == 1 and sent[0].message["text"] == "Confirmada tu cita"
    assert await dead_letters.list_letters(deps.redis, org=org) == []


def escalation(org: str, key: str) -> OutboundMessage:
    return OutboundMessage(
        org=org,
        phone="573001234567",
        template_id="tmpl-advisor",
        template_params=["Ana"],
        idempotency_key=key,
        purpose="escalation",
        requires_bot_enabled=False,
        escalation=EscalationNotice(
            customer_phone=PHONE,
            accepted_text="Un asesor te escribirá.",
            failed_text="No pude avisar a un asesor; sigo aquí.",
        ),
    )


async def test_escalation_accepted_turns_the_bot_off_and_tells_the_customer(
    system, make_org, gupshup, deps
):
    org = await make_org("DemoApp")
    await _last_inbound(deps, org, hours_ago=1)
    async with system(roles=("sender",)):
        await streams.publish(deps.redis, escalation(org, "esc-1"), Stream.OUTBOUND)
        sent = await gupshup.wait_for_sent(2, timeout_s=10)
    assert sent[0].kind == "template" and sent[0].destination == "573001234567"
    assert sent[1].destination == PHONE and sent[1].message["text"] == "Un asesor te escribirá."
    assert (await chats.find_identity(deps.pool, org, PHONE)).bot_enabled is False


async def test_escalation_rejected_keeps_the_bot_on_and_says_so(system, make_org, gupshup, deps):
    org = await make_org("DemoApp")
    await _last_inbound(deps, org, hours_ago=1)
    gupshup.fail_next(400, body={"message": "Invalid Destination", "status": "error"})
    async with system(roles=("sender",)):
        await streams.publish(deps.redis, escalation(org, "esc-2"), Stream.OUTBOUND)
        sent = await gupshup.wait_for_sent(1, timeout_s=10)
    assert sent[0].destination == PHONE and "No pude avisar" in sent[0].message["text"]
    assert (await chats.find_identity(deps.pool, org, PHONE)).bot_enabled is True


async def test_marketing_stop_131050_is_recorded_but_service_replies_go_on(
    system, make_org, gupshup, deps
):
    org = await make_org(gupshup.app_name, app_id=gupshup.app_id)
    gupshup.callback_token = "secret-token"
    await outgoing(deps, org, "gs-m")
    async with system(roles=("ingress", "enrich")) as s:
        gupshup.callback_url = s.url + "/webhooks/gupshup"
        await gupshup.post_status(
            "gs-m", "failed", layout="v3", code=131050, reason="User stopped marketing messages"
        )
        await eventually(lambda: settled(deps, org))
    rows = await deps.pool.fetch("select channel, status, source from contact_authorizations")
    assert [tuple(r) for r in rows] == [
        ("whatsapp_marketing", "opted_out", "provider_error_131050")
    ]
    assert (await chats.find_identity(deps.pool, org, PHONE)).opted_out is False
