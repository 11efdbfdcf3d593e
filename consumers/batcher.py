"""batcher: a chat's burst of messages becomes one turn once the user pauses.

The state lives in Redis (storage/turns.py), so any number of batchers can run and one that dies
loses nothing; the flush script is atomic, so two batchers never start the same turn. A batcher
visits only organizations with a chat due (the index `due.CHATS`, storage/due.py), is woken as soon as one
is signalled, and otherwise sleeps until the next due time: its work follows the traffic, not the
number of organizations. Every batcher_sweep_s it puts back into the index the next thousand
registered organizations that have a chat due (all of them, with up to a thousand), in case a
batcher died between taking an organization out of it and putting it back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable

from ops.deps import Deps
from storage import due, turns

log = logging.getLogger(__name__)


class Batcher:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self._sweep_cursor = 0

    async def tick(self) -> tuple[int, int]:
        """Flush the due chats of every organization signalled as due; (visited, turns started)."""
        deps = self.deps
        s = deps.settings
        visited = started = 0
        for org, score in await due.CHATS.due(deps.redis, deps.now_ms()):
            visited += 1
            now_ms = deps.now_ms()
            for chat in await due.take_and_read(deps.redis, org, score, now_ms):
                outcome = await turns.flush(
                    deps.redis,
                    org=org,
                    chat=chat,
                    now_ms=now_ms,
                    lease_ms=int(s.turn_lease_s * 1000),
                    max_wait_ms=int(s.debounce_max_wait_seconds * 1000),
                    max_messages=s.turn_max_messages,
                    max_chars=s.turn_max_chars,
                )
                if outcome == "started":
                    started += 1
                    log.debug("turn started org=%s chat=%s", org, chat)
            await due.CHATS.put_back(deps.redis, org)
        return visited, started

    async def run(self, stop: asyncio.Event) -> None:
        s = self.deps.settings
        next_sweep = 0.0
        while not stop.is_set():
            try:
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + s.batcher_sweep_s
                    self._sweep_cursor = await due.CHATS.sweep_next(
                        self.deps.redis, self._sweep_cursor
                    )
                visited, _ = await self.tick()
                if not visited:
                    await self._idle(stop)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("batcher tick failed; trying again")
                await _first(stop.wait(), asyncio.sleep(1))

    async def _idle(self, stop: asyncio.Event) -> None:
        """Nothing due now: wait for a signal, the next due time or batcher_tick_s."""
        s = self.deps.settings
        timeout_s = s.batcher_tick_s
        next_ms = await due.CHATS.next_due_ms(self.deps.redis)
        if next_ms is not None:
            timeout_s = min(timeout_s, max(0.0, (next_ms - self.deps.now_ms()) / 1000))
        if timeout_s > 0:
            await _first(stop.wait(), due.CHATS.wait(self.deps.redis, timeout_s))


async def _first(*awaitables: Awaitable[object]) -> None:
    """Wait for the first to finish; cancel the rest (a cancelled BLPOP drops its connection)."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
