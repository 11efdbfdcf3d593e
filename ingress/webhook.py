"""POST /webhooks/gupshup: authenticate, read, parse, enqueue, in that order.

The token in the URL (or an `Authorization: Bearer` header) is checked before a byte of the body
is read: a caller without it costs one cached lookup. The token names the connection; the body
must then be about that connection's own app, so one tenant's token never opens another's
webhook. Every documented event gets a 2xx; anything unreadable gets a 4xx with its reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from contextlib import nullcontext
from typing import Any

import orjson
from aiohttp import web

from ingress.common import CONNECTIONS, DEPS, HEADROOM, reject
from ingress.gupshup import AppRef, MalformedPayload, identify_app, parse_webhook
from ingress.orgs import Unavailable
from ops import metrics, tracing
from storage import streams
from storage.events import InboundMessage, StatusEvent, UserEvent
from storage.orgs import Connection

log = logging.getLogger(__name__)

MAX_TOKEN_CHARS = 256
# Real webhooks nest about six levels; deeper bodies are refused before anything walks them.
MAX_JSON_DEPTH = 32

# The `ignored` kinds the parsers name; anything else is counted under its family's "other",
# so a sender cannot add metric series by making up event types.
KNOWN_IGNORED = frozenset(
    {
        "template-event",
        "account-event",
        "billing-event",
        "message-event:mismatch",
        "platform-event:connectivity-check",
        "user-event:sandbox-start",
        "status:set-callback",
    }
)
FAMILIES = ("platform-event", "status", "message-event", "user-event")


def kind_label(kind: str) -> str:
    if kind in KNOWN_IGNORED:
        return kind
    family = kind.partition(":")[0]
    return f"{family}:other" if family in FAMILIES else "unknown"


def token_of(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return request.query.get("token") or None


async def authenticate(app: web.Application, token: str | None) -> list[Connection] | web.Response:
    """The connections this token opens, or the 401 that says why not."""
    if not token:
        return reject(401, "missing webhook token (send ?token=... or Authorization: Bearer ...)")
    if len(token) > MAX_TOKEN_CHARS:
        return reject(401, "wrong webhook token")
    candidates = await app[CONNECTIONS].by_token(token)
    return candidates or reject(401, "wrong webhook token")


async def receive_body(request: web.Request) -> dict[str, Any] | web.Response:
    """The JSON object of a request, or the 4xx response that explains what is wrong with it."""
    settings = request.app[DEPS].settings
    limit = settings.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        return reject(413, f"body is larger than {limit} bytes")
    # A sender that trickles its body (slowloris) is cut off instead of holding a slot. A body
    # that came with its headers (nearly every webhook) is already whole: no timer to arm.
    whole = request.content.is_eof()
    try:
        async with nullcontext() if whole else asyncio.timeout(settings.http_read_timeout_s):
            raw = await request.read()  # the whole body, however many packets it came in
    except TimeoutError:
        return reject(408, f"body not received within {settings.http_read_timeout_s} s")
    except web.HTTPRequestEntityTooLarge:  # chunked bodies with no Content-Length
        return reject(413, f"body is larger than {limit} bytes")
    except web.RequestPayloadError as exc:  # e.g. Content-Encoding: gzip on bytes that are not
        return reject(400, f"body cannot be read: {exc.__cause__ or exc}")
    return parse_json(raw)


def parse_json(raw: bytes) -> dict[str, Any] | web.Response:
    """The JSON object in `raw`, without what nothing downstream can hold, or the 400 saying why not."""
    fast = _loads_plain(raw)
    if fast is not None:
        body = fast
    else:
        try:
            body = json.loads(raw)
        except RecursionError:
            return reject(400, f"body is nested more than {MAX_JSON_DEPTH} levels deep")
        except ValueError as exc:  # includes bytes that are not UTF-8
            return reject(400, f"body is not valid JSON: {exc}")
    if not isinstance(body, dict):
        return reject(400, "body is not a JSON object")
    # Depth is at most the number of brackets: a typical body has a handful, and is not walked.
    if raw.count(b"{") + raw.count(b"[") > MAX_JSON_DEPTH and _depth_exceeds(body, MAX_JSON_DEPTH):
        return reject(400, f"body is nested more than {MAX_JSON_DEPTH} levels deep")
    return body if fast is not None else clean(body)


# orjson parses NUL escapes, and integers too large for 64 bits as floats: bodies that may hold
# either take the slow path (a run of digits inside a string is a false alarm, no harm done).
# orjson refuses lone surrogates itself, and bytes that are not UTF-8.
_NOT_FOR_ORJSON = re.compile(rb"\\u0000|[0-9]{19}")


def _loads_plain(raw: bytes) -> Any:
    """The parsed body when orjson reads it and it can hold nothing to clean; else None.

    Anything orjson refuses (not UTF-8, NaN, huge integers, deep nesting, escapes of NUL or
    surrogates) is parsed by `json` and cleaned, so refusals and their reasons stay the same.
    """
    if _NOT_FOR_ORJSON.search(raw):
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Iterative, so a deep body cannot exhaust the interpreter's stack while it is checked."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


# JSON may carry what nothing downstream can hold: NUL (PostgreSQL text and jsonb refuse it)
# and lone UTF-16 surrogates (no UTF-8 encoding; Redis and JSON writers fail on them).
_UNHOLDABLE = re.compile(r"[\x00\ud800-\udfff]")


def clean(value: Any) -> Any:
    """`value` without those characters, in keys and strings at any depth (already bounded)."""
    if isinstance(value, str):
        return _UNHOLDABLE.sub("", value) if _UNHOLDABLE.search(value) else value
    if isinstance(value, dict):
        return {clean(k): clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean(v) for v in value]
    return value


async def choose_connection(
    app: web.Application, candidates: list[Connection], ref: AppRef
) -> Connection | web.Response:
    """The token's connection that the body is about; 403 when the body names another app."""
    if ref.name:
        chosen = next((c for c in candidates if c.app_name == ref.name), None)
        if chosen is None:
            return reject(403, f"the token is not the one of app {ref.name!r}")
    elif ref.gs_app_id is None:
        # The body names no app at all: the token says which, if it opens only one.
        chosen = candidates[0] if len(candidates) == 1 else None
        if chosen is None:
            return reject(403, "the body names no app and the token opens several")
    else:
        chosen = next((c for c in candidates if c.app_id == ref.gs_app_id), None)
        unregistered = [c for c in candidates if c.app_id is None]
        if chosen is None and len(unregistered) == 1:
            # A connection without a registered app id (v3 needs `org add --gupshup-app-id`)
            # is known by its token alone, unless the id belongs to someone else.
            owner = await app[CONNECTIONS].get(None, ref.gs_app_id)
            chosen = unregistered[0] if owner is None else None
        if chosen is None:
            return reject(403, f"the token is not the one of app id {ref.gs_app_id!r}")
    if not chosen.is_active:
        return reject(404, f"inactive app {chosen.app_name!r}")
    return chosen


async def accept_body(
    app: web.Application, candidates: list[Connection], body: dict[str, Any]
) -> web.Response | list[InboundMessage | StatusEvent | UserEvent]:
    """Parse and enqueue one authenticated Gupshup callback (its body already cleaned); the
    events it held, or the rejection."""
    deps = app[DEPS]
    try:
        ref = identify_app(body)
    except MalformedPayload as exc:
        return reject(400, str(exc))
    connection = await choose_connection(app, candidates, ref)
    if isinstance(connection, web.Response):
        return connection
    try:
        parsed = parse_webhook(body, connection.org_id, deps.now_ms())
    except MalformedPayload as exc:
        return reject(400, str(exc))
    for kind in parsed.ignored:
        label = kind_label(kind)
        if label != kind:
            # The type comes from the caller: log it, but keep the metric's labels bounded.
            log.info("acknowledged an unknown Gupshup event type %r", kind[:100])
        metrics.webhook_events.labels(connection.org_id, label, "ignored").inc()
    await app[CONNECTIONS].register(connection.org_id)
    for event in parsed.events:
        kind = event.kind if isinstance(event, InboundMessage) else event.type
        with tracing.span("ingress.webhook", new_trace=True, org_id=connection.org_id, kind=kind):
            if isinstance(event, InboundMessage):  # the trace this message keeps to the reply
                event.traceparent = tracing.traceparent()
            added = await streams.ingest(deps.redis, event, deps.settings.inbound_dedupe_ttl_s)
        metrics.webhook_events.labels(
            connection.org_id, kind, "queued" if added else "duplicate"
        ).inc()
    return parsed.events


async def accept_webhook(
    app: web.Application, body: dict[str, Any], token: str | None
) -> web.Response | list[InboundMessage | StatusEvent | UserEvent]:
    """Authenticate and accept a body already in hand (the development chat's path)."""
    candidates = await authenticate(app, token)
    if isinstance(candidates, web.Response):
        return candidates
    return await accept_body(app, candidates, clean(body))


async def gupshup_webhook(request: web.Request) -> web.Response:
    try:
        return await _gupshup_webhook(request)
    except Unavailable as exc:
        # Not a 4xx: the token may be good. Gupshup retries a failed callback, by when
        # PostgreSQL may be back (a published token never gets here).
        log.warning("webhook not authenticated for now: %s", exc)
        return reject(503, "cannot check the webhook token right now; try again", retry_after_s=10)


async def _gupshup_webhook(request: web.Request) -> web.Response:
    if await request.app[HEADROOM].full():
        return reject(503, "the queue is full for now; retry later", retry_after_s=5)
    candidates = await authenticate(request.app, token_of(request))
    if isinstance(candidates, web.Response):
        return candidates
    body = await receive_body(request)
    if isinstance(body, web.Response):
        return body
    outcome = await accept_body(request.app, candidates, body)
    if isinstance(outcome, web.Response):
        return outcome
    return web.Response(status=200)
