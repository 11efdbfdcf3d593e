"""sender: outbound messages to Gupshup, each sent once: neither dropped nor repeated.

The outgoing row is written first with the message's idempotency key. Right before the request
is written (the connection is open), the row is marked as possibly on the wire; then:
- a request that never left (refused, DNS, connect timeout) or that Gupshup refused (429, 503) is
  retried with backoff, as an outage of Gupshup;
- one that may have arrived (a read timeout, a dropped connection, a 500, 502 or 504, a worker
  killed mid-request) goes in doubt: a status event naming it settles it
  (consumers/send_doubts.py), and with none after SEND_DOUBT_GRACE_S it is sent once more. The
  sender does not wait for that: the doubt checker re-queues the message and this stage decides.
A redelivered entry whose row was accepted or dropped is not sent again.
"""

from __future__ import annotations

import asyncio
import logging

from consumers import gupshup_api, send_outcomes
from consumers.outcomes import Outcome, Sent
from consumers.runtime import Delivery, Poison
from consumers.send_doubts import SendEvidence
from ops import metrics, tracing
from ops.outages import Dependency, DependencyDown
from ops.deps import Deps
from storage import chats, org_settings, outbound, ratelimit, send_doubts
from storage.events import OutboundMessage, StreamEvent
from storage.keys import Stage
from storage.org_settings import staff_phones
from storage.orgs import Connection, ConnectionsByOrg

log = logging.getLogger(__name__)


def parts_of(event: OutboundMessage) -> list[OutboundMessage]:
    """The message, then each further part as its own message with its own idempotency key."""
    first = event.model_copy(update={"more_texts": []})
    rest = [
        event.model_copy(
            update={
                "text": text,
                "more_texts": [],
                "idempotency_key": f"{event.idempotency_key}:{i}",
                "purpose": "continuation",
                "escalation": None,
                "handled_by": None,
            }
        )
        for i, text in enumerate(event.more_texts, start=1)
    ]
    return [first, *rest]


class SenderStage:
    def __init__(self, deps: Deps, api_url: str) -> None:
        self.deps = deps
        self.api_url = api_url
        self.connections = ConnectionsByOrg(deps.pool)
        self.evidence = SendEvidence(deps)

    async def handle(self, event: StreamEvent, delivery: Delivery) -> Outcome | None:
        if not isinstance(event, OutboundMessage):
            raise Poison(f"the outbound stream carries outbound messages, not {event.type}")
        connection = await self.connections.get(event.org)
        if connection is None:
            raise Poison(f"organization {event.org} has no active WhatsApp connection")
        outcome = None
        with tracing.span(
            Stage.SENDER,
            event.origin.traceparent if event.origin else None,
            new_trace=True,
            org_id=event.org,
            chat_id=event.phone,
            turn_id=event.turn_id,
            purpose=event.purpose,
        ):
            for part in parts_of(event):
                # A part that must be retried raises: on the next delivery the parts already sent
                # are recognised as duplicates, so the order holds and nothing repeats.
                outcome = await self._deliver(part, connection, delivery)
        return outcome

    async def _deliver(
        self, event: OutboundMessage, connection: Connection, delivery: Delivery
    ) -> Outcome | None:
        deps = self.deps
        queued = event  # as queued: what a resend re-queues (its window is checked again then)
        # The advisor's notice goes to a staff phone: its chat is stored, but staff never
        # become contacts (or a later message of theirs would be answered like a customer's).
        if event.phone in staff_phones(connection.settings):
            identity = await chats.upsert_staff_identity(deps.pool, event.org, event.phone, None)
        else:
            identity = await chats.upsert_identity(deps.pool, event.org, event.phone, None)
        row = await outbound.claim(
            deps.pool,
            org=event.org,
            identity=identity,
            idempotency_key=event.idempotency_key,
            text=event.text,
            turn_id=event.turn_id,
            purpose=event.purpose,
            author=event.author_name,
            artifacts={"handled_by": event.handled_by} if event.handled_by else None,
        )
        if not row.may_send:
            if row.provider_message_id or row.dropped:
                return self._count(event, Sent.DUPLICATE)
            if row.message_status == "failed":
                return self._count(event, Sent.UNKNOWN_OUTCOME)  # given up on: a person decides
            if row.send_doubt_at is None:
                # Its worker died (or is still waiting) after the request may have been written.
                return await self._in_doubt(
                    event,
                    row,
                    "outcome unknown: the worker stopped after the request may have been written",
                )
            decision = await self._decide(event, row)
            if decision != "resend":
                return self._count(
                    event,
                    {"wait": Sent.IN_DOUBT, "resolved": Sent.DUPLICATE}.get(
                        decision, Sent.UNKNOWN_OUTCOME
                    ),
                )
        refusal = await self._refusal(event, identity)
        if refusal:
            await outbound.mark_dropped(deps.pool, row.id, refusal)
            log.info("not sending %s to %s: %s", event.idempotency_key, event.phone, refusal)
            return self._count(event, Sent.DROPPED)
        event = self._within_window(event, identity, connection)
        if event.template_id and event.purpose == "continuation":
            await outbound.mark_dropped(
                deps.pool,
                row.id,
                "outside the 24-hour window: only the first part goes, as a template",
            )
            return self._count(event, Sent.DROPPED_WINDOW)
        if event.text is None and event.template_id is None:
            await outbound.mark_dropped(
                deps.pool, row.id, "outside the 24-hour window and no template is configured"
            )
            return self._count(event, Sent.DROPPED_WINDOW)
        await self._wait_for_slot(event)
        return await self._send(event, queued, connection, row, delivery)

    async def _in_doubt(
        self, event: OutboundMessage, row: outbound.OutgoingRow, reason: str
    ) -> Outcome:
        """The request may have reached Gupshup: wait for evidence, without holding up the
        chat. The doubt checker brings the message back once the grace ends."""
        deps = self.deps
        if await send_doubts.mark_in_doubt(deps.pool, event.org, row.id, reason):
            metrics.unknown_sends.labels(event.org, "in_doubt").inc()
            log.warning("send %s to %s in doubt: %s", event.idempotency_key, event.phone, reason)
            # Status events that came while the request waited for its answer may name it.
            await self.evidence.from_orphans(event.org, event.phone)
        return self._count(event, Sent.IN_DOUBT)

    async def _decide(self, event: OutboundMessage, row: outbound.OutgoingRow) -> str:
        """A send in doubt, seen again: "resend" if it must be sent once more now (no evidence
        came within the grace). Decided in the database, so only one handler resends it."""
        s = self.deps.settings
        decision = await send_doubts.decide(
            self.deps.pool,
            event.org,
            row.id,
            grace_s=s.send_doubt_grace_s,
            max_s=s.send_doubt_max_s,
        )
        if decision == "resend":
            metrics.unknown_sends.labels(event.org, "resent").inc()
            log.warning(
                "send %s to %s: no evidence within %.0fs that it arrived; sending it once more",
                event.idempotency_key,
                event.phone,
                s.send_doubt_grace_s,
            )
        elif decision == "given_up":
            metrics.unknown_sends.labels(event.org, "given_up").inc()
            log.error(
                "send %s to %s given up: still in doubt after SEND_DOUBT_MAX_S; listed by "
                "`skytide dlq unknown`",
                event.idempotency_key,
                event.phone,
            )
        return decision

    async def _refusal(self, event: OutboundMessage, identity: chats.Identity) -> str | None:
        """Why this message must not go out, if it must not."""
        if event.requires_bot_enabled and not identity.bot_enabled:
            return "bot turned off for this chat"
        if event.purpose != "opt_out_confirmation" and identity.opted_out:
            return "contact opted out"
        return None

    def _within_window(
        self, event: OutboundMessage, identity: chats.Identity, connection: Connection
    ) -> OutboundMessage:
        """Free text only inside the customer-service window; else the re-engagement template."""
        if event.template_id:
            return event  # templates may go out at any time
        s = self.deps.settings
        open_until = (
            (identity.last_inbound_at.timestamp() + s.window_hours * 3600 - s.window_margin_s)
            if identity.last_inbound_at
            else 0
        )
        if self.deps.clock() < open_until:
            return event
        template_id = org_settings.template_for(
            connection.settings,
            "reengagement_template_id",
            identity.language or org_settings.default_language(connection.settings),
        )
        return event.model_copy(
            update={
                "text": None,
                "template_id": template_id,
                "template_params": [identity.phone] if template_id else [],
            }
        )

    async def _wait_for_slot(self, event: OutboundMessage) -> None:
        s = self.deps.settings
        pace = ratelimit.Pace(
            per_second=s.send_rate_per_s,
            burst=s.send_burst,
            recipient_interval_ms=s.recipient_interval_ms,
        )
        while wait_ms := await ratelimit.acquire(self.deps.redis, event.org, event.phone, pace):
            await asyncio.sleep(wait_ms / 1000)

    async def _send(
        self,
        event: OutboundMessage,
        queued: OutboundMessage,
        connection: Connection,
        row: outbound.OutgoingRow,
        delivery: Delivery,
    ) -> Outcome | None:
        deps = self.deps
        timeouts = gupshup_api.Timeouts(
            total_s=deps.settings.gupshup_timeout_s,
            connect_s=deps.settings.gupshup_connect_timeout_s,
        )
        marked = False

        async def before_write() -> None:
            # Durable before a byte is written: a worker killed from here on leaves a send that
            # may have arrived (in doubt), one killed before it a send that surely did not.
            nonlocal marked
            if not await outbound.mark_sending(deps.pool, row.id, queued.model_dump(mode="json")):
                raise gupshup_api.SendAbandoned("the same message is being sent elsewhere")
            marked = True

        try:
            if event.template_id:
                accepted = await gupshup_api.send_template(
                    deps.http,
                    self.api_url,
                    connection,
                    event.phone,
                    event.template_id,
                    event.template_params,
                    timeouts,
                    before_write,
                )
            elif event.buttons:
                accepted = await gupshup_api.send_quick_reply(
                    deps.http,
                    self.api_url,
                    connection,
                    event.phone,
                    event.text or "",
                    event.buttons,
                    event.idempotency_key,
                    timeouts,
                    before_write,
                )
            else:
                accepted = await gupshup_api.send_text(
                    deps.http,
                    self.api_url,
                    connection,
                    event.phone,
                    event.text or "",
                    timeouts,
                    before_write,
                )
        except gupshup_api.SendAbandoned:
            return self._count(event, Sent.DUPLICATE)  # the same message, handled elsewhere
        except gupshup_api.SendRetryable as exc:
            if marked:  # a 429 or 503: written, and refused
                await outbound.clear_sending(deps.pool, row.id)
            metrics.dependency_errors.labels(Dependency.GUPSHUP, "retryable").inc()
            if exc.throttled:  # every sender of this number slows down, not just this one
                # A Retry-After of an hour would silence the number: it is capped.
                retry_after_s = min(exc.retry_after_s or 0, deps.settings.retry_after_max_s)
                await ratelimit.cool_down(
                    deps.redis, event.org, int(retry_after_s * 1000) or deps.settings.cooldown_ms
                )
            # Gupshup down or throttling is an outage, waited out by the runtime (in order: the
            # chat's later replies wait behind this one), never a reason to dead-letter a reply.
            raise DependencyDown(Dependency.GUPSHUP, str(exc)) from exc
        except gupshup_api.SendRejected as exc:
            await outbound.mark_failed(deps.pool, row.id, code=exc.status, reason=str(exc))
            metrics.dependency_errors.labels(Dependency.GUPSHUP, f"rejected_{exc.status}").inc()
            self._count(event, Sent.REJECTED)
            if event.escalation:
                await send_outcomes.escalation_outcome(deps, event, accepted=False)
            raise Poison(f"Gupshup rejected the message: {exc}") from exc
        except gupshup_api.SendOutcomeUnknown as exc:
            metrics.dependency_errors.labels(Dependency.GUPSHUP, "outcome_unknown").inc()
            return await self._in_doubt(event, row, str(exc))
        await outbound.mark_accepted(deps.pool, row.id, accepted.message_id)
        self._count(event, Sent.ACCEPTED)
        if event.origin and event.purpose == "reply":  # the first part of the answer
            metrics.end_to_end.observe(max(0.0, deps.clock() - event.origin.received_at_ms / 1000))
        await send_outcomes.accepted(deps, event)
        return None

    async def dead_lettered(self, event: StreamEvent) -> None:
        """An escalation given up on (Gupshup down past DEPENDENCY_OUTAGE_MAX_S): the customer
        is told that no advisor could be reached, and the bot stays on, as when Gupshup refuses
        it. (Its idempotency key makes this a no-op when the refusal already said so.)"""
        if isinstance(event, OutboundMessage) and event.escalation:
            await send_outcomes.escalation_outcome(self.deps, event, accepted=False)

    def _count(self, event: OutboundMessage, sent: Sent) -> Outcome:
        """Count the message part's outcome; the entry's outcome if the part ends the entry."""
        metrics.messages_sent.labels(event.org, sent).inc()
        return sent.outcome
