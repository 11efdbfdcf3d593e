"""Traces in one process: a burst of two messages becomes one turn, which continues the first
message's trace and links the second's; a voice note's Gemini call is a span of its trace."""

from __future__ import annotations

import asyncio

from ops import tracing
from tests.helpers import post_webhook, text_webhook
from tests.otlp_receiver import OtlpReceiver
from tests.test_metrics import value
from tests.test_understanding import APP, APP_ID, gemini, media_system, wait_row, webhook  # noqa: F401
from tests import clock

PHONE = "573001112299"


async def test_a_turn_of_two_messages_continues_the_first_trace_and_links_the_second(
    settings, make_org, system, gupshup
):
    await make_org("TraceClinic", catalog=True)
    async with OtlpReceiver() as otlp:
        tracing.setup(settings.model_copy(update={"otel_exporter_otlp_endpoint": otlp.url}))
        try:
            # The burst is closed by its size, not by a quiet window: one turn, whatever the timing.
            async with system(debounce_seconds=30, debounce_max_messages=2) as s:
                now_ms = clock.now_ms()
                for n, text in enumerate(("hola", "¿cuánto cuesta la limpieza facial?")):
                    status, _ = await post_webhook(
                        s.url,
                        text_webhook("TraceClinic", PHONE, text, f"wamid.trace{n}", now_ms + n),
                    )
                    assert status == 200
                await gupshup.wait_for_sent(1, timeout_s=20)
        finally:
            # The exporter posts from its own thread to the receiver on this loop: flush from
            # a thread so the loop keeps serving.
            await asyncio.to_thread(tracing.shutdown)
    spans = otlp.spans
    webhooks = [s for s in spans if s.name == "ingress.webhook"]
    turns = [s for s in spans if s.name == "agent.turn"]
    assert len(webhooks) == 2 and len(turns) == 1
    first, second = sorted(webhooks, key=lambda s: s.trace_id != turns[0].trace_id)
    assert turns[0].trace_id == first.trace_id  # the turn joins the first message's trace
    assert turns[0].links == [second.trace_id]
    sender = [s for s in spans if s.name == "sender"]
    assert [s.trace_id for s in sender] == [first.trace_id]
    enrich = {s.trace_id for s in spans if s.name == "enrich"}
    assert enrich == {first.trace_id, second.trace_id}  # each message's own trace up to the turn


async def test_a_voice_note_trace_holds_the_gemini_call_and_the_tokens_are_counted(
    settings, make_org, media_system, gupshup, deps
):
    org = await make_org(APP, app_id=APP_ID)
    model = settings.gemini_model
    before = value("skytide_gemini_requests_total", {"org": org, "model": model})
    async with OtlpReceiver() as otlp:
        tracing.setup(settings.model_copy(update={"otel_exporter_otlp_endpoint": otlp.url}))
        try:
            async with media_system() as s:
                body, provider_id, _ = webhook("gupshup_v2_audio.json", gupshup)
                assert (await post_webhook(s.url, body))[0] == 200
                assert (await wait_row(deps, org, provider_id))["processed_text"].startswith(
                    "[nota de voz] "
                )
        finally:
            await asyncio.to_thread(tracing.shutdown)
    webhook_span = next(s for s in otlp.spans if s.name == "ingress.webhook")
    trace = {s.name for s in otlp.spans if s.trace_id == webhook_span.trace_id}
    assert {"ingress.webhook", "enrich", f"gemini {model}"} <= trace
    assert value("skytide_gemini_requests_total", {"org": org, "model": model}) == before + 1
    assert value("skytide_gemini_tokens_total", {"org": org, "kind": "prompt"}) > 0
