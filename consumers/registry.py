"""The organization registry heals itself: a Redis that came back empty (restarted without
persistence, or failed over to an empty replica) has it refilled from PostgreSQL within seconds.

Without it the workers would know no organization until each one's next webhook; the scheduler's
reminders would wait for traffic that may not come. The consumer groups heal on their own
(consumers/runtime.py recreates them when a read answers NOGROUP).
"""

from __future__ import annotations

import asyncio
import logging

from ops.deps import Deps
from storage import keys
from storage.orgs import active_org_ids

log = logging.getLogger(__name__)


async def heal_registry(deps: Deps) -> int:
    """Refill the registry if Redis lost it; how many organizations were put back."""
    if await deps.redis.exists(keys.ORG_REGISTRY):
        return 0
    orgs = await active_org_ids(deps.pool)
    if orgs:
        await deps.redis.sadd(keys.ORG_REGISTRY, *orgs)
        log.warning("the organization registry was missing from Redis (restarted empty?): "
                    "%d organization(s) put back from PostgreSQL", len(orgs))
    return len(orgs)


async def keep_registry(deps: Deps, stop: asyncio.Event, every_s: float = 2.0) -> None:
    while not stop.is_set():
        try:
            await heal_registry(deps)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - Redis or PostgreSQL down: try again later
            log.warning("cannot check the organization registry: %s: %s", type(exc).__name__, exc)
        try:
            await asyncio.wait_for(stop.wait(), timeout=every_s)
        except asyncio.TimeoutError:
            pass
