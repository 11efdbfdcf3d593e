"""The demo clinic: a Spanish-speaking spa in Bogotá, so `make run` has something to talk about.

Its catalogue is the file storage/demo_clinic.yaml, imported like any clinic's
(`skytide catalog import`); only the day off next week is added here, since it moves with today.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from collections.abc import Callable
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

import asyncpg

from storage import catalog_file, schedules
from storage.orgs import add_org, find_connection

DEMO_APP = "DemoClinic"
DEMO_FILE = Path(__file__).with_name("demo_clinic.yaml")
DAY_OFF_STAFF = "Camila Torres"


async def seed_demo(
    pool: asyncpg.Pool,
    *,
    api_key: str = "demo-key",
    source_phone: str = "573009990000",
    webhook_token: str | None = None,
    app_name: str = DEMO_APP,
    today: date,
) -> str:
    """Create the demo clinic once; returns its organization id (the existing one if seeded).

    Its webhook token is random like any other (a published one would open its webhook to
    anyone); the command line seeds it only in development (DEV_CHAT). `today` is the clinic's
    date on the caller's clock (the seeded day off falls next week).
    """
    existing = await find_connection(pool, app_name=app_name)
    if existing:
        return existing.org_id
    org = await add_org(
        pool,
        name="Clínica Estética Demo",
        app_name=app_name,
        api_key=api_key,
        source_phone=source_phone,
        webhook_token=webhook_token,
        timezone="America/Bogota",
    )
    await catalog_file.import_catalog(pool, org, catalog_file.load(DEMO_FILE.read_text()))
    await _day_off_next_week(pool, org, today)
    return org


class Clocked(Protocol):
    """What has a process clock (ops.deps.Deps): seconds since the epoch."""

    @property
    def clock(self) -> Callable[[], float]: ...


def demo_today(deps: Clocked) -> date:
    """The demo clinic's date on a process clock (anything with a `clock()` in epoch seconds)."""
    return datetime.fromtimestamp(deps.clock(), ZoneInfo("America/Bogota")).date()


async def seed_catalog(pool: asyncpg.Pool, org: str) -> catalog_file.Report:
    """The demo clinic's services, staff, hours and FAQ for an existing organization (its own
    name and settings are kept)."""
    data = catalog_file.load(DEMO_FILE.read_text())
    data.pop("organization")
    return await catalog_file.import_catalog(pool, org, data)


async def _day_off_next_week(pool: asyncpg.Pool, org: str, today: date) -> None:
    """Camila is off on Thursday next week (a realistic gap the bot must not offer)."""
    thursday = today + timedelta(days=7 - today.weekday() + 3)
    staff_id = await pool.fetchval(
        "select id::text from staff where organization_id = $1::uuid and name = $2",
        org,
        DAY_OFF_STAFF,
    )
    start, end = schedules.day_span(thursday, thursday, ZoneInfo("America/Bogota"))
    await schedules.add_time_off(pool, org, staff_id, start, end, reason="día libre")
