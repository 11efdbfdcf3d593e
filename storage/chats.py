"""Chat identities, contacts and chat messages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import asyncpg

from storage.catalog import TSQUERY_ANY_WORD
from storage.db import Db, returned_row
from storage.identity_cache import IdentityCache


@dataclass(frozen=True)
class Identity:
    id: str
    contact_id: str | None  # None only for a staff chat (kind "staff"): staff are not contacts
    phone: str
    bot_enabled: bool
    last_inbound_at: datetime | None
    opted_out: bool  # the contact said STOP (or WhatsApp told us so)
    kind: str = "customer"  # or "staff": the advisor's or a staff phone, never answered by the bot
    language: str | None = None  # es, en or pt once the customer said enough (graph/language.py)

    def customer_contact_id(self) -> str:
        """The contact of a customer's chat (`upsert_identity` always links one)."""
        if self.contact_id is None:
            raise LookupError(f"chat identity {self.id} is a staff chat: it has no contact")
        return self.contact_id


def ms_to_dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


# What CACHE keeps beside an Identity.
_CACHED_COLUMNS = "profile_name, organization_id::text"
_IDENTITY_COLUMNS = """
    id::text, contact_id::text, phone, bot_enabled, last_inbound_at, language,
    exists (select 1 from contact_authorizations a where a.contact_id = chat_identities.contact_id
            and a.channel = 'whatsapp' and a.status = 'opted_out') as opted_out, kind"""


@dataclass(frozen=True)
class Known:
    """A chat as this process last read it (`CACHE`)."""

    identity: Identity
    profile_name: str | None
    name: str | None = None  # the contact's, when a turn read it (`turn_identity`)
    named: bool = False  # whether `name` was read


# This process's known chats; ops/app/wiring.py runs the poll that keeps them right.
CACHE: IdentityCache[Known] = IdentityCache()


def _remember(row: Any, name: str | None = None, named: bool = False) -> Identity:
    """The Identity of a row read with _IDENTITY_COLUMNS and profile_name, kept in CACHE."""
    values = dict(row)
    profile_name = values.pop("profile_name")
    org = values.pop("organization_id")
    identity = Identity(**values)
    if identity.kind == "customer":
        CACHE.put(
            org,
            identity.phone,
            Known(identity, profile_name, name, named),
            (identity.id, identity.contact_id),
        )
    return identity


async def identity_of_message(conn: Db, org: str, phone: str, profile_name: str | None) -> Identity:
    """`upsert_identity` for a customer's inbound message, from CACHE when the chat is known:
    no PostgreSQL read. Served only while the bot is on and the contact has not opted out (a
    chat that may not be answered is read fresh, so one turned back on or opted back in starts
    its turn at once); the agent and the sender read the chat fresh before acting on it. The
    cached identity's last_inbound_at is as it was read (the sender reads its own)."""
    known = CACHE.get(org, phone)
    if (
        known is not None
        and known.identity.bot_enabled
        and not known.identity.opted_out
        and (profile_name is None or profile_name == known.profile_name)
    ):
        return known.identity
    return await upsert_identity(conn, org, phone, profile_name)


async def upsert_identity(conn: Db, org: str, phone: str, profile_name: str | None) -> Identity:
    """Find or create the contact and chat identity of a customer's phone in an organization.

    A phone that was a staff chat (no contact) and writes as a customer now gets its contact and
    its bot back: the caller decided it is a customer (see `upsert_staff_identity`)."""
    # Fast path, the usual case: the customer's chat exists and its profile name has not
    # changed: one read, no write (a write per message would cost a row version and a WAL
    # record each).
    row = await conn.fetchrow(
        f"select {_IDENTITY_COLUMNS}, {_CACHED_COLUMNS} from chat_identities "
        "where organization_id = $1::uuid and phone = $2 and kind = 'customer'",
        org,
        phone,
    )
    if row and (profile_name is None or row["profile_name"] == profile_name):
        return _remember(row)
    if row:
        row = await conn.fetchrow(
            "update chat_identities set profile_name = $3 "
            "where organization_id = $1::uuid and phone = $2 and kind = 'customer' "
            f"returning {_IDENTITY_COLUMNS}, {_CACHED_COLUMNS}",
            org,
            phone,
            profile_name,
        )
        if row:
            return _remember(row)
    contact_id = await conn.fetchval(
        "insert into contacts (organization_id, phone, name) values ($1::uuid, $2, $3) "
        "on conflict (organization_id, phone) do update set phone = excluded.phone "
        "returning id::text",
        org,
        phone,
        profile_name,
    )
    row = await conn.fetchrow(
        "insert into chat_identities (organization_id, contact_id, phone, profile_name) "
        "values ($1::uuid, $2::uuid, $3, $4) "
        "on conflict (organization_id, phone) do update "
        "  set profile_name = coalesce(excluded.profile_name, chat_identities.profile_name),"
        "      contact_id = coalesce(chat_identities.contact_id, excluded.contact_id),"
        "      bot_enabled = chat_identities.bot_enabled or chat_identities.kind = 'staff',"
        "      kind = 'customer' "
        f"returning {_IDENTITY_COLUMNS}, {_CACHED_COLUMNS}",
        org,
        contact_id,
        phone,
        profile_name,
    )
    return _remember(returned_row(row))


async def upsert_staff_identity(
    conn: Db, org: str, phone: str, profile_name: str | None
) -> Identity:
    """The chat of the organization's advisor or a staff phone: no contact is created (staff are
    not customers of the clinic), and its bot is off, so nothing it writes starts a turn."""
    CACHE.drop(org, phone)
    row = await conn.fetchrow(
        "insert into chat_identities (organization_id, phone, profile_name, kind, bot_enabled,"
        " bot_paused_at, bot_paused_reason) "
        "values ($1::uuid, $2, $3, 'staff', false, now(), 'staff phone') "
        "on conflict (organization_id, phone) do update "
        "  set profile_name = coalesce(excluded.profile_name, chat_identities.profile_name),"
        "      kind = 'staff', bot_enabled = false,"
        "      bot_paused_at = coalesce(chat_identities.bot_paused_at, now()),"
        "      bot_paused_reason = coalesce(chat_identities.bot_paused_reason, 'staff phone') "
        f"returning {_IDENTITY_COLUMNS}",
        org,
        phone,
        profile_name,
    )
    return Identity(**dict(returned_row(row)))


async def find_identity(conn: Db, org: str, phone: str) -> Identity | None:
    row = await conn.fetchrow(
        f"select {_IDENTITY_COLUMNS} from chat_identities "
        "where organization_id = $1::uuid and phone = $2",
        org,
        phone,
    )
    return Identity(**dict(row)) if row else None


async def turn_identity(conn: Db, org: str, phone: str) -> Identity | None:
    """The chat as a turn starts: read fresh (a person may have taken it over a moment ago in
    another process), with the contact's name, in one query; `name_and_language` then answers
    from CACHE."""
    row = await conn.fetchrow(
        f"select {_IDENTITY_COLUMNS}, {_CACHED_COLUMNS},"
        " (select c.name from contacts c where c.id = chat_identities.contact_id) as contact_name"
        " from chat_identities where organization_id = $1::uuid and phone = $2",
        org,
        phone,
    )
    if row is None:
        return None
    values = dict(row)
    name = values.pop("contact_name")
    return _remember(values, name, named=True)


async def insert_inbound(
    conn: Db,
    *,
    org: str,
    identity: Identity,
    provider_id: str,
    message: str | None,
    processed_text: str | None,
    sent_at_ms: int,
    media_type: str | None = None,
    media_url: str | None = None,
    media_mime_type: str | None = None,
    media_size_bytes: int | None = None,
    media_sha256: str | None = None,
    artifacts: dict[str, Any] | None = None,
    author: str = "customer",
) -> tuple[str, bool]:
    """Store an inbound message once; returns (message id, whether this call created it).
    `author` is "customer", or "staff:<phone>" for a message from a staff phone."""
    # The row and the chat's last_inbound_at (the 24-hour window) in one statement, one commit.
    try:
        row = await conn.fetchrow(
            "with stored as ("
            " insert into chat_messages (organization_id, chat_identity_id, direction, message,"
            " processed_text, media_type, media_url, media_mime_type, media_size_bytes, media_sha256,"
            " provider_message_id, message_status, artifacts, sent_at, author) "
            " values ($1::uuid, $2::uuid, 'inbound', $3, $4, $5, $6, $7, $8, $9, $10, 'delivered', $11, $12, $13)"
            " on conflict (organization_id, provider_message_id) where provider_message_id is not null"
            " do nothing returning id, chat_identity_id, sent_at), "
            "touched as ("
            " update chat_identities i set last_inbound_at = greatest(i.last_inbound_at, stored.sent_at)"
            " from stored where i.id = stored.chat_identity_id) "
            "select id::text from stored",
            org,
            identity.id,
            message,
            processed_text,
            media_type,
            media_url,
            media_mime_type,
            media_size_bytes,
            media_sha256,
            provider_id,
            artifacts or {},
            ms_to_dt(sent_at_ms),
            author,
        )
    except asyncpg.ForeignKeyViolationError:
        # The chat was deleted (an erasure) since CACHE read it: the retry reads it again.
        CACHE.drop_row(identity.id)
        raise
    if row:
        return row["id"], True
    message_id = await inbound_message_id(conn, org, provider_id)
    if message_id is None:  # stored by an earlier delivery and erased since: try the entry again
        raise LookupError(f"inbound message {provider_id} was erased while being stored")
    return message_id, False


async def inbound_message_id(conn: Db, org: str, provider_id: str) -> str | None:
    message_id: str | None = await conn.fetchval(
        "select id::text from chat_messages where organization_id = $1::uuid"
        " and provider_message_id = $2",
        org,
        provider_id,
    )
    return message_id


async def message_texts(conn: Db, org: str, message_ids: list[str]) -> list[str]:
    """What the agent reads of each message (processed_text, else the raw text), in the given order."""
    rows = await conn.fetch(
        "select id::text, coalesce(processed_text, message, '') as text from chat_messages "
        "where organization_id = $1::uuid and id = any($2::uuid[])",
        org,
        message_ids,
    )
    by_id = {r["id"]: r["text"] for r in rows}
    return [by_id[m] for m in message_ids if m in by_id]


async def whatsapp_id(conn: Db, org: str, message_id: str) -> str | None:
    """The id WhatsApp knows a stored inbound message by: its wamid when known, else Gupshup's."""
    value = await conn.fetchval(
        "select coalesce(whatsapp_message_id, provider_message_id) from chat_messages "
        "where organization_id = $1::uuid and id = $2::uuid",
        org,
        message_id,
    )
    return str(value) if value is not None else None


async def set_bot_enabled(
    conn: Db,
    org: str,
    phone: str,
    enabled: bool,
    reason: str | None = None,
    by: str | None = None,
    at: datetime | None = None,
) -> bool:
    """Turn the bot on or off for one chat (`by`: who took it over, when a person did); returns
    False when the chat does not exist. A staff chat's bot never comes on. `at` is the caller's
    clock (Deps.clock), the one `resume_if_due` compares against; without it the database's."""
    CACHE.drop(org, phone)  # other processes learn it from the change log
    result = await conn.execute(
        "update chat_identities set bot_enabled = $3, "
        "  bot_paused_at = case when $3 then null else coalesce($6, now()) end, bot_paused_reason = $4,"
        "  bot_paused_by = $5 "
        "where organization_id = $1::uuid and phone = $2 and (kind = 'customer' or not $3)",
        org,
        phone,
        enabled,
        None if enabled else reason,
        None if enabled else by,
        at,
    )
    return result.endswith(" 1")


@dataclass(frozen=True)
class BotSwitch:
    """What `switch_bot` did: whether the chat's state changed, and the pause (when it started)
    that the change began or ended (the version of a chat.taken_over or chat.handed_back)."""

    changed: bool
    pause_started_at: datetime | None


async def switch_bot(
    conn: Db,
    org: str,
    phone: str,
    enabled: bool,
    reason: str | None = None,
    by: str | None = None,
    at: datetime | None = None,
) -> BotSwitch | None:
    """`set_bot_enabled`, saying whether it was a real change (None: no such chat). A take-over
    changes something when the bot was on or the chat was not this person's; a hand-back, when
    the bot was off. Read and written in one statement, so two racing requests see one change."""
    CACHE.drop(org, phone)
    row = await conn.fetchrow(
        "with before as (select id, bot_enabled, bot_paused_by, bot_paused_at from chat_identities"
        "  where organization_id = $1::uuid and phone = $2 for update) "
        "update chat_identities c set bot_enabled = $3, "
        "  bot_paused_at = case when $3 then null"
        "    when not before.bot_enabled and before.bot_paused_by is not distinct from $5"
        "    then before.bot_paused_at else coalesce($6, now()) end,"
        "  bot_paused_reason = case when $3 then null else $4 end,"
        "  bot_paused_by = case when $3 then null else $5 end "
        "from before where c.id = before.id and (c.kind = 'customer' or not $3) "
        "returning before.bot_enabled as was_enabled, before.bot_paused_by as was_by,"
        "  before.bot_paused_at as was_paused_at, c.bot_paused_at",
        org,
        phone,
        enabled,
        None if enabled else reason,
        None if enabled else by,
        at,
    )
    if row is None:
        return None
    if enabled:
        return BotSwitch(not row["was_enabled"], row["was_paused_at"])
    changed = row["was_enabled"] or row["was_by"] != by
    return BotSwitch(changed, row["bot_paused_at"])


async def resume_if_due(conn: Db, org: str, phone: str, now: datetime) -> bool:
    """Turn the bot back on for a chat paused longer ago than the organization's
    `bot_resume_after_hours` setting (no setting: a paused chat stays paused until
    `skytide bot resume`). True when it was resumed."""
    CACHE.drop(org, phone)
    result = await conn.execute(
        "update chat_identities ci set bot_enabled = true, bot_paused_at = null, bot_paused_reason = null,"
        " bot_paused_by = null "
        "from organizations o where o.id = ci.organization_id and ci.organization_id = $1::uuid "
        "  and ci.kind = 'customer' "
        "  and ci.phone = $2 and not ci.bot_enabled and o.settings ? 'bot_resume_after_hours' "
        "  and ci.bot_paused_at <= $3::timestamptz - make_interval(secs => (o.settings->>'bot_resume_after_hours')::float8 * 3600)",
        org,
        phone,
        now,
    )
    return result.endswith(" 1")


async def contact_name(db: Db, org: str, contact_id: str) -> str | None:
    name: str | None = await db.fetchval(
        "select name from contacts where id = $2::uuid and organization_id = $1::uuid",
        org,
        contact_id,
    )
    return name


async def save_contact_name(db: Db, org: str, contact_id: str, name: str) -> None:
    CACHE.drop_row(contact_id)
    await db.execute(
        "update contacts set name = $3 where id = $2::uuid and organization_id = $1::uuid",
        org,
        contact_id,
        name.strip()[:120],
    )


async def search_messages(
    db: Db, org: str, identity_id: str, query: str, limit: int = 5
) -> list[tuple[str, str, datetime]]:
    """The chat's earlier messages that match a query: (direction, text, when), newest first."""
    rows = await db.fetch(
        f"""
        select direction, coalesce(processed_text, message, '') as text, created_at
        from chat_messages
        where organization_id = $1::uuid and chat_identity_id = $3::uuid
          and to_tsvector('spanish', immutable_unaccent(coalesce(processed_text, message, '')))
              @@ {TSQUERY_ANY_WORD}
        order by created_at desc limit $4""",
        org,
        query,
        identity_id,
        limit,
    )
    return [(r["direction"], r["text"], r["created_at"]) for r in rows]


async def name_and_language(db: Db, org: str, identity_id: str) -> tuple[str | None, str | None]:
    """The contact's name and the language the chat is in (graph/language.py; None before the
    customer said enough), in one query: a turn asks both before it starts. From CACHE when
    the turn's `turn_identity` read them."""
    known = CACHE.get_by_row(identity_id)
    if known is not None and known.named and known.identity.id == identity_id:
        return known.name, known.identity.language
    row = await db.fetchrow(
        "select c.name, ci.language from chat_identities ci left join contacts c"
        " on c.id = ci.contact_id where ci.id = $2::uuid and ci.organization_id = $1::uuid",
        org,
        identity_id,
    )
    return (row["name"], row["language"]) if row else (None, None)


async def language_by_phone(db: Db, org: str, phone: str) -> str | None:
    """The chat's language, found by the customer's phone (for messages sent outside a turn)."""
    language: str | None = await db.fetchval(
        "select language from chat_identities where organization_id = $1::uuid and phone = $2",
        org,
        phone,
    )
    return language


async def save_chat_language(db: Db, org: str, identity_id: str, language: str) -> None:
    CACHE.drop_row(identity_id)
    await db.execute(
        "update chat_identities set language = $3 where id = $2::uuid and organization_id = $1::uuid",
        org,
        identity_id,
        language,
    )
