"""Scheduling benchmarks: availability over a week with schedules, holidays and holds, and
confirmations run by the job scheduler with one and three workers.

python -m bench.scheduling

Prints figures and ratios against bare baselines measured in the same run (on this busy
machine the absolute figures are noisy; the ratios less so); asserts nothing but prints how many
messages each job produced (1 each, however many workers).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from datetime import date, datetime, time as dtime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from consumers.scheduler import Scheduler
from ops.app.wiring import open_deps, run_async
from ops.deps import Deps
from ops.settings import Settings
from ops.system import services
from storage import appointments, catalog, chats, jobs, keys, streams
from storage.db import migrate
from storage.events import ConfirmationJob, OutboundMessage
from storage.keys import Stream
from storage.seed import seed_demo

BOGOTA = ZoneInfo("America/Bogota")
CALLS = 200
JOBS = 600
MONDAY = date(2027, 3, 8)


async def _facial(deps: Deps, org: str) -> catalog.Service:
    """The demo clinic's facial cleaning (storage/seed.py)."""
    facial = await catalog.find_service(deps.pool, org, "limpieza facial")
    if facial is None:
        raise LookupError("the demo clinic has no 'limpieza facial'")
    return facial


async def availability_ms(deps: Deps, org: str) -> tuple[float, float]:
    """Per call: the week's free slots of a service, and the bare busy-times query alone."""
    facial = await _facial(deps, org)
    days = [MONDAY + timedelta(days=i) for i in range(7)]
    now = datetime.combine(MONDAY, dtime(7), BOGOTA)
    started = time.perf_counter()
    for _ in range(CALLS):
        await appointments.availability(
            deps.pool,
            org=org,
            service=facial,
            tz=BOGOTA,
            days=days,
            time_from=dtime.min,
            time_to=dtime.max,
            not_before=now,
        )
    full = (time.perf_counter() - started) * 1000 / CALLS
    started = time.perf_counter()
    for _ in range(CALLS):
        await deps.pool.fetch(
            "select staff_id, starts_at, ends_at from appointments where "
            "organization_id = $1::uuid and status <> 'cancelled'",
            org,
        )
    bare = (time.perf_counter() - started) * 1000 / CALLS
    return full, bare


async def _appointments(deps: Deps, org: str, n: int) -> list[str]:
    contact = (await chats.upsert_identity(deps.pool, org, "573000000001", "Bench")).contact_id
    facial = await _facial(deps, org)
    staff = await deps.pool.fetchval(
        "select id::text from staff where organization_id = $1::uuid and name = 'Laura Gómez'", org
    )
    start = datetime.combine(MONDAY + timedelta(days=30), dtime(8), BOGOTA)
    rows = await deps.pool.fetch(
        "insert into appointments (organization_id, contact_id, service_id, staff_id, starts_at, ends_at)"
        " select $1::uuid, $2::uuid, $3::uuid, $4::uuid, $5::timestamptz + make_interval(hours => g),"
        " $5::timestamptz + make_interval(hours => g, mins => 60) from generate_series(0, $6 - 1) g returning id::text",
        org,
        contact,
        facial.id,
        staff,
        start,
        n,
    )
    return [r["id"] for r in rows]


async def scheduler_rate(deps: Deps, org: str, ids: list[str], workers: int) -> tuple[float, int]:
    await deps.redis.delete(keys.stream(org, Stream.OUTBOUND))
    now_ms = deps.now_ms()
    for i, appointment_id in enumerate(ids):
        await jobs.plan(
            deps.redis,
            org,
            f"bench:{workers}:{i}",
            now_ms,
            ConfirmationJob(appointment_id=appointment_id, starts_ms=0, change="booked"),
        )
    pool = [Scheduler(deps) for _ in range(workers)]
    started = time.perf_counter()
    while await deps.redis.zcard(keys.jobs_due(org)) or await deps.redis.zcard(
        keys.jobs_running(org)
    ):
        await asyncio.gather(*(w.tick() for w in pool))
    elapsed = time.perf_counter() - started
    return len(ids) / elapsed, await deps.redis.xlen(keys.stream(org, Stream.OUTBOUND))


async def bare_publish_rate(deps: Deps, org: str, n: int) -> float:
    started = time.perf_counter()
    for i in range(n):
        await streams.publish(
            deps.redis,
            OutboundMessage(
                org=org, phone="573000000001", text="hola", idempotency_key=f"bare:{i}"
            ),
            "bare",  # type: ignore[arg-type]  # a bench stream that no stage reads
        )
    return n / (time.perf_counter() - started)


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Settings(
            skytide_env="development",
            data_dir=Path(tmp),
            log_level="WARNING",
            http_port=0,
            job_batch=50,
        )
        async with services(base) as settings, open_deps(settings) as deps:
            await migrate(deps.pool)
            org = await seed_demo(deps.pool, today=MONDAY - timedelta(days=7))
            full, bare = await availability_ms(deps, org)
            print(
                f"availability: {full:.1f} ms for a week of one service (opening and staff hours, "
                f"time off, closures, holidays); bare busy-times query {bare:.1f} ms; ratio {full / bare:.1f}"
            )
            ids = await _appointments(deps, org, JOBS)
            bare_rate = await bare_publish_rate(deps, org, JOBS)
            for workers in (1, 3):
                rate, sent = await scheduler_rate(deps, org, ids, workers)
                print(
                    f"scheduler, {workers} worker(s): {rate:,.0f} confirmations/s, {sent} messages for "
                    f"{JOBS} jobs; bare XADD {bare_rate:,.0f}/s; ratio {rate / bare_rate:.2f}"
                )


if __name__ == "__main__":
    run_async(main())
