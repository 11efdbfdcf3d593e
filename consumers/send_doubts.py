"""Sends in doubt, settled: by evidence from status events, or by one resend after a grace.

Gupshup's send API takes no client reference and echoes none, and it offers no lookup of a
message's status (docs/gupshup.md, "Sends in doubt"): the only evidence that a request without an
answer arrived is the status events Gupshup posts for the message it created. Those name the
Gupshup id we never got, and the chat's phone. So a status event that matches no stored message,
for a chat with a send in doubt, is taken as that send's evidence (storage/send_doubts.adopt).

Nothing here blocks the sender: the sender marks a send in doubt and moves on; `DoubtChecker`,
a ticker in every sender process, re-queues the sends whose grace ended, and the sender then
decides (storage/send_doubts.decide): resend once, or give up when too old.
"""

from __future__ import annotations

import asyncio
import logging

from consumers import send_outcomes, ticker
from ops import metrics
from ops.deps import Deps
from storage import send_doubts, statuses, streams
from storage.events import OutboundMessage, StatusEvent
from storage.keys import Stream

log = logging.getLogger(__name__)


class SendEvidence:
    """Status events that match no stored message, held against the chat's sends in doubt."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    async def from_status(self, event: StatusEvent) -> bool:
        """An unmatched status event: True if it settled a send in doubt (apply it again now)."""
        gupshup_id = send_doubts.gupshup_id(event.status, event.provider_id, event.gs_id)
        if gupshup_id is None or not event.destination:
            return False
        adopted = await send_doubts.adopt(
            self.deps.pool,
            org=event.org,
            phone=event.destination,
            gupshup_message_id=gupshup_id,
            at_ms=event.at_ms,
        )
        if adopted is None:
            return False
        await self._confirmed(event.org, event.destination, adopted)
        return True

    async def keep(self, event: StatusEvent) -> None:
        """An event that matched nothing for good: kept a while, for a send of this chat that is
        still waiting for its answer and may go in doubt later."""
        if (
            not event.destination
            or send_doubts.gupshup_id(event.status, event.provider_id, event.gs_id) is None
        ):
            return
        s = self.deps.settings
        await send_doubts.remember_orphan(
            self.deps.redis,
            org=event.org,
            phone=event.destination,
            event=send_doubts.OrphanStatus(
                provider_id=event.provider_id,
                gs_id=event.gs_id,
                status=event.status,
                at_ms=event.at_ms,
                code=event.code,
                reason=event.reason,
            ),
            ttl_s=s.gupshup_timeout_s + s.send_doubt_grace_s + 60,
        )

    async def from_orphans(self, org: str, phone: str) -> bool:
        """A send of this chat just went in doubt: the events that came before may name it."""
        deps = self.deps
        kept = await send_doubts.orphans(deps.redis, org, phone)
        for event in kept:
            gupshup_id = send_doubts.gupshup_id(
                event["status"], event["provider_id"], event.get("gs_id")
            )
            if gupshup_id is None:
                continue
            adopted = await send_doubts.adopt(
                deps.pool, org=org, phone=phone, gupshup_message_id=gupshup_id, at_ms=event["at_ms"]
            )
            if adopted is None:
                continue
            await self._confirmed(org, phone, adopted)
            same = [e for e in kept if gupshup_id in (e.get("gs_id"), e["provider_id"])]
            for each in same:  # the message's own statuses, now that it has its id
                await statuses.apply_status(
                    deps.pool,
                    org=org,
                    provider_id=each["provider_id"],
                    gs_id=each.get("gs_id"),
                    status=each["status"],
                    at_ms=each["at_ms"],
                    code=each.get("code"),
                    reason=each.get("reason"),
                )
            await send_doubts.forget_orphans(deps.redis, org, phone, same)
            return True
        return False

    async def _confirmed(self, org: str, phone: str, adopted: send_doubts.Adopted) -> None:
        metrics.unknown_sends.labels(org, "confirmed").inc()
        log.info(
            "send %s to %s was in doubt; a status event names it (%s): it arrived",
            adopted.row_id,
            phone,
            adopted.gupshup_id,
        )
        if adopted.request:  # what the sender would have done on Gupshup's answer
            await send_outcomes.accepted(self.deps, OutboundMessage.model_validate(adopted.request))


class DoubtChecker:
    """Re-queues sends whose grace ended (or whose worker died with its entry lost), so the
    sender decides on them; one query per tick, whatever the number of organizations."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    async def tick(self) -> int:
        s = self.deps.settings
        # A request on the wire longer than its own timeout plus the grace has no worker left.
        requests = await send_doubts.due_for_check(
            self.deps.pool,
            grace_s=s.send_doubt_grace_s,
            stuck_s=s.gupshup_timeout_s + s.send_doubt_grace_s,
        )
        for request in requests:
            # The same idempotency key: the sender's row decides, so a second copy is harmless.
            await streams.publish(
                self.deps.redis, OutboundMessage.model_validate(request), Stream.OUTBOUND
            )
        return len(requests)

    async def run(self, stop: asyncio.Event) -> None:
        await ticker.every(self.deps.settings.send_doubt_check_s, self.tick, stop, "send doubts")
