"""Prometheus metrics, all defined here so names stay consistent across stages.

Labels stay low-cardinality: stage, outcome, kind, organization (a handful per deployment).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

webhook_events = Counter(
    "skytide_webhook_events_total", "Webhook events received, by kind and result",
    ["kind", "result"], registry=REGISTRY)
webhook_rejected = Counter(
    "skytide_webhook_rejected_total", "Webhook requests rejected, by HTTP status",
    ["status"], registry=REGISTRY)
stage_entries = Counter(
    "skytide_stage_entries_total", "Stream entries handled, by stage and outcome",
    ["stage", "outcome"], registry=REGISTRY)
stage_seconds = Histogram(
    "skytide_stage_seconds", "Time to handle one stream entry", ["stage"], registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
stage_claimed = Counter(
    "skytide_stage_claimed_total",
    "Entries claimed back after claim_idle_ms (a worker died, hung or lost track of them)",
    ["stage"], registry=REGISTRY)
stage_in_flight = Gauge(
    "skytide_stage_in_flight", "Entries being handled now", ["stage"], registry=REGISTRY)
dependency_errors = Counter(
    "skytide_dependency_errors_total", "Failed calls to a dependency, by dependency and reason",
    ["dependency", "reason"], registry=REGISTRY)
turns = Counter("skytide_turns_total", "Agent turns, by outcome", ["outcome"], registry=REGISTRY)
bot_resumed = Counter("skytide_bot_resumed_total",
                      "Chats whose bot came back on by itself (organization setting bot_resume_after_hours)",
                      registry=REGISTRY)
messages_sent = Counter(
    "skytide_messages_sent_total", "Outbound messages, by organization and outcome",
    ["org", "outcome"], registry=REGISTRY)
status_events = Counter(
    "skytide_status_events_total", "Message status events, by status and result",
    ["status", "result"], registry=REGISTRY)
send_failures = Counter(
    "skytide_send_failures_total", "Messages reported failed by WhatsApp, by organization and code",
    ["org", "code"], registry=REGISTRY)
recent_cache = Counter(
    "skytide_recent_messages_cache_total", "Recent-message reads, by result (hit or miss)",
    ["result"], registry=REGISTRY)


def render() -> bytes:
    return generate_latest(REGISTRY)

# Media and understanding (enrich).
media_messages = Counter(
    "skytide_media_messages_total", "Inbound media messages, by organization, kind and result",
    ["org", "kind", "result"], registry=REGISTRY)
media_bytes = Counter(
    "skytide_media_bytes_stored_total", "Bytes of media stored, by organization",
    ["org"], registry=REGISTRY)
media_download_seconds = Histogram(
    "skytide_media_download_seconds", "Time to download and store one media file",
    registry=REGISTRY, buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
gemini_seconds = Histogram(
    "skytide_gemini_seconds", "Time of one Gemini understanding call (with its retries)",
    registry=REGISTRY, buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40))
gemini_tokens = Counter(
    "skytide_gemini_tokens_total", "Gemini tokens, by organization and kind (prompt, output)",
    ["org", "kind"], registry=REGISTRY)
gemini_errors = Counter(
    "skytide_gemini_errors_total", "Gemini failures, by organization and reason",
    ["org", "reason"], registry=REGISTRY)

# The conversation (agent).
model_failures = Counter(
    "skytide_model_failures_total", "Agent turns whose model failed, by reason",
    ["reason"], registry=REGISTRY)
prompt_tokens = Histogram(
    "skytide_prompt_tokens", "Prompt tokens per agent turn", registry=REGISTRY,
    buckets=(250, 500, 1000, 2000, 4000, 8000, 16000, 32000))
tool_calls = Counter(
    "skytide_tool_calls_total", "Agent tool calls, by tool and outcome",
    ["tool", "outcome"], registry=REGISTRY)
