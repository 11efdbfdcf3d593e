"""Agent-turn benchmarks: graph overhead without model time, prompt size over a long chat, and
turn concurrency against a fake OpenAI server that answers after 1 s.

python -m bench.agent

Starts its own embedded Redis and PostgreSQL, migrates and seeds the demo clinic. Prints figures
and ratios against a bare LangGraph graph with an in-memory saver measured in the same run;
asserts nothing.
"""

from __future__ import annotations

import asyncio
import resource
import sys
import tempfile
import time
import uuid
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, TypedDict

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from graph import offline
from graph.checkpoints import open_checkpointer
from graph.contract import TurnInput, TurnResult
from graph.experts import ExpertReply
from graph.models import build_model
from graph.receptionist import Receptionist
from ops.app.wiring import open_deps, redis_url, run_async, settle_heap
from ops.deps import Deps
from ops.settings import Settings
from ops.system import services
from storage import chats, memory
from storage.chats import Identity
from storage.db import migrate
from storage.seed import demo_today, seed_demo
from tests.fakes.openai import FakeOpenAI, tool_call

OVERHEAD_TURNS = 200
CONVERSATION_TURNS = 20
CONCURRENT_TURNS = 300


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Bare(TypedDict, total=False):
    texts: list[str]
    replies: list[str]


async def bare_turns(n: int) -> list[float]:
    """The floor: a one-node LangGraph graph with an in-memory checkpointer."""

    async def respond(state: Bare) -> Bare:
        return {"replies": ["ok"]}

    builder = StateGraph(Bare)
    builder.add_node("respond", respond)
    builder.add_edge(START, "respond")
    builder.add_edge("respond", END)
    graph = builder.compile(checkpointer=InMemorySaver())
    times = []
    for i in range(n):
        started = time.perf_counter()
        await graph.ainvoke({"texts": ["hola"]}, {"configurable": {"thread_id": f"t{i % 20}"}})
        times.append((time.perf_counter() - started) * 1000)
    return times


def instant_model() -> FunctionModel:
    """Answers at once: what remains of a turn is graph, checkpoint, tools and database."""

    async def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if not info.output_tools:
            return ModelResponse(parts=[TextPart("Resumen.")])
        if "[agente:router]" in (info.instructions or ""):
            return ModelResponse(
                parts=[ToolCallPart(info.output_tools[0].name, {"flow": "knowledge"})]
            )
        return ModelResponse(
            parts=[ToolCallPart(info.output_tools[0].name, {"reply": "Claro.", "done": True})]
        )

    return FunctionModel(respond)


async def identity(deps: Deps, org: str, phone: str) -> Identity:
    return await chats.upsert_identity(deps.pool, org, phone, None)


async def turn(
    receptionist: Receptionist,
    org: str,
    ident: Identity,
    texts: list[str],
    turn_id: str | None = None,
) -> TurnResult:
    if ident.contact_id is None:
        raise ValueError(f"{ident.phone} is a staff chat: the bench plays customers")
    return await receptionist.run_turn(
        TurnInput(
            org=org,
            chat=ident.phone,
            contact_id=ident.contact_id,
            identity_id=ident.id,
            turn_id=turn_id or uuid.uuid4().hex,
            texts=texts,
        )
    )


PLAIN = "hola"  # says plainly what it wants: routed by keywords, one agent run
UNCLEAR = "mmm una cosa"  # the model router decides, then the expert: two agent runs


async def timed_turns(
    receptionist: Receptionist, people: list[Identity], org: str, text: str, n: int
) -> list[float]:
    times = []
    for i in range(n):
        ident = people[i % len(people)]
        await memory.remember(receptionist.deps.redis, org, ident.phone, "user", text)
        started = time.perf_counter()
        await turn(receptionist, org, ident, [text])
        times.append((time.perf_counter() - started) * 1000)
    return times


async def overhead(deps: Deps, saver: BaseCheckpointSaver[Any], org: str) -> None:
    bare = await bare_turns(OVERHEAD_TURNS)
    receptionist = Receptionist(deps, saver, model=instant_model())
    people = [await identity(deps, org, f"5730010{i:05d}") for i in range(20)]
    plain = await timed_turns(receptionist, people, org, PLAIN, OVERHEAD_TURNS)
    unclear = await timed_turns(receptionist, people, org, UNCLEAR, OVERHEAD_TURNS)
    # A booking turn through the offline model: two tools, availability SQL, the booking insert.
    booking = Receptionist(deps, saver)
    tool_times = []
    for i in range(40):
        ident = await identity(deps, org, f"5731000{i:05d}")
        await turn(booking, org, ident, ["quiero una cita de manicure spa la próxima semana"])
        await turn(booking, org, ident, ["la primera"])
        started = time.perf_counter()
        await turn(booking, org, ident, [f"Cliente {i}"])
        tool_times.append((time.perf_counter() - started) * 1000)
    b50, b99 = pct(bare, 0.5), pct(bare, 0.99)
    print("agent-turn overhead without model time (ms)")
    print(f"  bare LangGraph + InMemorySaver          p50 {b50:6.2f}  p99 {b99:6.2f}")
    for label, times in (
        (f"{PLAIN!r}: keywords route, 1 agent run", plain),
        (f"{UNCLEAR!r}: model router + expert", unclear),
    ):
        r50, r99 = pct(times, 0.5), pct(times, 0.99)
        print(
            f"  {label:<39} p50 {r50:6.2f}  p99 {r99:6.2f}   overhead p50 {r50 - b50:6.2f}"
            f" p99 {r99 - b99:6.2f} (target p50 <= 15 ms; {r50 / b50:.1f}x bare)"
        )
    print(
        f"  booking turn (offline model, tools, insert) p50 {pct(tool_times, 0.5):6.2f}"
        f"  p99 {pct(tool_times, 0.99):6.2f}"
    )


async def prompt_growth(deps: Deps, saver: BaseCheckpointSaver[Any], org: str) -> None:
    sizes: list[int] = []

    async def measuring(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        chars = len(info.instructions or "") + sum(
            len(str(p.content))
            for m in messages
            for p in getattr(m, "parts", [])
            if hasattr(p, "content")
        )
        sizes.append(chars // 4)  # ~4 characters per token
        return await offline.respond(messages, info)

    receptionist = Receptionist(deps, saver, model=FunctionModel(measuring))
    ident = await identity(deps, org, "573002220000")
    script = [
        "hola",
        "¿cuánto cuesta la limpieza facial?",
        "¿dónde están ubicados?",
        "quiero una cita para limpieza facial la próxima semana en la tarde",
        "la primera",
        "Ana",
        "¿qué medios de pago aceptan?",
        "gracias",
    ]
    per_turn = []
    for i in range(CONVERSATION_TURNS):
        text = script[i % len(script)]
        await memory.remember(deps.redis, org, ident.phone, "user", text)
        mark = len(sizes)
        result = await turn(receptionist, org, ident, [text])
        for reply in result.replies:
            await memory.remember(deps.redis, org, ident.phone, "assistant", reply)
        per_turn.append(max(sizes[mark:]) if sizes[mark:] else 0)
    print("prompt tokens per model request, largest per turn, over a 20-turn chat (target: flat)")
    print("  " + " ".join(str(x) for x in per_turn))
    # The script repeats every len(script) turns: the same message later in the chat shows growth.
    k = len(script)
    first, second, third = per_turn[:4], per_turn[k : k + 4], per_turn[2 * k : 2 * k + 4]
    print(
        f"  the same 4 messages at turns 1-4: {sum(first)}, at turns {k + 1}-{k + 4}: {sum(second)}, "
        f"at turns {2 * k + 1}-{2 * k + 4}: {sum(third)} tokens "
        f"({(sum(third) - sum(second)) / sum(second) * 100:+.0f}% once the memory window is full)"
    )


def _fake_answer(body: dict[str, Any]) -> dict[str, Any]:
    system = " ".join(str(m.get("content")) for m in body["messages"] if m["role"] == "system")
    if "[bare:tool]" in system and not any(m["role"] == "tool" for m in body["messages"]):
        return tool_call("price_of", service="limpieza facial")  # the bare run's second request
    if "[agente:router]" in system:
        return tool_call("final_result", flow="knowledge")
    return tool_call("final_result", reply="Claro, con gusto.", done=True, handoff=None)


async def serve_fake_openai() -> None:
    """The fake OpenAI server in its own process, so its JSON work is not billed to the worker."""
    async with FakeOpenAI() as fake:
        fake.delay_s = 1.0
        fake.responder = _fake_answer
        print(fake.url, flush=True)
        await asyncio.Event().wait()


async def concurrency(deps: Deps, saver: BaseCheckpointSaver[Any], org: str) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.agent", "--fake-openai", stdout=asyncio.subprocess.PIPE
    )
    try:
        assert child.stdout is not None  # a pipe, asked for above
        url = (await child.stdout.readline()).decode().strip()
        # The production model and client (graph.models.build_model) against the fake server.
        settings = deps.settings.model_copy(
            update={
                "llm_model": "openai:gpt-4o-mini",
                "openai_api_key": "sk-bench",
                "openai_base_url": url + "/v1",
            }
        )
        model = build_model(settings)
        receptionist = Receptionist(deps, saver, model=model)
        print(
            f"turn concurrency: {CONCURRENT_TURNS} turns at once, fake OpenAI (own process) answering after 1 s"
        )
        # The framework's floor: a bare Pydantic AI agent (no graph, no storage) on the same model
        # and client, as many runs at once, with as many model requests as the turn it frames:
        # one request (the answer), or two (a tool call, then the answer).
        bare_ms = {}
        for requests in (1, 2):
            bare = Agent(
                model,
                output_type=ExpertReply,
                instructions="[agente:knowledge]" + (" [bare:tool]" if requests == 2 else ""),
            )

            @bare.tool_plain
            def price_of(service: str) -> str:
                """The price of a service."""
                return f"{service}: 80.000"

            cpu, started = time.process_time(), time.perf_counter()
            await asyncio.gather(*(bare.run("hola") for _ in range(CONCURRENT_TURNS)))
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
            bare_ms[requests] = cpu / CONCURRENT_TURNS * 1000
            print(
                f"  {f'bare Agent.run, {requests} model request' + 's' * (requests > 1):<32} {elapsed:5.2f} s,"
                f" {CONCURRENT_TURNS / elapsed:4.0f} runs/s; CPU {bare_ms[requests]:.1f} ms per run"
            )
        for n, (label, text, requests) in enumerate(
            (
                (f"{PLAIN!r}, 1 model request", PLAIN, 1),
                (f"{UNCLEAR!r}, 2 model requests", UNCLEAR, 2),
            )
        ):
            people = [await identity(deps, org, f"5733{n}{i:07d}") for i in range(CONCURRENT_TURNS)]
            cpu, started = time.process_time(), time.perf_counter()
            results = await asyncio.gather(*(turn(receptionist, org, p, [text]) for p in people))
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
            ok = sum(1 for r in results if r.replies == ["Claro, con gusto."])
            per_turn = cpu / CONCURRENT_TURNS * 1000
            print(
                f"  {label:<32} {elapsed:5.2f} s, {ok / elapsed:4.0f} turns/s completed ({ok} ok; target >= 150/s);"
                f" worker CPU {per_turn:.1f} ms per turn, {per_turn / bare_ms[requests]:.2f}x the bare run"
                f" with {requests} model request{'s' * (requests > 1)} (target 1.3)"
            )
        await receptionist.aclose()
    finally:
        child.terminate()
        await child.wait()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  worker peak RSS {rss_mb:.0f} MB")


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Settings(
            skytide_env="development",
            data_dir=Path(tmp),
            log_level="WARNING",
            llm_turn_timeout_s=30,
        )
        async with (
            services(base) as settings,
            open_deps(settings) as deps,
            AsyncExitStack() as stack,
        ):
            await migrate(deps.pool)
            org = await seed_demo(deps.pool, today=demo_today(deps))
            saver = await stack.enter_async_context(
                open_checkpointer(
                    redis_url(settings), settings.checkpoint_ttl_min, cluster=settings.redis_cluster
                )
            )
            settle_heap()  # as a running worker does
            await overhead(deps, saver, org)
            await prompt_growth(deps, saver, org)
            await concurrency(deps, saver, org)


if __name__ == "__main__":
    run_async(serve_fake_openai() if "--fake-openai" in sys.argv else main())
