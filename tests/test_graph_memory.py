"""Memory: the recent-messages list (Redis first, PostgreSQL fallback), the thread summary, and a
prompt that stays bounded however long the chat gets."""

from __future__ import annotations

import json

import pytest
from pydantic_ai.messages import ModelResponse, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from graph.receptionist import Receptionist
from ops import metrics
from storage import chats, keys, memory
from storage.seed import seed_demo
from tests.graph_helpers import NOW, Chat, redis_saver
from tests import clock


@pytest.fixture
async def clinic(deps):
    deps.clock = NOW.timestamp
    return await seed_demo(deps.pool, today=clock.today())


def cache(result: str) -> float:
    return metrics.recent_cache.labels(result)._value.get()


async def test_recent_messages_from_redis_with_postgres_fallback(deps, clinic):
    phone = "573005550000"
    identity = await chats.upsert_identity(deps.pool, clinic, phone, None)
    for i in range(5):
        await chats.insert_inbound(
            deps.pool,
            org=clinic,
            identity=identity,
            provider_id=f"p{i}",
            message=f"mensaje {i}",
            processed_text=None,
            sent_at_ms=1000 + i,
        )
    misses, hits = cache("miss"), cache("hit")
    first = await memory.recent_messages(deps.redis, deps.pool, clinic, phone, 3)
    assert first == [("user", "mensaje 2"), ("user", "mensaje 3"), ("user", "mensaje 4")]
    assert cache("miss") == misses + 1
    await memory.remember(deps.redis, clinic, phone, "assistant", "respuesta")
    again = await memory.recent_messages(deps.redis, deps.pool, clinic, phone, 10)
    assert again[-1] == ("assistant", "respuesta") and again[0] == ("user", "mensaje 0")
    assert cache("hit") == hits + 1  # a short list rebuilt from PostgreSQL is known complete
    await deps.redis.delete(keys.recent(clinic, phone))  # evicted: rebuilt from the source of truth
    await memory.remember(deps.redis, clinic, phone, "user", "nuevo")  # only in Redis, not stored
    misses = cache("miss")
    assert (await memory.recent_messages(deps.redis, deps.pool, clinic, phone, 3)) == first
    assert cache("miss") == misses + 1


async def test_remember_trims_the_list(deps, clinic):
    for i in range(60):
        await memory.remember(deps.redis, clinic, "57300", "user", f"m{i}", max_items=50)
    assert await deps.redis.llen(keys.recent(clinic, "57300")) == 50
    latest = json.loads(await deps.redis.lindex(keys.recent(clinic, "57300"), 0))
    assert latest == ["user", "m59"]


async def test_summary_refreshed_every_k_turns_and_prompt_stays_bounded(deps, settings, clinic):
    sizes: list[int] = []

    def respond(messages, info: AgentInfo) -> ModelResponse:
        if "[agente:router]" in (info.instructions or ""):
            return ModelResponse(
                parts=[ToolCallPart(info.output_tools[0].name, {"flow": "knowledge"})]
            )
        sizes.append(len(info.instructions or ""))
        return ModelResponse(
            parts=[ToolCallPart(info.output_tools[0].name, {"reply": "Claro. " * 40, "done": True})]
        )

    def summary(messages, info):
        from pydantic_ai.messages import TextPart

        return ModelResponse(parts=[TextPart("La clienta pregunta por tratamientos faciales.")])

    model = FunctionModel(lambda m, i: summary(m, i) if not i.output_tools else respond(m, i))
    deps.settings = settings.model_copy(update={"summary_every_turns": 5, "memory_messages": 6})
    chat = Chat(deps, Receptionist(deps, await redis_saver(settings), model=model), clinic)
    for i in range(20):
        await chat.say(f"pregunta número {i}: " + "¿qué me recomiendan para la piel? " * 10)
    assert await deps.pool.fetchval("select turns_covered from thread_summaries") == 20
    assert "faciales" in await deps.pool.fetchval("select summary_text from thread_summaries")
    # After the memory window fills (6 messages = 3 turns), the prompt no longer grows.
    assert max(sizes[8:]) <= max(sizes[4:8]) + 100


async def test_the_stored_summary_reaches_the_model_every_turn_even_without_a_checkpoint(
    deps, settings, clinic, caplog
):
    seen: list[str] = []

    def respond(messages, info: AgentInfo) -> ModelResponse:
        if "[agente:router]" in (info.instructions or ""):
            return ModelResponse(
                parts=[ToolCallPart(info.output_tools[0].name, {"flow": "knowledge"})]
            )
        seen.append(info.instructions or "")
        return ModelResponse(
            parts=[ToolCallPart(info.output_tools[0].name, {"reply": "Claro.", "done": True})]
        )

    chat = Chat(
        deps, Receptionist(deps, await redis_saver(settings), model=FunctionModel(respond)), clinic
    )
    await chat.say("hmm")
    assert "Resumen de la conversación anterior" not in seen[-1]
    await memory.save_summary(
        deps.pool, clinic, chat.identity.id, "Laura quiere un peeling en abril.", 9
    )
    await deps.redis.delete(
        *[k async for k in deps.redis.scan_iter("checkpoint*")]
    )  # the state expired
    caplog.set_level("INFO", logger="graph.receptionist")
    await chat.say("hmm")
    assert "Laura quiere un peeling en abril." in seen[-1]
    context_line = next(
        r.getMessage() for r in caplog.records if "context: thread=" in r.getMessage()
    )
    assert f"thread={keys.checkpoint_thread(clinic, chat.phone)}" in context_line
    assert (
        "summary_used=True" in context_line
        and "messages=" in context_line
        and "approx_tokens=" in context_line
    )


async def test_first_name_follows_the_contact_name(deps, clinic):
    identity = await chats.upsert_identity(deps.pool, clinic, "573005550001", None)
    await chats.save_contact_name(deps.pool, clinic, identity.contact_id, "  Ana María Pérez ")
    assert (
        await deps.pool.fetchval(
            "select first_name from contacts where id = $1::uuid", identity.contact_id
        )
        == "Ana"
    )
    await deps.pool.execute(
        "update contacts set name = 'Lucía Gómez' where id = $1::uuid", identity.contact_id
    )
    assert (
        await deps.pool.fetchval(
            "select first_name from contacts where id = $1::uuid", identity.contact_id
        )
        == "Lucía"
    )
    await deps.pool.execute(
        "update contacts set first_name = 'Lu' where id = $1::uuid", identity.contact_id
    )
    assert (
        await deps.pool.fetchval(
            "select first_name from contacts where id = $1::uuid", identity.contact_id
        )
        == "Lu"
    )  # set on purpose: kept
