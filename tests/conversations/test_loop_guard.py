"""The loop guard holds on every path (issue 20, item 4): whatever produced the reply (an
expert, a tool's result, the greeting, the apology of a failed model), no chat ever gets the
same reply twice in a row. Every scenario of this folder is played against models that always
say the same thing, in different ways."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic_ai.messages import (
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

from graph import scenarios
from graph.receptionist import APOLOGY, APOLOGY_AGAIN, Receptionist
from storage.seed import seed_demo
from tests.graph_helpers import NOW, Chat, redis_saver

SCENARIOS = scenarios.load(Path(__file__).parent)
SAME = "Listo, ya lo revisé."  # a statement: no question mark, no list, so no "signature" either


def parrot(flow: str, done: bool, tool: str | None = None) -> FunctionModel:
    """A model that routes every message to `flow` and always answers SAME, after calling `tool`
    once per run with the customer's words (so the state moves, but the words do not)."""

    def respond(messages, info: AgentInfo) -> ModelResponse:
        instructions = info.instructions or ""
        if not info.output_tools:
            return ModelResponse(parts=[TextPart("Resumen.")])  # the summarizer
        if "[agente:router]" in instructions:
            return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, {"flow": flow})])
        user, called = _this_run(messages)
        if tool and tool not in called and any(t.name == tool for t in info.function_tools):
            return ModelResponse(parts=[ToolCallPart(tool, {"when": user, "query": user})])
        return ModelResponse(
            parts=[ToolCallPart(info.output_tools[0].name, {"reply": SAME, "done": done})]
        )

    return FunctionModel(respond, model_name=f"parrot-{flow}")


def _this_run(messages) -> tuple[str, set[str]]:
    user, called = "", set()
    for message in messages:
        for part in message.parts if isinstance(message, ModelRequest) else ():
            if isinstance(part, UserPromptPart) and isinstance(part.content, str):
                user, called = part.content, set()
            elif isinstance(part, ToolReturnPart):
                called.add(part.tool_name)
    return user, called


def _words(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


MODELS = {
    "an expert that keeps saying the same, task going on": lambda: parrot(
        "appointment", done=False
    ),
    "a finished task said again (a goodbye, the greeting)": lambda: parrot("knowledge", done=True),
    "a tool moves the state, the words stay": lambda: parrot(
        "appointment", done=False, tool="check_availability"
    ),
    "a knowledge search, then the same answer": lambda: parrot(
        "knowledge", done=False, tool="search_knowledge"
    ),
}


@pytest.mark.parametrize("model", list(MODELS), ids=list(MODELS))
async def test_no_chat_ever_gets_the_same_reply_twice_in_a_row(deps, settings, model):
    deps.clock = scenarios.NOW.timestamp
    receptionist = Receptionist(deps, await redis_saver(settings), model=MODELS[model]())
    outcomes = await scenarios.play_all(deps, receptionist, SCENARIOS)
    repeated = []
    for outcome in outcomes:
        sent = [text for _, text in outcome.transcript]
        repeated += [
            f"{outcome.scenario}, line {i + 1}: {b!r}"
            for i, (a, b) in enumerate(zip(sent, sent[1:]), 1)
            if a and b and _words(a) == _words(b)
        ]
    assert not repeated, "\n".join(repeated[:10])
    assert sum(len(o.transcript) for o in outcomes) == sum(
        len(s.lines) for s in SCENARIOS
    )  # every line played


async def test_a_model_failing_twice_in_a_row_does_not_apologise_twice_in_the_same_words(
    deps, settings
):
    deps.clock = NOW.timestamp
    clinic = await seed_demo(deps.pool, today=NOW.date())

    def broken(messages, info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[ToolCallPart("no_such_tool", {})])  # refused every time

    chat = Chat(
        deps, Receptionist(deps, await redis_saver(settings), model=FunctionModel(broken)), clinic
    )
    said = [(await chat.say(text)).replies for text in ("¿me ayudas?", "¿hola?", "¿sigues ahí?")]
    assert said == [[APOLOGY], [APOLOGY_AGAIN], [APOLOGY]]
