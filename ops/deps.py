"""The dependencies every stage and agent receives, built in one place (the entry points)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import aiohttp
import asyncpg
import redis.asyncio as aioredis

from ops.outages import Outages
from ops.settings import Settings


@dataclass
class Deps:
    settings: Settings
    redis: aioredis.Redis
    pool: asyncpg.Pool
    http: aiohttp.ClientSession
    clock: Callable[[], float] = field(default=time.time)  # seconds since the epoch
    outages: Outages = field(default_factory=Outages)  # which dependencies are down now

    def __post_init__(self) -> None:
        # How Outages tells "PostgreSQL is down" from "this entry fails" (ops/outages.py).
        self.outages.add_probe("postgres", lambda: self.pool.fetchval("select 1"))
        self.outages.add_probe("redis", self.redis.ping)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)
