"""A backup restored after losing everything (docs/operations.md "Backups and restore"): a
booking made through the pipeline, a `pg_dump` of the database, then the original database and
Redis wiped; the dump restored with `pg_restore` into a fresh database, a new empty Redis beside
it, and the whole system started on those. The returning customer asking for their appointments
is answered with the one they booked, and its reminders are planned again in the new Redis."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from pathlib import Path
from typing import Any

from ops.app.wiring import open_deps, running_system
from storage.events import ReminderJob
from ops.embedded import EmbeddedPostgres, EmbeddedRedis
from ops.settings import ALL_ROLES
from storage import jobs, keys
from tests import clock
from tests.conftest import TABLES, eventually
from tests.helpers import post_webhook, settled, text_webhook

PHONE = "573001238888"


def pg_dump(database_url: str, out: str) -> None:
    subprocess.run(
        [str(EmbeddedPostgres.client_program("pg_dump")), "--format=custom", f"--file={out}",
         f"--dbname={database_url}"],
        check=True, capture_output=True,
    )  # fmt: skip


def pg_restore(dump: str, database_url: str) -> None:
    subprocess.run(
        [str(EmbeddedPostgres.client_program("pg_restore")), "--no-owner", "--exit-on-error",
         f"--dbname={database_url}", dump],
        check=True, capture_output=True,
    )  # fmt: skip


async def test_a_pg_dump_restored_beside_an_empty_redis_answers_a_returning_customer(
    system: Any,
    make_org: Any,
    gupshup: Any,
    deps: Any,
    settings: Any,
    embedded: Any,
    tmp_path: Path,
) -> None:
    org = await make_org("clinic", catalog=True)
    async with system() as s:
        await post_webhook(
            s.url,
            text_webhook(
                "clinic", PHONE, "quiero una cita de limpieza facial mañana en la tarde", "b-1",
                clock.now_ms(),
            ),
        )  # fmt: skip
        [offer] = await gupshup.wait_for_sent(1, timeout_s=20)
        assert "1." in offer.message["text"], offer.message
        await eventually(lambda: settled(deps.redis, org))
        await post_webhook(
            s.url, text_webhook("clinic", PHONE, "la primera", "b-2", clock.now_ms())
        )
        done = await gupshup.wait_for_sent(2, timeout_s=20)
        assert "Listo" in done[1].message["text"], done[1].message
        await eventually(lambda: settled(deps.redis, org))
    [booked] = await deps.pool.fetch("select id, status from appointments")
    assert booked["status"] == "confirmed"

    dump = str(tmp_path / "skytide.dump")
    await asyncio.to_thread(pg_dump, embedded["database_url"], dump)
    # The disaster: the database and Redis the booking was made on are gone.
    await deps.pool.execute(f"truncate {', '.join(TABLES)} cascade")
    await deps.redis.flushdb()

    database = f"restored_{uuid.uuid4().hex[:8]}"
    await deps.pool.execute(f'create database "{database}"')
    restored_url = embedded["postgres"].database_url(database)
    new_redis = EmbeddedRedis(tmp_path / "redis", appendonly=True)
    try:
        await asyncio.to_thread(pg_restore, dump, restored_url)
        restored = settings.model_copy(
            update={
                "database_url": restored_url,
                "redis_url": new_redis.start(),
                "gupshup_api_url": gupshup.url,
            }
        )
        async with (
            open_deps(restored) as restored_deps,
            running_system(restored, ALL_ROLES, deps=restored_deps) as s,
        ):
            status, _ = await post_webhook(
                s.url, text_webhook("clinic", PHONE, "qué citas tengo?", "b-3", clock.now_ms())
            )
            assert status == 200
            replies = await gupshup.wait_for_sent(3, timeout_s=30)
            answer = replies[2]
            assert answer.destination == PHONE
            assert "Limpieza facial" in answer.message["text"], answer.message
            # The scheduler rebuilt the appointment's reminders from the restored database.
            await eventually(lambda: restored_deps.redis.exists(keys.JOBS_RECONCILED), timeout_s=20)
            planned = [
                j.data
                for j in await jobs.pending(restored_deps.redis, org)
                if isinstance(j.data, ReminderJob)
            ]
            assert planned and {p.appointment_id for p in planned} == {str(booked["id"])}
            await eventually(lambda: settled(restored_deps.redis, org))
            assert len(gupshup.sent) == 3, [m.message for m in gupshup.sent]
    finally:
        new_redis.stop()
        await deps.pool.execute(f'drop database if exists "{database}" with (force)')
