"""sender: outbound messages to Gupshup, each sent at most once.

Before the request the outgoing row is written with its idempotency key and marked "sending".
A redelivered entry whose row was accepted, dropped, or possibly on the wire is not sent again;
a request that surely did not reach Gupshup (refused, 429, 5xx) is retried with backoff.
"""

from __future__ import annotations

import logging
import time

from consumers import gupshup_api
from consumers.runtime import Delivery, Poison, Retry
from ops import metrics
from ops.deps import Deps
from storage import chats, outbound
from storage.events import OutboundMessage, StreamEvent
from storage.orgs import Connection, connection_for_org

log = logging.getLogger(__name__)

CONNECTION_TTL_S = 30.0


class SenderStage:
    def __init__(self, deps: Deps, api_url: str) -> None:
        self.deps = deps
        self.api_url = api_url
        self._connections: dict[str, tuple[float, Connection | None]] = {}

    async def _connection(self, org: str) -> Connection | None:
        cached = self._connections.get(org)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        connection = await connection_for_org(self.deps.pool, org)
        self._connections[org] = (time.monotonic() + CONNECTION_TTL_S, connection)
        return connection

    async def handle(self, event: StreamEvent, delivery: Delivery) -> str | None:
        if not isinstance(event, OutboundMessage):
            raise Poison(f"the outbound stream carries outbound messages, not {event.type}")
        deps = self.deps
        connection = await self._connection(event.org)
        if connection is None:
            raise Poison(f"organization {event.org} has no active WhatsApp connection")
        identity = await chats.upsert_identity(deps.pool, event.org, event.phone, None)
        row = await outbound.claim(deps.pool, org=event.org, identity=identity,
                                   idempotency_key=event.idempotency_key, text=event.text,
                                   turn_id=event.turn_id, purpose=event.purpose)
        if not row.may_send:
            if row.send_started_at and not row.provider_message_id and row.message_status != "failed":
                # A worker died while this request may have been on the wire: never risk a repeat.
                await outbound.mark_failed(deps.pool, row.id, code=None, outcome_unknown=True,
                                           reason="outcome unknown: the worker stopped mid-send")
                return self._count(event, "unknown_outcome")
            return self._count(event, "duplicate")
        if event.requires_bot_enabled and not identity.bot_enabled:
            await outbound.mark_dropped(deps.pool, row.id, "bot turned off for this chat")
            return self._count(event, "dropped_bot_off")
        return await self._send(event, connection, row)

    async def _send(self, event: OutboundMessage, connection: Connection,
                    row: outbound.OutgoingRow) -> str | None:
        deps = self.deps
        timeout_s = deps.settings.gupshup_timeout_s
        await outbound.mark_sending(deps.pool, row.id)
        try:
            if event.template_id:
                accepted = await gupshup_api.send_template(
                    deps.http, self.api_url, connection, event.phone, event.template_id,
                    event.template_params, timeout_s)
            else:
                accepted = await gupshup_api.send_text(
                    deps.http, self.api_url, connection, event.phone, event.text or "", timeout_s)
        except gupshup_api.SendRetryable as exc:
            await outbound.clear_sending(deps.pool, row.id)
            metrics.dependency_errors.labels("gupshup", "retryable").inc()
            raise Retry(str(exc)) from exc
        except gupshup_api.SendRejected as exc:
            await outbound.mark_failed(deps.pool, row.id, code=exc.status, reason=str(exc))
            metrics.dependency_errors.labels("gupshup", f"rejected_{exc.status}").inc()
            self._count(event, "rejected")
            raise Poison(f"Gupshup rejected the message: {exc}") from exc
        except gupshup_api.SendOutcomeUnknown as exc:
            await outbound.mark_failed(deps.pool, row.id, code=None, reason=str(exc),
                                       outcome_unknown=True)
            metrics.dependency_errors.labels("gupshup", "outcome_unknown").inc()
            return self._count(event, "unknown_outcome")
        await outbound.mark_accepted(deps.pool, row.id, accepted.message_id)
        self._count(event, "accepted")
        return None

    def _count(self, event: OutboundMessage, outcome: str) -> str:
        metrics.messages_sent.labels(event.org, outcome).inc()
        return outcome
