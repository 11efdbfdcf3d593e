"""Prometheus metrics, all defined here so names stay consistent across stages.

Every process serves them: the ingress role on HTTP_PORT's /metrics, any other process on
METRICS_PORT (ops/metrics_server.py). The catalogue, with the questions each answers, is
docs/metrics.md. Labels stay bounded: stage, outcome, kind, model, and the organization (one
value per tenant, a handful to a few hundred per deployment); never a phone, a chat or an id.

Gauges that describe shared state (stream length, lag, dependency health) are sampled when
Prometheus scrapes, by the samplers the entry point registers: no work between scrapes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)  # CPU, memory, open files of this process
PlatformCollector(registry=REGISTRY)

# Latency buckets in seconds, from a Redis round trip to a slow model turn.
FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)
SLOW = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)

roles = Gauge(
    "skytide_process_roles", "1 for each role this process runs", ["role"], registry=REGISTRY
)

# Ingress.
webhook_events = Counter(
    "skytide_webhook_events_total",
    "Webhook events received, by organization, kind and result",
    ["org", "kind", "result"],
    registry=REGISTRY,
)
org_lookups = Counter(
    "skytide_org_lookups_total",
    "Webhook token and app lookups, answered from the ingress cache (hit) or asked of"
    " PostgreSQL or Redis (miss)",
    ["result"],
    registry=REGISTRY,
)
webhook_rejected = Counter(
    "skytide_webhook_rejected_total",
    "Webhook requests rejected, by HTTP status",
    ["status"],
    registry=REGISTRY,
)

# The consumer-group runtime, per stage (enrich, agent, sender).
stage_entries = Counter(
    "skytide_stage_entries_total",
    "Stream entries handled, by stage and outcome",
    ["stage", "outcome"],
    registry=REGISTRY,
)
stage_seconds = Histogram(
    "skytide_stage_seconds",
    "Time to handle one stream entry",
    ["stage"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
stage_latency = Histogram(
    "skytide_stage_latency_seconds",
    "Time from an entry's arrival on its stream to its acknowledgement (waiting plus handling)",
    ["stage"],
    registry=REGISTRY,
    buckets=SLOW,
)
stage_claimed = Counter(
    "skytide_stage_claimed_total",
    "Entries claimed back after claim_idle_ms (a worker died, hung or lost track of them)",
    ["stage"],
    registry=REGISTRY,
)
stage_in_flight = Gauge(
    "skytide_stage_in_flight", "Entries being handled now", ["stage"], registry=REGISTRY
)
end_to_end = Histogram(
    "skytide_end_to_end_seconds",
    "From the customer's webhook reaching ingress to Gupshup accepting the reply",
    registry=REGISTRY,
    buckets=(0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 120, 300),
)

# Streams, sampled at scrape time.
stream_length = Gauge(
    "skytide_stream_length", "Entries in a stream (XLEN)", ["org", "stream"], registry=REGISTRY
)
stream_pending = Gauge(
    "skytide_stream_pending",
    "Entries read by a stage and not yet acknowledged",
    ["org", "stage"],
    registry=REGISTRY,
)
stream_lag = Gauge(
    "skytide_stream_lag",
    "Entries on a stage's stream not yet read by it",
    ["org", "stage"],
    registry=REGISTRY,
)
dead_letters = Gauge(
    "skytide_dead_letters",
    "Entries in an organization's dead-letter stream",
    ["org"],
    registry=REGISTRY,
)

# Dependencies.
dependency_errors = Counter(
    "skytide_dependency_errors_total",
    "Failed calls to a dependency, by dependency and reason",
    ["dependency", "reason"],
    registry=REGISTRY,
)
dependency_up = Gauge(
    "skytide_dependency_up",
    "1 if the dependency answered the last scrape's check, else 0",
    ["dependency"],
    registry=REGISTRY,
)
redis_seconds = Histogram(
    "skytide_redis_command_seconds",
    "Redis command round trip (blocking reads excluded)",
    ["command"],
    registry=REGISTRY,
    buckets=FAST,
)

# Batching and turns (batcher, agent).
turns = Counter("skytide_turns_total", "Agent turns, by outcome", ["outcome"], registry=REGISTRY)
typing_indicators = Counter(
    "skytide_typing_indicators_total",
    "Read receipts with a typing indicator asked of Gupshup when a turn starts, by outcome",
    ["outcome"],
    registry=REGISTRY,
)
turns_restarted = Counter(
    "skytide_turns_restarted_total",
    "Turns abandoned before any effect because the customer kept writing, by where they noticed",
    ["at"],
    registry=REGISTRY,
)
turn_seconds = Histogram(
    "skytide_turn_seconds", "Time of one agent turn (graph run)", registry=REGISTRY, buckets=SLOW
)
turn_messages = Histogram(
    "skytide_turn_messages",
    "Customer messages batched into one turn (the debounce burst)",
    registry=REGISTRY,
    buckets=(1, 2, 3, 4, 5, 7, 10, 15, 20),
)
processed_text_chars = Histogram(
    "skytide_processed_text_chars",
    "Length of a stored message's processed_text",
    registry=REGISTRY,
    buckets=(10, 25, 50, 100, 200, 400, 800, 1600, 3200, 6400),
)
bot_resumed = Counter(
    "skytide_bot_resumed_total",
    "Chats whose bot came back on by itself (organization setting bot_resume_after_hours)",
    registry=REGISTRY,
)

# Delivery (sender, status events).
messages_sent = Counter(
    "skytide_messages_sent_total",
    "Outbound messages, by organization and outcome",
    ["org", "outcome"],
    registry=REGISTRY,
)
# in_doubt: the request may have reached Gupshup without an answer saying so; confirmed: a status
# event named it (it did arrive); resent: no evidence within SEND_DOUBT_GRACE_S, sent once more;
# given_up: still in doubt after SEND_DOUBT_MAX_S, listed by `skytide dlq unknown`.
unknown_sends = Counter(
    "skytide_unknown_sends_total",
    "Sends in doubt and how each was settled, by organization",
    ["org", "outcome"],
    registry=REGISTRY,
)
status_events = Counter(
    "skytide_status_events_total",
    "Message status events, by status and result",
    ["status", "result"],
    registry=REGISTRY,
)
send_failures = Counter(
    "skytide_send_failures_total",
    "Messages reported failed by WhatsApp, by organization and code",
    ["org", "code"],
    registry=REGISTRY,
)
recent_cache = Counter(
    "skytide_recent_messages_cache_total",
    "Recent-message reads, by result (hit or miss)",
    ["result"],
    registry=REGISTRY,
)

# Media and understanding (enrich).
media_messages = Counter(
    "skytide_media_messages_total",
    "Inbound media messages, by organization, kind and result",
    ["org", "kind", "result"],
    registry=REGISTRY,
)
media_bytes = Counter(
    "skytide_media_bytes_stored_total",
    "Bytes of media stored, by organization",
    ["org"],
    registry=REGISTRY,
)
media_download_seconds = Histogram(
    "skytide_media_download_seconds",
    "Time to download and store one media file",
    registry=REGISTRY,
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
gemini_seconds = Histogram(
    "skytide_gemini_seconds",
    "Time of one Gemini understanding call (with its retries)",
    registry=REGISTRY,
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40),
)
gemini_requests = Counter(
    "skytide_gemini_requests_total",
    "Gemini calls answered, by organization and model",
    ["org", "model"],
    registry=REGISTRY,
)
gemini_tokens = Counter(
    "skytide_gemini_tokens_total",
    "Gemini tokens, by organization and kind (prompt, output)",
    ["org", "kind"],
    registry=REGISTRY,
)
gemini_cost = Counter(
    "skytide_gemini_cost_usd_total",
    "Estimated Gemini cost in US dollars (LLM_PRICES)",
    ["org", "model"],
    registry=REGISTRY,
)
gemini_errors = Counter(
    "skytide_gemini_errors_total",
    "Gemini failures, by organization and reason",
    ["org", "reason"],
    registry=REGISTRY,
)

# The conversation (agent).
llm_requests = Counter(
    "skytide_llm_requests_total",
    "Model requests, by organization, model and agent",
    ["org", "model", "agent"],
    registry=REGISTRY,
)
llm_seconds = Histogram(
    "skytide_llm_run_seconds",
    "Time of one agent run (its model requests and tools), by agent",
    ["agent"],
    registry=REGISTRY,
    buckets=SLOW,
)
llm_tokens = Counter(
    "skytide_llm_tokens_total",
    "Model tokens, by organization, model and kind (input, output)",
    ["org", "model", "kind"],
    registry=REGISTRY,
)
llm_cost = Counter(
    "skytide_llm_cost_usd_total",
    "Estimated model cost in US dollars (LLM_PRICES)",
    ["org", "model"],
    registry=REGISTRY,
)
model_failures = Counter(
    "skytide_model_failures_total",
    "Agent turns whose model failed, by reason",
    ["reason"],
    registry=REGISTRY,
)
prompt_tokens = Histogram(
    "skytide_prompt_tokens",
    "Prompt tokens per agent turn",
    registry=REGISTRY,
    buckets=(250, 500, 1000, 2000, 4000, 8000, 16000, 32000),
)
tool_calls = Counter(
    "skytide_tool_calls_total",
    "Agent tool calls, by tool and outcome",
    ["tool", "outcome"],
    registry=REGISTRY,
)
loop_guard = Counter(
    "skytide_loop_guard_total",
    "Replies replaced because they repeated the previous question, list or words, "
    "by the flow that repeated itself",
    ["flow"],
    registry=REGISTRY,
)


def cost_usd(
    prices: dict[str, tuple[float, float]],
    provider: str,
    model: str,
    input_tokens: int,
    output_tokens: int,
) -> float:
    """Estimated dollars: LLM_PRICES (per million input, output tokens) if it names the model,
    else the genai-prices tables; 0 for a model neither knows (a self-hosted one)."""
    if model in prices:
        price_in, price_out = prices[model]
        return (input_tokens * price_in + output_tokens * price_out) / 1_000_000
    from genai_prices import Usage, calc_price

    try:
        price = calc_price(
            Usage(input_tokens=input_tokens, output_tokens=output_tokens),
            model_ref=model,
            provider_id=provider,
        )
    except LookupError:
        return 0.0
    return float(price.total_price)


def record_llm_run(
    prices: dict[str, tuple[float, float]],
    *,
    org: str,
    provider: str,
    model: str,
    agent: str,
    seconds: float,
    requests: int,
    input_tokens: int,
    output_tokens: int,
) -> None:
    """One Pydantic AI agent run: its requests, tokens, estimated cost and duration.
    provider and model as Pydantic AI names them ("openai", "gpt-4o-mini")."""
    llm_requests.labels(org, model, agent).inc(requests)
    llm_tokens.labels(org, model, "input").inc(input_tokens)
    llm_tokens.labels(org, model, "output").inc(output_tokens)
    llm_cost.labels(org, model).inc(cost_usd(prices, provider, model, input_tokens, output_tokens))
    llm_seconds.labels(agent).observe(seconds)


def record_gemini(
    prices: dict[str, tuple[float, float]],
    *,
    org: str,
    model: str,
    prompt_tokens: int,
    output_tokens: int,
) -> None:
    gemini_requests.labels(org, model).inc()
    gemini_tokens.labels(org, "prompt").inc(prompt_tokens)
    gemini_tokens.labels(org, "output").inc(output_tokens)
    gemini_cost.labels(org, model).inc(
        cost_usd(prices, "google", model, prompt_tokens, output_tokens)
    )


# ---- scrape-time samplers --------------------------------------------------------------------

Sampler = Callable[[], Awaitable[None]]
_samplers: list[Sampler] = []
SAMPLE_TIMEOUT_S = 2.0  # a scrape must answer even when Redis or PostgreSQL does not


def add_sampler(sampler: Sampler) -> Callable[[], None]:
    """Run `sampler` before each scrape; returns the function that removes it."""
    _samplers.append(sampler)
    return lambda: _samplers.remove(sampler) if sampler in _samplers else None


async def sample() -> None:
    for sampler in list(_samplers):
        try:
            await asyncio.wait_for(sampler(), SAMPLE_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - a scrape still answers with what it has
            log.warning(
                "metrics sampler %s failed: %r", getattr(sampler, "__qualname__", sampler), exc
            )


def render() -> bytes:
    return generate_latest(REGISTRY)


async def render_sampled() -> bytes:
    await sample()
    return render()


# Label values that come from a provider's payload are mapped onto a fixed set: a sender that
# makes up statuses or error codes must not be able to add series to /metrics without limit.
KNOWN_STATUSES = frozenset(
    {"enqueued", "failed", "sent", "delivered", "read", "deleted", "mismatch"}
)
# Gupshup's failure codes and the Meta codes the sender acts on (docs/gupshup.md).
KNOWN_FAILURE_CODES = frozenset(
    {
        500,
        1001,
        1002,
        1003,
        1004,
        1005,
        1006,
        1007,
        1008,
        1010,
        1011,
        1012,
        4001,
        4002,
        4003,
        4004,
        4005,
        130429,
        131026,
        131047,
        131056,
    }
)


def status_label(status: str) -> str:
    return status if status in KNOWN_STATUSES else "other"


def failure_code_label(code: int | None) -> str:
    if code is None:
        return "unknown"
    return str(code) if code in KNOWN_FAILURE_CODES else "other"


# Confirmations and reminders (consumers/scheduler.py) and the answers to them.
scheduled_jobs = Counter(
    "skytide_scheduled_jobs_total",
    "Scheduled jobs run, by organization, kind (confirmation, reminder) and outcome "
    "(sent, skipped_*, postponed_quiet, failed, waiting_dependency, dropped_failing)",
    ["org", "kind", "outcome"],
    registry=REGISTRY,
)
reminders_sent = Counter(
    "skytide_reminders_sent_total",
    "Reminders handed to the sender, by organization and form "
    "(interactive inside the 24-hour window, template outside it)",
    ["org", "form"],
    registry=REGISTRY,
)
reminders_reconciled = Counter(
    "skytide_reminders_reconciled_total",
    "Upcoming appointments whose reminders the scheduler "
    "planned again from PostgreSQL (Redis had none: restarted empty, or entered in the CRM)",
    registry=REGISTRY,
)
attendance = Gauge(
    "skytide_appointment_attendance",
    "Appointments of the last 30 days by organization and outcome: "
    "completed and no_show as the CRM marked them, confirmed_by_contact from a reminder's button "
    "(sampled at scrape time by a scheduler process)",
    ["org", "outcome"],
    registry=REGISTRY,
)
reminder_answers = Counter(
    "skytide_reminder_answers_total",
    "Answers to a reminder's buttons, by organization and "
    "answer (confirmed, cancel_asked, cancelled, reschedule_asked, rescheduled)",
    ["org", "answer"],
    registry=REGISTRY,
)

# Outages (ops/outages.py): a dependency down is waited out, not blamed on the entry.
debounce_window = Histogram(
    "skytide_debounce_window_seconds",
    "The quiet window chosen after an inbound message, by what "
    "the message read as (complete, neutral, fragment)",
    ["completeness"],
    buckets=(0.1, 0.5, 1, 1.5, 2, 3, 5, 8, 10, 15, 30),
    registry=REGISTRY,
)

redis_memory_full = Gauge(
    "skytide_redis_memory_full",
    "1 while the ingress refuses webhooks because Redis's used "
    "memory is within REDIS_MEMORY_RESERVE of maxmemory",
    registry=REGISTRY,
)

dependency_outage = Gauge(
    "skytide_dependency_outage",
    "1 while the stages wait out an outage of a dependency "
    "(postgres, redis, gupshup, model), by dependency",
    ["dependency"],
    registry=REGISTRY,
)
outage_retries = Counter(
    "skytide_outage_retries_total",
    "Entries tried again because a dependency was down (their attempts are not used up)",
    ["stage", "dependency"],
    registry=REGISTRY,
)
handler_timeouts = Counter(
    "skytide_handler_timeouts_total",
    "Entries whose handler ran past the stage's time limit",
    ["stage"],
    registry=REGISTRY,
)

# Outgoing webhooks for the CRM (consumers/webhooks.py).
webhook_deliveries = Counter(
    "skytide_webhook_deliveries_total",
    "Webhook deliveries to the CRM's endpoints, by outcome: delivered (2xx), failed (an attempt "
    "that will be tried again), dead_lettered (the retry budget ran out), no_endpoint (the "
    "organization has none)",
    ["outcome"],
    registry=REGISTRY,
)
webhook_delivery_seconds = Histogram(
    "skytide_webhook_delivery_seconds",
    "Time from an event's emission to its delivery (2xx)",
    registry=REGISTRY,
    buckets=SLOW,
)

# The clinic's team (storage/inbox.py, ingress/operator_api.py).
chats_waiting_for_person = Gauge(
    "skytide_chats_waiting_for_person",
    "Customer chats a person must answer (the bot paused: escalated or taken over, and the "
    "customer's last words unanswered), by organization (sampled at scrape time by a scheduler)",
    ["org"],
    registry=REGISTRY,
)
longest_wait_for_person = Gauge(
    "skytide_longest_wait_for_person_seconds",
    "How long the longest-waiting of those customers has waited, by organization",
    ["org"],
    registry=REGISTRY,
)
staff_first_answer = Histogram(
    "skytide_staff_first_answer_seconds",
    "Time from a waiting customer's first unanswered message to the first answer a person of "
    "the clinic sent through the operator API, in chats where the bot was paused",
    registry=REGISTRY,
    buckets=(30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400),
)
