"""The app behind PgBouncer in transaction pooling, as compose.yaml runs it: migrations run by
several processes at once, a webhook answered once through the whole pipeline, bookings (their
transactions and the double-booking constraint), and a PostgreSQL outage behind it waited out,
with DATABASE_STATEMENT_CACHE_SIZE=0 and a pool larger than PgBouncer's.

Skipped where the `pgbouncer` binary is absent (Debian package pgbouncer; .ci/run installs it).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from ops import metrics
from ops.app.wiring import open_deps, running_system
from ops.embedded import free_port
from ops.outages import Dependency
from storage import appointments, catalog, chats, dead_letters
from storage.db import MIGRATIONS_DIR, create_pool, migrate
from storage.seed import seed_demo
from storage.keys import Stage
from tests import clock
from tests.conftest import PIPELINE_ROLES, eventually
from tests.helpers import fresh, in_thread, post_webhook, settled, text_webhook

PGBOUNCER = shutil.which("pgbouncer") or next(
    (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.access(p, os.X_OK)), None
)
pytestmark = pytest.mark.skipif(
    PGBOUNCER is None,
    reason="pgbouncer not installed (Debian package pgbouncer; .ci/run installs it)",
)

BOGOTA = ZoneInfo("America/Bogota")
SERVER_POOL = 3  # PgBouncer's connections to PostgreSQL, fewer than one process's pool
SERVER_LOGIN_RETRY_S = 2  # as compose.yaml sets it (PgBouncer's default is 15)


def upstream(database_url: str) -> tuple[str, int, str, str]:
    """host (a socket folder or a name), port, database and user of the test PostgreSQL."""
    url = urlsplit(database_url)
    host = parse_qs(url.query).get("host", [url.hostname or "127.0.0.1"])[0]
    return host, url.port or 5432, url.path.lstrip("/") or "postgres", url.username or "postgres"


@contextmanager
def pgbouncer(database_url: str) -> Iterator[str]:
    """PgBouncer (pool_mode=transaction) in front of database_url; yields its URL."""
    host, port, database, user = upstream(database_url)
    folder = Path(tempfile.mkdtemp(prefix="skytide-pgbouncer-"))
    listen_port = free_port()
    (folder / "userlist.txt").write_text(f'"{user}" ""\n')
    (folder / "pgbouncer.ini").write_text(f"""\
[databases]
* = host={host} port={port} user={user}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen_port}
unix_socket_dir =
auth_type = trust
auth_file = {folder / "userlist.txt"}
pool_mode = transaction
default_pool_size = {SERVER_POOL}
max_client_conn = 200
ignore_startup_parameters = extra_float_digits
logfile = {folder / "pgbouncer.log"}
server_login_retry = {SERVER_LOGIN_RETRY_S}
log_connections = 0
log_disconnections = 0
""")
    command = [PGBOUNCER, str(folder / "pgbouncer.ini")]
    if os.geteuid() == 0:  # PgBouncer refuses to run as root; the embedded server's user will do
        import pwd

        user_name = "embedded_postgres" if _user_exists("embedded_postgres") else "nobody"
        os.chown(folder, pwd.getpwnam(user_name).pw_uid, -1)
        command[1:1] = ["-u", user_name]
    # It logs to its logfile and to stderr: a pipe nobody reads would fill up and stop it.
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield f"postgresql://{user}@127.0.0.1:{listen_port}/{database}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(folder, ignore_errors=True)


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


async def connectable(url: str) -> bool:
    try:
        conn = await asyncpg.connect(url, statement_cache_size=0, timeout=2)
    except (OSError, asyncpg.PostgresError, asyncio.TimeoutError):
        return False
    await conn.close()
    return True


@pytest.fixture
async def bouncer_url(migrated):
    with pgbouncer(migrated["database_url"]) as url:
        await eventually(lambda: connectable(url), timeout_s=15)  # until it listens
        yield url


@pytest.fixture
def bouncer_settings(settings, bouncer_url, gupshup):
    # The pool is larger than PgBouncer's server pool: transactions of many tasks share its
    # few server connections, as compose.yaml's processes share pgbouncer's.
    return settings.model_copy(
        update={
            "database_url": bouncer_url,
            "gupshup_api_url": gupshup.url,
            "database_statement_cache_size": 0,
            "database_pool_min": 2,
            "database_pool_max": 8,
        }
    )


async def test_a_webhook_is_answered_once_through_pgbouncer(
    bouncer_settings, deps, make_org, gupshup
):
    org = await make_org("docdeck")  # written directly; everything below goes through PgBouncer
    async with open_deps(bouncer_settings) as bounced:
        async with running_system(bouncer_settings, PIPELINE_ROLES, deps=bounced) as s:
            status, _ = await post_webhook(s.url, fresh("gupshup/gupshup_v2_text.json"))
            assert status == 200
            sent = await gupshup.wait_for_sent(1, timeout_s=15)
            await eventually(lambda: settled(deps.redis, org), timeout_s=15)
    assert len(gupshup.sent) == 1 and sent[0].destination == "919876543210"
    rows = await deps.pool.fetch(
        "select direction, provider_message_id from chat_messages "
        "where organization_id = $1::uuid order by created_at",
        org,
    )
    assert [r["direction"] for r in rows] == ["inbound", "outbound"]
    assert rows[1]["provider_message_id"] == sent[0].message_id


async def test_bookings_through_pgbouncer_are_idempotent_and_never_double_book(
    bouncer_settings, deps
):
    clinic = await seed_demo(deps.pool, today=clock.today())
    async with open_deps(bouncer_settings) as bounced:
        pool = bounced.pool
        facial = await catalog.find_service(pool, clinic, "limpieza facial")
        staff = await pool.fetchval(
            "select count(*) from staff_services ss join staff s on s.id = ss.staff_id "
            "where ss.service_id = $1::uuid and s.organization_id = $2::uuid",
            facial.id,
            clinic,
        )
        start = datetime(2027, 3, 4, 15, 0, tzinfo=BOGOTA)
        who = (await chats.upsert_identity(pool, clinic, "573001112233", None)).contact_id
        first = await appointments.book(
            pool,
            org=clinic,
            contact_id=who,
            service=facial,
            starts_at=start,
            idempotency_key="turn-1:1",
            contact_name="Ana Pérez",
        )
        again = await appointments.book(
            pool,
            org=clinic,
            contact_id=who,
            service=facial,
            starts_at=start,
            idempotency_key="turn-1:1",
            contact_name="Ana Pérez",
        )
        assert first is not None and again.id == first.id
        # More contacts than staff race for that hour, more at once than PgBouncer has server
        # connections: each staff member is booked once, the rest are refused.
        rivals = [
            (await chats.upsert_identity(pool, clinic, f"57300100{i:04d}", None)).contact_id
            for i in range(staff + 3)
        ]
        results = await asyncio.gather(
            *[
                appointments.book(
                    pool,
                    org=clinic,
                    contact_id=rival,
                    service=facial,
                    starts_at=start,
                    idempotency_key=f"race-{i}:1",
                )
                for i, rival in enumerate(rivals)
            ]
        )
    booked = [r for r in results if r is not None]
    assert len(booked) == staff - 1  # the first booking holds one staff member
    assert len({r.staff_id for r in booked} | {first.staff_id}) == staff
    assert (
        await deps.pool.fetchval(
            "select count(*) from appointments where organization_id = $1::uuid and status = 'confirmed'",
            clinic,
        )
        == staff
    )


def _counted(name: str, *labels: str) -> float:
    return getattr(metrics, name).labels(*labels)._value.get()


async def _more_than(before: float, name: str, *labels: str) -> bool:
    return _counted(name, *labels) > before


async def test_postgres_stopped_behind_pgbouncer_is_waited_out_everyone_answered_once(
    bouncer_settings, deps, make_org, gupshup, embedded
):
    """PgBouncer keeps accepting the app's connections while PostgreSQL is down, and fails
    their statements: the stages wait the outage out as they do without it."""
    org = await make_org("clinic")
    before = _counted("outage_retries", Stage.ENRICH, Dependency.POSTGRES)
    phones = [f"5730002{i:05d}" for i in range(6)]
    now_ms = clock.now_ms()
    async with open_deps(bouncer_settings) as bounced:
        async with running_system(bouncer_settings, PIPELINE_ROLES, deps=bounced) as s:
            await post_webhook(s.url, text_webhook("clinic", phones[0], "hola", "pre-0", now_ms))
            await gupshup.wait_for_sent(1, timeout_s=20)
            try:  # resumed whatever happens: later tests need it
                await in_thread(embedded["postgres"].pause)
                for i, phone in enumerate(phones[1:]):
                    status, _ = await post_webhook(
                        s.url, text_webhook("clinic", phone, "hola", f"during-{i}", now_ms)
                    )
                    assert status == 200
                await eventually(
                    lambda: _more_than(before, "outage_retries", Stage.ENRICH, Dependency.POSTGRES),
                    timeout_s=30,
                )
            finally:
                await in_thread(embedded["postgres"].resume)
            # PgBouncer tries PostgreSQL again server_login_retry after a failed login
            await gupshup.wait_for_sent(len(phones), timeout_s=60)
            await eventually(lambda: settled(deps.redis, org), timeout_s=30)
    answered = {}
    for sent in gupshup.sent:
        answered[sent.destination] = answered.get(sent.destination, 0) + 1
    assert answered == {phone: 1 for phone in phones}
    assert await dead_letters.list_letters(deps.redis, org=org) == []


async def test_several_processes_migrate_a_fresh_database_through_pgbouncer_at_once(
    bouncer_url, migrated
):
    """Every worker migrates at start (skytide run): behind transaction pooling the migration
    lock must be a transaction's, or it is taken on one server session and released on
    another."""
    name = f"skytide_bouncer_{os.getpid()}"
    admin = await asyncpg.connect(migrated["database_url"])
    await admin.execute(f"drop database if exists {name} with (force)")
    await admin.execute(f"create database {name}")
    fresh_url = bouncer_url.rsplit("/", 1)[0] + f"/{name}"
    pools = [
        await create_pool(fresh_url, min_size=0, max_size=2, statement_cache_size=0)
        for _ in range(4)
    ]
    try:
        applied = await asyncio.wait_for(asyncio.gather(*[migrate(pool) for pool in pools]), 120)
        everything = sorted(path.name for path in MIGRATIONS_DIR.glob("*.sql"))
        assert sorted(n for each in applied for n in each) == everything  # each once, by one
        assert await pools[0].fetchval("select count(*) from schema_migrations") == len(everything)
        assert await asyncio.gather(*[migrate(pool) for pool in pools]) == [[]] * len(pools)
    finally:
        for pool in pools:
            await pool.close()
        await admin.execute(f"drop database if exists {name} with (force)")
        await admin.close()
