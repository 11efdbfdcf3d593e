"""batcher: a chat's burst of messages becomes one turn once the user pauses.

The state lives in Redis (storage/turns.py), so any number of batchers can run and one that dies
loses nothing: each tick, every batcher looks for due chats and tries to flush them; the flush
script is atomic, so two batchers never start the same turn.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from consumers import ticker
from ops.deps import Deps
from storage import keys, turns

log = logging.getLogger(__name__)


class Batcher:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    async def tick(self) -> int:
        """Flush every due chat of every organization; returns how many turns started."""
        deps = self.deps
        s = deps.settings
        started = 0
        for org in await deps.redis.smembers(keys.ORG_REGISTRY):
            now_ms = deps.now_ms()
            for chat in await turns.due_chats(deps.redis, org, now_ms):
                outcome = await turns.flush(
                    deps.redis, org=org, chat=chat, turn_id=uuid.uuid4().hex, now_ms=now_ms,
                    lease_ms=int(s.turn_lease_s * 1000),
                    max_wait_ms=int(s.debounce_max_wait_seconds * 1000))
                if outcome == "started":
                    started += 1
                    log.debug("turn started org=%s chat=%s", org, chat)
        return started

    async def run(self, stop: asyncio.Event) -> None:
        await ticker.every(self.deps.settings.batcher_tick_s, self.tick, stop, "batcher")
