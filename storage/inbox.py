"""What the clinic's team reads: an organization's chats (those needing a person first) and one
chat's messages, with who wrote each and what the bot did.

Every query is filtered by the organization first, so a phone of another organization is
simply not found (the operator API answers 404).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

# Who wrote a message. Rows stored before the author column existed have NULL: an inbound row
# is the customer's, an outgoing reply (and its further parts) the bot's, anything else
# (confirmations, reminders, notices, the advisor's template) the system's.
AUTHOR_SQL = (
    "coalesce(m.author, case when m.direction = 'inbound' then 'customer'"
    " when coalesce(m.purpose, 'reply') in ('reply', 'continuation') then 'bot'"
    " else 'system' end)"
)

# When the customer of chat `i` started waiting: their first message since the last message that
# reached them (a reply or a person's answer; a dropped or failed one reached nobody). NULL when
# nothing of theirs is unanswered.
WAITING_SINCE_SQL = """
    select min(coalesce(m.sent_at, m.created_at)) as since
      from chat_messages m
     where m.organization_id = i.organization_id and m.chat_identity_id = i.id
       and m.direction = 'inbound'
       and m.created_at > coalesce((
         select max(o.created_at) from chat_messages o
          where o.organization_id = i.organization_id and o.chat_identity_id = i.id
            and o.direction = 'outbound'
            and not (o.artifacts ? 'dropped') and o.message_status <> 'failed'), '-infinity')
"""

# Paused chats are listed whatever their age, newest pause first, up to this many: a chat a
# person took and never handed back must stay in sight.
MAX_PAUSED = 200

_LIST = f"""
with chosen as (
  (select id from chat_identities where organization_id = $1::uuid and not bot_enabled
   order by bot_paused_at desc nulls last limit {MAX_PAUSED})
  union
  (select id from chat_identities where organization_id = $1::uuid
   order by last_inbound_at desc nulls last limit $2)
)
select i.phone, i.kind, coalesce(c.name, i.profile_name) as name, i.bot_enabled,
       i.bot_paused_at, i.bot_paused_by, i.bot_paused_reason, i.last_inbound_at,
       last.direction as last_direction, last.text as last_text, last.author as last_author,
       last.at as last_at, waiting.since as waiting_since
  from chosen join chat_identities i on i.id = chosen.id
  left join contacts c on c.id = i.contact_id and c.organization_id = $1::uuid
  left join lateral (
    select m.direction, coalesce(m.message, m.processed_text, '[' || m.media_type || ']') as text,
           {AUTHOR_SQL} as author, coalesce(m.sent_at, m.created_at) as at
      from chat_messages m where m.chat_identity_id = i.id
     order by m.created_at desc limit 1) last on true
  left join lateral ({WAITING_SINCE_SQL}) waiting on true
"""


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


async def list_chats(
    pool: asyncpg.Pool, org: str, *, now: datetime, limit: int = 50
) -> list[dict[str, Any]]:
    """The organization's chats: those needing a person first (a customer's chat with the bot
    paused: escalated or taken over), longest waiting first; then the rest, latest first."""
    rows = await pool.fetch(_LIST, org, limit)
    chats = []
    for r in rows:
        needs_person = r["kind"] == "customer" and not r["bot_enabled"]
        waiting_since = r["waiting_since"] if r["kind"] == "customer" else None
        chats.append(
            {
                "phone": r["phone"],
                "name": r["name"],
                "kind": r["kind"],
                "needs_person": needs_person,
                "bot_enabled": r["bot_enabled"],
                "paused": None
                if r["bot_enabled"]
                else {
                    "at": _iso(r["bot_paused_at"]),
                    "by": r["bot_paused_by"],
                    "reason": r["bot_paused_reason"],
                },
                "last_message": None
                if r["last_at"] is None
                else {
                    "direction": r["last_direction"],
                    "author": r["last_author"],
                    "text": (r["last_text"] or "")[:300],
                    "at": _iso(r["last_at"]),
                },
                "waiting_since": _iso(waiting_since),
                "waiting_s": max(0, int((now - waiting_since).total_seconds()))
                if waiting_since
                else None,
            }
        )
    needing = sorted(
        (c for c in chats if c["needs_person"]),  # ISO times in UTC sort as text
        key=lambda c: (
            c["waiting_since"] is None,
            c["waiting_since"] or "",
            c["paused"]["at"] or "",
        ),
    )
    rest = sorted(
        (c for c in chats if not c["needs_person"]),
        reverse=True,
        key=lambda c: c["last_message"]["at"] if c["last_message"] else "",
    )
    return needing + rest


_CHAT = """
select i.id::text, i.phone, i.kind, i.contact_id::text, coalesce(c.name, i.profile_name) as name,
       i.profile_name, i.bot_enabled, i.bot_paused_at, i.bot_paused_by, i.bot_paused_reason,
       i.last_inbound_at
  from chat_identities i left join contacts c on c.id = i.contact_id and c.organization_id = $1::uuid
 where i.organization_id = $1::uuid and i.phone = $2
"""

_MESSAGES = f"""
select * from (
  select m.id::text, m.direction, {AUTHOR_SQL} as author, m.message as text, m.processed_text,
         m.media_type, m.media_url, m.media_mime_type, m.message_status, m.error_reason,
         m.purpose, m.turn_id, m.artifacts->>'dropped' as dropped,
         m.artifacts->'handled_by' as handled_by, coalesce(m.sent_at, m.created_at) as at,
         m.created_at
    from chat_messages m
   where m.organization_id = $1::uuid and m.chat_identity_id = $2::uuid
   order by m.created_at desc, m.id desc limit $3) latest
order by created_at, id
"""

_APPOINTMENTS = """
select a.id::text, s.name as service, st.name as staff, a.starts_at, a.ends_at, a.status,
       a.created_at, a.updated_at, a.confirmed_by_contact_at, a.idempotency_key is not null as by_bot
  from appointments a join services s on s.id = a.service_id join staff st on st.id = a.staff_id
 where a.organization_id = $1::uuid and a.contact_id = $2::uuid
 order by a.starts_at desc limit 20
"""


async def chat_detail(
    pool: asyncpg.Pool, org: str, phone: str, *, window_open_until_s: float | None, limit: int = 200
) -> dict[str, Any] | None:
    """One chat: who it is, its state, its last `limit` messages in order (with media
    transcripts and what the bot did in each turn), and the contact's appointments."""
    chat = await pool.fetchrow(_CHAT, org, phone)
    if chat is None:
        return None
    messages = await pool.fetch(_MESSAGES, org, chat["id"], limit)
    appointments = (
        await pool.fetch(_APPOINTMENTS, org, chat["contact_id"]) if chat["contact_id"] else []
    )
    return {
        "phone": chat["phone"],
        "name": chat["name"],
        "profile_name": chat["profile_name"],
        "kind": chat["kind"],
        "bot_enabled": chat["bot_enabled"],
        "needs_person": chat["kind"] == "customer" and not chat["bot_enabled"],
        "paused": None
        if chat["bot_enabled"]
        else {
            "at": _iso(chat["bot_paused_at"]),
            "by": chat["bot_paused_by"],
            "reason": chat["bot_paused_reason"],
        },
        "last_inbound_at": _iso(chat["last_inbound_at"]),
        # Free text reaches the customer only inside WhatsApp's 24-hour window; after it the
        # sender replaces a message with the organization's re-engagement template.
        "window_open_until": (
            datetime.fromtimestamp(window_open_until_s, chat["last_inbound_at"].tzinfo).isoformat()
            if window_open_until_s and chat["last_inbound_at"]
            else None
        ),
        "messages": [_message(m, chat["phone"]) for m in messages],
        "appointments": [
            {
                "id": a["id"],
                "service": a["service"],
                "staff": a["staff"],
                "starts_at": _iso(a["starts_at"]),
                "ends_at": _iso(a["ends_at"]),
                "status": a["status"],
                "booked_by": "bot" if a["by_bot"] else "other",
                "created_at": _iso(a["created_at"]),
                "updated_at": _iso(a["updated_at"]),
                "confirmed_by_contact_at": _iso(a["confirmed_by_contact_at"]),
            }
            for a in appointments
        ],
    }


def _message(m: asyncpg.Record, phone: str) -> dict[str, Any]:
    media = None
    if m["media_type"]:
        media = {
            "type": m["media_type"],
            "mime_type": m["media_mime_type"],
            # The file, through the operator API (same bearer token); None when it was
            # never stored (too large, refused, or the download failed).
            "link": f"/operator/v1/chats/{phone}/media/{m['id']}" if m["media_url"] else None,
            # What the customer's audio said or their photo showed (Gemini), as the bot read it.
            "transcript": m["processed_text"],
        }
    return {
        "id": m["id"],
        "direction": m["direction"],
        "author": m["author"],
        "text": m["text"],
        "processed_text": m["processed_text"],
        "media": media,
        "status": m["message_status"],
        "error": m["error_reason"],
        "dropped": m["dropped"],
        "purpose": m["purpose"],
        "turn_id": m["turn_id"],
        "handled_by": m["handled_by"],
        "at": _iso(m["at"]),
    }


async def media_of(
    pool: asyncpg.Pool, org: str, phone: str, message_id: str
) -> tuple[str, str | None] | None:
    """The stored path and MIME type of a message's media, in this organization's chat only."""
    try:
        row = await pool.fetchrow(
            "select m.media_url, m.media_mime_type from chat_messages m"
            " join chat_identities i on i.id = m.chat_identity_id and i.organization_id = $1::uuid"
            " where m.organization_id = $1::uuid and i.phone = $2 and m.id = $3::uuid"
            " and m.media_url is not null",
            org,
            phone,
            message_id,
        )
    except asyncpg.DataError:  # not a UUID
        return None
    return (row["media_url"], row["media_mime_type"]) if row else None


# Customer chats a person must answer: the bot is paused (escalated or taken over) and the
# customer's last words are unanswered. The partial index of the paused chats (migration 006)
# keeps this to those, however many chats the organizations have.
_WAITING = f"""
select i.organization_id::text as org, count(*) as chats, min(waiting.since) as oldest
  from chat_identities i
  join lateral ({WAITING_SINCE_SQL}) waiting on waiting.since is not null
 where not i.bot_enabled and i.kind = 'customer'
 group by i.organization_id
"""

_WAITING_ONE = f"""
select waiting.since from chat_identities i, lateral ({WAITING_SINCE_SQL}) waiting
 where i.organization_id = $1::uuid and i.phone = $2
"""


async def waiting_for_person(pool: asyncpg.Pool) -> list[tuple[str, int, datetime]]:
    """Per organization: how many customers wait for a person, and since when the longest has."""
    return [(r["org"], r["chats"], r["oldest"]) for r in await pool.fetch(_WAITING)]


async def waiting_since(pool: asyncpg.Pool, org: str, phone: str) -> datetime | None:
    """Since when the customer of this chat has been waiting for an answer (None: they are not)."""
    since: datetime | None = await pool.fetchval(_WAITING_ONE, org, phone)
    return since
