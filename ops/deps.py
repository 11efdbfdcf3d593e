"""The dependencies every stage and agent receives, built in one place (the entry points)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import aiohttp
import asyncpg
import redis.asyncio as aioredis

from ops.settings import Settings


@dataclass
class Deps:
    settings: Settings
    redis: aioredis.Redis
    pool: asyncpg.Pool
    http: aiohttp.ClientSession
    clock: Callable[[], float] = field(default=time.time)  # seconds since the epoch

    def now_ms(self) -> int:
        return int(self.clock() * 1000)
