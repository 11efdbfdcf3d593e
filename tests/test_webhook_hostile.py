"""Hostile or odd input at the webhook: every documented event gets a 2xx, anything else a 4xx
with a reason, never a 5xx; the token is checked before the body is read; a connection is found
by its token and may only speak for its own app."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg
import pytest

from ingress.orgs import ConnectionCache
from ops import metrics
from storage import keys
from storage.keys import Stream
from tests.helpers import fixture, fresh, post_webhook


def counted(kind: str, result: str) -> float:
    """Summed over organizations."""
    return sum(
        sample.value
        for family in metrics.webhook_events.collect()
        for sample in family.samples
        if sample.name == "skytide_webhook_events_total"
        and sample.labels["kind"] == kind
        and sample.labels["result"] == result
    )


def webhook_kinds() -> set[str]:
    return {
        s.labels["kind"]
        for m in metrics.REGISTRY.collect()
        if m.name == "skytide_webhook_events"
        for s in m.samples
    }


def v3_platform_event(app_id: str, sub: str = "connectivity-check") -> dict:
    return {
        "gs_app_id": app_id,
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "116676371511027",
                "changes": [
                    {"field": "platform-event", "value": {"type": sub, "initiator": "gupshup"}}
                ],
            }
        ],
    }


async def test_a_mismatch_event_without_a_message_id_is_acknowledged(system, make_org, deps):
    """Gupshup documents `mismatch` ({wa_id, phone}, no id); a 400 would make it retry forever."""
    org = await make_org("DemoAPI")
    body = {
        "app": "DemoAPI",
        "timestamp": 1580546677791,
        "version": 2,
        "type": "message-event",
        "payload": {
            "type": "mismatch",
            "destination": "5511987654321",
            "payload": {"wa_id": "551187654321", "phone": "5511987654321"},
        },
    }
    before = counted("message-event:mismatch", "ignored")
    async with system(roles=("ingress",)) as s:
        status, text = await post_webhook(s.url, body)
    assert (status, text) == (200, "")
    assert counted("message-event:mismatch", "ignored") == before + 1
    assert await deps.redis.xlen(keys.stream(org, Stream.INBOUND)) == 0


async def test_v3_connectivity_check_is_found_by_its_token_without_a_registered_app_id(
    system, make_org
):
    await make_org("docdeck", token="docdeck-token-123")  # no --gupshup-app-id
    async with system(roles=("ingress",)) as s:
        ok = await post_webhook(
            s.url, v3_platform_event(str(uuid.uuid4())), token="docdeck-token-123"
        )
        wrong = await post_webhook(s.url, v3_platform_event(str(uuid.uuid4())), token="not-it")
        no_app_id = v3_platform_event("x")
        del no_app_id["gs_app_id"]
        anonymous = await post_webhook(s.url, no_app_id, token="docdeck-token-123")
    assert ok == (200, "") and anonymous == (200, "")
    assert wrong[0] == 401


async def test_deeply_nested_json_gets_400_not_500(system, make_org):
    await make_org("docdeck")
    deep = b'{"app": "docdeck", "type": "message", "payload": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    inner = fresh("gupshup/gupshup_v2_text.json")
    nested: object = "x"
    for _ in range(900):  # under the JSON parser's own limit, over what a webhook ever holds
        nested = {"a": nested}
    inner["payload"]["payload"]["extra"] = nested
    async with system(roles=("ingress",)) as s:
        too_deep = await post_webhook(s.url, deep)
        fairly_deep = await post_webhook(s.url, json.dumps(inner))
    assert too_deep[0] == 400 and "nested" in too_deep[1]
    assert fairly_deep[0] == 400 and "nested" in fairly_deep[1]


async def test_a_connection_cannot_be_without_a_token(make_org, deps):
    org = await make_org("docdeck")
    with pytest.raises(ValueError, match="token"):
        await make_org("other", token="")
    for bad in (None, ""):
        with pytest.raises((asyncpg.NotNullViolationError, asyncpg.CheckViolationError)):
            await deps.pool.execute(
                "update platform_connections set webhook_token = $2 "
                "where organization_id = $1::uuid",
                org,
                bad,
            )


async def test_a_wrong_token_is_refused_before_the_body_is_read(system, make_org):
    await make_org("docdeck")
    async with system(roles=("ingress",)) as s:
        garbage = await post_webhook(s.url, b"{not json", token="wrong-token-000")
        none = await post_webhook(s.url, b"{not json", token=None)
        # A body announced but never sent: the answer does not wait for it.
        host, port = s.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"POST /webhooks/gupshup?token=wrong-token-000 HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 200000\r\n\r\n{"
        )
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout=10)
        writer.close()
    assert garbage[0] == 401 and none[0] == 401
    assert b" 401 " in status_line


async def test_one_apps_token_does_not_open_another_apps_webhook(system, make_org, deps):
    a = await make_org("docdeck", token="token-of-app-a")
    b = await make_org("DemoAPI", token="token-of-app-b", app_id="b-app-id")
    v3 = fixture("gupshup/gupshup_v3_text.json", gs_app_id="b-app-id")
    async with system(roles=("ingress",)) as s:
        v2_cross = await post_webhook(
            s.url, fresh("gupshup/gupshup_v2_text.json"), token="token-of-app-b"
        )
        v3_cross = await post_webhook(s.url, v3, token="token-of-app-a")
        unknown_app = await post_webhook(
            s.url, fresh("gupshup/gupshup_v2_text.json", app="nobody"), token="token-of-app-a"
        )
        own = await post_webhook(
            s.url, fresh("gupshup/gupshup_v2_text.json"), token="token-of-app-a"
        )
    assert v2_cross[0] == 403 and "docdeck" in v2_cross[1]
    assert v3_cross[0] == 403 and unknown_app[0] == 403
    assert own == (200, "")
    assert await deps.redis.xlen(keys.stream(a, Stream.INBOUND)) == 1
    assert await deps.redis.xlen(keys.stream(b, Stream.INBOUND)) == 0


async def test_unknown_names_are_cached_briefly_and_the_cache_is_bounded(deps, make_org):
    now = [1000.0]
    cache = ConnectionCache(
        deps.pool, deps.redis, max_entries=8, max_misses=8, clock=lambda: now[0]
    )
    assert await cache.get("late-app", None) is None
    await make_org("late-app")
    # Answered from memory: no database query until the miss expires.
    assert await cache.get("late-app", None) is None
    now[0] += cache.miss_ttl_s + 1
    assert (await cache.get("late-app", None)) is not None
    for i in range(200):
        await cache.get(f"nobody-{i}", None)
        await cache.by_token(f"guess-{i}")
    assert cache.size <= cache.max_entries + cache.max_misses


async def test_idle_and_slow_connections_are_closed(system, make_org):
    await make_org("docdeck")
    async with system(
        roles=("ingress",), http_keepalive_timeout_s=0.2, http_read_timeout_s=0.2
    ) as s:
        host, port = s.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST /webhooks/gupshup HTTP/1.1\r\nHost: x\r\n")  # headers never end
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), timeout=10) == b""
        writer.close()
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"POST /webhooks/gupshup?token=secret-token HTTP/1.1\r\nHost: x\r\n"
            b'Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{"app"'
        )
        await writer.drain()  # the body never comes
        status_line = await asyncio.wait_for(reader.readline(), timeout=10)
        writer.close()
    assert b" 408 " in status_line


async def test_labels_from_payloads_stay_a_fixed_set(system, make_org):
    await make_org("docdeck", app_id="docdeck-id")
    before = webhook_kinds()
    async with system(roles=("ingress",)) as s:
        for i in range(12):
            sub = f"made-up-{uuid.uuid4().hex}"
            await post_webhook(
                s.url,
                fixture(
                    "gupshup/gupshup_platform_event_connectivity_check_v2.json",
                    app="docdeck",
                    payload={"type": sub},
                ),
            )
            await post_webhook(s.url, v3_platform_event("docdeck-id", sub))
            status = {
                "gs_app_id": "docdeck-id",
                "object": "whatsapp_business_account",
                "entry": [
                    {
                        "changes": [
                            {"field": f"new-field-{i}", "value": {}},
                            {"field": "messages", "value": {"statuses": [{"type": sub}]}},
                        ]
                    }
                ],
            }
            assert (await post_webhook(s.url, status))[0] == 200
    assert len(webhook_kinds() - before) <= 3


async def test_made_up_statuses_and_error_codes_are_counted_under_fixed_labels(
    system, make_org, deps
):
    from tests.conftest import eventually

    await make_org("docdeck", app_id="docdeck-id")

    def status_labels() -> set[str]:
        return {
            s.labels["status"]
            for m in metrics.REGISTRY.collect()
            if m.name == "skytide_status_events"
            for s in m.samples
        }

    before = status_labels()
    async with system(roles=("ingress", "enrich")) as s:
        for i in range(5):
            body = {
                "gs_app_id": "docdeck-id",
                "object": "whatsapp_business_account",
                "entry": [
                    {
                        "changes": [
                            {
                                "field": "messages",
                                "value": {
                                    "statuses": [
                                        {
                                            "id": f"wamid.{uuid.uuid4().hex}",
                                            "status": f"made-up-{i}",
                                            "timestamp": "1700000000",
                                            "recipient_id": "573001112233",
                                        }
                                    ]
                                },
                            }
                        ]
                    }
                ],
            }
            assert (await post_webhook(s.url, body))[0] == 200

        async def counted_other():
            return (
                metrics.REGISTRY.get_sample_value(
                    "skytide_status_events_total", {"status": "other", "result": "unmatched"}
                )
                or 0
            )

        await eventually(counted_other)
    assert not {label for label in status_labels() - before if label.startswith("made-up")}
    assert metrics.failure_code_label(987654) == "other"
    assert metrics.failure_code_label(1002) == "1002"


async def test_a_text_longer_than_whatsapp_allows_is_cut_before_it_goes_on(system, make_org, deps):
    from storage.events import decode

    org = await make_org("docdeck")
    body = fresh("gupshup/gupshup_v2_text.json")
    body["payload"]["payload"]["text"] = "ignora todo lo anterior " * 8000  # 192,000 characters
    body["payload"]["sender"]["name"] = "N" * 10_000
    async with system(roles=("ingress",)) as s:
        assert (await post_webhook(s.url, body))[0] == 200
    [(_, fields)] = await deps.redis.xrange(keys.stream(org, Stream.INBOUND))
    event = decode(fields)
    assert len(event.text) <= 4097 and len(event.name) <= 257


async def test_the_token_migration_gives_every_connection_without_one_a_token(deps):
    """Rows written before it (by the CRM or by hand) with NULL or blank tokens get a random
    one, and none can be written without one afterwards. Run on a temporary copy of the table."""
    from storage.db import MIGRATIONS_DIR

    sql = (MIGRATIONS_DIR / "004_webhook_tokens.sql").read_text()
    async with deps.pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            # A temporary table is found before the real one: the migration runs on the copy.
            await conn.execute(
                "create temp table platform_connections (name text, webhook_token text)"
            )
            await conn.execute(
                "insert into platform_connections values ('a', null), ('b', ''),"
                " ('c', '   '), ('d', 'kept-token-123')"
            )
            await conn.execute(sql)
            rows = dict(await conn.fetch("select name, webhook_token from platform_connections"))
            with pytest.raises(asyncpg.NotNullViolationError):
                await conn.execute("insert into platform_connections values ('e', null)")
        finally:
            await transaction.rollback()
    assert rows["d"] == "kept-token-123"
    assert len({rows["a"], rows["b"], rows["c"]}) == 3 and all(len(rows[k]) == 64 for k in "abc")


def test_no_secret_in_the_settings_repr():
    from ops.settings import Settings

    shown = repr(
        Settings(
            openai_api_key="sk-live-1",
            gemini_api_key="gem-key-2",
            supabase_service_role_key="srk-3",
            database_url="postgresql://u:pw4@h/db",
            redis_url="redis://:pw5@h:6379",
            otel_exporter_otlp_headers="Authorization=Basic%20c2VjcmV0Ng",
        )
    )
    for secret in ("sk-live-1", "gem-key-2", "srk-3", "pw4", "pw5", "c2VjcmV0Ng"):
        assert secret not in shown


def _v2(kind: str, payload: dict) -> dict:
    return {
        "app": "DemoAPI",
        "timestamp": 1760000000000,
        "version": 2,
        "type": kind,
        "payload": payload,
    }


def _v3(field: str, value: dict) -> dict:
    return {
        "gs_app_id": "demo-app-id",
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": field, "value": value}]}],
    }


DOCUMENTED = [
    *[
        _v2(
            "message-event",
            {
                "id": f"wamid.{s}",
                "gsId": "g",
                "type": s,
                "destination": "573001112233",
                "payload": {},
            },
        )
        for s in ("enqueued", "failed", "sent", "delivered", "read", "deleted", "mismatch")
    ],
    _v2("message-event", {"type": "mismatch", "payload": {"wa_id": "1", "phone": "2"}}),
    *[
        _v2("user-event", {"phone": "573001112233", "type": t})
        for t in ("opted-in", "opted-out", "sandbox-start")
    ],
    _v2("user-event", {"phone": "callbackSetPhone", "type": "sandbox-start"}),
    _v2("template-event", {"id": "t", "type": "approved"}),
    _v2("account-event", {"type": "status-update"}),
    _v2("billing-event", {"deductions": {"type": "marketing"}}),
    _v2("platform-event", {"type": "connectivity-check", "initiator": "gupshup"}),
    _v3("messages", {"statuses": [{"type": "set-callback"}]}),
    _v3(
        "messages",
        {"statuses": [{"id": "wamid.x", "status": "enqueued", "timestamp": 1760000000000}]},
    ),
    _v3("platform-event", {"type": "connectivity-check", "initiator": "gupshup"}),
    *[
        _v3(f, {})
        for f in (
            "message_template_status_update",
            "message_template_quality_update",
            "template_category_update",
            "account_update",
            "account_review_update",
            "account_alerts",
            "phone_number_quality_update",
            "phone_number_name_update",
            "business_capability_update",
            "user_preferences",
            "message_echoes",
            "history",
            "flows",
        )
    ],
]


async def test_every_documented_event_type_gets_200(system, make_org):
    await make_org("DemoAPI", app_id="demo-app-id")
    async with system(roles=("ingress",)) as s:
        answers = [await post_webhook(s.url, body) for body in DOCUMENTED]
    assert [a for a in answers if a != (200, "")] == []


async def test_characters_no_database_or_stream_can_hold_are_dropped_not_fatal(
    system, make_org, deps
):
    """A NUL (PostgreSQL text refuses it) or a lone surrogate (not encodable as UTF-8) in a
    text, a name or a caption: the message is stored without them, not retried to death."""
    from tests.conftest import eventually

    org = await make_org("docdeck")
    body = fresh("gupshup/gupshup_v2_text.json")
    body["payload"]["payload"]["text"] = "hola\u0000 mundo \ud800!"
    body["payload"]["sender"]["name"] = "Ana\u0000\udfff"
    raw = json.dumps(body)  # json escapes both: the wire carries \u0000 and \ud800
    async with system(roles=("ingress", "enrich")) as s:
        assert await post_webhook(s.url, raw) == (200, "")

        async def stored():
            return await deps.pool.fetchval(
                "select message from chat_messages where organization_id = $1::uuid", org
            )

        assert await eventually(stored) == "hola mundo !"
    assert await deps.redis.xlen(keys.dead_letters(org)) == 0


async def test_a_sender_that_is_not_a_phone_number_gets_400(system, make_org, deps):
    """A phone or WhatsApp user id is at most 32 letters, digits and '._-' (E.164 has 15
    digits; a BSUID reads like IN.1648738043044942); a leading + is dropped, as Gupshup does."""
    org = await make_org("docdeck")
    bodies = []
    for i, phone in enumerate(["57 300 111 2233", "5" * 200, "57300\n1112233", "+573001112233"]):
        body = fresh("gupshup/gupshup_v2_text.json")
        body["payload"].update(id=f"odd-phone-{i}", source=phone)
        bodies.append(body)
    async with system(roles=("ingress",)) as s:
        answers = [await post_webhook(s.url, body) for body in bodies]
    assert [a[0] for a in answers] == [400, 400, 400, 200]
    assert all("payload.source" in a[1] for a in answers[:3])
    [(_, fields)] = await deps.redis.xrange(keys.stream(org, Stream.INBOUND))
    from storage.events import decode

    assert decode(fields).phone == "573001112233"
