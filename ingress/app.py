"""The HTTP edge: Gupshup webhooks, liveness, and the operator API and inbox.

Readiness and metrics are on METRICS_PORT (ops/metrics_server.py), not on this public port;
only in development, with METRICS_PORT unset, are they served here too.

Nothing is processed inline: a webhook is verified, parsed, deduplicated and put on its
organization's inbound stream, and answered at once (Gupshup wants a 2xx within 10 s and
recommends far less).
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from ingress import dev_chat, inbox_page, operator_api
from ingress.common import CONNECTIONS, DEPS, HEADROOM
from ingress.headroom import RedisHeadroom
from ingress.orgs import ConnectionCache
from ingress.webhook import accept_webhook, gupshup_webhook
from ops import metrics_server
from ops.deps import Deps
from ops.outages import Dependency

log = logging.getLogger(__name__)

__all__ = ["accept_webhook", "create_app", "runner_options"]

LINGER_S = 1.0


def runner_options(deps: Deps) -> dict[str, Any]:
    """The HTTP server's limits: an idle keep-alive connection, or one whose headers never
    finish, is closed after `http_keepalive_timeout_s` (aiohttp's default is an hour); the
    unread body of a refused request is drained for at most LINGER_S before the connection
    closes (aiohttp's default, 10 s, lets a refused sender hold a connection that long)."""
    return {
        "access_log": None,
        "keepalive_timeout": deps.settings.http_keepalive_timeout_s,
        "lingering_time": LINGER_S,
    }


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_app(deps: Deps, ready_needs: tuple[Dependency, ...] | None = None) -> web.Application:
    """ready_needs: also serve /readyz (needing those dependencies) and /metrics here, which
    only development does (METRICS_PORT unset); None leaves them to METRICS_PORT."""
    # client_max_size makes aiohttp answer 413 itself for bodies it buffers.
    app = web.Application(client_max_size=deps.settings.max_body_bytes)
    app[DEPS] = deps
    app[CONNECTIONS] = ConnectionCache(deps.pool, deps.redis)
    app[HEADROOM] = RedisHeadroom(deps.redis, deps.settings.redis_memory_reserve)
    app.router.add_post("/webhooks/gupshup", gupshup_webhook)
    app.router.add_post("/webhooks/gupshup/status", gupshup_webhook)
    # Liveness for a load balancer: says nothing about the dependencies.
    app.router.add_get("/healthz", healthz)
    if ready_needs is not None:
        metrics_server.add_routes(app, deps, ready_needs)
    # The clinic's team: the operator API and its inbox page (not the webhook token's business).
    operator_api.add_routes(app)
    inbox_page.add_routes(app)
    # Development only, whatever else is set: production start-up refuses DEV_CHAT and an unset
    # GUPSHUP_API_URL already, and an unauthenticated route must not depend on that alone.
    if deps.settings.development and deps.settings.dev_chat_enabled:
        dev_chat.add_routes(app, accept_webhook)
    if deps.settings.development and deps.settings.gupshup_simulated:
        dev_chat.add_simulator(app)
    return app
