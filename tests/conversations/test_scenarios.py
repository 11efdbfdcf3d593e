"""The conversation scenarios of this folder (*.toml), played through the real graph, tools,
PostgreSQL and Redis checkpointer, and judged by the database and the replies."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic_ai.messages import ModelResponse, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from graph import scenarios
from graph.receptionist import Receptionist
from ops import metrics
from tests.graph_helpers import redis_saver

SCENARIOS = scenarios.load(Path(__file__).parent)
RUNS = 5  # the offline model must pass every scenario 5 times out of 5


@pytest.fixture
async def receptionist(deps, settings):
    deps.clock = scenarios.NOW.timestamp
    return Receptionist(deps, await redis_saver(settings))


def test_there_are_at_least_40_scenarios():
    assert len(SCENARIOS) >= 40


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
async def test_offline_model_passes_every_run(deps, receptionist, scenario):
    outcomes = await asyncio.gather(
        *(scenarios.run_scenario(deps, receptionist, scenario) for _ in range(RUNS))
    )
    failed = [o for o in outcomes if not o.passed]
    assert not failed, "\n".join(
        failed[0].failures + [f"  > {a}\n  < {b}" for a, b in failed[0].transcript]
    )


def stubborn_model() -> FunctionModel:
    """A scripted model that never understands: every turn it asks for the service again, as
    the offline model once did. Whatever the model, the customer must not get that twice."""

    def respond(messages, info: AgentInfo) -> ModelResponse:
        instructions = info.instructions or ""
        if "[agente:router]" in instructions:
            return ModelResponse(
                parts=[ToolCallPart(info.output_tools[0].name, {"flow": "appointment"})]
            )
        return ModelResponse(
            parts=[
                ToolCallPart(
                    info.output_tools[0].name,
                    {
                        "reply": "¿Para qué servicio quieres la cita? Tenemos:\n1. Limpieza facial\n2. Masaje relajante",
                        "done": False,
                    },
                )
            ]
        )

    return FunctionModel(respond, model_name="stubborn")


async def test_a_model_that_never_understands_never_repeats_itself(deps, settings):
    """Every scenario's lines against the stubborn model: no question or list twice in a row,
    no time of day no tool gave, and each replaced repeat counted."""
    deps.clock = scenarios.NOW.timestamp
    receptionist = Receptionist(deps, await redis_saver(settings), model=stubborn_model())

    def counted() -> float:
        return sum(
            metrics.loop_guard.labels(f)._value.get() for f in ("appointment", "knowledge", "none")
        )

    before = counted()
    outcomes = await scenarios.play_all(deps, receptionist, SCENARIOS)
    repeats = [
        f"{o.scenario}: {f}"
        for o in outcomes
        for f in o.failures
        if "the same reply" in f or "times no tool gave" in f
    ]
    assert not repeats, "\n".join(repeats)
    replaced = sum(o.guarded for o in outcomes)
    assert replaced >= sum(
        len(s.lines) >= 2 for s in SCENARIOS
    )  # every chat of 2 lines or more needed it
    assert counted() - before == replaced
