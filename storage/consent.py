"""WhatsApp consent per contact: opt-ins and opt-outs, with where each came from."""

from __future__ import annotations

from typing import Literal

from storage.chats import CACHE
from storage.db import Db

Status = Literal["opted_in", "opted_out"]
WHATSAPP = "whatsapp"
# Meta's 131050: the user stopped marketing messages; session replies may still be fine.
WHATSAPP_MARKETING = "whatsapp_marketing"


async def record(
    conn: Db,
    *,
    org: str,
    contact_id: str,
    status: Status,
    source: str,
    detail: str | None = None,
    channel: str = WHATSAPP,
) -> tuple[str, str | None] | None:
    """Store the contact's latest consent; returns what it was before (status, detail), if any."""
    CACHE.drop_row(contact_id)  # other processes learn it from the change log
    previous = await conn.fetchrow(
        "select status, detail from contact_authorizations where contact_id = $1::uuid"
        " and channel = $2 and organization_id = $3::uuid",
        contact_id,
        channel,
        org,
    )
    await conn.execute(
        "insert into contact_authorizations (organization_id, contact_id, channel, status, source,"
        " detail) values ($1::uuid, $2::uuid, $3, $4, $5, $6) "
        "on conflict (contact_id, channel) do update set status = excluded.status,"
        " source = excluded.source, detail = excluded.detail, updated_at = now()",
        org,
        contact_id,
        channel,
        status,
        source,
        detail,
    )
    return (previous["status"], previous["detail"]) if previous else None
