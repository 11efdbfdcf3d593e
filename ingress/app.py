"""The HTTP edge: Gupshup webhooks, health, readiness and metrics.

Nothing is processed inline: a webhook is verified, parsed, deduplicated and put on its
organization's inbound stream, and answered at once (Gupshup wants a 2xx within 10 s and
recommends far less).
"""

from __future__ import annotations

import hmac
import json
import logging

from aiohttp import web

from ingress import dev_chat
from ingress.common import CONNECTIONS, DEPS, reject
from ingress.gupshup import MalformedPayload, identify_app, parse_webhook
from ingress.orgs import ConnectionCache
from ops import health, metrics, tracing
from ops.deps import Deps
from storage import streams
from storage.events import InboundMessage, StatusEvent, UserEvent

log = logging.getLogger(__name__)

def _token_of(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.query.get("token")


async def receive_body(request: web.Request) -> dict | web.Response:
    """The JSON object of a request, or the 4xx response that explains what is wrong with it."""
    limit = request.app[DEPS].settings.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        return reject(413, f"body is larger than {limit} bytes")
    try:
        raw = await request.read()  # the whole body, however many packets it came in
    except web.HTTPRequestEntityTooLarge:  # chunked bodies with no Content-Length
        return reject(413, f"body is larger than {limit} bytes")
    try:
        body = json.loads(raw)
    except ValueError as exc:
        return reject(400, f"body is not valid JSON: {exc}")
    if not isinstance(body, dict):
        return reject(400, "body is not a JSON object")
    return body


async def accept_webhook(app: web.Application, body: dict,
                         token: str | None) -> web.Response | list[InboundMessage | StatusEvent | UserEvent]:
    """Verify, parse and enqueue one Gupshup callback; the events it held, or the rejection."""
    deps = app[DEPS]
    try:
        ref = identify_app(body)
    except MalformedPayload as exc:
        return reject(400, str(exc))
    connection = await app[CONNECTIONS].get(ref.name, ref.gs_app_id)
    if connection is None or not connection.is_active:
        log.warning("webhook for unknown or inactive Gupshup app name=%r id=%r", ref.name,
                    ref.gs_app_id)
        return reject(404, f"unknown or inactive app {ref.name or ref.gs_app_id!r}")
    if connection.webhook_token and not hmac.compare_digest(
            (token or "").encode(), connection.webhook_token.encode()):
        return reject(401, "missing or wrong webhook token")
    try:
        parsed = parse_webhook(body, connection.org_id, deps.now_ms())
    except MalformedPayload as exc:
        return reject(400, str(exc))
    for kind in parsed.ignored:
        if kind.startswith("unknown:"):
            # The type comes from the caller: log it, but keep the metric's labels bounded.
            log.info("acknowledged an unknown Gupshup event type %r", kind[len("unknown:"):])
            kind = "unknown"
        metrics.webhook_events.labels(connection.org_id, kind, "ignored").inc()
    await app[CONNECTIONS].register(connection.org_id)
    for event in parsed.events:
        kind = event.kind if isinstance(event, InboundMessage) else event.type
        with tracing.span("ingress.webhook", new_trace=True, org_id=connection.org_id, kind=kind):
            if isinstance(event, InboundMessage):  # the trace this message keeps to the reply
                event.traceparent = tracing.traceparent()
            added = await streams.ingest(deps.redis, event, deps.settings.inbound_dedupe_ttl_s)
        metrics.webhook_events.labels(connection.org_id, kind, "queued" if added else "duplicate").inc()
    return parsed.events


async def gupshup_webhook(request: web.Request) -> web.Response:
    body = await receive_body(request)
    if isinstance(body, web.Response):
        return body
    outcome = await accept_webhook(request.app, body, _token_of(request))
    if isinstance(outcome, web.Response):
        return outcome
    return web.Response(status=200)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    checks = await health.check(request.app[DEPS])
    ready = all(v == "ok" for v in checks.values())
    return web.json_response({"ready": ready, **checks}, status=200 if ready else 503)


async def metrics_view(request: web.Request) -> web.Response:
    return web.Response(body=await metrics.render_sampled(), content_type="text/plain")


def create_app(deps: Deps) -> web.Application:
    # client_max_size makes aiohttp answer 413 itself for bodies it buffers.
    app = web.Application(client_max_size=deps.settings.max_body_bytes)
    app[DEPS] = deps
    app[CONNECTIONS] = ConnectionCache(deps.pool, deps.redis)
    app.router.add_post("/webhooks/gupshup", gupshup_webhook)
    app.router.add_post("/webhooks/gupshup/status", gupshup_webhook)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
    if deps.settings.dev_chat_enabled:
        dev_chat.add_routes(app, accept_webhook)
    if deps.settings.gupshup_simulated:
        dev_chat.add_simulator(app)
    return app
