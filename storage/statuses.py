"""Message status tracking: Gupshup's status events applied to outgoing chat_messages rows.

Events arrive late, out of order and more than once, so the stored status only moves forward
(read never goes back to delivered) and every transition keeps its own time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import asyncpg

# Forward order of the stored status. A failure outranks "sent" (it failed after leaving us)
# but not "delivered" or "read" (the user got it: a stray late failure must not hide that).
RANK = ("pending", "sent", "failed", "delivered", "read")
STORED = set(RANK)
# Recorded with their time but not a status of their own.
NOTED_ONLY = {"enqueued", "deleted", "mismatch"}


@dataclass(frozen=True)
class Applied:
    message_id: str
    org: str
    phone: str
    status: str  # the stored status after this event


# Correlate on gsId first (Gupshup's messageId), then on id against both stored ids; write the
# WhatsApp id when an event teaches it to us; move the status forward only.
_APPLY = """
with target as (
  select m.id from chat_messages m
  where m.organization_id = $1::uuid and m.direction = 'outbound' and (
        ($2::text is not null and m.provider_message_id = $2)
     or m.provider_message_id = $3 or m.whatsapp_message_id = $3)
  order by (m.provider_message_id = $2) desc nulls last
  limit 1
)
update chat_messages m set
  message_status = case
    when $4 = any($5::text[])
     and array_position($5::text[], $4) > array_position($5::text[], m.message_status)
    then $4 else m.message_status end,
  status_times = m.status_times || jsonb_build_object($4, $6::timestamptz),
  whatsapp_message_id = coalesce(m.whatsapp_message_id,
    case when $2::text is not null and $3 <> $2 then $3 end),
  error_code = case when $4 = 'failed' then coalesce($7, m.error_code) else m.error_code end,
  error_reason = case when $4 = 'failed' then coalesce($8, m.error_reason) else m.error_reason end
from target where m.id = target.id
returning m.id::text, m.message_status,
  (select phone from chat_identities i where i.id = m.chat_identity_id) as phone
"""


async def apply_status(pool: asyncpg.Pool, *, org: str, provider_id: str, gs_id: str | None,
                       status: str, at_ms: int, code: int | None = None,
                       reason: str | None = None) -> Applied | None:
    """Apply one status event; None when no outgoing message matches (yet)."""
    at = datetime.fromtimestamp(at_ms / 1000, tz=timezone.utc)
    row = await pool.fetchrow(_APPLY, org, gs_id, provider_id, status, list(RANK), at, code,
                              reason)
    if row is None:
        return None
    return Applied(message_id=row["id"], org=org, phone=row["phone"], status=row["message_status"])
