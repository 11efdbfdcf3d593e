"""What the ingress routes share: the app's keys and the one way to refuse a request."""

from __future__ import annotations

from aiohttp import web

from ingress.headroom import RedisHeadroom
from ingress.orgs import ConnectionCache
from ops import metrics
from ops.deps import Deps

DEPS = web.AppKey("deps", Deps)
CONNECTIONS = web.AppKey("connections", ConnectionCache)
HEADROOM = web.AppKey("headroom", RedisHeadroom)


def reject(status: int, reason: str, retry_after_s: int | None = None) -> web.Response:
    """A 4xx (or a 503 to be retried) with the reason in the body, counted by status."""
    metrics.webhook_rejected.labels(str(status)).inc()
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else None
    return web.json_response({"error": reason}, status=status, headers=headers)
