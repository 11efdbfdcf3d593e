"""What the ingress routes share: the app's keys and the one way to refuse a request."""

from __future__ import annotations

from aiohttp import web

from ingress.orgs import ConnectionCache
from ops import metrics
from ops.deps import Deps

DEPS = web.AppKey("deps", Deps)
CONNECTIONS = web.AppKey("connections", ConnectionCache)


def reject(status: int, reason: str) -> web.Response:
    """A 4xx with the reason in the body, counted by status."""
    metrics.webhook_rejected.labels(str(status)).inc()
    return web.json_response({"error": reason}, status=status)
