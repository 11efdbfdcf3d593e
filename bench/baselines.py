"""Bare baselines for the pipeline bench, measured in the same run as the figures they frame.

- an aiohttp handler that only parses the body and XADDs it (ingress's floor), in its own process;
- one bare consumer hop: XREADGROUP, XADD to the next stream, XACK (a stage's floor);
- a bare Pydantic AI run with one tool, no graph and no storage (the agent turn's floor).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any, cast

import redis.asyncio as aioredis
from aiohttp import web
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from ops.app.wiring import run_async
from storage.redis_client import create_redis

BARE_STREAM = "bench:bare-ingress"


async def serve_bare_ingress(port: int, redis_url: str) -> None:
    redis = create_redis(redis_url)

    async def webhook(request: web.Request) -> web.Response:
        body = await request.read()
        json.loads(body)  # a real handler must at least read what it was sent
        await redis.xadd(BARE_STREAM, {"data": body}, maxlen=10_000, approximate=True)
        return web.Response(status=200)

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/webhooks/gupshup", webhook)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


async def bare_hop(redis: aioredis.Redis, n: int = 3000) -> tuple[float, float]:
    """(CPU ms, wall ms) per entry of XREADGROUP + XADD + XACK, one entry at a time."""
    src, dst = "bench:hop:a", "bench:hop:b"
    await redis.delete(src, dst)
    await redis.xgroup_create(src, "g", id="0", mkstream=True)
    async with redis.pipeline(transaction=False) as pipe:
        for i in range(n):
            pipe.xadd(src, {"type": "x", "data": json.dumps({"i": i, "text": "hola"})})
        await pipe.execute()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(n):
        # RESP2 (storage/redis_client.py): [[stream, [(id, fields), ...]], ...]
        reply = cast(list[list[Any]], await redis.xreadgroup("g", "c", {src: ">"}, count=1))
        for _, entries in reply:
            for entry_id, fields in entries:
                await redis.xadd(dst, fields)
                await redis.xack(src, "g", entry_id)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await redis.delete(src, dst)
    return cpu / n * 1000, wall / n * 1000


def bare_agent(requests: int = 2) -> Agent[None, str]:
    """An agent with one tool whose model calls the tool requests - 1 times, then answers."""

    async def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        calls = sum(
            1 for m in messages for p in getattr(m, "parts", ()) if p.part_kind == "tool-return"
        )
        if calls < requests - 1:
            return ModelResponse(parts=[ToolCallPart("price_of", {"service": "limpieza"})])
        return ModelResponse(parts=[TextPart("Cuesta 80.000.")])

    agent = Agent(FunctionModel(respond), instructions="Eres la recepcionista.")

    @agent.tool_plain
    def price_of(service: str) -> str:
        """The price of a service."""
        return f"{service}: 80.000"

    return agent


async def bare_agent_cpu_ms(requests: int = 2, runs: int = 300) -> float:
    """CPU ms of one bare Pydantic AI run with `requests` model requests."""
    agent = bare_agent(requests)
    await agent.run("hola")  # warm up: schemas are built on the first run
    cpu = time.process_time()
    for _ in range(runs):
        await agent.run("¿cuánto cuesta la limpieza?")
    return (time.process_time() - cpu) / runs * 1000


if __name__ == "__main__":
    if sys.argv[1] == "--bare-ingress":
        run_async(serve_bare_ingress(int(sys.argv[2]), sys.argv[3]))
