"""Metrics that need a closer look than the whole-deployment test gives: the streams' backlog
sampled at scrape time, a dependency that is down, LLM tokens and cost, and the log context."""

from __future__ import annotations

import json
import logging

import pytest

from consumers.runtime import ensure_group
from consumers.stream_stats import StreamStats
from graph.receptionist import Receptionist
from ops import health, metrics
from ops.deps import Deps
from ops.embedded import free_port
from ops.logs import JsonFormatter, bound
from storage import keys
from storage.events import StatusEvent, encode
from storage.redis_client import create_redis
from storage.keys import Stage, Stream
from tests.fakes.openai import text, tool_call
from tests.graph_helpers import Chat, redis_saver
from tests.test_graph_scripted import clinic, fake_openai, openai_model  # noqa: F401


def value(name: str, labels: dict[str, str] | None = None) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels or {}) or 0.0


async def test_stream_backlog_pending_and_dead_letters_are_read_when_scraped(deps, make_org):
    org = await make_org()
    stream = keys.stream(org, Stream.INBOUND)
    await ensure_group(deps.redis, stream, Stage.ENRICH)
    for n in range(5):
        await deps.redis.xadd(
            stream, encode(StatusEvent(org=org, provider_id=f"p{n}", status="read", at_ms=n))
        )
    await deps.redis.xreadgroup(
        Stage.ENRICH, "w1", {stream: ">"}, count=2
    )  # read, not acknowledged
    await deps.redis.xadd(keys.dead_letters(org), {"stage": "enrich", "error": "boom"})
    remove = metrics.add_sampler(StreamStats(deps.redis, ["enrich", "agent"]))
    try:
        text = (await metrics.render_sampled()).decode()
    finally:
        remove()
    assert f'skytide_stream_lag{{org="{org}",stage="enrich"}} 3.0' in text
    assert f'skytide_stream_pending{{org="{org}",stage="enrich"}} 2.0' in text
    assert f'skytide_stream_length{{org="{org}",stream="inbound"}} 5.0' in text
    assert f'skytide_dead_letters{{org="{org}"}} 1.0' in text
    # The agent's stream does not exist yet: nothing waiting, and the scrape still answers.
    assert f'skytide_stream_lag{{org="{org}",stage="agent"}} 0.0' in text


async def test_a_redis_that_does_not_answer_is_down_in_readiness_and_metrics(deps):
    dead = create_redis(f"redis://127.0.0.1:{free_port()}", wait_s=1)
    try:
        checks = await health.check(
            Deps(settings=deps.settings, redis=dead, pool=deps.pool, http=deps.http)
        )
    finally:
        await dead.aclose()
    assert checks["postgres"] == "ok" and checks["redis"].startswith("error: ConnectionError")
    assert value("skytide_dependency_up", {"dependency": "redis"}) == 0
    await health.check(deps)
    assert value("skytide_dependency_up", {"dependency": "redis"}) == 1


async def test_model_requests_tokens_and_cost_by_organization_and_model(
    deps, settings, clinic, fake_openai, openai_model
):  # noqa: F811
    fake_openai.script(
        tool_call("final_result", reply="Abrimos de 8 a 6.", done=True, handoff=None)
    )
    labels = {"org": clinic, "model": "gpt-4o-mini"}
    chat = Chat(deps, Receptionist(deps, await redis_saver(settings), model=openai_model), clinic)
    await chat.say("¿a qué hora abren?")  # keyword-routed to the knowledge expert: one request
    usage = fake_openai.calls[0]  # the fake counts a token per 4 characters
    assert value("skytide_llm_requests_total", {**labels, "agent": "knowledge"}) == 1
    tokens_in = value("skytide_llm_tokens_total", {**labels, "kind": "input"})
    tokens_out = value("skytide_llm_tokens_total", {**labels, "kind": "output"})
    assert tokens_in > 100 and tokens_out > 0 and usage["model"] == "gpt-4o-mini"
    # gpt-4o-mini at the genai-prices list price: $0.15 and $0.60 per million tokens.
    expected = (tokens_in * 0.15 + tokens_out * 0.60) / 1_000_000
    assert abs(value("skytide_llm_cost_usd_total", labels) - expected) < 1e-9


def test_llm_prices_override_and_unpriced_models():
    assert (
        metrics.cost_usd({"my-llama": (1.0, 2.0)}, "openai", "my-llama", 1_000_000, 500_000) == 2.0
    )
    assert metrics.cost_usd({}, "openai", "my-llama", 1000, 1000) == 0.0  # unknown: no guess
    assert metrics.cost_usd({}, "function", "offline-es", 1000, 1000) == 0.0
    assert metrics.cost_usd({}, "google", "gemini-2.5-flash", 1_000_000, 0) > 0


def test_json_log_lines_carry_the_bound_context_and_drop_it_after():
    formatter = JsonFormatter()

    def line(msg: str) -> dict:
        return json.loads(
            formatter.format(logging.LogRecord("t", logging.INFO, __file__, 1, msg, (), None))
        )

    with bound(org_id="o1", chat_id="573001", turn_id="t1"):
        with bound(tool_call_id="call_1", thread_id=None):
            inner = line("in a tool")
        outer = line("after the tool")
    assert (
        inner["org_id"] == "o1" and inner["tool_call_id"] == "call_1" and "thread_id" not in inner
    )
    assert outer["turn_id"] == "t1" and "tool_call_id" not in outer
    assert "org_id" not in line("outside")


def test_otlp_headers_parse_as_the_opentelemetry_variable_says():
    from ops.tracing import parse_headers

    assert parse_headers("Authorization=Basic%20cGs6c2s=,x-tenant = clinic") == {
        "Authorization": "Basic cGs6c2s=",
        "x-tenant": "clinic",
    }
    assert parse_headers(None) == {} and parse_headers("") == {}
    with pytest.raises(ValueError, match="not key=value"):
        parse_headers("Authorization")


async def test_a_failed_model_run_still_counts_its_requests_and_tokens(
    deps, settings, clinic, fake_openai, openai_model
):  # noqa: F811
    deps.settings = deps.settings.model_copy(update={"router_keywords": False})
    fake_openai.script(text("no sé"), text("tampoco"))  # the router's output is invalid twice
    chat = Chat(deps, Receptionist(deps, await redis_saver(settings), model=openai_model), clinic)
    await chat.say("mmm")
    labels = {"org": clinic, "model": "gpt-4o-mini"}
    assert value("skytide_llm_requests_total", {**labels, "agent": "router"}) == 2
    assert value("skytide_llm_cost_usd_total", labels) > 0
