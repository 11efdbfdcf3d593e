"""An outage is waited out, never a reason to dead-letter a customer's message: PostgreSQL
stopped mid-flow, Gupshup answering 500 for a while, a chat row locked, a handler that hangs."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import aiohttp
import pytest

from consumers.runtime import Poison, StageConfig, StageWorker
from ops import metrics
from ops.outages import Dependency, DependencyDown, Outages
from storage import chats, dead_letters, keys, streams
from storage.events import StatusEvent, encode
from storage.keys import Stage, Stream
from tests.conftest import eventually
from tests.helpers import in_thread, post_webhook, settled, text_webhook
from tests import clock


def _counted(name, *labels) -> float:
    return getattr(metrics, name).labels(*labels)._value.get()


async def _answered(gupshup, phones: list[str]) -> dict[str, int]:
    replies = {phone: 0 for phone in phones}
    for sent in gupshup.sent:
        if sent.destination in replies:
            replies[sent.destination] += 1
    return replies


async def test_postgres_stopped_mid_flow_every_message_is_answered_once_none_dead_lettered(
    system, make_org, gupshup, deps, embedded
):
    org = await make_org("clinic")
    before = _counted("outage_retries", Stage.ENRICH, Dependency.POSTGRES)
    phones = [f"5730000{i:05d}" for i in range(12)]
    now_ms = clock.now_ms()
    async with system() as s:
        for i, phone in enumerate(phones[:4]):  # answered before the outage
            await post_webhook(s.url, text_webhook("clinic", phone, "hola", f"pre-{i}", now_ms))
        await gupshup.wait_for_sent(4, timeout_s=20)
        try:  # resumed whatever happens, even a stop that failed half way: later tests need it
            await in_thread(embedded["postgres"].pause)
            # Ingress answers from its cache of connections: the webhooks are taken, queued,
            # and the stages meet a PostgreSQL that is not there.
            for i, phone in enumerate(phones[4:]):
                status, _ = await post_webhook(
                    s.url, text_webhook("clinic", phone, "hola", f"during-{i}", now_ms)
                )
                assert status == 200
            await eventually(
                lambda: _more_than(before, "outage_retries", "enrich", "postgres"), timeout_s=20
            )
            async with aiohttp.ClientSession() as http, http.get(s.url + "/readyz") as r:
                readiness = await r.json()
            assert r.status == 503 and readiness["postgres"].startswith("error")
            assert "postgres" in readiness["dependencies_down"]
            # Held until every waiting message was retried more often than the 4 attempts that
            # used to dead-letter it (the retries are counted per message and attempt).
            old_budget = before + 4 * len(phones[4:])
            await eventually(
                lambda: _more_than(old_budget, "outage_retries", "enrich", "postgres"),
                timeout_s=60,
            )
        finally:
            await in_thread(embedded["postgres"].resume)
        await gupshup.wait_for_sent(len(phones), timeout_s=60)
        await eventually(lambda: settled(deps.redis, org))
    assert await _answered(gupshup, phones) == {phone: 1 for phone in phones}
    assert await dead_letters.list_letters(deps.redis, org=org) == []
    assert await deps.pool.fetchval(
        "select count(*) from chat_messages where direction = 'inbound'"
    ) == len(phones)


@pytest.mark.parametrize("fault", ["read_only", "lock_timeout"])
async def test_postgres_that_refuses_writes_is_waited_out_and_shows_in_readyz(
    system, make_org, gupshup, deps, fault
):
    """A server turned read-only (a standby, a provider's disk quota) or one whose locks time
    out (a long migration) fails every message's writes while answering `select 1`: waited
    out as an outage, shown in /readyz, nothing dead-lettered, everyone answered once."""
    org = await make_org("clinic")
    phones = [f"5730001{i:05d}" for i in range(6)]
    setting = {
        "read_only": ("default_transaction_read_only", "on"),
        "lock_timeout": ("lock_timeout", "1"),
    }[fault]
    locker = await deps.pool.acquire()
    locked = locker.transaction()
    async with system() as s:
        try:
            if fault == "read_only":
                await deps.pool.execute(f"alter system set {setting[0]} = '{setting[1]}'")
                await deps.pool.execute("select pg_reload_conf()")
            else:  # every write to chat_messages waits on a lock held elsewhere, then times out
                # The lock first: taken after the 1 ms lock_timeout, it would itself time out
                # whenever a running stage happened to hold a row lock of the table.
                await locked.start()
                await locker.execute("lock table chat_messages in exclusive mode")
                await deps.pool.execute(f"alter system set {setting[0]} = '{setting[1]}'")
                await deps.pool.execute("select pg_reload_conf()")
            for i, phone in enumerate(phones):
                status, _ = await post_webhook(
                    s.url, text_webhook("clinic", phone, "hola", f"ro-{i}", clock.now_ms())
                )
                assert status == 200
            # Shown in /readyz: the outage the stages are waiting out (and, read-only, a 503).
            readiness = await eventually(lambda: _postgres_reported_down(s.url), timeout_s=20)
            assert readiness["ready"] is (fault != "read_only"), readiness
            assert await dead_letters.list_letters(deps.redis, org=org) == []
        finally:
            if fault == "lock_timeout":
                await locked.rollback()
            await deps.pool.execute(f"alter system reset {setting[0]}")
            await deps.pool.execute("select pg_reload_conf()")
            await deps.pool.release(locker)
        await gupshup.wait_for_sent(len(phones), timeout_s=60)
        await eventually(lambda: settled(deps.redis, org), timeout_s=20)
    assert await _answered(gupshup, phones) == {phone: 1 for phone in phones}
    assert await dead_letters.list_letters(deps.redis, org=org) == []


async def _postgres_reported_down(url: str):
    async with aiohttp.ClientSession() as http, http.get(url + "/readyz") as r:
        body = await r.json()
    return body if "postgres" in body["dependencies_down"] else None


async def _more_than(before: float, name: str, *labels: str) -> bool:
    return _counted(name, *labels) > before


async def test_gupshup_down_for_a_while_replies_go_out_in_order_none_dead_lettered(
    system, make_org, gupshup, deps
):
    org = await make_org("clinic")
    gupshup.fail_next(503, times=12)  # three times the retry attempts (4)
    before = _counted("outage_retries", Stage.SENDER, Dependency.GUPSHUP)
    phone = "573001234567"
    now_ms = clock.now_ms()
    async with system(debounce_seconds=0.05, recipient_interval_ms=0) as s:
        await post_webhook(s.url, text_webhook("clinic", phone, "hola", "g-1", now_ms))
        sent = await gupshup.wait_for_sent(1, timeout_s=60)
        await eventually(lambda: settled(deps.redis, org))
    assert len(gupshup.sent) == 1 and sent[0].message["text"].startswith("¡Hola")
    assert await dead_letters.list_letters(deps.redis, org=org) == []
    assert _counted("outage_retries", Stage.SENDER, Dependency.GUPSHUP) == before + 12


async def test_a_locked_chat_waits_for_its_row_and_other_chats_go_on(
    system, make_org, gupshup, deps
):
    """One chat's row is locked (a long transaction elsewhere): its message waits for the lock
    and is answered once it goes; the other chats are answered meanwhile."""
    org = await make_org("clinic")
    locked, others = "573009990000", [f"57300888{i:04d}" for i in range(3)]
    await chats.upsert_identity(deps.pool, org, locked, "Ana")
    blocker = await deps.pool.acquire()
    transaction = blocker.transaction()
    await transaction.start()
    await blocker.execute("select 1 from chat_identities where phone = $1 for update", locked)
    now_ms = clock.now_ms()
    locked_for_now = True
    try:
        # Statements give up after 0.5 s: the locked entry is retried, the others go through.
        async with system(database_command_timeout_s=0.5, retry_attempts=50) as s:
            await post_webhook(s.url, text_webhook("clinic", locked, "hola", "l-0", now_ms))
            for i, phone in enumerate(others):
                await post_webhook(s.url, text_webhook("clinic", phone, "hola", f"o-{i}", now_ms))
            await gupshup.wait_for_sent(len(others), timeout_s=30)
            assert (await _answered(gupshup, [locked]))[locked] == 0
            await transaction.rollback()
            locked_for_now = False
            await gupshup.wait_for_sent(len(others) + 1, timeout_s=30)
    finally:
        if locked_for_now:
            await transaction.rollback()
        await deps.pool.release(blocker)
    assert await _answered(gupshup, [locked, *others]) == {p: 1 for p in [locked, *others]}
    assert await dead_letters.list_letters(deps.redis, org=org) == []


async def test_a_hung_handler_is_cut_off_and_its_entry_retried(deps):
    calls: list[int] = []
    release = asyncio.Event()

    async def handler(event, delivery):
        calls.append(delivery.attempt)
        if delivery.attempt == 1:
            await release.wait()  # hangs: never set

    before = _counted("handler_timeouts", Stage.ENRICH)
    config = StageConfig(
        stage=Stage.ENRICH,
        block_ms=100,
        claim_every_s=0.2,
        org_refresh_s=0.1,
        retry_base_s=0.01,
        retry_max_s=0.05,
        handler_timeout_s=0.3,
    )
    worker = StageWorker(deps.redis, config, handler, "c1", outages=deps.outages)
    await deps.redis.sadd(keys.ORG_REGISTRY, "org-1")
    await deps.redis.xadd(
        keys.stream("org-1", Stream.INBOUND),
        encode(StatusEvent(org="org-1", provider_id="p", status="read", at_ms=1)),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await eventually(lambda: _acked(deps, "org-1"), timeout_s=10)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert calls == [1, 2]
    assert _counted("handler_timeouts", Stage.ENRICH) == before + 1


async def _acked(deps, org: str) -> bool:
    if not await deps.redis.exists(
        keys.stream(org, Stream.INBOUND)
    ) or not await deps.redis.xinfo_groups(keys.stream(org, Stream.INBOUND)):
        return False  # the worker has not created its group yet
    summary = await deps.redis.xpending(keys.stream(org, Stream.INBOUND), Stage.ENRICH)
    groups = await deps.redis.xinfo_groups(keys.stream(org, Stream.INBOUND))
    return summary["pending"] == 0 and bool(groups) and groups[0]["entries-read"] == 1


async def test_an_entry_that_fails_on_its_own_is_dead_lettered_while_dependencies_answer(deps):
    async def handler(event, delivery):
        raise ValueError("this entry is broken")

    config = StageConfig(
        stage=Stage.ENRICH,
        block_ms=100,
        claim_every_s=0.2,
        org_refresh_s=0.1,
        retry_base_s=0.01,
        retry_max_s=0.05,
    )
    worker = StageWorker(deps.redis, config, handler, "c1", outages=Outages())
    await deps.redis.sadd(keys.ORG_REGISTRY, "org-2")
    await deps.redis.xadd(
        keys.stream("org-2", Stream.INBOUND),
        encode(StatusEvent(org="org-2", provider_id="p", status="read", at_ms=1)),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        letters = await eventually(lambda: dead_letters.list_letters(deps.redis, org="org-2"))
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert len(letters) == 1 and "this entry is broken" in letters[0].error


async def test_redis_restarted_empty_heals_and_new_messages_are_answered(
    system, make_org, gupshup, deps, embedded
):
    """Redis without persistence restarts: the registry, the consumer groups and the
    conversation state's indexes come back by themselves; new customers are answered."""
    org = await make_org("clinic")
    now_ms = clock.now_ms()
    async with system() as s:
        await post_webhook(s.url, text_webhook("clinic", "573000000010", "hola", "e-0", now_ms))
        await gupshup.wait_for_sent(1, timeout_s=20)
        server = embedded["redis"]
        await in_thread(server.stop)
        await in_thread(server.start)  # same port, nothing in it
        phones = [f"57300000002{i}" for i in range(3)]
        for i, phone in enumerate(phones):
            body = text_webhook("clinic", phone, "hola", f"e-{i + 1}", now_ms)
            await eventually(lambda body=body: _accepted_webhook(s.url, body), timeout_s=20)
        await gupshup.wait_for_sent(1 + len(phones), timeout_s=40)
        await eventually(lambda: settled(deps.redis, org))
        assert await deps.redis.sismember(keys.ORG_REGISTRY, org)
        async with aiohttp.ClientSession() as http, http.get(s.url + "/readyz") as r:
            readiness = await r.json()
    assert await _answered(gupshup, phones) == {phone: 1 for phone in phones}
    assert readiness["redis_persistence"].startswith("appendonly no")


async def _accepted_webhook(url: str, body) -> bool:
    """Gupshup retries a webhook that did not get a 2xx; so does this."""
    try:
        status, _ = await post_webhook(url, body)
    except aiohttp.ClientError:
        return False
    return status == 200


async def test_a_retry_after_of_an_hour_is_capped(system, make_org, deps):
    """A 429 asking for an hour's pause does not silence the number for an hour."""
    from aiohttp import web

    from storage import streams
    from storage.events import OutboundMessage
    from tests.fakes.gupshup import FakeGupshup

    throttled: list[int] = []

    @web.middleware
    async def throttle_once(request, handler):
        if request.path.endswith("/msg") and not throttled:
            throttled.append(1)
            return web.json_response(
                {"status": "error", "message": "Too Many Requests"},
                status=429,
                headers={"Retry-After": "3600"},
            )
        return await handler(request)

    fake = FakeGupshup()
    fake.app.middlewares.append(throttle_once)
    org = await make_org("clinic")
    identity = await chats.upsert_identity(deps.pool, org, "573001112222", "Ana")
    await deps.pool.execute(
        "update chat_identities set last_inbound_at = $2 where id = $1::uuid",
        identity.id,
        datetime.fromtimestamp(deps.clock(), timezone.utc),
    )
    async with fake, system(roles=("sender",), gupshup_api_url=fake.url, retry_after_max_s=0.3):
        await streams.publish(
            deps.redis,
            OutboundMessage(
                org=org,
                phone="573001112222",
                text="Tu cita quedó confirmada",
                idempotency_key="ra-1",
            ),
            Stream.OUTBOUND,
        )
        sent = await fake.wait_for_sent(1, timeout_s=20)
    assert throttled == [1] and sent[0].message["text"] == "Tu cita quedó confirmada"
    assert await dead_letters.list_letters(deps.redis, org=org) == []


async def test_replies_waiting_for_gupshup_go_out_in_their_order(system, make_org, gupshup, deps):
    from storage import streams
    from storage.events import OutboundMessage

    org = await make_org("clinic")
    phone = "573001113333"
    identity = await chats.upsert_identity(deps.pool, org, phone, "Ana")
    await deps.pool.execute(
        "update chat_identities set last_inbound_at = $2 where id = $1::uuid",
        identity.id,
        datetime.fromtimestamp(deps.clock(), timezone.utc),
    )
    gupshup.fail_next(503, times=8)
    texts = [f"mensaje {i}" for i in range(4)]
    for i, text in enumerate(texts):
        await streams.publish(
            deps.redis,
            OutboundMessage(org=org, phone=phone, text=text, idempotency_key=f"order-{i}"),
            Stream.OUTBOUND,
        )
    async with system(roles=("sender",), recipient_interval_ms=0):
        await gupshup.wait_for_sent(len(texts), timeout_s=30)
        await eventually(lambda: settled(deps.redis, org))
    assert [m.message["text"] for m in gupshup.sent] == texts
    assert await dead_letters.list_letters(deps.redis, org=org) == []


async def test_an_outage_whose_entry_was_given_up_on_ends_with_the_next_success(deps):
    """Gupshup has no probe: the outage ends when a call succeeds. Its only waiting entry was
    rejected instead (a poison), so the next entry's success must end it, or the stage's reads
    would stay slowed and /readyz would name gupshup for good."""
    outages = Outages()
    calls = 0

    async def handler(event, delivery):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise DependencyDown(Dependency.GUPSHUP, "HTTP 503")
        if calls == 2:
            raise Poison("rejected: Invalid Destination")

    config = StageConfig(
        stage=Stage.SENDER,
        block_ms=100,
        claim_every_s=0.2,
        org_refresh_s=0.1,
        retry_base_s=0.01,
        retry_max_s=0.05,
    )
    worker = StageWorker(deps.redis, config, handler, "c1", outages=outages)
    await deps.redis.sadd(keys.ORG_REGISTRY, "org-3")
    stream = keys.stream("org-3", Stream.OUTBOUND)
    await deps.redis.xadd(
        stream, encode(StatusEvent(org="org-3", provider_id="p1", status="read", at_ms=1))
    )
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await eventually(lambda: dead_letters.list_letters(deps.redis, org="org-3"))
        assert "gupshup" in outages.down()  # nothing has answered yet
        await streams.publish(
            deps.redis,
            StatusEvent(org="org-3", provider_id="p2", status="read", at_ms=2),
            Stream.OUTBOUND,
        )
        await eventually(lambda: _no_outage(outages), timeout_s=10)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert calls == 3


async def _no_outage(outages: Outages) -> bool:
    return not outages.down()
