"""A loop that calls `tick` every tick_s until stopped; a failing tick is logged and retried."""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

log = logging.getLogger(__name__)


async def every(
    tick_s: float, tick: Callable[[], Awaitable[object]], stop: asyncio.Event, name: str
) -> None:
    while not stop.is_set():
        try:
            await tick()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s tick failed; trying again", name)
            await asyncio.sleep(1)
        try:
            await asyncio.wait_for(stop.wait(), timeout=tick_s)
        except asyncio.TimeoutError:
            pass
