"""Tenant isolation, from the outside: a tool call carrying another organization's or contact's
ids, a dead letter moved onto another organization's stream, and a reading of every SQL
statement in storage/ for its organization filter. (A webhook for one app carrying another
app's token: tests/test_webhook_hostile.py.)"""

from __future__ import annotations

import ast
import asyncio
import re
from datetime import datetime
from pathlib import Path

import pytest
from pydantic_ai.messages import (
    ModelResponse,
    RetryPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

from consumers.runtime import StageConfig, StageWorker
from graph.receptionist import Receptionist
from storage import appointments, catalog, chats, dead_letters, keys
from storage.events import InboundMessage, StatusEvent, encode
from storage.seed import seed_demo
from storage.keys import Stage, Stream
from tests.conftest import eventually
from tests.graph_helpers import BOGOTA, NOW, Chat, redis_saver
from tests import clock

STORAGE = Path(__file__).resolve().parent.parent / "storage"


@pytest.fixture
async def two_orgs(deps, make_org):
    """The demo clinic (the attacker's chat lives there) and another organization with a
    customer and a booked appointment (the victim)."""
    deps.clock = NOW.timestamp
    clinic = await seed_demo(deps.pool, today=clock.today())
    other = await make_org(catalog=True)
    victim = (await chats.upsert_identity(deps.pool, other, "579000000001", None)).contact_id
    facial = await catalog.find_service(deps.pool, other, "limpieza facial")
    theirs = await appointments.book(
        deps.pool,
        org=other,
        contact_id=victim,
        service=facial,
        starts_at=datetime(2027, 3, 4, 9, tzinfo=BOGOTA),
        idempotency_key="victim:1",
    )
    return clinic, other, victim, theirs


def plan_model(plan: list[tuple[str, dict]]) -> FunctionModel:
    """The appointment agent follows `plan` one step per tool answer (returned or refused)."""

    def respond(messages, info: AgentInfo) -> ModelResponse:
        agent = re.search(r"\[agente:(\w+)\]", info.instructions or "").group(1)
        if agent == "router":
            return ModelResponse(
                parts=[ToolCallPart(info.output_tools[0].name, {"flow": "appointment"})]
            )
        answers = [
            p
            for m in messages
            for p in getattr(m, "parts", [])
            if isinstance(p, (ToolReturnPart, RetryPromptPart))
        ]
        name, args = plan[min(len(answers), len(plan) - 1)]
        if name == "final":
            return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, args)])
        return ModelResponse(parts=[ToolCallPart(name, args)] if name else [TextPart("...")])

    return FunctionModel(respond)


async def test_tool_calls_carrying_another_organizations_ids_touch_nothing(
    deps, settings, two_orgs
):
    clinic, other, victim, theirs = two_orgs
    foreign = {"organization_id": other, "org": other, "contact_id": victim, "org_id": other}
    plan = [
        ("list_my_appointments", {"purpose": "cancelar", **foreign}),
        ("list_my_appointments", {"purpose": "cancelar"}),
        ("cancel_appointment", {"appointment": theirs.id, "confirmed": True, **foreign}),
        ("cancel_appointment", {"appointment": 1, "confirmed": True, **foreign}),
        ("cancel_appointment", {"appointment": 1, "confirmed": True}),
        ("final", {"reply": "No encuentro citas a tu nombre.", "done": True}),
    ]
    calls = _tool_calls()
    chat = Chat(
        deps, Receptionist(deps, await redis_saver(settings), model=plan_model(plan)), clinic
    )
    for text in ("quiero cancelar mi cita", "sí, cancélala"):
        await chat.say(text)
    [row] = await deps.pool.fetch(
        "select organization_id::text, contact_id::text, status, starts_at from appointments"
    )
    assert tuple(row) == (other, victim, "confirmed", theirs.starts_at)
    made = {k: v - calls.get(k, 0) for k, v in _tool_calls().items() if v > calls.get(k, 0)}
    # The tools ran, in the clinic's scope: the listing was empty and nothing could be cancelled.
    assert made.get(("list_my_appointments", "ok")), made
    assert made.get(("cancel_appointment", "retry")), made


def _tool_calls() -> dict[tuple[str, str], float]:
    from ops import metrics

    return {
        (s.labels["tool"], s.labels["outcome"]): s.value
        for m in metrics.REGISTRY.collect()
        if m.name == "skytide_tool_calls"
        for s in m.samples
        if s.name.endswith("_total")
    }


async def _dead_letter_of(deps, org: str, stream: str, event) -> dead_letters.DeadLetter:
    """A dead letter in `org`'s dead-letter stream, as the runtime writes one, naming `stream`."""
    fields = {
        "stage": "enrich",
        "stream": stream,
        "error": "x",
        "deliveries": "5",
        "failed_at_ms": "1",
        **{f"payload.{k}": v for k, v in encode(event).items()},
    }
    entry_id = await deps.redis.xadd(keys.dead_letters(org), fields)
    return await dead_letters.get_letter(deps.redis, f"{org}/{entry_id}")


async def test_a_dead_letter_cannot_be_replayed_onto_another_organizations_stream(deps):
    a, b = "org-a", "org-b"
    await deps.redis.sadd(keys.ORG_REGISTRY, a, b)
    event = StatusEvent(org=a, provider_id="p1", status="read", at_ms=1)
    letter = await _dead_letter_of(deps, a, keys.stream(b, Stream.INBOUND), event)
    with pytest.raises(ValueError, match="organization"):
        await dead_letters.replay(deps.redis, letter)
    assert await deps.redis.xlen(keys.stream(b, Stream.INBOUND)) == 0
    assert await deps.redis.xlen(keys.dead_letters(a)) == 1  # kept, to be looked at


async def test_a_replayed_message_naming_another_organization_touches_none_of_its_keys(deps):
    a, b = "org-a", "org-b"
    await deps.redis.sadd(keys.ORG_REGISTRY, a, b)
    event = InboundMessage(
        org=b,
        provider_id="m1",
        phone="573001112233",
        kind="text",
        text="hola",
        sent_at_ms=1,
        received_at_ms=1,
    )
    letter = await _dead_letter_of(deps, a, keys.stream(a, Stream.INBOUND), event)
    with pytest.raises(ValueError, match="organization"):
        await dead_letters.replay_letter(deps.redis, letter)
    assert not await deps.redis.exists(keys.enriching(b, "573001112233"))
    assert await deps.redis.xlen(keys.stream(a, Stream.INBOUND)) == 0


async def test_an_entry_naming_another_organization_is_not_processed_on_this_ones_stream(deps):
    """A payload edited to name organization B, put back on A's stream (by a replay or by hand):
    the stage refuses it instead of acting on B's data with A's stream."""
    a, b = "org-a", "org-b"
    handled: list[str] = []

    async def handler(event, delivery):
        handled.append(event.org)

    worker = StageWorker(
        deps.redis,
        StageConfig(stage=Stage.ENRICH, block_ms=100, claim_every_s=0.2, org_refresh_s=0.1),
        handler,
        "c1",
    )
    await deps.redis.sadd(keys.ORG_REGISTRY, a)
    await deps.redis.xadd(
        keys.stream(a, Stream.INBOUND),
        encode(StatusEvent(org=b, provider_id="p1", status="read", at_ms=1)),
    )
    await deps.redis.xadd(
        keys.stream(a, Stream.INBOUND),
        encode(StatusEvent(org=a, provider_id="p2", status="read", at_ms=1)),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await eventually(lambda: _length(deps.redis, keys.dead_letters(a)))
        await eventually(lambda: _true(handled))
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert handled == [a]
    [(_, letter)] = await deps.redis.xrange(keys.dead_letters(a))
    assert "org-b" in letter["error"]


async def _length(redis, key: str) -> int:
    return await redis.xlen(key)


async def _true(value) -> bool:
    return bool(value)


# ---- every SQL statement in storage/ --------------------------------------------------------

SQL_START = re.compile(r"^\s*(select|insert|update|delete|with)\b", re.I)
# Statements that need no organization filter, and why. Anything else must name the
# organization (organization_id, or organizations.id itself).
NOT_TENANT_DATA = {
    "select pg_advisory_xact_lock(726451)": "the migration lock",
    "select 1 from schema_migrations": "the migration ledger",
    "select pg_advisory_xact_lock(hashtext('catalog:' || $1))": "a lock keyed by the org id itself",
    "select name from schema_migrations": "the migration ledger",
    "insert into schema_migrations": "the migration ledger",
    "insert into organizations": "creates the organization",
    "select id::text, settings from organizations where settings ?|": "retention finds the organizations that set one (each then by its own id)",
    "select id::text from organizations": "every organization's id, to sweep the scheduler's due index (each then by its own keys)",
    "select webhook_token from platform_connections where gupshup_app_name": "the operator's own look-up of an app's token (skytide org token)",
    # Finding the tenant: these are how an organization is found in the first place.
    "from platform_connections c join organizations o": "finds the connection, hence the org",
    # Sender bookkeeping on a row id that an org-filtered insert of the same flow returned.
    "update chat_messages set send_started_at": "row id from outbound.outgoing_row (org-filtered)",
    "update chat_messages set provider_message_id": "row id from outbound.outgoing_row",
    "update chat_messages set message_status = 'failed'": "row id from outbound.outgoing_row",
    # The doubt checker looks across every organization at once (one query per tick, not one
    # per tenant); each row it takes goes back to its own organization's stream.
    "update chat_messages set send_checked_at = now() where id in (": "send_doubts.due_for_check",
    # Each worker reads the identity change log of every organization once a second (ids of
    # changed rows only, no tenant data), and trims it (storage/identity_cache.py).
    "from identity_changes where changed_at >": "identity_cache.poll",
    "delete from identity_changes where changed_at <": "identity_cache.poll trims the log",
}


def sql_statements() -> list[tuple[str, int, str]]:
    """(file, line, text) of every statement in storage/*.py that starts like SQL: f-strings
    read with their {placeholders} as written, `_FRAGMENT + " where ..."` read whole."""
    found = []
    for path in sorted(STORAGE.glob("*.py")):
        tree = ast.parse(path.read_text())
        fragments = {
            t.id: n.value.value
            for n in tree.body
            if isinstance(n, ast.Assign)
            for t in n.targets
            if isinstance(t, ast.Name)
            and isinstance(n.value, ast.Constant)
            and isinstance(n.value.value, str)
        }
        used = {
            n.id
            for n in ast.walk(tree)
            if isinstance(n, ast.BinOp)
            for n in (n.left, n.right)
            if isinstance(n, ast.Name)
        }
        parts: set[int] = set()  # pieces of a larger expression: read as part of it
        for node in ast.walk(tree):
            if isinstance(node, (ast.JoinedStr, ast.BinOp)):
                parts.update(id(child) for child in ast.walk(node) if child is not node)
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id in used for t in node.targets
            ):
                parts.add(id(node.value))  # a fragment, read where it is used
        for node in ast.walk(tree):
            if id(node) in parts or isinstance(node, ast.Name):
                continue
            text = _text(node, fragments)
            if text and SQL_START.match(text):
                found.append((path.name, node.lineno, " ".join(text.split())))
    return found


def _text(node: ast.AST, fragments: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return fragments.get(node.id)
    if isinstance(node, ast.JoinedStr):
        return "".join(
            v.value if isinstance(v, ast.Constant) else "{" + ast.unparse(v.value) + "}"
            for v in node.values
        )
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _text(node.left, fragments), _text(node.right, fragments)
        return left + right if left is not None and right is not None else None
    return None


def test_every_sql_statement_in_storage_filters_by_organization():
    statements = sql_statements()
    assert len(statements) > 40  # the reader found them
    missing = []
    for name, line, text in statements:
        lower = text.lower()
        if "organization_id" in lower or re.search(r"\borganizations\b.*\bwhere\s+id\s*=", lower):
            continue
        if any(allowed.lower() in lower for allowed in NOT_TENANT_DATA):
            continue
        missing.append(f"{name}:{line}: {text[:110]}")
    assert not missing, "statements without an organization filter:\n" + "\n".join(missing)
