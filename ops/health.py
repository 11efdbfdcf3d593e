"""Readiness: can this process reach Redis and PostgreSQL right now?

Used by /readyz (every process) and by the scrape-time sampler of skytide_dependency_up, so a
health check and the "dependency down" alert see the same thing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from ops import metrics
from ops.deps import Deps
from ops.outages import Dependency

log = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 2.0


async def _check(name: Dependency, call: Callable[[], Awaitable[object]]) -> tuple[str, str]:
    try:
        await asyncio.wait_for(call(), CHECK_TIMEOUT_S)
        return name, "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        # /readyz is answered to anyone who asks: only the exception's type goes out (its text
        # can carry a host, a user or a URL); the log line has the rest, masked.
        log.warning("readiness: %s is failing: %s: %s", name, type(exc).__name__, exc)
        return name, f"error: {type(exc).__name__}"


async def check(deps: Deps) -> dict[str, str]:
    """{"redis": "ok" | "error: ...", "postgres": ...}; also sets skytide_dependency_up."""
    # The same probes the stages use to tell an outage from a bad entry (ops/deps.py): a
    # read-only PostgreSQL is not ready, though it answers `select 1`.
    results = dict(
        await asyncio.gather(
            _check(Dependency.REDIS, deps.outages.probes[Dependency.REDIS]),
            _check(Dependency.POSTGRES, deps.outages.probes[Dependency.POSTGRES]),
        )
    )
    for name, result in results.items():
        metrics.dependency_up.labels(name).set(1 if result == "ok" else 0)
    return results
