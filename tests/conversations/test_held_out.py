"""Held-out scenarios (held_out/*.toml): the offline model was not written against them, so
their pass rate, printed here, is the honest measure of how it does on new conversations. Only
a floor is enforced: a change that helps the public scenarios but hurts unseen ones shows up."""

from __future__ import annotations

import asyncio
from pathlib import Path

from graph import scenarios
from graph.receptionist import Receptionist
from tests.graph_helpers import redis_saver

HELD_OUT = scenarios.load(Path(__file__).parent / "held_out")
MIN_RATE = 0.5  # raise it as the rate grows; see the printed rate


async def test_held_out_scenarios_pass_rate(deps, settings, capsys):
    deps.clock = scenarios.NOW.timestamp
    receptionist = Receptionist(deps, await redis_saver(settings))
    outcomes = await asyncio.gather(
        *(scenarios.run_scenario(deps, receptionist, s) for s in HELD_OUT)
    )
    failed = [o for o in outcomes if not o.passed]
    rate = 1 - len(failed) / len(outcomes)
    per_language = scenarios.scenario_lines(
        {}, {o.scenario: [o] for o in outcomes}, {s.name: s.language for s in HELD_OUT}
    )[-1]
    with capsys.disabled():
        print(f"\nheld-out scenarios: {len(outcomes) - len(failed)}/{len(outcomes)} ({rate:.0%})")
        print(per_language)
        for o in failed:
            print(f"  missed {o.scenario}: {o.failures[0]}")
    assert rate >= MIN_RATE
