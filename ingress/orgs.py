"""Finding the organization of a webhook, cached: every callback needs it, it rarely changes.

PostgreSQL is asked (the truth: a connection just inserted or deactivated there counts at once),
behind this process's cache. While PostgreSQL cannot be asked, the webhook is still answered:
from the cache's last good answer, however old, else from the connections published in Redis
(storage/orgs.py publish_connections). So Gupshup's callbacks are taken, and queued, through a
PostgreSQL outage, also by an ingress restarted during it, whose cache is empty. After a failed
lookup PostgreSQL is left alone for DATABASE_RETRY_S, so an outage costs one wait, not one per
webhook.

A found connection is kept until the published connections change (their version, read at most
every `check_every_s` while webhooks come: `skytide org add|set` publishes at once, a change made
in the database itself is published within CONNECTIONS_REFRESH_S), and `ttl_s` at most. With a
30 s lifetime, an organization that gets a webhook every 10 s sent one in three to PostgreSQL.

Misses are cached too (briefly), so a sender that tries made-up tokens or app names costs one
query per name per `miss_ttl_s`. Found connections and misses are kept apart, each bounded (the
least recently used goes first): made-up names never push out a real organization's connection,
and `max_entries` (16,384) holds every connection of a fleet of 10,000 organizations.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections import OrderedDict
from typing import Any, Awaitable, Callable, TypeVar

import asyncpg
import redis.asyncio as aioredis

from ops import metrics
from storage import keys
from storage.orgs import (
    Connection,
    connections_by_token,
    find_connection,
    published_by_app_id,
    published_by_token,
)

log = logging.getLogger(__name__)
Found = TypeVar("Found")  # what a lookup finds: a connection or None, or a token's connections

REGISTER_EVERY_S = 5.0
# A database lookup gives up after this, so a PostgreSQL that hangs (rather than refusing) still
# lets the webhook be answered well within Gupshup's 10 s.
LOOKUP_TIMEOUT_S = 3.0
DATABASE_RETRY_S = 5.0
# What "PostgreSQL cannot be asked" looks like: refused or cut connections, timeouts, a server
# shutting down or starting up.
_DATABASE_DOWN = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


class Unavailable(Exception):
    """Neither the cache, Redis nor PostgreSQL can say whom this webhook is for right now: the
    caller answers 503, and Gupshup sends it again."""


class ConnectionCache:
    def __init__(
        self,
        pool: asyncpg.Pool,
        redis: aioredis.Redis,
        ttl_s: float = 600.0,
        miss_ttl_s: float = 5.0,
        max_entries: int = 16_384,
        max_misses: int = 4096,
        check_every_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pool = pool
        self.redis = redis
        self.ttl_s = ttl_s
        self.miss_ttl_s = miss_ttl_s  # short, so a newly provisioned app works within seconds
        self.max_entries = max_entries
        self.max_misses = max_misses
        self.check_every_s = check_every_s
        self.clock = clock
        self._entries: OrderedDict[tuple[str, str], tuple[float, Any]] = OrderedDict()
        self._misses: OrderedDict[tuple[str, str], float] = OrderedDict()  # key -> until when
        self._registered: dict[str, float] = {}  # org -> when to register it again
        self._database_down_until = 0.0
        self._version: str | None = None  # of the published connections, when last read
        self._next_check = 0.0

    @property
    def size(self) -> int:
        return len(self._entries) + len(self._misses)

    async def get(self, app_name: str | None, app_id: str | None) -> Connection | None:
        """The connection of an app, by name (v2) or by Gupshup app id (v3)."""
        if not app_name and not app_id:
            return None
        key = ("name", app_name) if app_name else ("id", app_id or "")
        await self._watch()
        found: Connection | None = self._cached(key)
        if found is _MISSING:
            found = await self._look_up(
                key,
                lambda: find_connection(self.pool, app_name=app_name, app_id=app_id),
                lambda: published_by_app_id(self.redis, app_id) if app_id else _none(),
            )
        return found

    async def by_token(self, token: str) -> list[Connection]:
        """The connections this webhook token opens, compared in constant time."""
        # Keyed by a digest: the cache holds no token a caller sent, valid or not.
        key = ("token", hashlib.sha256(token.encode()).hexdigest())
        await self._watch()
        found: list[Connection] | None = self._cached(key)
        if found is _MISSING:
            found = await self._look_up(
                key,
                lambda: connections_by_token(self.pool, token),
                lambda: published_by_token(self.redis, token),
            )
        # The lookup matched on equality; the constant-time comparison is what decides.
        if not found or not hmac.compare_digest(found[0].webhook_token.encode(), token.encode()):
            return []
        return found

    async def _look_up(
        self,
        key: tuple[str, str],
        from_database: Callable[[], Awaitable[Found]],
        from_redis: Callable[[], Awaitable[Found | None]],
    ) -> Found | None:
        """Ask PostgreSQL and cache its answer; while it cannot be asked, the last good answer
        for `key`, else the published one; else Unavailable."""
        why = "left alone after a failure"
        if self.clock() >= self._database_down_until:
            try:
                async with asyncio.timeout(LOOKUP_TIMEOUT_S):
                    found = await from_database()
            except _DATABASE_DOWN as exc:
                self._database_down_until = self.clock() + DATABASE_RETRY_S
                why = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "PostgreSQL unavailable for webhook lookups (%s): answering from the "
                    "cache and from the connections published in Redis",
                    why,
                )
            else:
                self._store(key, found, hit=bool(found))
                return found
        entry = self._entries.get(key)
        if entry is not None and entry[1]:  # a miss is not trusted: the app may be new since
            last_good: Found = entry[1]  # stored by this key's own lookup
            return last_good
        published = await from_redis()
        if published:
            self._store(key, published, hit=True)
            return published
        raise Unavailable(
            f"PostgreSQL unavailable ({why}) and the connection is not published in Redis"
        )

    async def _watch(self) -> None:
        """Every check_every_s at most (and only when a webhook comes): if the published
        connections changed, every entry is looked up again on its next use. An unreadable
        version changes nothing: ttl_s still bounds an entry's life."""
        if self.clock() < self._next_check:
            return
        self._next_check = self.clock() + self.check_every_s
        try:
            raw = await self.redis.hget(keys.WEBHOOK_CONNECTIONS, keys.WEBHOOK_VERSION)
        except Exception as exc:  # noqa: BLE001 - Redis down: the webhook fails later anyway
            log.debug("cannot read the connections' version: %r", exc)
            return
        if raw is None:
            return
        version = raw.decode() if isinstance(raw, bytes) else raw
        if self._version is not None and version != self._version:
            now = self.clock()  # expired, kept as the last good answers
            for key, (_, value) in self._entries.items():
                self._entries[key] = (now, value)
            self._misses.clear()
        self._version = version

    def _cached(self, key: tuple[str, str]) -> Any:
        """The entry's value while fresh (None for a cached miss). An expired one stays (until
        pushed out by newer ones) as the last good answer for when PostgreSQL is down."""
        miss_until = self._misses.get(key)
        if miss_until is not None and miss_until > self.clock():
            metrics.org_lookups.labels("hit").inc()
            return None
        entry = self._entries.get(key)
        if entry is None or entry[0] <= self.clock():
            metrics.org_lookups.labels("miss").inc()
            return _MISSING
        self._entries.move_to_end(key)
        metrics.org_lookups.labels("hit").inc()
        return entry[1]

    def _store(self, key: tuple[str, str], value: Any, *, hit: bool) -> None:
        if not hit:
            self._entries.pop(key, None)  # gone from the database: no last good answer either
            self._misses[key] = self.clock() + self.miss_ttl_s
            self._misses.move_to_end(key)
            while len(self._misses) > self.max_misses:
                self._misses.popitem(last=False)
            return
        self._misses.pop(key, None)
        self._entries[key] = (self.clock() + self.ttl_s, value)
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


async def _none() -> None:
    return None
