"""Known chats served from memory (storage/identity_cache.py): a message from a known chat costs
PostgreSQL one statement (its row, with last_inbound_at), and whatever changes the chat - the
app in any process, the CRM's SQL, an erasure - is honoured."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from consumers.enrich import EnrichStage
from graph.receptionist import Receptionist
from ops import metrics
from ops.deps import Deps
from storage import chats, erasure, keys, privacy
from storage.db import create_pool
from storage.events import InboundMessage
from storage.identity_cache import IdentityCache
from storage.keys import Stream
from storage.media_store import LocalMediaStore
from tests import clock
from tests.conftest import eventually
from tests.helpers import post_webhook, settled, text_webhook

PHONE = "573001112233"


@pytest.fixture
async def polling(deps):
    """This process's change-log poll running, as in a worker (ops/app/wiring.py)."""
    stop = asyncio.Event()
    task = asyncio.create_task(chats.CACHE.run(deps.pool, stop, every_s=0.05))
    await eventually(lambda: _true(chats.CACHE.serving()))
    yield
    stop.set()
    await task


async def _true(value: bool) -> bool:
    return value


@pytest.fixture
async def counted(settings, deps):
    """Deps whose PostgreSQL statements are listed (one connection, its query log)."""
    pool = await create_pool(settings.database_url, min_size=1, max_size=1)
    statements: list[str] = []
    async with pool.acquire() as conn:
        conn.add_query_logger(lambda q: statements.append(q.query))
    counted_deps = Deps(settings=settings, redis=deps.redis, pool=pool, http=deps.http)
    try:
        yield counted_deps, statements
    finally:
        await pool.close()


def _sql(statements: list[str]) -> list[str]:
    """The statements the code ran (not the pool's reset of a connection it takes back)."""
    return [s for s in statements if "RESET ALL" not in s.upper()]


SENT_MS = clock.now_ms()


def _message(org: str, provider_id: str, sent_at_ms: int = SENT_MS) -> InboundMessage:
    return InboundMessage(
        org=org,
        provider_id=provider_id,
        phone=PHONE,
        name="Ana",
        kind="text",
        text="hola",
        sent_at_ms=sent_at_ms,
        received_at_ms=sent_at_ms,
    )


async def test_a_known_chats_message_costs_one_statement(deps, make_org, polling, counted):
    org = await make_org("clinic")
    counted_deps, statements = counted
    stage = EnrichStage(counted_deps)
    assert await stage.message(_message(org, "m-1")) is None  # new chat: identity written
    first = len(_sql(statements))
    statements.clear()
    assert await stage.message(_message(org, "m-2", SENT_MS + 1000)) is None
    known = _sql(statements)
    # Nothing read: one INSERT of the row, last_inbound_at moved in the same statement.
    assert len(known) == 1 and "insert into chat_messages" in known[0]
    assert "update chat_identities" in known[0]
    last = await deps.pool.fetchval(
        "select last_inbound_at from chat_identities where organization_id = $1::uuid", org
    )
    assert last == chats.ms_to_dt(SENT_MS + 1000)
    # The same message again (a redelivery) is still recognised as one, and counted once.
    statements.clear()
    stored = metrics.REGISTRY.get_sample_value("skytide_processed_text_chars_count")
    assert (await stage.message(_message(org, "m-2", SENT_MS + 1000))).value == "duplicate"
    assert metrics.REGISTRY.get_sample_value("skytide_processed_text_chars_count") == stored
    # With the change log unread (PostgreSQL unreachable for the poll), nothing is trusted.
    chats.CACHE.forget_sync()
    statements.clear()
    assert await stage.message(_message(org, "m-3")) is None
    uncached = _sql(statements)
    assert len(uncached) == 2 and "from chat_identities" in uncached[0]
    print(f"statements: first message {first}, known chat {len(known)}, uncached {len(uncached)}")


async def test_a_turn_reads_its_chat_once(deps, make_org, polling, counted):
    org = await make_org("clinic")
    counted_deps, statements = counted
    await chats.upsert_identity(deps.pool, org, PHONE, "Ana")
    await deps.pool.execute(
        "update contacts set name = 'Ana Pérez' where organization_id = $1::uuid", org
    )
    identity = await chats.turn_identity(counted_deps.pool, org, PHONE)
    assert identity is not None and identity.bot_enabled
    read = _sql(statements)
    assert await chats.name_and_language(counted_deps.pool, org, identity.id) == ("Ana Pérez", None)
    assert _sql(statements) == read and len(read) == 1  # the name came with the identity


async def test_a_change_in_sql_drops_the_cached_chat_at_the_next_poll(deps, make_org, polling):
    org = await make_org("clinic")
    identity = await chats.upsert_identity(deps.pool, org, PHONE, "Ana")
    served = await chats.identity_of_message(deps.pool, org, PHONE, "Ana")
    assert served == identity and chats.CACHE.get(org, PHONE) is not None
    for change in (
        "update contacts set name = 'Ana María' where organization_id = $1::uuid",
        "update chat_identities set bot_enabled = false where organization_id = $1::uuid",
        "insert into contact_authorizations (organization_id, contact_id, status, source)"
        " select organization_id, id, 'opted_out', 'crm' from contacts where organization_id = $1::uuid",
    ):
        await chats.upsert_identity(deps.pool, org, PHONE, None)  # cached again
        assert chats.CACHE.get(org, PHONE) is not None
        await deps.pool.execute(change, org)  # as the CRM's dashboard would
        await chats.CACHE.poll(deps.pool)
        assert chats.CACHE.get(org, PHONE) is None, change
    # A write the cache does not care about (each message's last_inbound_at) logs nothing.
    logged = await deps.pool.fetchval("select count(*) from identity_changes")
    await deps.pool.execute("update chat_identities set last_inbound_at = now()")
    assert await deps.pool.fetchval("select count(*) from identity_changes") == logged
    # The bot off, opted out: read fresh every time, never served from memory.
    fresh = await chats.identity_of_message(deps.pool, org, PHONE, "Ana")
    assert not fresh.bot_enabled and fresh.opted_out
    assert chats.CACHE.get(org, PHONE) is not None  # kept, but not served (identity_of_message)


def test_an_entry_lives_a_day_and_is_served_only_while_the_log_is_read():
    now = [0.0]
    cache: IdentityCache[str] = IdentityCache(clock=lambda: now[0], max_lag_s=5)
    cache.put("org", PHONE, "ana", ["identity-1", "contact-1"])
    assert cache.get("org", PHONE) is None  # never polled: nothing trusted
    cache._synced_at = 0.0  # as a poll would at this instant
    assert cache.get("org", PHONE) == "ana"
    now[0] = 6.0  # the poll has failed for longer than max_lag_s
    assert cache.get("org", PHONE) is None
    cache._synced_at = 24 * 3600.0 - 1
    now[0] = 24 * 3600.0 - 1
    assert cache.get("org", PHONE) == "ana"
    now[0] = 24 * 3600.0
    cache._synced_at = now[0]
    assert cache.get("org", PHONE) is None  # a day old
    cache.put("org", PHONE, "ana", ["identity-1", "contact-1"])
    cache.drop_row("contact-1")
    assert cache.get("org", PHONE) is None and len(cache) == 0


async def test_an_erasure_empties_every_processs_cache(deps, make_org, polling, tmp_path):
    org = await make_org("clinic")
    identity = await chats.upsert_identity(deps.pool, org, PHONE, "Ana")
    other: IdentityCache[str] = IdentityCache()  # another worker process's
    await other.poll(deps.pool)
    other.put(org, PHONE, "Ana", [identity.id, identity.contact_id])
    person = await privacy.find(deps.pool, org, PHONE)
    await erasure.erase(
        deps.pool, deps.redis, LocalMediaStore(tmp_path), person, now=clock.now_dt()
    )
    assert chats.CACHE.get(org, PHONE) is None  # this process's at once
    await other.poll(deps.pool)
    assert other.get(org, PHONE) is None
    # The log names rows by id: no phone or name of the erased person stays in it.
    logged = await deps.pool.fetch("select * from identity_changes")
    assert logged and all(PHONE not in str(dict(r).values()) for r in logged)


def _names_seen(seen: list[str | None]):
    """The real receptionist, noting the contact's name each turn starts with."""

    class Noting(Receptionist):
        async def _context(self, turn):
            context = await super()._context(turn)
            seen.append(context.contact_name)
            return context

    return Noting


async def test_what_another_process_changed_is_honoured_by_the_next_message(
    system, make_org, gupshup, deps, monkeypatch
):
    """The agent and the sender read the chat fresh, so even before this process's poll drops
    its cached entry (held here: drop_row disabled) a rename, a take-over and an opt-out made
    elsewhere hold for the very next message."""
    org = await make_org("clinic")
    names: list[str | None] = []
    async with system(_names_seen(names)) as s:
        await post_webhook(s.url, text_webhook("clinic", PHONE, "hola", "x-1", clock.now_ms()))
        await gupshup.wait_for_sent(1, timeout_s=10)
        await eventually(lambda: settled(deps.redis, org))
        assert chats.CACHE.get(org, PHONE) is not None
        monkeypatch.setattr(chats.CACHE, "drop_row", lambda row_id: None)

        # The CRM renames the contact: the next turn greets the new name.
        await deps.pool.execute(
            "update contacts set name = 'Ana María' where organization_id = $1::uuid", org
        )
        await post_webhook(s.url, text_webhook("clinic", PHONE, "¿hola?", "x-2", clock.now_ms()))
        await gupshup.wait_for_sent(2, timeout_s=10)
        await eventually(lambda: settled(deps.redis, org))
        assert names[-1] == "Ana María"

        # A person takes the chat over in another process (the operator API's ingress).
        await deps.pool.execute(
            "update chat_identities set bot_enabled = false, bot_paused_at = now()"
            " where organization_id = $1::uuid",
            org,
        )
        turns_before = await deps.redis.xlen(keys.stream(org, Stream.TURNS))
        replies_before = await deps.redis.xlen(keys.stream(org, Stream.OUTBOUND))
        await post_webhook(s.url, text_webhook("clinic", PHONE, "¿sigues?", "x-3", clock.now_ms()))
        # enrich served the stale chat (a turn was queued), the agent's fresh read stopped it:
        # no turn ran, no reply was even queued.
        await eventually(lambda: _turns(deps, org, turns_before + 1))
        await eventually(lambda: settled(deps.redis, org))
        assert await deps.redis.xlen(keys.stream(org, Stream.OUTBOUND)) == replies_before
        assert len(gupshup.sent) == 2

        # Handed back, then the contact opts out from the CRM's dashboard.
        await deps.pool.execute(
            "update chat_identities set bot_enabled = true, bot_paused_at = null"
            " where organization_id = $1::uuid",
            org,
        )
        # (The agent's fresh read of x-3 cached the chat as taken over; read it back as it is.)
        assert (await chats.upsert_identity(deps.pool, org, PHONE, None)).bot_enabled
        await deps.pool.execute(
            "insert into contact_authorizations (organization_id, contact_id, status, source)"
            " select organization_id, id, 'opted_out', 'crm' from contacts"
            " where organization_id = $1::uuid",
            org,
        )
        turns_before = await deps.redis.xlen(keys.stream(org, Stream.TURNS))
        await post_webhook(s.url, text_webhook("clinic", PHONE, "¿y ahora?", "x-4", clock.now_ms()))
        await eventually(lambda: _turns(deps, org, turns_before + 1))  # enrich's stale chat
        await eventually(lambda: settled(deps.redis, org))
        assert await deps.redis.xlen(keys.stream(org, Stream.OUTBOUND)) == replies_before
    assert len(gupshup.sent) == 2  # nothing to the contact who opted out


async def _turns(deps, org, n):
    return await deps.redis.xlen(keys.stream(org, Stream.TURNS)) == n


async def _inbound(deps, org, n):
    count = await deps.pool.fetchval(
        "select count(*) from chat_messages where organization_id = $1::uuid"
        " and direction = 'inbound'",
        org,
    )
    return count == n


async def test_a_chat_erased_by_another_process_before_the_poll_is_read_again(
    deps, make_org, monkeypatch
):
    org = await make_org("clinic")
    monkeypatch.setattr(chats.CACHE, "clock", lambda: 1000.0)  # no poll due in this test
    await chats.CACHE.poll(deps.pool)
    try:
        stage = EnrichStage(deps)
        assert await stage.message(_message(org, "e-1")) is None
        # Erased elsewhere (`skytide contact erase`): this process's poll has not run yet.
        await deps.pool.execute("delete from contacts where organization_id = $1::uuid", org)
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await stage.message(_message(org, "e-2", SENT_MS + 1000))
        # The runtime's retry reads the chat afresh: a new contact, the message kept.
        assert await stage.message(_message(org, "e-2", SENT_MS + 1000)) is None
        assert (
            await deps.pool.fetchval(
                "select count(*) from chat_messages where organization_id = $1::uuid", org
            )
            == 1
        )
    finally:
        chats.CACHE.forget_sync()
