"""Every Redis key and stream name, built in one place.

Tenant keys carry the organization in a Redis Cluster hash tag (`{org}`), so everything of
one tenant lives in one slot and the Lua scripts that touch several of them stay legal.
"""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType
from typing import Final, Mapping


class Stream(StrEnum):
    """What flows on a tenant's stream: the last part of its key, `{org}:<stream>`."""

    INBOUND = "inbound"
    """Provider events from the ingress: messages, statuses, user events."""
    TURNS = "turns"
    """Turns the batcher made of a chat's burst of messages."""
    OUTBOUND = "outbound"
    """Messages to send: replies, confirmations, reminders."""
    WEBHOOKS = "webhooks"
    """Events for the CRM's endpoints (storage/webhooks.py)."""
    DEAD = "dead"
    """Dead letters: entries a stage gave up on, with their stage and error; no group reads it."""


class Stage(StrEnum):
    """A stage of the pipeline run by consumers/runtime.py: the consumer group that reads its
    stream. The name is also what a dead letter records as its stage (`skytide dlq --stage`)."""

    ENRICH = "enrich"
    AGENT = "agent"
    SENDER = "sender"
    WEBHOOKS = "webhooks"


# The stream each stage reads: the only place a stage and its stream are paired.
STAGE_STREAM: Final[Mapping[Stage, Stream]] = MappingProxyType(
    {
        Stage.ENRICH: Stream.INBOUND,
        Stage.AGENT: Stream.TURNS,
        Stage.SENDER: Stream.OUTBOUND,
        Stage.WEBHOOKS: Stream.WEBHOOKS,
    }
)
# The streams of the customer's conversation, in pipeline order (not the CRM's webhooks).
PIPELINE_STREAMS: Final = (Stream.INBOUND, Stream.TURNS, Stream.OUTBOUND)

# Registry of organizations that have streams; workers discover tenants from it.
ORG_REGISTRY = "skytide:orgs"
# The webhook connections, published for the ingress so that it authenticates webhooks while
# PostgreSQL is down (storage/orgs.py publish_connections): HASH of webhook_token_field and
# webhook_app_id_field -> JSON, rewritten whole by `skytide org add|set` and the registry keeper.
WEBHOOK_CONNECTIONS = "skytide:webhook-connections"
# Set with a TTL of CONNECTIONS_REFRESH_S by the process that last published them: one
# process of the fleet republishes per period, picking up what was changed in the database.
WEBHOOK_CONNECTIONS_FRESH = "skytide:webhook-connections:fresh"


def webhook_token_field(token_sha256: str) -> str:
    """The connections a webhook token opens, under the token's SHA-256 (never the token)."""
    return f"token:{token_sha256}"


def webhook_app_id_field(app_id: str) -> str:
    """The connection of a Gupshup app id (v3 payloads name the app by id)."""
    return f"app-id:{app_id}"


WEBHOOK_PUBLISHED_AT = "published-at"  # a field always present: an empty hash is a lost one
# PostgreSQL's digest of the published connections: it changes when one of them does, so an
# ingress that watches it keeps its cache until then (ingress/orgs.py), and the periodic
# republish is skipped while it is the database's (consumers/registry.py).
WEBHOOK_VERSION = "version"

# The batcher's index of organizations with a chat due (storage/due.py CHATS): ZSET of
# organization ids scored no later than their earliest due chat, and the list that wakes an idle
# batcher.
DUE_ORGS = "skytide:due-orgs"
DUE_WAKE = "skytide:due-wake"


def stream(org: str, stream: Stream) -> str:
    """`{org}:inbound`, `{org}:turns`, `{org}:outbound`, ...: one stream of one organization."""
    return f"{{{org}}}:{stream}"


def ready(stream: Stream) -> str:
    """ZSET of organizations whose `stream` got entries since a worker last looked."""
    return f"skytide:ready:{stream}"


def claimable(stage: Stage) -> str:
    """ZSET of organizations whose stream of `stage` may hold entries pending in its group
    (consumers/reads.py adds them when a read delivers entries, the claim path drops them once
    nothing is pending): the claim checks visit these, not every registered stream. Touched
    alone, never in a script with a tenant's keys, so it needs no hash tag on a Cluster."""
    return f"skytide:claimable:{stage}"


def dead_letters(org: str) -> str:
    return stream(org, Stream.DEAD)


def org_of_key(key: str) -> str:
    """The organization inside a tenant key's hash tag."""
    return key[key.index("{") + 1 : key.index("}")]


def stream_of_key(key: str) -> Stream:
    """The stream of a stream key: `Stream.INBOUND` for `{org}:inbound`."""
    return Stream(key[key.index("}:") + 2 :])


# Ingress dedupe: one key per provider event id (and kind, so a status id never hides a message).
def seen(org: str, kind: str, event_id: str) -> str:
    return f"{{{org}}}:seen:{kind}:{event_id}"


# Batcher state, per chat.
def pending(org: str, chat: str) -> str:
    """ZSET of stored inbound message ids waiting for a turn, scored by the user's send time."""
    return f"{{{org}}}:pending:{chat}"


def batch(org: str, chat: str) -> str:
    """HASH with first_ms, last_ms and count of the pending burst."""
    return f"{{{org}}}:batch:{chat}"


def due(org: str) -> str:
    """ZSET of chats scored by the time their burst is due to become a turn."""
    return f"{{{org}}}:due"


def handed(org: str, chat: str) -> str:
    """SET of message ids already handed to the batcher (makes the hand-off idempotent)."""
    return f"{{{org}}}:handed:{chat}"


def pending_chars(org: str, chat: str) -> str:
    """HASH of each pending message id's length in characters (a turn's size cap)."""
    return f"{{{org}}}:pending-chars:{chat}"


def enriching(org: str, chat: str) -> str:
    """Counter of this chat's inbound entries accepted by ingress and not yet enriched."""
    return f"{{{org}}}:enriching:{chat}"


def origin(org: str, message_id: str) -> str:
    """When a stored inbound message reached ingress, and its trace (storage/origins.py)."""
    return f"{{{org}}}:origin:{message_id}"


def turn_lease(org: str, chat: str) -> str:
    """The id of the turn in flight for a chat; while it exists no other turn starts."""
    return f"{{{org}}}:turn:{chat}"


def turn_done(org: str, turn_id: str) -> str:
    """Set once a turn's replies are on the outbound stream: a redelivered turn replies once."""
    return f"{{{org}}}:turn-done:{turn_id}"


def turn_newer(org: str, chat: str) -> str:
    """Set when a message of the chat lands while its turn is in flight (storage/turns.py): that
    turn, if it has done nothing yet, gives way to one that reads every message."""
    return f"{{{org}}}:turn-newer:{chat}"


def turn_committed(org: str, turn_id: str) -> str:
    """Set once a turn has passed a point of no return (a booking, its replies): from then on
    it is never abandoned, not even when it is redelivered."""
    return f"{{{org}}}:turn-committed:{turn_id}"


# Recent messages of a chat, for the agent's prompt (newest first).
def recent(org: str, chat: str) -> str:
    return f"{{{org}}}:recent:{chat}"


# Development simulator sink: what the bot "sent" to a phone (reminders included), for the tests
# and for a look at what went out; POST /chat reads the turn's replies off the outbound stream.
def simulator_outbox(app: str, phone: str) -> str:
    return f"skytide:sim:{app}:{phone}"


def dev_turn_info(org: str, chat: str) -> str:
    """Development (DEV_CHAT): which expert and tools handled the chat's last turn."""
    return f"{{{org}}}:dev:turn-info:{chat}"


def checkpoint_thread(org: str, chat: str) -> str:
    return f"{org}:{chat}"


# The checkpointer's own keys (langgraph-checkpoint-redis 0.5, shallow saver), named by thread:
# `checkpoint:{thread}:{ns}`, `checkpoint_write:{thread}:{ns}:...`, `write_keys_zset:{thread}:...`
# (and `write_registry:`, `current_checkpoint:` in other savers). Erasure deletes them through the
# library's adelete_thread, then by these prefixes in case the library's search index missed one.
CHECKPOINT_KEY_PREFIXES = (
    "checkpoint:",
    "checkpoint_write:",
    "write_keys_zset:",
    "write_registry:",
    "current_checkpoint:",
)


def is_checkpoint_key_of(key: str, thread: str) -> bool:
    """Whether `key` is one of the checkpointer's keys for `thread`."""
    # The cluster's key-value saver (graph/kv_checkpoints.py) puts the thread in a hash tag.
    return any(
        key.startswith((f"{prefix}{thread}:", f"{prefix}{{{thread}}}:"))
        for prefix in CHECKPOINT_KEY_PREFIXES
    )


# Send pacing, shared by every sender process.
def send_rate(org: str) -> str:
    """GCRA state of the organization's business number (Meta: 80 messages/s by default)."""
    return f"{{{org}}}:rate:send"


def recipient_pace(org: str, phone: str) -> str:
    return f"{{{org}}}:rate:to:{phone}"


def send_cooldown(org: str) -> str:
    """Set after a 429 or error 4001: every sender of the organization pauses until it expires."""
    return f"{{{org}}}:rate:cooldown"


# Status events that matched no outgoing message, kept briefly for a send that goes in doubt
# after they came (storage/send_doubts.py).
def orphan_statuses(org: str, phone: str) -> str:
    """LIST of JSON status events for the chat, oldest first, trimmed and expiring."""
    return f"{{{org}}}:orphan-statuses:{phone}"


# Marks the oldest end of a `recent` list rebuilt from PostgreSQL: the list then holds the whole
# chat, so a short list is complete rather than a cache that lost its older entries.
RECENT_START = "__start__"


# Held slots (storage/holds.py).
def holds(org: str) -> str:
    """ZSET of held slots, member "staff|start_ms|end_ms|chat", scored by when the hold expires."""
    return f"{{{org}}}:holds"


# Scheduled jobs (storage/jobs.py): confirmations and reminders.
# ZSET of organizations scored by their next due job or lease end (ms): storage/due.py JOBS.
JOB_ORGS = "skytide:jobs:orgs"
# Set (with a TTL of REMINDER_RECONCILE_S) after the scheduler rebuilt the jobs from the
# appointments table; missing means "due again", including when Redis came back empty.
JOBS_RECONCILED = "skytide:jobs:reconciled"
JOBS_RECONCILING = "skytide:jobs:reconciling"  # one scheduler of the fleet reconciles at a time


def jobs_due(org: str) -> str:
    """ZSET of job ids scored by when they are due (ms)."""
    return f"{{{org}}}:jobs:due"


def jobs_running(org: str) -> str:
    """ZSET of claimed job ids scored by when their lease ends (ms): then another worker takes them."""
    return f"{{{org}}}:jobs:running"


def jobs_data(org: str) -> str:
    """HASH job id -> the job's JSON."""
    return f"{{{org}}}:jobs:data"


def jobs_failures(org: str) -> str:
    """HASH job id -> how many times it failed on its own (not for a dependency that was down)."""
    return f"{{{org}}}:jobs:failures"


def appointment_jobs(org: str, appointment_id: str) -> str:
    """SET of the job ids planned for one appointment (a cancel or a move drops them)."""
    return f"{{{org}}}:jobs:appt:{appointment_id}"


def reminded(org: str, phone: str) -> str:
    """The appointment a contact was last reminded of: a button answer refers to it."""
    return f"{{{org}}}:reminded:{phone}"


# Retention (consumers/retention.py): set for one interval by the scheduler that runs it, so one
# process per interval does the deleting however many schedulers there are.
RETENTION_RUN = "skytide:retention:run"

DEV_CLOCK_OFFSET = "skytide:dev:clock-offset-ms"  # development only: `skytide clock advance`


# Outgoing webhooks for the CRM (storage/webhooks.py): the stream is stream(org, Stream.WEBHOOKS).
def webhook_emitted(org: str, event_id: str) -> str:
    """Set (with a TTL) when an event went onto the webhooks stream: the same change emitted
    again (a replayed turn, a retried request) is not queued twice."""
    return f"{{{org}}}:webhook-emitted:{event_id}"


def webhook_delivered(org: str, event_id: str) -> str:
    """SET of the endpoint ids that answered 2xx for an event: a retry or a replay of the event
    goes only to the endpoints that did not take it yet."""
    return f"{{{org}}}:webhook-delivered:{event_id}"


# The clinic's team (ingress/operator_api.py).
def staff_answered(org: str, chat: str, waiting_since_ms: int) -> str:
    """Set (for a day) when a person first answered a customer waiting since that moment: the
    time to the first staff answer is observed once, however many messages follow it."""
    return f"{{{org}}}:staff-answered:{chat}:{waiting_since_ms}"
