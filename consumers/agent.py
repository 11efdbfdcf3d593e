"""agent: one turn of a chat, under the chat's lease, and its replies onto the outbound stream.

The turn's replies and the end of the turn are written by one script (storage/turns.finish) and
marked done by turn id, so a redelivered turn never replies twice.

A customer who keeps writing while a turn runs is answered once, about everything: before its
first effect (a booking, a cancellation, its replies) the turn asks storage/turns.commit whether
newer messages came; if so and it has done nothing yet, it is abandoned (no effect, no reply,
its checkpoint writes dropped: graph/checkpoints.held) and the next turn reads every message.
Once committed, it finishes, and the newer messages wait for the next turn.

An escalation becomes a template notification to the organization's advisor; the sender turns
the bot off for the chat only once Gupshup has accepted it (see consumers/sender.py). When a
turn starts, the customer's message is marked read with a typing indicator
(consumers/typing_indicator.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from consumers import typing_indicator
from consumers.enrich import debounce_of
from consumers.outcomes import Outcome
from consumers.runtime import Delivery, Poison
from graph import checkpoints
from graph.contract import EscalationRequest, TurnInput, TurnSuperseded
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
        self._indicators: set[asyncio.Task[None]] = set()  # running beside their turns

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

    async def handle(self, event: StreamEvent, delivery: Delivery) -> Outcome | None:
        if not isinstance(event, TurnRequest):
            raise Poison(f"the turns stream carries turns, not {event.type}")
        deps = self.deps
        done = await deps.redis.get(keys.turn_done(event.org, event.turn_id))
        if done == "abandoned":  # its messages went to a newer turn (storage/turns.commit)
            return Outcome.DUPLICATE
        if done:
            await self._finish(event, [])  # replies already queued; make sure the lease is released
            return Outcome.DUPLICATE
        # Fresh, not cached: a person who took the chat over a moment ago, in any process, stops
        # this turn (storage/identity_cache.py). It also brings the contact's name for the turn.
        identity = await chats.turn_identity(deps.pool, event.org, event.chat)
        if identity is None or not identity.bot_enabled or identity.opted_out:
            # An opt-out that reached enrich's cache late: no turn, as if it had been in time.
            await self._finish(event, [])
            metrics.turns.labels(
                "opted_out" if identity and identity.opted_out else "bot_off"
            ).inc()
            return Outcome.SKIPPED_BOT_OFF
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
            return Outcome.MERGED_INTO_NEXT_TURN
        await self._show_typing(event)
        texts = await chats.message_texts(deps.pool, event.org, event.message_ids)
        found = await origins.of_turn(deps.redis, event.org, event.message_ids)
        first, others = (found[0], found[1:]) if found else (None, [])
        first_ms = first.received_at_ms if first else deps.now_ms()

        async def before_effect() -> None:
            if not await self._commit(event, first_ms):
                raise TurnSuperseded(event.turn_id)

        turn = TurnInput(
            org=event.org,
            chat=event.chat,
            contact_id=identity.customer_contact_id(),
            identity_id=identity.id,
            turn_id=event.turn_id,
            texts=texts,
            before_effect=before_effect,
        )
        keeper = asyncio.create_task(self._keep_lease(event))
        started = time.monotonic()
        try:
            # The turn continues its first message's trace; the others' traces are linked to it.
            with (
                tracing.span(
                    "agent.turn",
                    first.traceparent if first else None,
                    new_trace=True,
                    links=[o.traceparent for o in others],
                    org_id=event.org,
                    chat_id=event.chat,
                    turn_id=event.turn_id,
                    thread_id=keys.checkpoint_thread(event.org, event.chat),
                ),
                checkpoints.held() as state_writes,
            ):
                result = await self.receptionist.run_turn(turn)
        except TurnSuperseded:
            return self._restarted("before_effect")
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
        if not await self._commit(event, first_ms):
            return self._restarted("before_reply")
        # Committed: the state the replies come from is written before they are queued, so a
        # crash in between replays the turn from it (graph/nodes.py `replay`), never forgets it.
        await state_writes.flush()
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

    async def _show_typing(self, event: TurnRequest) -> None:
        """The customer's last message marked read, "typing…" shown, beside the turn."""
        if not self.deps.settings.typing_indicator or not event.message_ids:
            return
        connection = await self.connections.get(event.org)
        if connection is None or not typing_indicator.can_send(connection):
            return

        async def show() -> None:
            message = await chats.whatsapp_id(self.deps.pool, event.org, event.message_ids[-1])
            if message is not None:
                await typing_indicator.mark_read_typing(
                    self.deps.http, self.deps.settings.gupshup_partner_api_url, connection, message
                )

        task = asyncio.create_task(show())
        self._indicators.add(task)
        task.add_done_callback(self._indicator_done)

    def _indicator_done(self, task: asyncio.Task[None]) -> None:
        self._indicators.discard(task)
        if not task.cancelled() and task.exception() is not None:  # its query failed: no matter
            log.warning("typing indicator not sent: %r", task.exception())

    async def _commit(self, event: TurnRequest, first_ms: int) -> bool:
        """True once the turn may have effects; False if it was abandoned for newer messages."""
        s = self.deps.settings
        if not s.turn_restart:
            return True
        return await turns.commit(
            self.deps.redis,
            org=event.org,
            chat=event.chat,
            turn_id=event.turn_id,
            message_ids=event.message_ids,
            first_ms=first_ms,
            now_ms=self.deps.now_ms(),
            max_wait_ms=int(s.debounce_max_wait_seconds * 1000),
        )

    def _restarted(self, at: str) -> Outcome:
        metrics.turns_restarted.labels(at).inc()
        metrics.turns.labels("restarted").inc()
        return Outcome.RESTARTED

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
