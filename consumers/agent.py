"""agent: one turn of a chat, under the chat's lease, and its replies onto the outbound stream.

The turn's replies and the end of the turn are written by one script (storage/turns.finish) and
marked done by turn id, so a redelivered turn never replies twice.
"""

from __future__ import annotations

import asyncio
import logging

from consumers.enrich import debounce_of
from consumers.runtime import Delivery, Poison
from graph import receptionist
from ops import metrics
from ops.deps import Deps
from storage import chats, keys, turns
from storage.events import OutboundMessage, StreamEvent, TurnRequest

log = logging.getLogger(__name__)


class AgentStage:
    def __init__(self, deps: Deps, graph) -> None:
        self.deps = deps
        self.graph = graph

    async def handle(self, event: StreamEvent, delivery: Delivery) -> str | None:
        if not isinstance(event, TurnRequest):
            raise Poison(f"the turns stream carries turns, not {event.type}")
        deps = self.deps
        if await deps.redis.exists(keys.turn_done(event.org, event.turn_id)):
            await self._finish(event, [])  # replies already queued; make sure the lease is released
            return "duplicate"
        identity = await chats.find_identity(deps.pool, event.org, event.chat)
        if identity is None or not identity.bot_enabled:
            await self._finish(event, [])
            metrics.turns.labels("bot_off").inc()
            return "skipped_bot_off"
        texts = await chats.message_texts(deps.pool, event.org, event.message_ids)
        keeper = asyncio.create_task(self._keep_lease(event))
        try:
            replies = await receptionist.run_turn(
                self.graph, keys.checkpoint_thread(event.org, event.chat), texts)
        finally:
            keeper.cancel()
        outbound = [
            OutboundMessage(org=event.org, phone=event.chat, text=text, turn_id=event.turn_id,
                            idempotency_key=f"{event.turn_id}:{i}")
            for i, text in enumerate(replies) if text.strip()
        ]
        await self._finish(event, outbound)
        metrics.turns.labels("replied").inc()
        return None

    async def _finish(self, event: TurnRequest, replies: list[OutboundMessage]) -> None:
        await turns.finish(self.deps.redis, org=event.org, chat=event.chat, turn_id=event.turn_id,
                           replies=replies, now_ms=self.deps.now_ms(),
                           debounce=debounce_of(self.deps))

    async def _keep_lease(self, event: TurnRequest) -> None:
        """A turn that waits long on a model keeps its chat's lease."""
        lease_s = self.deps.settings.turn_lease_s
        while True:
            await asyncio.sleep(lease_s / 3)
            await turns.extend_lease(self.deps.redis, org=event.org, chat=event.chat,
                                     turn_id=event.turn_id, lease_ms=int(lease_s * 1000))
