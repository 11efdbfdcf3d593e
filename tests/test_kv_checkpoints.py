"""The key-value checkpointer of cluster mode (graph/kv_checkpoints.py) keeps a conversation as
the Query Engine saver does: every scenario passes on it, a restarted worker reads the chat's
state back, and a thread's keys share the organization's slot and expire."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from graph import scenarios
from graph.kv_checkpoints import KeyValueShallowSaver
from graph.receptionist import Receptionist
from storage import keys
from tests.graph_helpers import Chat

SCENARIOS = scenarios.load(Path(__file__).parent / "conversations")


def client(settings) -> aioredis.Redis | RedisCluster:
    """A binary client of its own, as in production: a new one acts as a restarted worker."""
    if settings.redis_cluster:
        return RedisCluster.from_url(settings.redis_url)
    return aioredis.Redis.from_url(settings.redis_url)


def saver(settings) -> KeyValueShallowSaver:
    return KeyValueShallowSaver(client(settings), settings.checkpoint_ttl_min)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
async def test_every_scenario_passes_on_the_key_value_saver(deps, settings, scenario):
    deps.clock = scenarios.NOW.timestamp
    outcome = await scenarios.run_scenario(deps, Receptionist(deps, saver(settings)), scenario)
    assert outcome.passed, "\n".join(
        outcome.failures + [f"  > {a}\n  < {b}" for a, b in outcome.transcript]
    )


async def test_a_restarted_worker_reads_the_chat_back_from_one_slot_that_expires(
    deps, settings, make_org
):
    deps.clock = scenarios.NOW.timestamp
    org = await make_org(catalog=True)
    first = Chat(deps, Receptionist(deps, saver(settings)), org)
    await first.say("quiero agendar una limpieza facial")
    # Another worker, with a client of its own, takes the chat's next turn.
    second = Chat(deps, Receptionist(deps, saver(settings)), org)
    second.identity = first.identity
    reply = await second.say("mañana a las 10")
    assert "limpieza facial" in reply.replies[0].lower(), reply.replies  # it remembered

    thread = keys.checkpoint_thread(org, first.phone)
    redis = client(settings)
    stored = [k.decode() async for k in redis.scan_iter(match=f"*{thread}*")]
    assert stored and all(keys.is_checkpoint_key_of(k, thread) for k in stored)
    assert f"checkpoint:{{{thread}}}:" in stored  # pending writes, if any, beside it
    assert len({key_slot(k.encode()) for k in stored}) == 1  # one slot: one MULTI on a cluster
    for key in stored:
        assert 0 < await redis.ttl(key) <= settings.checkpoint_ttl_min * 60
    await saver(settings).adelete_thread(thread)
    assert not [k async for k in redis.scan_iter(match=f"checkpoint:{thread}*")]
    await redis.aclose()
