"""The conversation state kept per chat by the checkpointer, and what each turn gets at run time.

Only what a receptionist must remember between messages lives in the state (the current flow,
the chosen service, the slots on offer, the customer's name); the chat history itself stays in
the CRM and reaches the model through storage.memory, so the checkpoint stays small.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypedDict

import asyncpg
import redis.asyncio as aioredis

from graph.contract import TurnInput, no_check
from graph.embeddings import Embedder
from ops.deps import Deps
from ops.settings import Settings
from storage.catalog import OrgProfile

Flow = Literal["knowledge", "appointment", "escalation"]
FLOWS: tuple[Flow, ...] = ("knowledge", "appointment", "escalation")


class ConversationState(TypedDict, total=False):
    # This turn (reset by every input).
    texts: list[str]
    turn_id: str
    replies: list[str]
    actions: list[dict[str, Any]]
    escalation: dict[str, Any] | None
    hops: int  # expert-to-expert hand-offs in this turn (bounded)
    handoff: Flow | None  # the expert that must take this same message next
    bookings: int  # booking attempts so far this turn (numbers the idempotency keys)
    # Across turns.
    flow: Flow | None  # the expert that owns the conversation; None: the router decides
    service: dict[str, Any] | None  # {"id", "name", "duration_minutes", "price"}
    window: str | None  # the customer's words for when ("mañana en la tarde")
    proposed_slots: list[
        dict[str, Any]
    ]  # [{"starts_at" (ISO), "staff_id", "label"}], offered by number
    chosen_slot: int | None  # 1-based; set while we wait for the customer's name
    appointments: list[
        dict[str, Any]
    ]  # the contact's appointments as last listed: [{"id", "label"}]
    purpose: str | None  # why they were listed: "ver", "cancelar" or "reprogramar"
    reschedule_of: int | None  # 1-based number in `appointments` being moved
    # The cancellation awaiting the customer's yes: {"n": 1-based number in `appointments`,
    # "turn_id": the turn that asked}. cancel_appointment confirms it only in a later turn, so no
    # model can ask and cancel in one go; any other appointment task clears it.
    cancel_pending: dict[str, Any] | None
    contact_name: str | None
    # The service the customer last asked about ("¿cuánto cuesta el masaje?"): a booking
    # request with no service named is for that one.
    discussed_service: dict[str, Any] | None
    # The last numbered list shown: {"kind": "slots" | "appointments" | "services" | "menu",
    # "items": [{"label", "say"?, "person"?}]}; "la 2" refers to it, whatever it was.
    last_list: dict[str, Any] | None
    summary: str
    turns: int
    last_turn: (
        dict[str, Any] | None
    )  # the previous turn's result, replayed if that turn is redelivered


# Keys that tools may change (everything else is owned by the graph nodes).
TOOL_KEYS = (
    "service",
    "window",
    "proposed_slots",
    "chosen_slot",
    "appointments",
    "purpose",
    "reschedule_of",
    "cancel_pending",
    "contact_name",
    "discussed_service",
    "last_list",
)


@dataclass
class TurnContext:
    """Run-time dependencies of one turn (never checkpointed): LangGraph's `context`."""

    deps: Deps
    turn: TurnInput
    org: OrgProfile
    now: datetime  # local time in the organization's timezone
    recent: list[tuple[str, str]]  # earlier messages, oldest first, this turn's excluded
    contact_name: str | None  # as stored in the CRM when the turn started
    language: str = "es"  # the customer's language this turn (graph/language.py): es, en or pt
    summary: str = ""  # thread_summaries.summary_text as stored when the turn started
    usage_tokens: list[int] = field(default_factory=list)
    embedder: Embedder | None = None  # hybrid knowledge search when configured
    nodes_run: list[str] = field(default_factory=list)  # graph nodes of this turn, in order
    tools_used: list[str] = field(default_factory=list)  # tool calls of this turn, in order


@dataclass
class ToolDeps:
    """What an expert's tools and instructions see through RunContext.deps, flat (as in Pydantic
    AI's bank_support example): the connections, the tenant, the contact, the clock and the
    working state. The organization and the contact come from here only, never from the model.
    Built for each expert run by `for_turn`."""

    pool: asyncpg.Pool
    redis: aioredis.Redis
    settings: Settings
    now_ms: Callable[[], int]  # the clock now (development: moved by `skytide clock advance`)
    now: datetime  # when the turn started, local to the organization: what dates count from
    org: OrgProfile  # the tenant: id, name, timezone
    contact_id: str
    chat: str  # the customer's phone
    identity_id: str
    turn_id: str  # stable across redeliveries: booking idempotency keys derive from it
    texts: list[str]  # this turn's messages
    state: dict[str, Any]  # working copy of TOOL_KEYS, merged into the graph state after the run
    recent: list[tuple[str, str]] = field(default_factory=list)  # for the instructions
    summary: str = ""
    embedder: Embedder | None = None
    language: str = "es"  # the customer's language this turn (graph/language.py)
    # The turn's check before a booking, cancellation or move: raises TurnSuperseded when the
    # customer wrote again first (graph/contract.py, storage/turns.commit).
    before_effect: Callable[[], Awaitable[None]] = no_check
    actions: list[dict[str, Any]] = field(default_factory=list)
    bookings: int = 0  # numbers this turn's booking attempts: idempotency key f"{turn_id}:{n}"
    # Shared with the turn's TurnContext (the same lists), which reports them for the turn.
    tools_used: list[str] = field(default_factory=list)
    usage_tokens: list[int] = field(default_factory=list)

    @classmethod
    def for_turn(
        cls, ctx: TurnContext, state: dict[str, Any], summary: str, bookings: int
    ) -> ToolDeps:
        turn = ctx.turn
        return cls(
            pool=ctx.deps.pool,
            redis=ctx.deps.redis,
            settings=ctx.deps.settings,
            now_ms=ctx.deps.now_ms,
            now=ctx.now,
            org=ctx.org,
            contact_id=turn.contact_id,
            chat=turn.chat,
            identity_id=turn.identity_id,
            turn_id=turn.turn_id,
            texts=turn.texts,
            state=state,
            recent=ctx.recent,
            summary=summary,
            embedder=ctx.embedder,
            language=ctx.language,
            before_effect=turn.before_effect,
            bookings=bookings,
            tools_used=ctx.tools_used,
            usage_tokens=ctx.usage_tokens,
        )

    def act(self, action: str, **data: Any) -> dict[str, Any]:
        """The uniform record of a state-changing tool, returned to the model and logged; also of
        the business facts stated (business_info), so a turn's record shows the hours it gave."""
        record = {"action": action, "data": data}
        self.actions.append(record)
        return record
