"""The organization registry heals itself: a Redis that came back empty (restarted without
persistence, or failed over to an empty replica) has it refilled from PostgreSQL within seconds.
So do the webhook connections published for the ingress (storage/orgs.py publish_connections),
which are also republished every CONNECTIONS_REFRESH_S by one process of the fleet, so that a
connection changed in the database itself (not through `skytide org`) reaches the ingress.

Without it the workers would know no organization until each one's next webhook; the scheduler's
reminders would wait for traffic that may not come. The consumer groups heal on their own
(consumers/runtime.py recreates them when a read answers NOGROUP).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ops.deps import Deps
from storage import keys
from storage.orgs import active_org_ids, connections_fingerprint, publish_connections

log = logging.getLogger(__name__)


async def heal_registry(deps: Deps) -> int:
    """Refill the registry if Redis lost it; how many organizations were put back."""
    if await deps.redis.exists(keys.ORG_REGISTRY):
        return 0
    orgs = await active_org_ids(deps.pool)
    if orgs:
        await deps.redis.sadd(keys.ORG_REGISTRY, *orgs)
        log.warning(
            "the organization registry was missing from Redis (restarted empty?): "
            "%d organization(s) put back from PostgreSQL",
            len(orgs),
        )
    return len(orgs)


async def refresh_connections(deps: Deps, every_s: float) -> int | None:
    """Publish the webhook connections if Redis lost them, or if this period's refresh is not
    done yet and they changed in the database; how many were published, or None when there was
    nothing to do."""
    lost = not await deps.redis.exists(keys.WEBHOOK_CONNECTIONS)
    # Claimed before the work: while PostgreSQL is down the fleet tries once per period, not
    # every process every loop (a lost set is tried every loop: the ingress needs it).
    due = await deps.redis.set(
        keys.WEBHOOK_CONNECTIONS_FRESH, deps.now_ms(), nx=True, ex=max(1, int(every_s))
    )
    if not (lost or due):
        return None
    if not lost and await connections_fingerprint(deps.pool) == await deps.redis.hget(
        keys.WEBHOOK_CONNECTIONS, keys.WEBHOOK_VERSION
    ):
        return None  # nothing changed since they were published
    published = await publish_connections(deps.redis, deps.pool, deps.now_ms())
    if lost:
        log.warning(
            "the webhook connections were missing from Redis (restarted empty?): "
            "%d published from PostgreSQL",
            published,
        )
    return published


async def keep_registry(
    deps: Deps, stop: asyncio.Event, every_s: float = 2.0, connections_every_s: float = 60.0
) -> None:
    steps: tuple[tuple[str, Callable[[], Awaitable[int | None]]], ...] = (
        ("the organization registry", lambda: heal_registry(deps)),
        ("the webhook connections", lambda: refresh_connections(deps, connections_every_s)),
    )
    while not stop.is_set():
        for what, step in steps:
            try:
                await step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis or PostgreSQL down: try again later
                log.warning("cannot check %s: %s: %s", what, type(exc).__name__, exc)
        try:
            await asyncio.wait_for(stop.wait(), timeout=every_s)
        except asyncio.TimeoutError:
            pass
