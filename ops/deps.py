"""The dependencies every stage and agent receives, built in one place (the entry points)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import aiohttp
import asyncpg
import redis.asyncio as aioredis

from ops.outages import Dependency, Outages
from ops.settings import Settings


def _settings_clock() -> float:
    """Deps' default clock, a marker: __post_init__ puts the settings' clock in its place (so
    `deps.clock` is always callable, without a None to check at every call)."""
    raise RuntimeError("Deps.__post_init__ replaces this clock")


@dataclass
class Deps:
    settings: Settings
    redis: aioredis.Redis
    pool: asyncpg.Pool
    http: aiohttp.ClientSession
    # Seconds since the epoch; by default real time shifted by settings.clock_offset_s.
    clock: Callable[[], float] = _settings_clock
    outages: Outages = field(default_factory=Outages)  # which dependencies are down now

    def __post_init__(self) -> None:
        if self.clock is _settings_clock:
            self.clock = shifted_clock(self.settings.clock_offset_s)
        # How Outages tells "PostgreSQL is down" from "this entry fails" (ops/outages.py).
        self.outages.add_probe(Dependency.POSTGRES, lambda: _accepts_writes(self.pool))
        self.outages.add_probe(Dependency.REDIS, self.redis.ping)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)


async def _accepts_writes(pool: asyncpg.Pool) -> None:
    """PostgreSQL's probe: it answers, and would accept a write (a server turned read-only
    answers `select 1` but fails every message)."""
    if await pool.fetchval("select current_setting('transaction_read_only')") == "on":
        raise asyncpg.exceptions.ReadOnlySQLTransactionError("the server is read-only")


def shifted_clock(offset_s: float) -> Callable[[], float]:
    """Real time, or real time moved by a fixed offset (a test or a demo placed on a chosen date
    and hour: every process given the same offset reads the same instant)."""
    if not offset_s:
        return time.time
    return lambda: time.time() + offset_s
