"""`skytide dlq replay`, from the real command line, for every stage: the replayed entry has the
effect its first delivery would have had (a replayed inbound message leads to a turn and a reply).

The dead letters are made the way production makes them: a dependency stays down longer than
DEPENDENCY_OUTAGE_MAX_S (here 0 s, so the first failure gives up)."""

from __future__ import annotations

import os
import subprocess
import sys

from ops.outages import Dependency, DependencyDown
from storage import dead_letters
from storage.keys import Stage
from tests.conftest import eventually, recording_receptionist
from tests.helpers import in_thread, post_webhook, text_webhook
from tests import clock
from tests.helpers import settled as pipeline_settled


def replay_from_cli(settings, stage: str) -> str:
    env = {**os.environ, "REDIS_URL": settings.redis_url, "DATABASE_URL": settings.database_url}
    done = subprocess.run(
        [sys.executable, "-m", "ops", "dlq", "replay", "--stage", stage],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


async def _accepted(deps) -> bool:
    return bool(
        await deps.pool.fetchval(
            "select count(*) from chat_messages where provider_message_id is not null"
        )
    )


async def _letters(deps, org: str, stage: Stage) -> list:
    return [x for x in await dead_letters.list_letters(deps.redis, org=org) if x.stage == stage]


async def test_replayed_enrich_entry_leads_to_a_turn_and_a_reply(
    system, make_org, gupshup, deps, settings, embedded
):
    org = await make_org("clinic")
    now_ms = clock.now_ms()
    async with system(dependency_outage_max_s=0) as s:
        await post_webhook(s.url, text_webhook("clinic", "573000000001", "hola", "r-1", now_ms))
        await gupshup.wait_for_sent(1, timeout_s=20)  # ingress knows the app now
        await eventually(lambda: _accepted(deps))  # and the first reply is settled
        try:  # resumed whatever happens, even a stop that failed half way: later tests need it
            await in_thread(embedded["postgres"].pause)
            await post_webhook(s.url, text_webhook("clinic", "573000000002", "hola", "r-2", now_ms))
            letters = await eventually(lambda: _letters(deps, org, Stage.ENRICH), timeout_s=20)
        finally:
            await in_thread(embedded["postgres"].resume)
        assert "postgres was down" in letters[0].error
        printed = await in_thread(replay_from_cli, settings, "enrich")
        assert f"{letters[0].ref}  stage=enrich  put back: message (573000000002)" in printed
        assert "replayed 1 of 1 dead letter(s)" in printed
        sent = await gupshup.wait_for_sent(2, timeout_s=30)
        await eventually(lambda: pipeline_settled(deps.redis, org))
    assert [m.destination for m in gupshup.sent] == ["573000000001", "573000000002"]
    assert sent[1].message["text"].startswith("¡Hola")
    assert await dead_letters.list_letters(deps.redis, org=org) == []


def model_down_once(receptionist: type) -> type:
    """The receptionist class, whose first turn meets the model server down."""
    failures = [Dependency.MODEL]

    class DownOnce(receptionist):
        async def run_turn(self, turn):
            if failures:
                raise DependencyDown(failures.pop(), "connection refused")
            return await super().run_turn(turn)

    return DownOnce


async def test_replayed_agent_entry_runs_the_turn_and_replies(
    system, make_org, gupshup, deps, settings
):
    org = await make_org("clinic")
    seen: list[list[str]] = []
    real = recording_receptionist(seen)
    DownOnce = model_down_once(real)

    async with system(receptionist_builder=DownOnce, dependency_outage_max_s=0) as s:
        await post_webhook(
            s.url, text_webhook("clinic", "573000000003", "hola", "a-1", clock.now_ms())
        )
        letters = await eventually(lambda: _letters(deps, org, Stage.AGENT), timeout_s=20)
        assert "model was down" in letters[0].error and gupshup.sent == []
        printed = await in_thread(replay_from_cli, settings, "agent")
        assert "stage=agent  put back: turn (573000000003)" in printed
        sent = await gupshup.wait_for_sent(1, timeout_s=30)
        await eventually(lambda: pipeline_settled(deps.redis, org))
    assert len(gupshup.sent) == 1 and sent[0].message["text"].startswith("¡Hola")
    assert seen == [["hola"]]


async def test_replayed_sender_entry_sends_the_reply_once(
    system, make_org, gupshup, deps, settings
):
    org = await make_org("clinic")
    gupshup.fail_next(503)
    async with system(dependency_outage_max_s=0) as s:
        await post_webhook(
            s.url, text_webhook("clinic", "573000000004", "hola", "s-1", clock.now_ms())
        )
        letters = await eventually(lambda: _letters(deps, org, Stage.SENDER), timeout_s=20)
        assert "gupshup was down" in letters[0].error
        printed = replay_from_cli(settings, "sender")
        assert "stage=sender  put back: outbound (573000000004)" in printed
        assert "already replayed" not in replay_from_cli(settings, "sender")  # nothing left
        sent = await gupshup.wait_for_sent(1, timeout_s=30)
        await eventually(lambda: pipeline_settled(deps.redis, org))
    assert len(gupshup.sent) == 1 and sent[0].message["text"].startswith("¡Hola")
    assert await dead_letters.list_letters(deps.redis, org=org) == []


async def test_a_send_in_doubt_past_its_limit_is_listed_for_a_person_and_not_resent(
    system, make_org, gupshup, deps, settings
):
    """A send that timed out, no status event naming it, and past SEND_DOUBT_MAX_S (here at
    once): given up on, listed by `skytide dlq unknown`, and not sent again."""
    await make_org("clinic")
    gupshup.delay_s = 1.0  # longer than the sender waits: the outcome is unknown
    async with system(
        gupshup_timeout_s=0.2, send_doubt_grace_s=0.2, send_doubt_check_s=0.1, send_doubt_max_s=0
    ) as s:
        await post_webhook(
            s.url, text_webhook("clinic", "573000000005", "hola", "u-1", clock.now_ms())
        )
        await eventually(lambda: _unknown(deps), timeout_s=20)
    env = {**os.environ, "REDIS_URL": settings.redis_url, "DATABASE_URL": settings.database_url}
    listed = await in_thread(
        lambda: subprocess.run(
            [sys.executable, "-m", "ops", "dlq", "unknown"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    )
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "1 message(s) with an unknown outcome" in listed.stdout
    assert "SEND_DOUBT_MAX_S" in listed.stdout and "5730000000" not in listed.stdout  # masked
    assert len(gupshup.requests_to("/wa/api/v1/msg")) == 1  # never sent again


async def _unknown(deps) -> bool:
    from storage.outbound import unknown_outcomes

    return bool(await unknown_outcomes(deps.pool))


async def test_a_dead_lettered_turn_does_not_hold_its_chat(system, make_org, gupshup, deps):
    """The chat's next message is answered at once, not after the dead turn's lease runs out."""
    org = await make_org("clinic")
    real = recording_receptionist([])
    DownOnce = model_down_once(real)

    phone = "573000000006"
    async with system(
        receptionist_builder=DownOnce, dependency_outage_max_s=0, turn_lease_s=600
    ) as s:
        await post_webhook(s.url, text_webhook("clinic", phone, "hola", "h-1", clock.now_ms()))
        await eventually(lambda: _letters(deps, org, Stage.AGENT), timeout_s=20)
        await post_webhook(
            s.url, text_webhook("clinic", phone, "hola otra vez", "h-2", clock.now_ms())
        )
        sent = await gupshup.wait_for_sent(1, timeout_s=20)
    assert sent[0].destination == phone
