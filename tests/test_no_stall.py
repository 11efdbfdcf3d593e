"""Under load, every entry is handled by the worker that read it: nothing waits for the claim path.

The stall of issue 10: with many single-message chats per second, 5 to 10% of the replies came
30 to 35 s late, claimed back by the very process that had read them (entries of two
organizations' streams written in the same millisecond share an id, and the runtime kept only
one of them in flight). The claim path is for dead workers; here no worker dies, so the count of
entries claimed back must stay zero.
"""

from __future__ import annotations

import asyncio

from ops import metrics
from storage.keys import Stage
from tests.conftest import eventually
from tests.helpers import post_webhook, text_webhook
from tests import clock

CHATS = 300
ORGS = 4
STAGES = (Stage.ENRICH, Stage.AGENT, Stage.SENDER)


def claimed() -> dict[str, float]:
    return {
        stage: metrics.REGISTRY.get_sample_value("skytide_stage_claimed_total", {"stage": stage})
        or 0.0
        for stage in STAGES
    }


async def test_hundreds_of_single_message_chats_are_answered_without_a_claim(
    system, make_org, gupshup
):
    apps = [f"stall-{i}" for i in range(ORGS)]
    for app in apps:
        await make_org(app)
    before = claimed()
    # A short claim_idle_ms makes a stranded entry show up as a claim within the test.
    async with system(debounce_seconds=0, claim_idle_ms=1000, claim_every_s=0.2) as s:
        gate = asyncio.Semaphore(16)

        async def send(i: int) -> None:
            body = text_webhook(
                apps[i % ORGS], f"5215500{i:06d}", "hola", f"stall-msg-{i}", clock.now_ms()
            )
            async with gate:
                assert (await post_webhook(s.url, body))[0] == 200

        await asyncio.gather(*(send(i) for i in range(CHATS)))
        await eventually(lambda: _replied(gupshup), timeout_s=120)
    assert len({m.destination for m in gupshup.sent}) == CHATS
    assert claimed() == before


async def _replied(gupshup) -> bool:
    return len(gupshup.sent) >= CHATS
