"""One typed settings object, read from the environment at the edge and passed down.

Only this module reads the environment. Units are in the names (`_s`, `_ms`, `_bytes`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Mapping

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_DIR = Path(__file__).resolve().parent.parent

ALL_ROLES = ("ingress", "enrich", "batcher", "agent", "sender", "scheduler")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=None, extra="ignore", populate_by_name=True, env_ignore_empty=True
    )  # `KEY=` in an env file means unset

    # production (the default, and the image's): every service is configured and nothing falls
    # back to a development stand-in; a missing one stops start-up (startup_problems below).
    # development (`make run`, the tests, the benchmarks): embedded servers, the Gupshup
    # simulator and the offline model fill in for whatever is unset.
    skytide_env: Literal["production", "development"] = "production"

    # Services. Unset means "start the embedded one" in development, a refusal in production.
    # Secrets (and URLs that may carry a password) stay out of repr(): Settings and Deps get
    # printed in tracebacks and test reports.
    redis_url: str | None = Field(None, repr=False)
    # REDIS_URL names one node of a Redis Cluster (the client finds the others): every tenant's
    # keys share its `{org}` slot, streams are read per organization, and conversations are kept
    # by the key-value checkpointer (graph/kv_checkpoints.py). README, "Redis Cluster".
    redis_cluster: bool = False
    database_url: str | None = Field(None, repr=False)
    data_dir: Path = PROJECT_DIR / ".data"
    # Prepared-statement cache per connection; 0 behind Supabase's transaction pooler.
    database_statement_cache_size: int = 100
    database_command_timeout_s: float = 30.0  # one statement; a lock held longer is retried
    database_acquire_timeout_s: float = 10.0  # waiting for a free pooled connection
    # Connections each process may open (its pool). The budget: processes x DATABASE_POOL_MAX
    # plus headroom stays within PostgreSQL's max_connections, or within PgBouncer's
    # max_client_conn behind it (README "Deploy"). 0 kept open: a process started while
    # PostgreSQL is down comes up and serves what needs no database.
    database_pool_min: int = Field(0, ge=0)
    database_pool_max: int = Field(20, ge=1)

    http_host: str = "127.0.0.1"
    http_port: int = 8080
    max_body_bytes: int = 1_000_000
    # An idle keep-alive connection (or one whose headers never end) is closed after this;
    # a request body must arrive within http_read_timeout_s (slow senders hold no slot).
    http_keepalive_timeout_s: float = 15.0
    http_read_timeout_s: float = 10.0
    dev_chat_enabled: bool = Field(False, alias="DEV_CHAT")
    chat_wait_s: float = 60.0

    # Gupshup. Unset means the local simulator sink served by ingress (`make run`).
    gupshup_api_url: str | None = None
    gupshup_timeout_s: float = 15.0
    # Connecting (DNS, TCP, TLS) is bounded on its own: a send that never connected never left,
    # and is retried as an outage of Gupshup.
    gupshup_connect_timeout_s: float = 5.0
    # When a turn starts, the customer's message is marked read with WhatsApp's typing
    # indicator through Gupshup's partner API, for organizations with a Gupshup app id and a
    # `gupshup_partner_token` setting (consumers/typing_indicator.py).
    typing_indicator: bool = True
    gupshup_partner_api_url: str = "https://partner.gupshup.io"
    retry_after_max_s: float = 60.0  # a Retry-After longer than this is not believed
    # A send that may have reached Gupshup without an answer saying so (a read timeout, a dropped
    # connection, a 5xx, a worker killed mid-request) waits this long for a status callback that
    # names it; with none, it is sent once more (docs/gupshup.md, "Sends in doubt"). Gupshup
    # posts status events about 5 s after a send: the grace leaves room for webhook retries.
    send_doubt_grace_s: float = 60.0
    send_doubt_check_s: float = 5.0  # how often the sender looks for doubts whose grace ended
    # Past this age (since the message was first queued) a send still in doubt is given up on:
    # recorded as failed and listed by `skytide dlq unknown` for a person to decide.
    send_doubt_max_s: float = 3600.0

    # Models.
    llm_model: str = "offline"
    openai_api_key: str | None = Field(None, repr=False)
    openai_base_url: str | None = None
    # Hybrid knowledge search (pgvector) when set, e.g. openai:text-embedding-3-small.
    embedding_model: str | None = None
    gemini_api_key: str | None = Field(None, repr=False)
    google_gemini_base_url: str | None = None
    gemini_model: str = "gemini-3.5-flash"
    llm_turn_timeout_s: float = 45.0  # one whole turn: router, expert, tools
    llm_request_limit: int = 8  # model requests per agent run
    llm_tool_calls_limit: int = 8  # tool calls per agent run
    # Tokens one model response may generate: a WhatsApp reply is short, and a server that is
    # not told a limit lets a small model ramble until the turn timeout. Reasoning models count
    # their reasoning in it too: raise it for them.
    llm_max_tokens: int = Field(512, ge=1)
    # A message that plainly asks for one thing is routed by keywords, without a model request
    # (graph/intents.py); false sends every new conversation through the model router.
    router_keywords: bool = True
    memory_messages: int = 12  # last N chat messages the model sees
    summary_every_turns: int = 8  # refresh the thread summary every K turns
    checkpoint_ttl_min: int = 60 * 24 * 30  # conversation state kept 30 days after the last turn
    slot_step_min: int = 30  # granularity of the start times offered
    booking_lead_min: int = 60  # no slot starts sooner than this from now
    # Confirmations and reminders (consumers/scheduler.py).
    scheduler_tick_s: float = 1.0
    job_lease_s: float = 60.0  # a claimed job not acknowledged by then goes to another worker
    job_batch: int = 50  # jobs claimed at once per organization
    # Retention of messages, media and dead letters per organization (consumers/retention.py):
    # one scheduler process enforces it once per this interval.
    retention_every_s: float = 3600.0
    # Reminders are rebuilt from the appointments table this often (and on start, and when
    # Redis came back empty): what Redis lost, or the CRM entered, is planned again.
    reminder_reconcile_s: float = 600.0
    # Development: the process clock follows `skytide clock advance` (see consumers/scheduler).
    dev_clock: bool = False
    # Development and tests: the process clock reads real time plus this many seconds, so a run
    # is placed on a chosen date and hour (tests/clock.py). Never set in production.
    clock_offset_s: float = 0.0
    slot_hold_min: int = 10  # a proposed or picked slot is not offered to another chat meanwhile
    # Outgoing webhooks for the CRM (consumers/webhooks.py, run by the scheduler role): a failed
    # delivery is tried again with exponential backoff from WEBHOOK_RETRY_BASE_S up to
    # WEBHOOK_RETRY_MAX_S, WEBHOOK_RETRY_ATTEMPTS times in all (20 to 40 minutes by default),
    # then dead-lettered (`skytide dlq replay --stage webhooks`).
    webhook_retry_attempts: int = 14
    webhook_retry_base_s: float = 2.0
    webhook_retry_max_s: float = 300.0
    webhook_timeout_s: float = 10.0  # one POST to a receiver
    webhook_concurrency: int = 256  # events in delivery (or waiting to retry) per process

    # Media.
    media_dir: Path = PROJECT_DIR / ".data" / "media"
    supabase_url: str | None = None
    supabase_service_role_key: str | None = Field(None, repr=False)
    supabase_bucket: str = "chat-media"
    media_concurrency: int = 16  # downloads at once per process; a slow file holds one slot only
    media_timeout_s: float = 60.0  # one file, retries included
    media_attempts: int = 3  # on 5xx, 429 and connection errors
    media_retry_base_s: float = 0.5
    media_chunk_bytes: int = 64 * 1024
    # Hosts media links may point at (comma-separated names, *.suffix patterns, IPs or networks):
    # Gupshup's file manager and WhatsApp's media hosts. A private or loopback address is
    # refused unless it is listed itself (tests list their fake's 127.0.0.1).
    media_allowed_hosts: str = "*.gupshup.io,lookaside.fbsbx.com,*.whatsapp.net"

    # Understanding (Gemini). The model name and API version are configuration, not code.
    gemini_api_version: str = "v1beta"  # the Files API is documented on v1beta; v1 also works
    gemini_budget_s: float = 20.0  # per message, retries included; then the placeholder
    gemini_concurrency: int = 32
    # The SDK sends Files API uploads in 8 MB chunks, each copied a few times on the way: a
    # few at once keeps a worker's memory flat when many large files arrive together.
    gemini_upload_concurrency: int = 1
    gemini_retry_base_s: float = 0.5
    gemini_retry_max_s: float = 4.0
    # Inline parts count toward Gemini's 20 MB request limit after base64 (4/3 bigger);
    # larger files go through the Files API.
    gemini_inline_max_bytes: int = 14 * 1024 * 1024
    gemini_max_document_bytes: int = 50 * 1024 * 1024  # Gemini's PDF limit
    gemini_max_output_tokens: int = 1024

    # Debounce (batcher).
    # The quiet window after a fragment ("hola", "una pregunta"): the longest a burst waits for
    # its next message. With DEBOUNCE_ADAPTIVE, a complete message (a question, a clear request,
    # a voice note) waits this times DEBOUNCE_COMPLETE_SHARE, any other this times
    # DEBOUNCE_NEUTRAL_SHARE (graph/bursts.py).
    debounce_seconds: float = 10.0
    debounce_adaptive: bool = True
    debounce_complete_share: float = 0.15
    debounce_neutral_share: float = 0.5
    debounce_max_messages: int = 10
    # One turn's size: at most this many messages and characters (at least one message); the
    # rest of a flood goes to the next turn instead of one enormous prompt.
    # The ingress answers 503 (Gupshup retries) while Redis's used memory is within this share
    # of maxmemory, before Redis itself refuses writes (ingress/headroom.py).
    redis_memory_reserve: float = 0.1
    turn_max_messages: int = 20
    turn_max_chars: int = 4000
    debounce_max_wait_seconds: float = 30.0
    # The batcher is woken as soon as a chat is due; it looks at its index at least this often
    # anyway, and puts back the next thousand organizations' due chats every batcher_sweep_s.
    batcher_tick_s: float = 1.0
    batcher_sweep_s: float = 30.0

    # Consumer-group runtime.
    stage_concurrency: int = 64
    read_count: int = 16
    block_ms: int = 1000
    claim_idle_ms: int = 30_000
    claim_every_s: float = 5.0
    max_deliveries: int = 5
    retry_attempts: int = 4
    retry_base_s: float = 0.5
    retry_max_s: float = 10.0
    drain_timeout_s: float = 20.0
    turn_lease_s: float = 120.0
    # A turn that has done nothing yet (no booking, no reply) when another message of its chat
    # lands is abandoned and formed again with every message (storage/turns.commit).
    turn_restart: bool = True
    # A dependency that is down is waited out this long (backoff up to retry_max_s) without
    # using up an entry's attempts; after that the entry is dead-lettered with the reason.
    dependency_outage_max_s: float = 900.0
    handler_timeout_s: float = 180.0  # one entry's handler; then it is retried (not for ever)
    org_refresh_s: float = 2.0
    # The webhook connections published in Redis for the ingress are rewritten from PostgreSQL
    # this often (and at once by `skytide org add|set`, or when Redis lost them).
    connections_refresh_s: float = 60.0
    # Dead letters hold whole payloads (a replay needs them): each organization keeps at most
    # this many, none older than this (trimmed whenever one is written).
    dead_letter_max_entries: int = 10_000
    dead_letter_retention_days: float = 14.0
    # Stages read the streams signalled as having entries (consumers/reads.py), and the next
    # 100 registered streams per read_sweep_s in case a signal was lost with a worker.
    read_sweep_s: float = 10.0

    # Delivery rules (sender).
    send_rate_per_s: float = 80.0  # Meta's default throughput per business number
    send_burst: int = 8
    recipient_interval_ms: int = 1000  # pace of messages to one person
    cooldown_ms: int = 2000  # pause after a 429 or error 4001 without Retry-After
    window_hours: float = 24.0  # WhatsApp's customer-service window
    window_margin_s: float = 600.0  # webhook latency can make a closed window look open

    # Dedupe windows.
    inbound_dedupe_ttl_s: int = 7 * 24 * 3600

    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"

    # Observability. Every process, the ingress too, serves /metrics, /healthz and /readyz on
    # METRICS_PORT. Unset: no such server; production then refuses the ingress role, and
    # development serves them on HTTP_PORT beside the webhooks.
    metrics_port: int | None = None
    # Estimated cost comes from the genai-prices tables; LLM_PRICES overrides them or prices a
    # model they lack (a self-hosted one): JSON {"model": [input, output]} in US dollars per
    # million tokens, the model named as in LLM_MODEL (without "openai:") or GEMINI_MODEL.
    llm_prices: dict[str, tuple[float, float]] = Field(default_factory=dict)
    # Traces go over OTLP/HTTP when set (Langfuse, Grafana Tempo, an OpenTelemetry collector).
    otel_exporter_otlp_endpoint: str | None = None
    # "key=value,key2=value2", as the OpenTelemetry variable of the same name; Langfuse wants
    # Authorization=Basic <base64 of public_key:secret_key>.
    otel_exporter_otlp_headers: str | None = Field(None, repr=False)  # may carry credentials
    otel_service_name: str = "skytide"

    @property
    def gupshup_simulated(self) -> bool:
        return not self.gupshup_api_url

    @property
    def development(self) -> bool:
        return self.skytide_env == "development"


class ConfigError(Exception):
    """A setting that stops start-up; its str() is the one line the operator reads."""


# Variables that hold a credential. In production one that is present but empty (`KEY=` in an
# env file that was never filled in) is refused: otherwise it reads as unset and the feature it
# guards quietly turns into its fallback.
SECRET_VARIABLES = (
    "OPENAI_API_KEY",
    "GEMINI_API_KEY",
    "SUPABASE_SERVICE_ROLE_KEY",
    "OTEL_EXPORTER_OTLP_HEADERS",
)


def not_set(variable: str, why: str) -> str:
    return f"{variable} is not set: production needs {why}"


def startup_problems(
    settings: Settings, roles: tuple[str, ...] = (), environ: Mapping[str, str] | None = None
) -> list[str]:
    """Why this process may not start with these settings and roles: one line per variable,
    each naming it. None in development, where stand-ins fill the gaps."""
    if settings.development:
        return []
    environ = os.environ if environ is None else environ
    problems = []
    if not settings.redis_url:
        problems.append(
            not_set(
                "REDIS_URL",
                "the Redis 8 (or Redis Stack) URL; an embedded "
                "Redis starts only with SKYTIDE_ENV=development",
            )
        )
    if not settings.database_url:
        problems.append(
            not_set(
                "DATABASE_URL",
                "the PostgreSQL connection string; an embedded "
                "PostgreSQL starts only with SKYTIDE_ENV=development",
            )
        )
    for variable in SECRET_VARIABLES:
        if variable in environ and not environ[variable].strip():
            problems.append(
                f"{variable} is set but empty: give it a value or remove the line "
                "(production refuses an empty secret)"
            )
    if settings.dev_chat_enabled:
        problems.append(
            "DEV_CHAT=true serves the unauthenticated chat page: only with SKYTIDE_ENV=development"
        )
    if settings.dev_clock:
        problems.append(
            "DEV_CLOCK=true lets a Redis key move the clock: only with SKYTIDE_ENV=development"
        )
    if settings.clock_offset_s:
        problems.append(
            "CLOCK_OFFSET_S moves the process clock off real time (tests place a run "
            "on a chosen date): only with SKYTIDE_ENV=development"
        )
    if "sender" in roles and not settings.gupshup_api_url:
        problems.append(
            not_set(
                "GUPSHUP_API_URL",
                "Gupshup's API URL for the sender "
                "(https://api.gupshup.io); the simulator is for SKYTIDE_ENV=development",
            )
        )
    if "agent" in roles:
        problems += model_problems(settings)
    once, named = [], set()
    for problem in problems:  # a variable both empty and needed is named once
        if (variable := problem.split()[0]) not in named:
            named.add(variable)
            once.append(problem)
    return once


def model_problems(settings: Settings) -> list[str]:
    """The language model's settings, as production needs them (graph/models.py builds it)."""
    name = settings.llm_model.strip()
    provider, _, model_name = name.partition(":")
    if name == "offline" or not model_name:
        return [
            f"LLM_MODEL={name or '(empty)'} is the offline development model: set "
            "LLM_MODEL=openai:<model> (offline needs SKYTIDE_ENV=development)"
        ]
    if provider != "openai":
        return [
            f"LLM_MODEL={name}: only openai:<model> is supported (OpenAI, or an "
            "OpenAI-compatible server at OPENAI_BASE_URL)"
        ]
    problems = []
    if not (settings.openai_api_key or settings.openai_base_url):
        problems.append(
            not_set(
                "OPENAI_API_KEY",
                f"it for LLM_MODEL={name}, or OPENAI_BASE_URL "
                "for a self-hosted OpenAI-compatible server",
            )
        )
    if (
        settings.embedding_model
        and not (settings.openai_api_key or settings.openai_base_url)
        and not problems
    ):
        problems.append(
            not_set(
                "OPENAI_API_KEY",
                f"it for EMBEDDING_MODEL={settings.embedding_model}, or OPENAI_BASE_URL",
            )
        )
    return problems


def invalid_lines(error: ValidationError) -> list[str]:
    """One line per variable that Settings() refused, naming it."""
    lines = []
    for each in error.errors():
        name = str(each["loc"][0]) if each.get("loc") else "?"
        field = Settings.model_fields.get(name)
        variable = (field.alias if field and field.alias else name).upper()
        shown = (
            ""
            if field is not None and not field.repr
            else f" (got {str(each.get('input'))[:60]!r})"
        )
        lines.append(f"{variable}: {each['msg']}{shown}")  # a secret's value is never echoed
    return lines or [str(error).splitlines()[0]]
