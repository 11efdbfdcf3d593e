"""agent: one turn of a chat, under the chat's lease, and its replies onto the outbound stream.

The turn's replies and the end of the turn are written by one script (storage/turns.finish) and
marked done by turn id, so a redelivered turn never replies twice. An escalation becomes a
template notification to the organization's advisor; the sender turns the bot off for the chat
only once Gupshup has accepted it (see consumers/sender.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from consumers.enrich import debounce_of
from consumers.runtime import Delivery, Poison
from graph.contract import EscalationRequest, TurnInput
from graph.receptionist import Receptionist
from ops import metrics, tracing
from ops.deps import Deps
from storage import chats, keys, org_settings, origins, turns
from storage.events import EscalationNotice, OutboundMessage, StreamEvent, TurnRequest
from storage.orgs import ConnectionsByOrg

log = logging.getLogger(__name__)


class AgentStage:
    def __init__(self, deps: Deps, receptionist: Receptionist) -> None:
        self.deps = deps
        self.receptionist = receptionist
        self.connections = ConnectionsByOrg(deps.pool)

    async def dead_lettered(self, event: StreamEvent) -> None:
        """A turn given up on no longer holds its chat: the next messages get their own turn."""
        if isinstance(event, TurnRequest):
            await turns.release_lease(
                self.deps.redis,
                org=event.org,
                chat=event.chat,
                turn_id=event.turn_id,
                now_ms=self.deps.now_ms(),
            )

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
        lease_ms = int(deps.settings.turn_lease_s * 1000)
        if not await turns.take_lease(
            deps.redis,
            org=event.org,
            chat=event.chat,
            turn_id=event.turn_id,
            message_ids=event.message_ids,
            now_ms=deps.now_ms(),
            lease_ms=lease_ms,
        ):
            # A later turn of this chat is running (this one waited past its lease): its
            # messages now join the chat's next turn instead of racing it.
            metrics.turns.labels("merged_into_next").inc()
            return "merged_into_next_turn"
        texts = await chats.message_texts(deps.pool, event.org, event.message_ids)
        turn = TurnInput(
            org=event.org,
            chat=event.chat,
            contact_id=identity.contact_id,
            identity_id=identity.id,
            turn_id=event.turn_id,
            texts=texts,
        )
        first, *others = await origins.of_turn(deps.redis, event.org, event.message_ids) or [None]
        keeper = asyncio.create_task(self._keep_lease(event))
        started = time.monotonic()
        try:
            # The turn continues its first message's trace; the others' traces are linked to it.
            with tracing.span(
                "agent.turn",
                first.traceparent if first else None,
                new_trace=True,
                links=[o.traceparent for o in others],
                org_id=event.org,
                chat_id=event.chat,
                turn_id=event.turn_id,
                thread_id=keys.checkpoint_thread(event.org, event.chat),
            ):
                result = await self.receptionist.run_turn(turn)
        finally:
            keeper.cancel()
        metrics.turn_seconds.observe(time.monotonic() - started)
        metrics.turn_messages.observe(len(event.message_ids))
        reply = [text for text in result.replies if text.strip()]
        outbound = (
            [
                # One entry for the whole reply: its parts go out in order from one sender.
                OutboundMessage(
                    org=event.org,
                    phone=event.chat,
                    text=reply[0],
                    more_texts=reply[1:],
                    turn_id=event.turn_id,
                    idempotency_key=f"{event.turn_id}:reply",
                    origin=first,
                    handled_by={
                        "experts": result.experts,
                        "tools": result.tools,
                        "actions": result.actions[:20],
                    },
                )
            ]
            if reply
            else []
        )
        if result.escalation:
            outbound.append(await self._escalation(event, result.escalation))
        if deps.settings.dev_chat_enabled:  # the chat page shows who handled the turn
            await deps.redis.set(
                keys.dev_turn_info(event.org, event.chat),
                json.dumps(
                    {"turn_id": event.turn_id, "experts": result.experts, "tools": result.tools}
                ),
                ex=600,
            )
        await self._finish(event, outbound)
        metrics.turns.labels("escalated" if result.escalation else "replied").inc()
        return None

    async def _escalation(self, event: TurnRequest, request: EscalationRequest) -> OutboundMessage:
        """The advisor's template notification, or the honest answer when there is no advisor."""
        connection = await self.connections.get(event.org)
        settings = connection.settings if connection else {}
        advisor = settings.get("advisor_phone")
        # The advisor reads the organization's language, whatever the customer's.
        template = org_settings.template_for(
            settings, "escalation_template_id", org_settings.default_language(settings)
        )
        if not (advisor and template):
            log.warning(
                "org %s has no advisor_phone or escalation_template_id: cannot escalate", event.org
            )
            return OutboundMessage(
                org=event.org,
                phone=event.chat,
                text=request.failed_text,
                turn_id=event.turn_id,
                idempotency_key=f"{event.turn_id}:escalation-unavailable",
            )
        return OutboundMessage(
            org=event.org,
            phone=str(advisor),
            template_id=str(template),
            # {{1}} the customer's first name (or "Cliente"), {{2}} phone, {{3}} reason, {{4}} summary.
            template_params=[request.customer_name, event.chat, request.reason, request.summary],
            turn_id=event.turn_id,
            idempotency_key=f"{event.turn_id}:escalation",
            purpose="escalation",
            requires_bot_enabled=False,
            escalation=EscalationNotice(
                customer_phone=event.chat,
                accepted_text=request.accepted_text,
                failed_text=request.failed_text,
            ),
        )

    async def _finish(self, event: TurnRequest, replies: list[OutboundMessage]) -> None:
        await turns.finish(
            self.deps.redis,
            org=event.org,
            chat=event.chat,
            turn_id=event.turn_id,
            replies=replies,
            now_ms=self.deps.now_ms(),
            debounce=debounce_of(self.deps),
        )

    async def _keep_lease(self, event: TurnRequest) -> None:
        """A turn that waits long on a model keeps its chat's lease."""
        lease_s = self.deps.settings.turn_lease_s
        while True:
            await asyncio.sleep(lease_s / 3)
            try:
                kept = await turns.extend_lease(
                    self.deps.redis,
                    org=event.org,
                    chat=event.chat,
                    turn_id=event.turn_id,
                    lease_ms=int(lease_s * 1000),
                )
            except Exception:  # noqa: BLE001 - try again at the next beat
                log.exception("could not extend the lease of turn %s", event.turn_id)
                continue
            if not kept:
                log.warning("turn %s of %s lost its chat's lease", event.turn_id, event.chat)
