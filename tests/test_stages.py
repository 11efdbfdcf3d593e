"""The contracts between the stages: each stage reads one stream, every consumer group on a
tenant's streams is a stage reading its own stream, and every entry outcome is logged at the
level it documents (a redelivered message is normal running, not a warning)."""

from __future__ import annotations

import ast
import asyncio
import inspect
import logging

from consumers import outcomes
from consumers.outcomes import Outcome, Sent
from consumers.runtime import StageConfig, StageWorker
from ops.settings import ALL_ROLES
from storage import keys, streams
from storage.events import StatusEvent
from storage.keys import STAGE_STREAM, Stage, Stream
from tests.conftest import eventually
from tests.helpers import fresh, post_webhook, settled


def test_each_stage_reads_a_stream_of_its_own_and_no_stage_reads_the_dead_letters():
    assert set(STAGE_STREAM) == set(Stage)
    assert len(set(STAGE_STREAM.values())) == len(Stage)
    assert Stream.DEAD not in STAGE_STREAM.values()
    assert keys.dead_letters("o") == keys.stream("o", Stream.DEAD) == "{o}:dead"


def test_stream_keys_are_the_ones_running_deployments_have():
    assert [keys.stream("org-1", s) for s in Stream] == [
        "{org-1}:inbound",
        "{org-1}:turns",
        "{org-1}:outbound",
        "{org-1}:webhooks",
        "{org-1}:dead",
    ]
    assert keys.ready(Stream.INBOUND) == "skytide:ready:inbound"
    assert keys.stream_of_key("{org-1}:turns") is Stream.TURNS


async def test_every_group_on_a_tenants_streams_is_a_stage_reading_its_own_stream(
    system, make_org, gupshup, deps
):
    org = await make_org("docdeck")  # the app the fixture webhook names
    async with system(roles=ALL_ROLES) as s:
        assert (await post_webhook(s.url, fresh("gupshup/gupshup_v2_text.json")))[0] == 200
        await gupshup.wait_for_sent(1, timeout_s=10)
        await eventually(lambda: settled(deps.redis, org))
    groups: dict[str, set[str]] = {}
    async for key in deps.redis.scan_iter(match=f"{{{org}}}:*", _type="stream"):
        groups[key] = {group["name"] for group in await deps.redis.xinfo_groups(key)}
    expected = {keys.stream(org, STAGE_STREAM[stage]): {stage} for stage in Stage}
    assert {k: v for k, v in groups.items() if v} == expected


def test_every_outcome_has_the_level_its_documentation_names():
    """Each member's docstring starts with its level: the two must not drift apart."""
    tree = ast.parse(inspect.getsource(Outcome))
    body = tree.body[0].body
    documented: dict[str, str] = {}
    for statement, following in zip(body, body[1:]):
        if isinstance(statement, ast.Assign) and isinstance(following, ast.Expr):
            documented[statement.targets[0].id] = following.value.value.split(".")[0]
    assert set(documented) == {member.name for member in Outcome}
    assert {name: logging.getLevelName(Outcome[name].level) for name in documented} == documented


def test_normal_running_never_logs_a_warning():
    normal = {
        Outcome.ACKED,
        Outcome.DUPLICATE,
        Outcome.HANDED_BACK,
        Outcome.WAITING_FOR_DEPENDENCY,
        Outcome.STORED_WITHOUT_TURN,
        Outcome.STAFF_MESSAGE,
        Outcome.UNMATCHED,
        Outcome.IGNORED,
        Outcome.IGNORED_STAFF,
        Outcome.SKIPPED_BOT_OFF,
        Outcome.MERGED_INTO_NEXT_TURN,
        Outcome.DROPPED,
        Outcome.SKIPPED_NO_ENDPOINT,
    }
    assert all(outcome.level <= logging.INFO for outcome in normal)
    assert all(outcome.level >= logging.WARNING for outcome in set(Outcome) - normal)
    # Every way a send ends is an outcome of its entry.
    assert {sent.outcome for sent in Sent} <= set(Outcome)
    assert outcomes.Outcome.DEAD_LETTERED.level == logging.ERROR


async def test_a_duplicate_is_logged_at_info_and_counted_under_its_label(deps, caplog):
    """What the runtime does with a handler's outcome: one line at the outcome's level."""
    org = "org-duplicate-level"

    async def handler(event, delivery):
        return Outcome.DUPLICATE

    worker = StageWorker(
        deps.redis,
        StageConfig(stage=Stage.ENRICH, block_ms=100, claim_every_s=0.2, org_refresh_s=0.1),
        handler,
        "c1",
    )
    await deps.redis.sadd(keys.ORG_REGISTRY, org)
    stop = asyncio.Event()
    caplog.set_level(logging.DEBUG, logger="consumers.runtime")
    task = asyncio.create_task(worker.run(stop))
    try:
        await streams.publish(
            deps.redis,
            StatusEvent(org=org, provider_id="p1", status="read", at_ms=1),
            Stream.INBOUND,
        )
        await eventually(lambda: _soon(_logged(caplog, "outcome=duplicate")))
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await deps.redis.srem(keys.ORG_REGISTRY, org)
    [record] = _logged(caplog, "outcome=duplicate")
    assert record.levelno == logging.INFO and "stage=enrich" in record.getMessage()


def _logged(caplog, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if text in r.getMessage()]


async def _soon(value):
    return value
