"""Readiness: can this process reach Redis and PostgreSQL right now?

Used by /readyz (every process) and by the scrape-time sampler of skytide_dependency_up, so a
health check and the "dependency down" alert see the same thing.
"""

from __future__ import annotations

import asyncio

from ops import metrics
from ops.deps import Deps

CHECK_TIMEOUT_S = 2.0


async def _check(name: str, call) -> tuple[str, str]:
    try:
        await asyncio.wait_for(call(), CHECK_TIMEOUT_S)
        return name, "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        return name, f"error: {type(exc).__name__}: {exc}"


async def check(deps: Deps) -> dict[str, str]:
    """{"redis": "ok" | "error: ...", "postgres": ...}; also sets skytide_dependency_up."""
    results = dict(await asyncio.gather(_check("redis", deps.redis.ping),
                                        _check("postgres", lambda: deps.pool.fetchval("select 1"))))
    for name, result in results.items():
        metrics.dependency_up.labels(name).set(1 if result == "ok" else 0)
    return results
