"""Organizations and their Gupshup connections."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from redis.typing import EncodableT, FieldT

from storage import keys


@dataclass(frozen=True)
class Connection:
    org_id: str
    org_name: str
    timezone: str
    settings: dict[str, Any]
    app_name: str
    app_id: str | None
    # Secrets stay out of repr(): a connection printed in a log line or a traceback shows neither.
    api_key: str = field(repr=False)
    source_phone: str
    webhook_token: str = field(repr=False)
    is_active: bool


MIN_TOKEN_CHARS = 12

_SELECT = """
select o.id::text as org_id, o.name as org_name, o.timezone, o.settings,
       c.gupshup_app_name as app_name, c.gupshup_app_id as app_id, c.api_key, c.source_phone,
       c.webhook_token, c.is_active
from platform_connections c join organizations o on o.id = c.organization_id
"""


async def find_connection(
    pool: asyncpg.Pool, *, app_name: str | None = None, app_id: str | None = None
) -> Connection | None:
    """The connection of a Gupshup app, by name (v2 payloads) or by app id (v3 payloads)."""
    if app_name:
        row = await pool.fetchrow(_SELECT + " where c.gupshup_app_name = $1", app_name)
    elif app_id:
        row = await pool.fetchrow(_SELECT + " where c.gupshup_app_id = $1", app_id)
    else:
        return None
    return Connection(**dict(row)) if row else None


async def connections_by_token(pool: asyncpg.Pool, token: str) -> list[Connection]:
    """The connections a webhook token opens (an operator may share one token between apps)."""
    rows = await pool.fetch(_SELECT + " where c.webhook_token = $1", token)
    return [Connection(**dict(row)) for row in rows]


async def connection_for_org(pool: asyncpg.Pool, org_id: str) -> Connection | None:
    row = await pool.fetchrow(
        _SELECT + " where o.id = $1::uuid and c.is_active order by c.created_at limit 1", org_id
    )
    return Connection(**dict(row)) if row else None


async def add_org(
    pool: asyncpg.Pool,
    *,
    name: str,
    app_name: str,
    api_key: str,
    source_phone: str,
    webhook_token: str | None = None,
    app_id: str | None = None,
    timezone: str = "America/Bogota",
    settings: dict[str, Any] | None = None,
) -> str:
    """Provision an organization and its WhatsApp connection; returns the organization id.

    Without `webhook_token` a random one is generated (read it back with `webhook_token_of`); a
    given one must be at least MIN_TOKEN_CHARS long: the token is the webhook's only credential.
    """
    if webhook_token is None:
        webhook_token = secrets.token_urlsafe(24)
    elif len(webhook_token.strip()) < MIN_TOKEN_CHARS:
        raise ValueError(f"the webhook token must have at least {MIN_TOKEN_CHARS} characters")
    async with pool.acquire() as conn, conn.transaction():
        org_id: str = await conn.fetchval(
            "insert into organizations (name, timezone, settings) values ($1, $2, $3) "
            "returning id::text",
            name,
            timezone,
            settings or {},
        )
        await conn.execute(
            "insert into platform_connections (organization_id, gupshup_app_name, gupshup_app_id,"
            " api_key, source_phone, webhook_token) values ($1::uuid, $2, $3, $4, $5, $6)",
            org_id,
            app_name,
            app_id,
            api_key,
            source_phone,
            webhook_token,
        )
    return org_id


async def webhook_token_of(pool: asyncpg.Pool, app_name: str) -> str | None:
    """The token Gupshup must send for this app (for the operator who sets the callback URL)."""
    token: str | None = await pool.fetchval(
        "select webhook_token from platform_connections where gupshup_app_name = $1", app_name
    )
    return token


class ConnectionsByOrg:
    """Each organization's active connection, cached briefly: every send and turn needs it."""

    def __init__(self, pool: asyncpg.Pool, ttl_s: float = 30.0) -> None:
        self.pool = pool
        self.ttl_s = ttl_s
        self._cached: dict[str, tuple[float, Connection | None]] = {}

    async def get(self, org: str) -> Connection | None:
        cached = self._cached.get(org)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        connection = await connection_for_org(self.pool, org)
        self._cached[org] = (time.monotonic() + self.ttl_s, connection)
        return connection


async def active_org_ids(pool: asyncpg.Pool) -> list[str]:
    """Organizations with an active WhatsApp connection (the registry's source of truth)."""
    rows = await pool.fetch(
        "select distinct organization_id::text as id from platform_connections where is_active"
    )
    return [row["id"] for row in rows]


# ---- the connections published in Redis for the ingress -----------------------------------


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _record(c: Connection) -> dict[str, Any]:
    # What authenticating a webhook and naming its organization need: no API key, no token
    # (it is the field's digest) and no settings, so Redis holds no Gupshup credential.
    return {
        "org_id": c.org_id,
        "org_name": c.org_name,
        "timezone": c.timezone,
        "app_name": c.app_name,
        "app_id": c.app_id,
        "source_phone": c.source_phone,
        "is_active": c.is_active,
    }


def _connection(record: dict[str, Any], token: str = "") -> Connection:
    # api_key is empty: the ingress never sends. webhook_token is the token the caller sent,
    # whose digest matched (or empty when looked up by app id).
    return Connection(settings={}, api_key="", webhook_token=token, **record)


# PostgreSQL's digest of every connection: the published version (keys.WEBHOOK_VERSION). The
# periodic republish compares it first, so 10,000 unchanged connections are not read, encoded
# and written again every minute (a third of a second of one process's event loop).
_FINGERPRINT = (
    "select md5(coalesce(string_agg(x::text, ',' order by x::text), '')) from (" + _SELECT + ") x"
)


async def connections_fingerprint(pool: asyncpg.Pool) -> str:
    fingerprint: str = await pool.fetchval(_FINGERPRINT)
    return fingerprint


async def publish_connections(redis: aioredis.Redis, pool: asyncpg.Pool, now_ms: int) -> int:
    """Write every connection, as the ingress needs it, to Redis in one transaction (readers
    see the old set or the new one, never a half), with their fingerprint as the version; how
    many there are."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        version = await conn.fetchval(_FINGERPRINT)  # of the very rows read next
        connections = [Connection(**dict(row)) for row in await conn.fetch(_SELECT)]
    by_token: dict[str, list[dict[str, Any]]] = {}
    fields: dict[FieldT, EncodableT] = {keys.WEBHOOK_PUBLISHED_AT: str(now_ms)}
    for c in connections:
        by_token.setdefault(keys.webhook_token_field(token_digest(c.webhook_token)), []).append(
            _record(c)
        )
        if c.app_id:
            fields[keys.webhook_app_id_field(c.app_id)] = json.dumps(_record(c))
    fields.update({name: json.dumps(records) for name, records in by_token.items()})
    fields[keys.WEBHOOK_VERSION] = version
    async with redis.pipeline(transaction=True) as p:
        p.delete(keys.WEBHOOK_CONNECTIONS)
        p.hset(keys.WEBHOOK_CONNECTIONS, mapping=fields)
        await p.execute()
    return len(connections)


async def published_by_token(redis: aioredis.Redis, token: str) -> list[Connection] | None:
    """The published connections of a token, or None when none is published under it."""
    raw = await redis.hget(keys.WEBHOOK_CONNECTIONS, keys.webhook_token_field(token_digest(token)))
    return None if raw is None else [_connection(r, token) for r in json.loads(raw)]


async def published_by_app_id(redis: aioredis.Redis, app_id: str) -> Connection | None:
    raw = await redis.hget(keys.WEBHOOK_CONNECTIONS, keys.webhook_app_id_field(app_id))
    return None if raw is None else _connection(json.loads(raw))
