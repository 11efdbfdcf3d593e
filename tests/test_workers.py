"""Workers as real processes: a SIGKILLed worker's entry is finished by another, exactly once;
SIGTERM drains; one tenant's backlog does not hold up another tenant."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from contextlib import asynccontextmanager

import aiohttp

from ops.embedded import free_port
from storage import chats, keys
from storage.events import StatusEvent, encode
from storage.keys import Stage, Stream
from tests.conftest import eventually
from tests.helpers import post_webhook, settled, text_webhook
from tests import clock

PHONE = "919876543210"


def start_worker(
    settings, roles: str, claim_idle_ms: int = 1500, metrics_port: int | None = None
) -> subprocess.Popen:
    env = {
        **os.environ,
        "CLOCK_OFFSET_S": str(clock.OFFSET_S),
        **({"METRICS_PORT": str(metrics_port)} if metrics_port else {}),
        "REDIS_URL": settings.redis_url,
        "DATABASE_URL": settings.database_url,
        "CLAIM_IDLE_MS": str(claim_idle_ms),
        "CLAIM_EVERY_S": "0.3",
        "BLOCK_MS": "100",
        "ORG_REFRESH_S": "0.2",
        "DRAIN_TIMEOUT_S": "1",
        "LOG_LEVEL": "INFO",
        "GUPSHUP_API_URL": "http://127.0.0.1:9",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "ops", "run", "--roles", roles],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def _answers(url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            return response.status == 200
    except aiohttp.ClientError:
        return False


async def pending_for(deps, stream: str, group: str) -> list[dict]:
    try:
        return await deps.redis.xpending_range(stream, group, min="-", max="+", count=10)
    except Exception:  # noqa: BLE001 - the group may not exist yet
        return []


async def _worker_stuck_on_a_message(settings, deps, org, signal_to_send, claim_idle_ms=1500):
    """A worker process blocked mid-entry (the chat's row is locked), then sent a signal."""
    await chats.upsert_identity(deps.pool, org, PHONE, "Ana")
    blocker = await deps.pool.acquire()
    transaction = blocker.transaction()
    await transaction.start()
    await blocker.execute("select 1 from chat_identities where phone = $1 for update", PHONE)
    worker = start_worker(settings, "enrich", claim_idle_ms=claim_idle_ms)
    try:
        async with running_ingress(settings, deps) as url:
            await post_webhook(
                url, text_webhook("clinic", PHONE, "hola", "stuck-1", clock.now_ms())
            )
            stream = keys.stream(org, Stream.INBOUND)
            pending = await eventually(
                lambda: pending_for(deps, stream, Stage.ENRICH), timeout_s=20
            )
            assert len(pending) == 1  # the worker holds the entry, unacknowledged
        worker.send_signal(signal_to_send)
        code = await asyncio.get_running_loop().run_in_executor(None, worker.wait, 30)
    finally:
        if worker.poll() is None:
            worker.kill()
        await transaction.rollback()
        await deps.pool.release(blocker)
    return code


@asynccontextmanager
async def running_ingress(settings, deps):
    from ops.app.wiring import running_system

    async with running_system(settings, ("ingress",), deps=deps) as s:
        yield s.url


async def test_killed_worker_leaves_its_entry_to_another_and_one_reply_goes_out(
    system, make_org, gupshup, deps, settings
):
    org = await make_org("clinic")
    await _worker_stuck_on_a_message(settings, deps, org, signal.SIGKILL)
    async with system():  # another worker: claims the entry back after the idle timeout
        sent = await gupshup.wait_for_sent(1, timeout_s=20)
        await eventually(lambda: settled(deps.redis, org))
    assert len(gupshup.sent) == 1 and sent[0].message["text"].startswith("¡Hola")
    assert (
        await deps.pool.fetchval("select count(*) from chat_messages where direction = 'inbound'")
        == 1
    )
    assert (await deps.redis.xpending(keys.stream(org, Stream.INBOUND), Stage.ENRICH))[
        "pending"
    ] == 0


async def test_sigterm_hands_unfinished_work_back_at_once(
    system, make_org, gupshup, deps, settings
):
    """A worker that cannot finish within its drain time hands the entry back: the next worker
    takes it at once, without waiting out the (here very long) claim idle time."""
    org = await make_org("clinic")
    long_idle_ms = 600_000
    code = await _worker_stuck_on_a_message(
        settings, deps, org, signal.SIGTERM, claim_idle_ms=long_idle_ms
    )
    assert code == 0
    async with system(claim_idle_ms=long_idle_ms):
        sent = await gupshup.wait_for_sent(1, timeout_s=20)
        await eventually(lambda: settled(deps.redis, org))
    assert len(gupshup.sent) == 1 and sent[0].message["text"].startswith("¡Hola")


async def test_sigterm_stops_a_worker_cleanly(make_org, deps, settings):
    await make_org("clinic")
    port = free_port()
    worker = start_worker(settings, "enrich,batcher,agent,sender", metrics_port=port)
    # Serving /healthz means the roles run (and the signal handlers are in place): a fixed sleep
    # sent SIGTERM before that on a busy machine.
    await eventually(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), timeout_s=60)
    worker.send_signal(signal.SIGTERM)
    code = await asyncio.get_running_loop().run_in_executor(None, worker.wait, 30)
    stderr = worker.stderr.read().decode()
    assert code == 0, stderr[-2000:]
    assert "stopping: draining in-flight work" in stderr


async def test_a_flooding_tenant_does_not_hold_up_another(system, make_org, gupshup, deps):
    flooding = await make_org("flood")
    await make_org("quiet")
    backlog = 10_000
    async with deps.redis.pipeline(transaction=False) as pipe:
        for i in range(backlog):
            event = StatusEvent(org=flooding, provider_id=f"gs-{i}", status="read", at_ms=i)
            pipe.xadd(keys.stream(flooding, Stream.INBOUND), encode(event))
        await pipe.execute()
    async with system() as s:
        await post_webhook(s.url, text_webhook("quiet", PHONE, "hola", "q-1", clock.now_ms()))
        await gupshup.wait_for_sent(1, timeout_s=30)
        groups = await deps.redis.xinfo_groups(keys.stream(flooding, Stream.INBOUND))
        lag = next(g for g in groups if g["name"] == Stage.ENRICH)["lag"]
    # The quiet tenant was answered while much of the flood was still waiting its turn.
    # An unfair (first come, first served) reader would have read the whole flood first (lag 0).
    assert lag > backlog / 4, f"only {lag} of {backlog} flood entries were still unread"
