"""PostgreSQL access: the asyncpg pool and the migration runner."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolAcquireContext, PoolConnectionProxy

log = logging.getLogger(__name__)

# What a query runs on: the pool (each call takes a connection of its own), a connection, or a
# connection acquired from the pool (`async with pool.acquire() as conn`, a transaction's).
Db: TypeAlias = asyncpg.Pool | asyncpg.Connection | PoolConnectionProxy
# One connection, where the statements must share it (a transaction's).
Conn: TypeAlias = asyncpg.Connection | PoolConnectionProxy

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb columns come and go as Python objects.
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """A connection going back to the pool is not reset: asyncpg's default reset is one more
    round trip per release (pg_advisory_unlock_all, CLOSE ALL, UNLISTEN *, RESET ALL), about
    half of the statements a message cost, and nothing here leaves session state behind (no
    session advisory locks, LISTEN, cursors or SET). An open transaction is still rolled back
    before this runs (asyncpg's Connection._reset)."""


def returned_row(row: asyncpg.Record | None) -> asyncpg.Record:
    """The row of a statement that always returns one (an INSERT ... RETURNING, an upsert's
    DO UPDATE ... RETURNING, a read of a row the caller has just written or locked): asyncpg's
    fetchrow says it may be None."""
    if row is None:
        raise LookupError("the statement returned no row")
    return row


class _Pool(asyncpg.Pool):
    """A pool whose every acquire gives up after acquire_timeout_s (Pool.fetch and friends
    acquire without a timeout of their own): a pool exhausted by hung connections raises
    instead of holding up every caller for ever."""

    acquire_timeout_s: float | None = None

    def acquire(self, *, timeout: float | None = None) -> PoolAcquireContext:
        return super().acquire(timeout=timeout if timeout is not None else self.acquire_timeout_s)


async def create_pool(
    database_url: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    statement_cache_size: int = 100,
    command_timeout_s: float | None = 30.0,
    acquire_timeout_s: float | None = 10.0,
) -> asyncpg.Pool:
    """statement_cache_size=0 is needed behind Supabase's transaction pooler (port 6543).

    command_timeout_s bounds each statement (a row locked for longer fails with TimeoutError
    and its entry is retried), acquire_timeout_s the wait for a free connection.
    """
    pool = _Pool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_keep_session,
        statement_cache_size=statement_cache_size,
        command_timeout=command_timeout_s,
        max_queries=50000,
        max_inactive_connection_lifetime=300.0,
        loop=None,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
    )
    pool.acquire_timeout_s = acquire_timeout_s
    return await pool


async def migrate(pool: asyncpg.Pool) -> list[str]:
    """Apply the pending migrations in name order, each in its own transaction; safe to rerun,
    and to run from several processes at once.

    The lock is a transaction's (pg_advisory_xact_lock), taken again by each migration's
    transaction, never a session's: behind a transaction pooler (PgBouncer's
    pool_mode=transaction, as compose.yaml runs it) consecutive transactions may reach
    different server sessions, and a session lock taken on one would be released on another,
    or never.
    """
    applied: list[str] = []
    async with pool.acquire() as conn:
        async with conn.transaction():
            await conn.execute("select pg_advisory_xact_lock(726451)")
            await conn.execute(
                "create table if not exists schema_migrations "
                "(name text primary key, applied_at timestamptz not null default now())"
            )
            done = {r["name"] for r in await conn.fetch("select name from schema_migrations")}
        for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
            if path.name in done:
                continue
            async with conn.transaction():
                # One migrator at a time; another may have applied this one meanwhile.
                await conn.execute("select pg_advisory_xact_lock(726451)")
                if await conn.fetchval(
                    "select 1 from schema_migrations where name = $1", path.name
                ):
                    continue
                await conn.execute(path.read_text())
                await conn.execute("insert into schema_migrations (name) values ($1)", path.name)
            log.info("applied migration %s", path.name)
            applied.append(path.name)
    return applied
