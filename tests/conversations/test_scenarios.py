"""The conversation scenarios of this folder (*.toml), played through the real graph, tools,
PostgreSQL and Redis checkpointer, and judged by the database and the replies."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from graph import scenarios
from graph.receptionist import Receptionist
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
    outcomes = await asyncio.gather(*(scenarios.run_scenario(deps, receptionist, scenario) for _ in range(RUNS)))
    failed = [o for o in outcomes if not o.passed]
    assert not failed, "\n".join(failed[0].failures + [f"  > {a}\n  < {b}" for a, b in failed[0].transcript])
