"""What retention deletes, in PostgreSQL: an organization's old messages and old media.

A message's age is its send time (the user's for inbound, ours for outbound), else when it was
stored. Rows are taken in batches, oldest first, so one run never holds a long transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.db import Db
from storage.org_settings import RETENTION_KEYS

AGE = "coalesce(sent_at, created_at)"


@dataclass(frozen=True)
class Policy:
    org: str
    messages_days: float | None
    media_days: float | None
    dead_letters_days: float | None


async def policies(db: Db) -> list[Policy]:
    """The organizations that set a retention (one query: the others cost nothing)."""
    rows = await db.fetch(
        "select id::text, settings from organizations where settings ?| $1::text[]",
        list(RETENTION_KEYS),
    )
    return [Policy(r["id"], *(_days(r["settings"], k) for k in RETENTION_KEYS)) for r in rows]


def _days(settings: dict[str, Any], key: str) -> float | None:
    value = settings.get(key)
    return float(value) if value is not None else None


async def old_messages(
    db: Db, org: str, before: datetime, limit: int
) -> list[tuple[str, str, str | None]]:
    """(id, chat phone, media path) of the oldest messages sent before `before`."""
    rows = await db.fetch(
        "select m.id::text, i.phone, m.media_url from chat_messages m"
        " join chat_identities i on i.id = m.chat_identity_id"
        " where m.organization_id = $1::uuid and coalesce(m.sent_at, m.created_at) < $2"
        " order by coalesce(m.sent_at, m.created_at) limit $3",
        org,
        before,
        limit,
    )
    return [(r["id"], r["phone"], r["media_url"]) for r in rows]


async def delete_messages(db: Db, org: str, ids: list[str]) -> int:
    status = await db.execute(
        "delete from chat_messages where organization_id = $1::uuid and id = any($2::uuid[])",
        org,
        ids,
    )
    return int(status.rsplit(" ", 1)[-1])


async def old_media(db: Db, org: str, before: datetime, limit: int) -> list[tuple[str, str]]:
    """(id, media path) of the oldest messages sent before `before` that still have a file."""
    rows = await db.fetch(
        f"select id::text, media_url from chat_messages where organization_id = $1::uuid"
        f" and media_url is not null and {AGE} < $2 order by {AGE} limit $3",
        org,
        before,
        limit,
    )
    return [(r["id"], r["media_url"]) for r in rows]


async def forget_media(db: Db, org: str, ids: list[str], at: datetime) -> int:
    """The rows keep their text (a voice note's transcript, an image's description) and say
    when their file went."""
    status = await db.execute(
        "update chat_messages set media_url = null,"
        " artifacts = artifacts || jsonb_build_object('media_deleted_at', $3::text)"
        " where organization_id = $1::uuid and id = any($2::uuid[])",
        org,
        ids,
        at.isoformat(),
    )
    return int(status.rsplit(" ", 1)[-1])
