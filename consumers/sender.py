"""sender: outbound messages to Gupshup, each sent at most once.

Before the request the outgoing row is written with its idempotency key and marked "sending".
A redelivered entry whose row was accepted, dropped, or possibly on the wire is not sent again;
a request that surely did not reach Gupshup (refused, 429, 5xx) is retried with backoff.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone

from consumers import gupshup_api
from consumers.runtime import Delivery, Poison
from ops import metrics, tracing
from ops.outages import DependencyDown
from ops.deps import Deps
from storage import chats, memory, outbound, ratelimit, streams
from storage.events import OutboundMessage, StreamEvent
from storage.org_settings import staff_phones
from storage.orgs import Connection, ConnectionsByOrg

log = logging.getLogger(__name__)


def parts_of(event: OutboundMessage) -> list[OutboundMessage]:
    """The message, then each further part as its own message with its own idempotency key."""
    first = event.model_copy(update={"more_texts": []})
    rest = [event.model_copy(update={
        "text": text, "more_texts": [], "idempotency_key": f"{event.idempotency_key}:{i}",
        "purpose": "continuation", "escalation": None, "handled_by": None})
        for i, text in enumerate(event.more_texts, start=1)]
    return [first, *rest]


class SenderStage:
    def __init__(self, deps: Deps, api_url: str) -> None:
        self.deps = deps
        self.api_url = api_url
        self.connections = ConnectionsByOrg(deps.pool)

    async def handle(self, event: StreamEvent, delivery: Delivery) -> str | None:
        if not isinstance(event, OutboundMessage):
            raise Poison(f"the outbound stream carries outbound messages, not {event.type}")
        connection = await self.connections.get(event.org)
        if connection is None:
            raise Poison(f"organization {event.org} has no active WhatsApp connection")
        outcome = None
        with tracing.span("sender", event.origin.traceparent if event.origin else None,
                          new_trace=True, org_id=event.org, chat_id=event.phone,
                          turn_id=event.turn_id, purpose=event.purpose):
            for part in parts_of(event):
                # A part that must be retried raises: on the next delivery the parts already sent
                # are recognised as duplicates, so the order holds and nothing repeats.
                outcome = await self._deliver(part, connection, delivery)
        return outcome

    async def _deliver(self, event: OutboundMessage, connection: Connection,
                       delivery: Delivery) -> str | None:
        deps = self.deps
        # The advisor's notice goes to a staff phone: its chat is stored, but staff never
        # become contacts (or a later message of theirs would be answered like a customer's).
        if event.phone in staff_phones(connection.settings):
            identity = await chats.upsert_staff_identity(deps.pool, event.org, event.phone, None)
        else:
            identity = await chats.upsert_identity(deps.pool, event.org, event.phone, None)
        row = await outbound.claim(deps.pool, org=event.org, identity=identity,
                                   idempotency_key=event.idempotency_key, text=event.text,
                                   turn_id=event.turn_id, purpose=event.purpose,
                                   author=event.author_name,
                                   artifacts={"handled_by": event.handled_by} if event.handled_by else None)
        if not row.may_send:
            if row.send_started_at and not row.provider_message_id and row.message_status != "failed":
                # A worker died while this request may have been on the wire: never risk a repeat.
                await outbound.mark_failed(deps.pool, row.id, code=None, outcome_unknown=True,
                                           reason="outcome unknown: the worker stopped mid-send")
                return self._count(event, "unknown_outcome")
            return self._count(event, "duplicate")
        refusal = await self._refusal(event, identity)
        if refusal:
            await outbound.mark_dropped(deps.pool, row.id, refusal)
            log.info("not sending %s to %s: %s", event.idempotency_key, event.phone, refusal)
            return self._count(event, "dropped")
        event = self._within_window(event, identity, connection)
        if event.template_id and event.purpose == "continuation":
            await outbound.mark_dropped(
                deps.pool, row.id, "outside the 24-hour window: only the first part goes, as a template")
            return self._count(event, "dropped_window")
        if event.text is None and event.template_id is None:
            await outbound.mark_dropped(
                deps.pool, row.id, "outside the 24-hour window and no template is configured")
            return self._count(event, "dropped_window")
        await self._wait_for_slot(event)
        return await self._send(event, connection, row, delivery)

    async def _refusal(self, event: OutboundMessage, identity: chats.Identity) -> str | None:
        """Why this message must not go out, if it must not."""
        if event.requires_bot_enabled and not identity.bot_enabled:
            return "bot turned off for this chat"
        if event.purpose != "opt_out_confirmation" and identity.opted_out:
            return "contact opted out"
        return None

    def _within_window(self, event: OutboundMessage, identity: chats.Identity,
                       connection: Connection) -> OutboundMessage:
        """Free text only inside the customer-service window; else the re-engagement template."""
        if event.template_id:
            return event  # templates may go out at any time
        s = self.deps.settings
        open_until = (identity.last_inbound_at.timestamp() + s.window_hours * 3600
                      - s.window_margin_s) if identity.last_inbound_at else 0
        if self.deps.clock() < open_until:
            return event
        template_id = connection.settings.get("reengagement_template_id")
        return event.model_copy(update={
            "text": None, "template_id": template_id,
            "template_params": [identity.phone] if template_id else []})

    async def _wait_for_slot(self, event: OutboundMessage) -> None:
        s = self.deps.settings
        pace = ratelimit.Pace(per_second=s.send_rate_per_s, burst=s.send_burst,
                              recipient_interval_ms=s.recipient_interval_ms)
        while (wait_ms := await ratelimit.acquire(self.deps.redis, event.org, event.phone, pace)):
            await asyncio.sleep(wait_ms / 1000)

    async def _send(self, event: OutboundMessage, connection: Connection,
                    row: outbound.OutgoingRow, delivery: Delivery) -> str | None:
        deps = self.deps
        timeout_s = deps.settings.gupshup_timeout_s
        if not await outbound.mark_sending(deps.pool, row.id):
            return self._count(event, "duplicate")  # the same message, handled elsewhere
        try:
            if event.template_id:
                accepted = await gupshup_api.send_template(
                    deps.http, self.api_url, connection, event.phone, event.template_id,
                    event.template_params, timeout_s)
            elif event.buttons:
                accepted = await gupshup_api.send_quick_reply(
                    deps.http, self.api_url, connection, event.phone, event.text or "",
                    event.buttons, event.idempotency_key, timeout_s)
            else:
                accepted = await gupshup_api.send_text(
                    deps.http, self.api_url, connection, event.phone, event.text or "", timeout_s)
        except gupshup_api.SendRetryable as exc:
            await outbound.clear_sending(deps.pool, row.id)
            metrics.dependency_errors.labels("gupshup", "retryable").inc()
            if exc.throttled:  # every sender of this number slows down, not just this one
                # A Retry-After of an hour would silence the number: it is capped.
                retry_after_s = min(exc.retry_after_s or 0, deps.settings.retry_after_max_s)
                await ratelimit.cool_down(deps.redis, event.org,
                                          int(retry_after_s * 1000) or deps.settings.cooldown_ms)
            # Gupshup down or throttling is an outage, waited out by the runtime (in order: the
            # chat's later replies wait behind this one), never a reason to dead-letter a reply.
            raise DependencyDown("gupshup", str(exc)) from exc
        except gupshup_api.SendRejected as exc:
            await outbound.mark_failed(deps.pool, row.id, code=exc.status, reason=str(exc))
            metrics.dependency_errors.labels("gupshup", f"rejected_{exc.status}").inc()
            self._count(event, "rejected")
            if event.escalation:
                await self._escalation_outcome(event, accepted=False)
            raise Poison(f"Gupshup rejected the message: {exc}") from exc
        except gupshup_api.SendOutcomeUnknown as exc:
            await outbound.mark_failed(deps.pool, row.id, code=None, reason=str(exc),
                                       outcome_unknown=True)
            metrics.dependency_errors.labels("gupshup", "outcome_unknown").inc()
            return self._count(event, "unknown_outcome")
        await outbound.mark_accepted(deps.pool, row.id, accepted.message_id)
        self._count(event, "accepted")
        if event.origin and event.purpose == "reply":  # the first part of the answer
            metrics.end_to_end.observe(max(0.0, deps.clock() - event.origin.received_at_ms / 1000))
        if event.text:  # the agent's short-term memory of the chat (staff words marked as such)
            role = "staff" if event.author_name.startswith("staff:") else "assistant"
            await memory.remember(deps.redis, event.org, event.phone, role, event.text)
        if event.escalation:
            await self._escalation_outcome(event, accepted=True)
        return None

    async def dead_lettered(self, event: StreamEvent) -> None:
        """An escalation given up on (Gupshup down past DEPENDENCY_OUTAGE_MAX_S): the customer
        is told that no advisor could be reached, and the bot stays on, as when Gupshup refuses
        it. (Its idempotency key makes this a no-op when the refusal already said so.)"""
        if isinstance(event, OutboundMessage) and event.escalation:
            await self._escalation_outcome(event, accepted=False)

    async def _escalation_outcome(self, event: OutboundMessage, *, accepted: bool) -> None:
        """The advisor was (or was not) told: turn the bot off only if so, and tell the customer."""
        notice = event.escalation
        deps = self.deps
        if accepted:
            await chats.set_bot_enabled(deps.pool, event.org, notice.customer_phone, False,
                                        reason="escalated to an advisor",
                                        at=datetime.fromtimestamp(deps.clock(), timezone.utc))
        await streams.publish(deps.redis, OutboundMessage(
            org=event.org, phone=notice.customer_phone,
            text=notice.accepted_text if accepted else notice.failed_text,
            idempotency_key=f"{event.idempotency_key}:customer", turn_id=event.turn_id,
            purpose="escalation_notice", requires_bot_enabled=not accepted), "outbound")

    def _count(self, event: OutboundMessage, outcome: str) -> str:
        metrics.messages_sent.labels(event.org, outcome).inc()
        return outcome
