"""Which dependencies are down: an outage is waited out, never blamed on the entry that met it.

A stage handler fails for one of two reasons: a dependency (PostgreSQL, Redis, Gupshup, the
model server, Gemini) is unreachable, or the entry itself cannot be handled. Only the second may
dead-letter an entry. `dependency_of` names the dependency an exception points at; for an
exception that names none (a timeout, say), `Outages.failing` asks each dependency directly, so
an entry that fails while everything answers is the entry's own fault.
"""

from __future__ import annotations

import asyncio
import logging
import time
from enum import StrEnum
from typing import Awaitable, Callable

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError as RedisOutOfMemoryError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ops import metrics

log = logging.getLogger(__name__)

Probe = Callable[[], Awaitable[object]]


class Dependency(StrEnum):
    """A service the stages call: the `dependency` label of skytide_dependency_outage,
    skytide_outage_retries_total and skytide_dependency_errors_total, and the name /readyz and
    the outage logs give it."""

    POSTGRES = "postgres"
    REDIS = "redis"
    GUPSHUP = "gupshup"
    """The send API; down or throttling (429, 503) is an outage, a refusal is not."""
    MODEL = "model"
    """The model server of the receptionist (graph/receptionist.py)."""
    EMBEDDINGS = "embeddings"
    """The embeddings of the catalogue search: its errors are counted, never waited out (the
    search falls back to keywords)."""


class DependencyDown(Exception):
    """A dependency did not answer: the entry waits for it instead of using up its attempts."""

    def __init__(self, dependency: Dependency, reason: str) -> None:
        super().__init__(f"{dependency} unavailable: {reason}")
        self.dependency = dependency


# PostgreSQL errors that say "the server cannot do any work now", not "this statement is
# wrong": waited out like an outage, never a reason to dead-letter a customer's message.
_POSTGRES_DOWN = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    # shutting down, starting up, a statement timeout or a cancelled query
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.TooManyConnectionsError,
    # disk full, out of memory, too many connections (class 53)
    asyncpg.exceptions.InsufficientResourcesError,
    # a read-only server: a standby, or default_transaction_read_only set by the
    # provider when the disk quota is reached (Supabase does this)
    asyncpg.exceptions.ReadOnlySQLTransactionError,
    asyncpg.exceptions.LockNotAvailableError,
)  # lock_timeout: a long migration


def dependency_of(exc: BaseException) -> Dependency | None:
    """The dependency this exception (or its cause) says is down, if it says so."""
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, DependencyDown):
            return exc.dependency
        if isinstance(exc, _POSTGRES_DOWN):
            return Dependency.POSTGRES
        # A Redis at maxmemory refuses writes until the pipeline frees memory: an outage too.
        if isinstance(exc, (RedisConnectionError, RedisTimeoutError, RedisOutOfMemoryError)):
            return Dependency.REDIS
        cause = exc.__cause__ or exc.__context__
        if cause is None:
            return None
        exc, seen = cause, seen + 1
    return None


class Outages:
    """The process's view of its dependencies, shared by every stage and by /readyz."""

    def __init__(self, probe_timeout_s: float = 3.0) -> None:
        self.probes: dict[Dependency, Probe] = {}
        self.probe_timeout_s = probe_timeout_s
        self.down_since: dict[Dependency, float] = {}  # dependency -> time.monotonic() it went down
        self.reasons: dict[Dependency, str] = {}

    def add_probe(self, dependency: Dependency, probe: Probe) -> None:
        self.probes[dependency] = probe

    def mark_down(self, dependency: Dependency, reason: str) -> None:
        if dependency not in self.down_since:
            self.down_since[dependency] = time.monotonic()
            log.warning("dependency %s is down: %s", dependency, reason)
        self.reasons[dependency] = reason[:300]
        metrics.dependency_outage.labels(dependency).set(1)

    def mark_up(self, dependency: Dependency) -> None:
        since = self.down_since.pop(dependency, None)
        self.reasons.pop(dependency, None)
        if since is not None:
            log.warning("dependency %s is back after %.1fs", dependency, time.monotonic() - since)
            metrics.dependency_outage.labels(dependency).set(0)

    def down(self) -> dict[Dependency, str]:
        return dict(self.reasons)

    async def _answers(self, dependency: Dependency) -> bool:
        try:
            await asyncio.wait_for(self.probes[dependency](), self.probe_timeout_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of a probe means down
            self.mark_down(dependency, f"{type(exc).__name__}: {exc}")
            return False
        self.mark_up(dependency)
        return True

    async def failing(self) -> Dependency | None:
        """Ask every probed dependency; the first that does not answer, or None."""
        for dependency in list(self.probes):
            if not await self._answers(dependency):
                return dependency
        return None

    async def recheck(self) -> dict[Dependency, str]:
        """Probe the dependencies marked down (those without a probe stay down until a success
        clears them); what is still down."""
        for dependency in list(self.down_since):
            if dependency in self.probes:
                await self._answers(dependency)
        return self.down()


async def readiness_details(redis: aioredis.Redis, outages: Outages) -> dict[str, object]:
    """What /readyz adds to its checks: the outages the stages are waiting out now (a dependency
    without a probe, Gupshup or the model server, shows until a call to it succeeds again), and
    whether Redis keeps its data across a restart."""
    details: dict[str, object] = {"dependencies_down": sorted(outages.down())}
    try:
        value = (await redis.config_get("appendonly")).get("appendonly", "?")
    except Exception as exc:  # noqa: BLE001 - managed Redis often forbids CONFIG; Redis may be down
        details["redis_persistence"] = f"unknown ({type(exc).__name__})"
        return details
    details["redis_persistence"] = (
        "appendonly yes"
        if value == "yes"
        else (
            "appendonly no: a Redis restart loses queued messages, conversation state and dedupe "
            "keys; run Redis with appendonly yes and appendfsync everysec"
        )
    )
    return details
