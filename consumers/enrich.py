"""enrich: each inbound event becomes durable facts in the CRM.

A user's message: its chat identity and contact, its understood text (media is downloaded and
understood first), its chat_messages row written once, then the hand-off to the batcher. Status
and user events update what they refer to and never start a turn.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from consumers.delivery_events import DeliveryEvents, consent_keyword
from consumers.outcomes import Outcome
from consumers.runtime import Delivery, Poison
from consumers.understanding import MEDIA_KINDS, Understanding, understand
from graph import bursts
from ops import metrics, tracing
from ops.deps import Deps
from storage import chats, memory, origins, turns
from storage.events import InboundMessage, Origin, StatusEvent, StreamEvent, UserEvent
from storage.keys import Stage
from storage.org_settings import staff_phones
from storage.orgs import ConnectionsByOrg

log = logging.getLogger(__name__)


def debounce_of(
    deps: Deps, event: InboundMessage | None = None, org_settings: Mapping[str, Any] | None = None
) -> turns.Debounce:
    """The burst's limits; with a message, the quiet window that message calls for
    (graph/bursts.py: short after a complete question, the full window after a fragment), by
    the organization's own rules where it set them."""
    s = deps.settings
    rules = bursts.Rules.of(s, org_settings)
    quiet_s = rules.full_s
    if event is not None:
        kind, quiet_s = rules.window(event.kind, event.text, event.caption)
        if rules.adaptive:
            metrics.debounce_window.labels(kind).observe(quiet_s)
    return turns.Debounce(
        quiet_ms=int(quiet_s * 1000),
        max_wait_ms=int(s.debounce_max_wait_seconds * 1000),
        max_messages=s.debounce_max_messages,
    )


class EnrichStage:
    def __init__(
        self,
        deps: Deps,
        understander: Callable[[Deps, InboundMessage], Awaitable[Understanding]] = understand,
    ) -> None:
        self.deps = deps
        self.understand = understander
        self.delivery_events = DeliveryEvents(deps)
        self.connections = ConnectionsByOrg(deps.pool)  # its settings name the staff phones

    async def handle(self, event: StreamEvent, delivery: Delivery) -> Outcome | None:
        if isinstance(event, InboundMessage):
            with tracing.span(
                Stage.ENRICH,
                event.traceparent,
                new_trace=True,
                org_id=event.org,
                chat_id=event.phone,
                message_id=event.provider_id,
            ):
                return await self.message(event)
        if isinstance(event, StatusEvent):
            return await self.delivery_events.on_status(event, delivery)
        if isinstance(event, UserEvent):
            return await self.delivery_events.on_user_event(event, delivery)
        raise Poison(f"the inbound stream does not carry {event.type} events")

    async def dead_lettered(self, event: StreamEvent) -> None:
        """An inbound message given up on no longer holds its chat's next turn back."""
        if isinstance(event, InboundMessage):
            await turns.hand_off(
                self.deps.redis,
                org=event.org,
                chat=event.phone,
                provider_id=event.provider_id,
                message_id=None,
                sent_at_ms=event.sent_at_ms,
                now_ms=self.deps.now_ms(),
                debounce=debounce_of(self.deps),
            )

    async def message(self, event: InboundMessage) -> Outcome | None:
        deps = self.deps
        connection = await self.connections.get(event.org)
        if connection is not None and event.phone in staff_phones(connection.settings):
            return await self._staff_message(event)
        identity = await chats.identity_of_message(deps.pool, event.org, event.phone, event.name)
        if not identity.bot_enabled and await chats.resume_if_due(
            deps.pool, event.org, event.phone, chats.ms_to_dt(deps.now_ms())
        ):
            log.info(
                "bot resumed for %s/%s: paused longer than bot_resume_after_hours",
                event.org,
                event.phone,
            )
            metrics.bot_resumed.inc()
            identity = dataclasses.replace(identity, bot_enabled=True)
        # A redelivered entry does not download and understand its media again. Text needs no
        # such look first: the INSERT ignores a message it already has and says so.
        message_id = (
            await chats.inbound_message_id(deps.pool, event.org, event.provider_id)
            if event.kind in MEDIA_KINDS
            else None
        )
        created = message_id is None
        if message_id is None:
            message_id, created = await self._store(event, identity)
        keyword = consent_keyword(event.text) if event.kind == "text" else None
        if keyword:
            await self.delivery_events.on_keyword(
                org=event.org,
                phone=event.phone,
                contact_id=identity.customer_contact_id(),
                provider_id=event.provider_id,
                status=keyword,
                keyword=event.text,
            )
        # A chat a person has taken over, an opted-out contact and a STOP/START message keep
        # their messages but start no turn.
        # A reaction (👍 on our message) is stored but answers nothing: it starts no turn.
        joins_turn = (
            identity.bot_enabled
            and keyword is None
            and not identity.opted_out
            and event.kind != "reaction"
        )
        if joins_turn:  # the turn's replies will be timed and traced from this message's arrival
            await origins.remember(
                deps.redis,
                event.org,
                message_id,
                Origin(received_at_ms=event.received_at_ms, traceparent=event.traceparent),
            )
        await turns.hand_off(
            deps.redis,
            org=event.org,
            chat=event.phone,
            provider_id=event.provider_id,
            message_id=message_id if joins_turn else None,
            sent_at_ms=event.sent_at_ms,
            now_ms=deps.now_ms(),
            debounce=debounce_of(
                deps,
                event if joins_turn else None,
                connection.settings if connection is not None else None,
            ),
            chars=len(event.text or ""),
        )
        if not created:
            return Outcome.DUPLICATE
        return None if joins_turn else Outcome.STORED_WITHOUT_TURN

    async def _staff_message(self, event: InboundMessage) -> Outcome:
        """The advisor or a staff member wrote to the business number: kept and shown in the
        inbox, never a contact, never a turn (the bot answering the clinic's own people as
        customers was the bug this prevents)."""
        deps = self.deps
        identity = await chats.upsert_staff_identity(deps.pool, event.org, event.phone, event.name)
        created = await chats.inbound_message_id(deps.pool, event.org, event.provider_id) is None
        if created:
            _, created = await self._store(event, identity, author=f"staff:{event.phone}")
        # No message id: the batcher's count of messages on their way for this chat drops.
        await turns.hand_off(
            deps.redis,
            org=event.org,
            chat=event.phone,
            provider_id=event.provider_id,
            message_id=None,
            sent_at_ms=event.sent_at_ms,
            now_ms=deps.now_ms(),
            debounce=debounce_of(deps),
        )
        return Outcome.STAFF_MESSAGE if created else Outcome.DUPLICATE

    async def _store(
        self, event: InboundMessage, identity: chats.Identity, author: str = "customer"
    ) -> tuple[str, bool]:
        understood: Understanding = await self.understand(self.deps, event)
        if event.context_id and event.kind != "reaction" and understood.processed_text:
            quoted = await memory.quoted_text(self.deps.pool, event.org, event.context_id)
            understood = dataclasses.replace(
                understood, processed_text=memory.with_quote(understood.processed_text, quoted)
            )
        stored = await chats.insert_inbound(
            self.deps.pool,
            org=event.org,
            identity=identity,
            provider_id=event.provider_id,
            message=event.text or event.caption,
            processed_text=understood.processed_text,
            sent_at_ms=event.sent_at_ms,
            media_type=understood.media_type,
            media_url=understood.media_url,
            media_mime_type=understood.media_mime_type,
            media_size_bytes=understood.media_size_bytes,
            media_sha256=understood.media_sha256,
            artifacts=understood.artifacts,
            author=author,
        )
        if stored[1]:  # once per message, not again for a redelivered text (no look before it)
            metrics.processed_text_chars.observe(len(understood.processed_text or ""))
            # the agent's short-term memory of the chat
            await memory.remember(
                self.deps.redis, event.org, event.phone, "user", understood.processed_text
            )
        return stored
