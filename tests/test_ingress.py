"""The webhook edge: clear 4xx for bad input, 2xx (and a count) for every event type it knows
or not, and nothing processed inline."""

from __future__ import annotations

import aiohttp

from ops import metrics
from storage import keys
from storage.keys import Stream
from tests.helpers import fixture, fresh, post_webhook

PHONE = "919876543210"


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


async def test_malformed_json_gets_400_with_reason(system, make_org):
    await make_org("docdeck")
    async with system(roles=("ingress",)) as s:
        status, body = await post_webhook(s.url, b"{not json")
    assert status == 400 and "not valid JSON" in body


async def test_missing_field_gets_400_naming_it(system, make_org):
    await make_org("docdeck")
    body = fresh("gupshup/gupshup_v2_text.json")
    del body["payload"]["source"]
    async with system(roles=("ingress",)) as s:
        status, text = await post_webhook(s.url, body)
    assert status == 400 and "source" in text


async def test_wrong_or_missing_token_gets_401(system, make_org):
    await make_org("docdeck")
    async with system(roles=("ingress",)) as s:
        wrong = await post_webhook(s.url, fresh("gupshup/gupshup_v2_text.json"), token="nope")
        missing = await post_webhook(s.url, fresh("gupshup/gupshup_v2_text.json"), token=None)
        by_query = await post_webhook(
            s.url,
            fresh("gupshup/gupshup_v2_text.json"),
            token=None,
            path="/webhooks/gupshup?token=secret-token",
        )
    assert wrong[0] == 401 and missing[0] == 401
    assert by_query == (200, "")


async def test_an_app_the_token_does_not_open_gets_403_and_an_inactive_one_404(
    system, make_org, deps
):
    org = await make_org("docdeck")
    async with system(roles=("ingress",)) as s:
        unknown = await post_webhook(s.url, fixture("gupshup/gupshup_v2_text.json", app="nobody"))
        await deps.pool.execute(
            "update platform_connections set is_active = false where organization_id = $1::uuid",
            org,
        )
    async with system(roles=("ingress",)) as s:  # a fresh cache sees the change at once
        inactive = await post_webhook(s.url, fresh("gupshup/gupshup_v2_text.json"))
    assert unknown[0] == 403 and "nobody" in unknown[1]
    assert inactive[0] == 404


async def test_body_over_the_limit_gets_413(system, make_org):
    await make_org("docdeck")
    async with system(roles=("ingress",), max_body_bytes=2000) as s:
        body = fresh("gupshup/gupshup_v2_text.json")
        body["payload"]["payload"]["text"] = "x" * 5000
        status, text = await post_webhook(s.url, body)
    assert status == 413 and "2000" in text


async def test_every_event_type_gets_2xx_and_is_counted(system, make_org, deps):
    org = await make_org("DemoAPI")
    await make_org("docdeck")
    before_unknown = counted("unknown", "ignored")
    before_platform = counted("platform-event:connectivity-check", "ignored")
    async with system(roles=("ingress",)) as s:
        bodies = [
            fixture("gupshup/gupshup_message_event_read.json"),
            fixture("gupshup/gupshup_user_event_opted_in.json", app="DemoAPI"),
            fixture("gupshup/gupshup_user_event_sandbox_start.json", app="DemoAPI"),
            fixture("gupshup/gupshup_platform_event_connectivity_check_v2.json", app="DemoAPI"),
            {
                "app": "DemoAPI",
                "timestamp": 1,
                "version": 2,
                "type": "brand-new-type",
                "payload": {"anything": True},
            },
            fixture("gupshup/gupshup_v2_image.json"),
        ]
        for body in bodies:
            status, _ = await post_webhook(s.url, body)
            assert status == 200, body
    assert counted("unknown", "ignored") == before_unknown + 1
    assert counted("platform-event:connectivity-check", "ignored") == before_platform + 1
    # Status and user events are queued for enrich; none of them is a turn.
    assert await deps.redis.xlen(keys.stream(org, Stream.INBOUND)) == 2
    assert await deps.redis.xlen(keys.stream(org, Stream.TURNS)) == 0


async def test_status_endpoint_shares_the_handler(system, make_org, deps):
    org = await make_org("DemoAPI")
    async with system(roles=("ingress",)) as s:
        status, _ = await post_webhook(
            s.url,
            fixture("gupshup/gupshup_message_event_sent.json"),
            path="/webhooks/gupshup/status",
        )
    assert status == 200
    assert await deps.redis.xlen(keys.stream(org, Stream.INBOUND)) == 1


async def test_health_readiness_and_metrics(system):
    async with system(roles=("ingress",)) as s, aiohttp.ClientSession() as http:
        async with http.get(s.url + "/healthz") as r:
            assert r.status == 200
        async with http.get(s.url + "/readyz") as r:
            assert r.status == 200 and (await r.json())["ready"] is True
        async with http.get(s.url + "/metrics") as r:
            assert "skytide_webhook_events_total" in await r.text()


async def test_dev_chat_answers_with_the_bots_reply(system, make_org, deps):
    """POST /chat goes through the real pipeline and the local Gupshup simulator."""
    await make_org("DevApp")
    async with system(gupshup_api_url=None, debounce_seconds=0.1) as s:
        async with aiohttp.ClientSession() as http:
            async with http.post(
                s.url + "/chat",
                json={"app": "DevApp", "phone": "573001112233", "name": "Ana", "text": "hola"},
            ) as r:
                assert r.status == 200
                replies = (await r.json())["replies"]
    assert len(replies) == 1 and replies[0].startswith("¡Hola")


class _TwoReplies:
    """A receptionist whose every turn answers in two parts."""

    def __init__(self, deps, saver) -> None:
        pass

    async def run_turn(self, turn):
        from graph.contract import TurnResult

        return TurnResult(replies=[f"uno: {turn.texts[-1]}", "dos"])


async def _post_chat(url: str, text: str, phone: str = "573001112244") -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            url + "/chat", json={"app": "DevApp", "phone": phone, "name": "Ana", "text": text}
        ) as r:
            body = await r.json()
            body.pop("handled_by", None)  # who handled the turn: tested with the chat page
            return r.status, body


async def test_dev_chat_reads_the_turns_replies_whatever_gupshup_url_is(system, make_org, gupshup):
    """With GUPSHUP_API_URL set, replies go to that server, and /chat still answers with them."""
    await make_org("DevApp")
    async with system(receptionist_builder=_TwoReplies, debounce_seconds=0) as s:
        assert await _post_chat(s.url, "hola") == (200, {"replies": ["uno: hola", "dos"]})
        assert await _post_chat(s.url, "otra") == (200, {"replies": ["uno: otra", "dos"]})
        await gupshup.wait_for_sent(4, timeout_s=10)
    assert [m.message["text"] for m in gupshup.sent] == ["uno: hola", "dos", "uno: otra", "dos"]


class _ConfirmationFirst:
    """A turn during which the scheduler queues a booking confirmation for the same chat (no
    turn id), ahead of the turn's own reply."""

    def __init__(self, deps, saver) -> None:
        self.redis = deps.redis

    async def run_turn(self, turn):
        from graph.contract import TurnResult
        from storage import streams
        from storage.events import OutboundMessage

        await streams.publish(
            self.redis,
            OutboundMessage(
                org=turn.org,
                phone=turn.chat,
                idempotency_key=f"job-{turn.turn_id}",
                text="✅ Cita confirmada",
                purpose="confirmation",
            ),
            Stream.OUTBOUND,
        )
        return TurnResult(replies=[f"respuesta: {turn.texts[-1]}"])


async def test_dev_chat_answers_with_the_turn_not_a_scheduled_message(system, make_org, gupshup):
    await make_org("DevApp")
    async with system(receptionist_builder=_ConfirmationFirst, debounce_seconds=0) as s:
        assert await _post_chat(s.url, "hola") == (200, {"replies": ["respuesta: hola"]})


async def test_dev_chat_answers_504_with_a_reason_when_no_reply_comes(system, make_org):
    await make_org("DevApp")
    async with system(roles=("ingress",), chat_wait_s=1.5) as s:  # nobody makes a turn
        status, body = await _post_chat(s.url, "hola")
    assert status == 504
    assert "no reply within 2 s" in body["error"]


async def test_a_body_that_arrives_in_pieces_is_read_whole(system, make_org, deps):
    """A webhook split over several packets (or chunked by a proxy) is one message, not a 400."""
    import asyncio
    import json

    from tests.helpers import fresh

    org = await make_org("docdeck")
    body = fresh("gupshup/gupshup_v2_text.json")
    body["payload"]["payload"]["text"] = "hola " * 400
    data = json.dumps(body).encode()
    async with system(roles=("ingress",)) as s:
        host, port = s.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            (
                f"POST /webhooks/gupshup?token=secret-token HTTP/1.1\r\nHost: x\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                "Connection: close\r\n\r\n"
            ).encode()
            + data[:700]
        )
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.write(data[700:])
        await writer.drain()
        status_line = await reader.readline()
        writer.close()
    assert b" 200 " in status_line
    assert await deps.redis.xlen(keys.stream(org, Stream.INBOUND)) == 1
