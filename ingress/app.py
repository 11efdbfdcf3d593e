"""The HTTP edge: Gupshup webhooks, health, readiness, metrics, and the operator API and inbox.

Nothing is processed inline: a webhook is verified, parsed, deduplicated and put on its
organization's inbound stream, and answered at once (Gupshup wants a 2xx within 10 s and
recommends far less).
"""

from __future__ import annotations

import logging

from aiohttp import web

from ingress import dev_chat, inbox_page, operator_api
from ingress.common import CONNECTIONS, DEPS, HEADROOM
from ingress.headroom import RedisHeadroom
from ingress.orgs import ConnectionCache
from ingress.webhook import accept_webhook, gupshup_webhook
from ops import health, metrics
from ops.outages import readiness_details
from ops.deps import Deps

log = logging.getLogger(__name__)

__all__ = ["accept_webhook", "create_app", "runner_options"]

LINGER_S = 1.0


def runner_options(deps: Deps) -> dict:
    """The HTTP server's limits: an idle keep-alive connection, or one whose headers never
    finish, is closed after `http_keepalive_timeout_s` (aiohttp's default is an hour); the
    unread body of a refused request is drained for at most LINGER_S before the connection
    closes (aiohttp's default, 10 s, lets a refused sender hold a connection that long)."""
    return {"access_log": None, "keepalive_timeout": deps.settings.http_keepalive_timeout_s,
            "lingering_time": LINGER_S}


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    checks = await health.check(request.app[DEPS])
    ready = all(checks[name] == "ok" for name in request.app[READY_NEEDS])
    deps = request.app[DEPS]
    body = {"ready": ready, **checks, **await readiness_details(deps.redis, deps.outages)}
    return web.json_response(body, status=200 if ready else 503)


async def metrics_view(request: web.Request) -> web.Response:
    return web.Response(body=await metrics.render_sampled(), content_type="text/plain")


# What /readyz requires. A process that is only the ingress takes webhooks while PostgreSQL is
# down (ingress/orgs.py): not ready then would take it out of a load balancer for nothing.
READY_NEEDS = web.AppKey("ready_needs", tuple)


def create_app(deps: Deps, ready_needs: tuple[str, ...] = ("redis", "postgres")) -> web.Application:
    # client_max_size makes aiohttp answer 413 itself for bodies it buffers.
    app = web.Application(client_max_size=deps.settings.max_body_bytes)
    app[DEPS] = deps
    app[READY_NEEDS] = ready_needs
    app[CONNECTIONS] = ConnectionCache(deps.pool, deps.redis)
    app[HEADROOM] = RedisHeadroom(deps.redis, deps.settings.redis_memory_reserve)
    app.router.add_post("/webhooks/gupshup", gupshup_webhook)
    app.router.add_post("/webhooks/gupshup/status", gupshup_webhook)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
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
