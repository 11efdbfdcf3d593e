"""What follows a send: the agent's memory of a reply Gupshup took, an escalation's outcome.

Shared by the sender (Gupshup's answer said it took the message) and by the evidence for a send
in doubt (a status event said so, consumers/send_doubts.py), so a send settled either way has
the same effects.
"""

from __future__ import annotations

from datetime import datetime, timezone

from ops.deps import Deps
from storage import chats, memory, streams, webhooks
from storage.events import OutboundMessage
from storage.keys import Stream


async def accepted(deps: Deps, event: OutboundMessage) -> None:
    if event.text:  # the agent's short-term memory of the chat (staff words marked as such)
        role: memory.Role = "staff" if event.author_name.startswith("staff:") else "assistant"
        await memory.remember(deps.redis, event.org, event.phone, role, event.text)
    if event.escalation:
        await escalation_outcome(deps, event, accepted=True)


async def escalation_outcome(deps: Deps, event: OutboundMessage, *, accepted: bool) -> None:
    """The advisor was (or was not) told: turn the bot off only if so, and tell the customer.
    The notice's idempotency key makes a second outcome for the same escalation a no-op."""
    notice = event.escalation
    if notice is None:
        return
    if accepted:
        await chats.set_bot_enabled(
            deps.pool,
            event.org,
            notice.customer_phone,
            False,
            reason="escalated to an advisor",
            at=datetime.fromtimestamp(deps.clock(), timezone.utc),
        )
        # The CRM is told once per escalation: its id is the notice's idempotency key.
        reason = event.template_params[2] if len(event.template_params) > 2 else None
        await webhooks.chat_event(
            deps.redis,
            deps.pool,
            event.org,
            "chat.escalated",
            phone=notice.customer_phone,
            version=event.idempotency_key,
            by="bot",
            reason=reason,
            now_ms=deps.now_ms(),
        )
    await streams.publish(
        deps.redis,
        OutboundMessage(
            org=event.org,
            phone=notice.customer_phone,
            text=notice.accepted_text if accepted else notice.failed_text,
            idempotency_key=f"{event.idempotency_key}:customer",
            turn_id=event.turn_id,
            purpose="escalation_notice",
            requires_bot_enabled=not accepted,
        ),
        Stream.OUTBOUND,
    )
