"""While the customer waits: their message marked read, with WhatsApp's typing indicator.

Gupshup's partner API passes Meta's "mark as read with a typing indicator" through:
`POST {GUPSHUP_PARTNER_API_URL}/partner/app/{appId}/v1/event` with the app's partner app token
in `Authorization` (docs/gupshup.md, "Read receipts and the typing indicator"). WhatsApp shows
the blue ticks on that message and the earlier ones, and "typing…" until the reply arrives or
25 seconds pass. It needs the organization's Gupshup app id and its `gupshup_partner_token`
setting; without them, or with TYPING_INDICATOR off, nothing is sent.

Best effort: the request runs beside the turn, never delays it and never fails it; a refusal
or a timeout is logged and counted (`skytide_typing_indicators_total`).
"""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp

from ops import metrics
from storage.orgs import Connection

log = logging.getLogger(__name__)

TIMEOUT_S = 5.0  # the indicator is worth nothing once the reply is out


def event_body(whatsapp_message_id: str) -> str:
    """The documented request body: the message marked read, with the text typing indicator."""
    return json.dumps(
        {
            "type": "message-event",
            "message": {
                "messaging_product": "whatsapp",
                "status": "read",
                "message_id": whatsapp_message_id,
                "typing_indicator": {"type": "text"},
            },
        }
    )


def can_send(connection: Connection | None) -> bool:
    return bool(
        connection is not None
        and connection.app_id
        and connection.settings.get("gupshup_partner_token")
    )


async def mark_read_typing(
    http: aiohttp.ClientSession, partner_api_url: str, connection: Connection, message_id: str
) -> bool:
    """One request; True if Gupshup took it. Never raises (but for cancellation)."""
    url = f"{partner_api_url.rstrip('/')}/partner/app/{connection.app_id}/v1/event"
    try:
        async with http.post(
            url,
            data=event_body(message_id),
            # As Gupshup's sample request: a JSON body labelled form-encoded, the token bare.
            headers={
                "Authorization": str(connection.settings["gupshup_partner_token"]),
                "Content-Type": "application/x-www-form-urlencoded",
            },
            timeout=aiohttp.ClientTimeout(total=TIMEOUT_S),
        ) as response:
            text = await response.text()
            if response.status == 200:
                metrics.typing_indicators.labels("sent").inc()
                return True
            metrics.typing_indicators.labels("refused").inc()
            log.warning(
                "typing indicator for org %s refused: HTTP %s %s",
                connection.org_id,
                response.status,
                text[:200],
            )
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        metrics.typing_indicators.labels("failed").inc()
        log.warning("typing indicator for org %s failed: %r", connection.org_id, exc)
    return False
