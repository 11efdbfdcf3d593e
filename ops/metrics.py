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
stage_in_flight = Gauge(
    "skytide_stage_in_flight", "Entries being handled now", ["stage"], registry=REGISTRY)
dependency_errors = Counter(
    "skytide_dependency_errors_total", "Failed calls to a dependency, by dependency and reason",
    ["dependency", "reason"], registry=REGISTRY)
turns = Counter("skytide_turns_total", "Agent turns, by outcome", ["outcome"], registry=REGISTRY)
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
