"""Organizations and their Gupshup connections."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import asyncpg


@dataclass(frozen=True)
class Connection:
    org_id: str
    org_name: str
    timezone: str
    settings: dict[str, Any]
    app_name: str
    app_id: str | None
    api_key: str
    source_phone: str
    webhook_token: str | None
    is_active: bool


_SELECT = """
select o.id::text as org_id, o.name as org_name, o.timezone, o.settings,
       c.gupshup_app_name as app_name, c.gupshup_app_id as app_id, c.api_key, c.source_phone,
       c.webhook_token, c.is_active
from platform_connections c join organizations o on o.id = c.organization_id
"""


async def find_connection(pool: asyncpg.Pool, *, app_name: str | None = None,
                          app_id: str | None = None) -> Connection | None:
    """The connection of a Gupshup app, by name (v2 payloads) or by app id (v3 payloads)."""
    if app_name:
        row = await pool.fetchrow(_SELECT + " where c.gupshup_app_name = $1", app_name)
    elif app_id:
        row = await pool.fetchrow(_SELECT + " where c.gupshup_app_id = $1", app_id)
    else:
        return None
    return Connection(**dict(row)) if row else None


async def connection_for_org(pool: asyncpg.Pool, org_id: str) -> Connection | None:
    row = await pool.fetchrow(_SELECT + " where o.id = $1::uuid and c.is_active "
                              "order by c.created_at limit 1", org_id)
    return Connection(**dict(row)) if row else None


async def add_org(pool: asyncpg.Pool, *, name: str, app_name: str, api_key: str,
                  source_phone: str, webhook_token: str | None = None, app_id: str | None = None,
                  timezone: str = "America/Bogota", settings: dict[str, Any] | None = None) -> str:
    """Provision an organization and its WhatsApp connection; returns the organization id."""
    async with pool.acquire() as conn, conn.transaction():
        org_id = await conn.fetchval(
            "insert into organizations (name, timezone, settings) values ($1, $2, $3) "
            "returning id::text", name, timezone, settings or {})
        await conn.execute(
            "insert into platform_connections (organization_id, gupshup_app_name, gupshup_app_id,"
            " api_key, source_phone, webhook_token) values ($1::uuid, $2, $3, $4, $5, $6)",
            org_id, app_name, app_id, api_key, source_phone,
            webhook_token if webhook_token is not None else secrets.token_urlsafe(24))
    return org_id


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
