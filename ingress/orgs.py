"""Finding the organization of a webhook, cached: every callback needs it, it rarely changes.

A token is looked up in this process's cache, then in the connections published in Redis
(storage/orgs.py publish_connections), then in PostgreSQL: a webhook needs no database while its
token is published, so Gupshup's callbacks are taken (and queued) through a PostgreSQL outage,
by an ingress that was restarted during it too. When PostgreSQL cannot be asked, an expired
entry is still served: the last good answer beats refusing a customer's message.

Misses are cached too (briefly), so a sender that tries made-up tokens or app names costs one
query per name per `miss_ttl_s`, and the cache never holds more than `max_entries`: the least
recently used entry goes first.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections import OrderedDict
from typing import Any, Callable

import asyncpg
import redis.asyncio as aioredis

from storage import keys
from storage.orgs import (Connection, connections_by_token, find_connection, published_by_app_id,
                          published_by_token)

log = logging.getLogger(__name__)

REGISTER_EVERY_S = 5.0
# A database lookup gives up after this, so a PostgreSQL that hangs (rather than refusing) still
# lets the webhook be answered well within Gupshup's 10 s.
LOOKUP_TIMEOUT_S = 3.0
# What "PostgreSQL cannot be asked" looks like: refused or cut connections, timeouts, a server
# shutting down or starting up.
_DATABASE_DOWN = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


class Unavailable(Exception):
    """Neither the cache, Redis nor PostgreSQL can say whom this webhook is for right now: the
    caller answers 503, and Gupshup sends it again."""


class ConnectionCache:
    def __init__(self, pool: asyncpg.Pool, redis: aioredis.Redis, ttl_s: float = 30.0,
                 miss_ttl_s: float = 5.0, max_entries: int = 4096,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.pool = pool
        self.redis = redis
        self.ttl_s = ttl_s
        self.miss_ttl_s = miss_ttl_s  # short, so a newly provisioned app works within seconds
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[tuple[str, str], tuple[float, Any]] = OrderedDict()
        self._registered: dict[str, float] = {}  # org -> when to register it again

    @property
    def size(self) -> int:
        return len(self._entries)

    async def get(self, app_name: str | None, app_id: str | None) -> Connection | None:
        """The connection of an app, by name (v2) or by Gupshup app id (v3)."""
        if not app_name and not app_id:
            return None
        key = ("name", app_name) if app_name else ("id", app_id or "")
        found = self._cached(key)
        if found is _MISSING:
            try:
                async with asyncio.timeout(LOOKUP_TIMEOUT_S):
                    found = await find_connection(self.pool, app_name=app_name, app_id=app_id)
            except _DATABASE_DOWN as exc:
                return await self._without_database(key, exc, app_id)
            self._store(key, found, hit=found is not None)
        return found

    async def by_token(self, token: str) -> list[Connection]:
        """The connections this webhook token opens, compared in constant time."""
        # Keyed by a digest: the cache holds no token a caller sent, valid or not.
        key = ("token", hashlib.sha256(token.encode()).hexdigest())
        found = self._cached(key)
        if found is _MISSING:
            found = await published_by_token(self.redis, token)
            if found is None:  # not published (yet): the database decides
                try:
                    async with asyncio.timeout(LOOKUP_TIMEOUT_S):
                        found = await connections_by_token(self.pool, token)
                except _DATABASE_DOWN as exc:
                    found = await self._without_database(key, exc)
            self._store(key, found, hit=bool(found))
        # The lookup matched on equality; the constant-time comparison is what decides.
        if not found or not hmac.compare_digest(found[0].webhook_token.encode(), token.encode()):
            return []
        return found

    async def _without_database(self, key: tuple[str, str], exc: BaseException,
                                app_id: str | None = None) -> Any:
        """The last good answer for `key`, or the published connection of `app_id`, while
        PostgreSQL cannot be asked; else Unavailable."""
        entry = self._entries.get(key)
        if entry is not None and entry[1]:  # a miss is not trusted: it may be new since
            log.warning("PostgreSQL unavailable (%s): serving the last known connection",
                        type(exc).__name__)
            return entry[1]
        if app_id and (published := await published_by_app_id(self.redis, app_id)) is not None:
            return published
        raise Unavailable(f"PostgreSQL unavailable ({type(exc).__name__}) and the connection "
                          "is not published in Redis") from exc

    def _cached(self, key: tuple[str, str]) -> Any:
        """The entry's value while fresh. An expired one stays (until pushed out by newer ones)
        as the last good answer for when PostgreSQL is down."""
        entry = self._entries.get(key)
        if entry is None or entry[0] <= self.clock():
            return _MISSING
        self._entries.move_to_end(key)
        return entry[1]

    def _store(self, key: tuple[str, str], value: Any, *, hit: bool) -> None:
        self._entries[key] = (self.clock() + (self.ttl_s if hit else self.miss_ttl_s), value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    async def register(self, org: str) -> None:
        """Make the organization's streams known to the workers.

        Again every REGISTER_EVERY_S, not once per process: a Redis that restarted empty has
        the organization back within seconds of its next webhook.
        """
        if self._registered.get(org, 0.0) <= self.clock():
            await self.redis.sadd(keys.ORG_REGISTRY, org)
            self._registered[org] = self.clock() + REGISTER_EVERY_S


_MISSING = object()
