"""The operator API (/operator/v1): the clinic's team reads chats, answers as the clinic, takes a
chat over and hands it back. docs/operator-api.md describes every endpoint.

Authenticated by an operator's bearer token (`skytide operator add`), never by the webhook
token: Gupshup's secret opens no inbox, and an operator's token posts no webhook. The token
names one organization; a chat of another organization is answered 404, as if it did not exist.

A message from a person goes out like any reply: onto the organization's outbound stream, so
the sender applies the 24-hour window (the re-engagement template after it), opt-outs, pacing
and status tracking, and stores it with its author ("staff:<name>").
"""

from __future__ import annotations

import logging
import re
import uuid
from datetime import datetime, timezone
from typing import Any

import aiohttp
from aiohttp import web

from ingress.common import DEPS
from ops.deps import Deps
from ops import metrics
from storage import chats, inbox, keys, operators, streams, webhooks
from storage.events import OutboundMessage
from storage.media_store import LocalMediaStore, MediaStoreError, SupabaseMediaStore
from storage.keys import Stream

log = logging.getLogger(__name__)

PREFIX = "/operator/v1"
MAX_TEXT_CHARS = 4096  # WhatsApp's limit for a text message
MAX_REASON_CHARS = 200
MEDIA_LINK_S = 300  # a signed media link lives this long: enough to open it, not to share it
# A client's Idempotency-Key: what a retried POST repeats so the message goes out once.
IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,100}")


def _error(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)


async def _operator(request: web.Request) -> operators.Operator | web.Response:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return _error(401, "expected Authorization: Bearer <operator token> (skytide operator add)")
    operator = await operators.authenticate(request.app[DEPS].pool, token.strip())
    if operator is None:
        return _error(401, "unknown or revoked operator token")
    return operator


async def _body(request: web.Request) -> dict[str, Any] | web.Response:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "the body must be JSON")
    return body if isinstance(body, dict) else _error(400, "the body must be a JSON object")


def _now(deps: Deps) -> datetime:
    """The process clock (Deps.clock) as a moment: the one the pause's age is measured on."""
    assert deps.clock is not None  # Deps.__post_init__ always sets it
    return datetime.fromtimestamp(deps.clock(), timezone.utc)


def _limit(request: web.Request, default: int, maximum: int) -> int | web.Response:
    text = request.query.get("limit", str(default))
    if not text.isdigit() or not 1 <= int(text) <= maximum:
        return _error(400, f"limit must be a whole number from 1 to {maximum}")
    return int(text)


async def me(request: web.Request) -> web.Response:
    operator = await _operator(request)
    if isinstance(operator, web.Response):
        return operator
    return web.json_response(
        {"org": operator.org, "name": operator.name, "author": operator.author}
    )


async def list_chats(request: web.Request) -> web.Response:
    operator = await _operator(request)
    if isinstance(operator, web.Response):
        return operator
    limit = _limit(request, 50, 500)
    if isinstance(limit, web.Response):
        return limit
    deps = request.app[DEPS]
    found = await inbox.list_chats(deps.pool, operator.org, now=_now(deps), limit=limit)
    return web.json_response({"chats": found, "now": _now(deps).isoformat()})


async def read_chat(request: web.Request) -> web.Response:
    operator = await _operator(request)
    if isinstance(operator, web.Response):
        return operator
    limit = _limit(request, 200, 1000)
    if isinstance(limit, web.Response):
        return limit
    deps = request.app[DEPS]
    s = deps.settings
    identity = await chats.find_identity(deps.pool, operator.org, request.match_info["phone"])
    window = (
        identity.last_inbound_at.timestamp() + s.window_hours * 3600 - s.window_margin_s
        if identity and identity.last_inbound_at
        else None
    )
    chat = await inbox.chat_detail(
        deps.pool,
        operator.org,
        request.match_info["phone"],
        window_open_until_s=window,
        limit=limit,
    )
    if chat is None:
        return _error(404, "no such chat in your organization")
    return web.json_response(chat)


async def send_message(request: web.Request) -> web.Response:
    """Queue a message written by a person; the bot steps back from the chat (a person is
    answering it now) until someone hands it back."""
    operator = await _operator(request)
    if isinstance(operator, web.Response):
        return operator
    body = await _body(request)
    if isinstance(body, web.Response):
        return body
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        return _error(400, 'expected JSON {"text": "..."} with a non-empty text')
    if len(text) > MAX_TEXT_CHARS:
        return _error(413, f"a WhatsApp text has at most {MAX_TEXT_CHARS} characters")
    client_key = request.headers.get("Idempotency-Key")
    if client_key is not None and not IDEMPOTENCY_KEY.fullmatch(client_key):
        return _error(400, "Idempotency-Key: 1 to 100 letters, digits or _ . : -")
    deps = request.app[DEPS]
    phone = request.match_info["phone"]
    identity = await chats.find_identity(deps.pool, operator.org, phone)
    if identity is None:
        return _error(404, "no such chat in your organization")
    # A customer waiting for a person (the bot paused) gets their first answer now.
    waiting = (
        None if identity.bot_enabled else await inbox.waiting_since(deps.pool, operator.org, phone)
    )
    took_over = False
    if identity.bot_enabled:
        switch = await chats.switch_bot(
            deps.pool,
            operator.org,
            phone,
            False,
            reason="a person answered",
            by=operator.name,
            at=_now(deps),
        )
        took_over = switch is not None
        await webhooks.bot_switched(
            deps.redis,
            deps.pool,
            operator.org,
            phone,
            switch,
            enabled=False,
            by=operator.name,
            reason="a person answered",
            now_ms=deps.now_ms(),
        )
    # Scoped by the operator, so two people's keys never collide; the sender sends a key once.
    key = f"staff:{operator.id}:{client_key or uuid.uuid4().hex}"
    await streams.publish(
        deps.redis,
        OutboundMessage(
            org=operator.org,
            phone=phone,
            text=text.strip(),
            idempotency_key=key,
            purpose="staff",
            author=operator.author,
            requires_bot_enabled=False,
        ),
        Stream.OUTBOUND,
    )
    log.info("operator %s queued a message to %s/%s", operator.id, operator.org, phone)
    if waiting is not None:
        await _first_answer(deps, operator.org, phone, waiting)
    return web.json_response(
        {"idempotency_key": key, "status": "queued", "took_over": took_over}, status=202
    )


async def _first_answer(deps: Deps, org: str, phone: str, waiting_since: datetime) -> None:
    """Observe the customer's wait once: the first of the person's messages counts, not the
    ones after it (queued before the first was stored, they still see the customer waiting)."""
    since_ms = int(waiting_since.timestamp() * 1000)
    if await deps.redis.set(keys.staff_answered(org, phone, since_ms), 1, nx=True, ex=86400):
        metrics.staff_first_answer.observe(max(0.0, (deps.now_ms() - since_ms) / 1000))


async def take_over(request: web.Request) -> web.Response:
    operator = await _operator(request)
    if isinstance(operator, web.Response):
        return operator
    body = await _body(request)
    if isinstance(body, web.Response):
        return body
    reason = str(body.get("reason") or "taken over by a person").strip()[:MAX_REASON_CHARS]
    return await _set_bot(request, operator, enabled=False, reason=reason)


async def hand_back(request: web.Request) -> web.Response:
    """The bot answers the chat's next message (with the staff's messages in its context)."""
    operator = await _operator(request)
    if isinstance(operator, web.Response):
        return operator
    return await _set_bot(request, operator, enabled=True, reason=None)


async def _set_bot(
    request: web.Request, operator: operators.Operator, *, enabled: bool, reason: str | None
) -> web.Response:
    deps = request.app[DEPS]
    phone = request.match_info["phone"]
    identity = await chats.find_identity(deps.pool, operator.org, phone)
    if identity is None:
        return _error(404, "no such chat in your organization")
    if enabled and identity.kind == "staff":
        return _error(
            409, "this is a staff phone's chat: the bot never answers the clinic's own people"
        )
    switch = await chats.switch_bot(
        deps.pool, operator.org, phone, enabled, reason=reason, by=operator.name, at=_now(deps)
    )
    await webhooks.bot_switched(
        deps.redis,
        deps.pool,
        operator.org,
        phone,
        switch,
        enabled=enabled,
        by=operator.name,
        reason=reason,
        now_ms=deps.now_ms(),
    )
    log.info(
        "operator %s %s %s/%s",
        operator.id,
        "handed back" if enabled else "took over",
        operator.org,
        phone,
    )
    return web.json_response(
        {
            "phone": phone,
            "bot_enabled": enabled,
            "paused": None if enabled else {"by": operator.name, "reason": reason},
        }
    )


async def media(request: web.Request) -> web.StreamResponse:
    """A message's stored file: from the local media folder, or a redirect to a short-lived
    signed link of the private Supabase bucket."""
    operator = await _operator(request)
    if isinstance(operator, web.Response):
        return operator
    deps = request.app[DEPS]
    found = await inbox.media_of(
        deps.pool, operator.org, request.match_info["phone"], request.match_info["message_id"]
    )
    if found is None:
        return _error(404, "no stored media for this message in your organization")
    path, mime_type = found
    s = deps.settings
    if s.supabase_url and s.supabase_service_role_key:
        store = SupabaseMediaStore(
            deps.http,
            s.supabase_url,
            s.supabase_service_role_key,
            bucket=s.supabase_bucket,
            spool_dir=s.media_dir / ".spool",
        )
        try:
            link = await store.signed_url(path, MEDIA_LINK_S)
        except (MediaStoreError, aiohttp.ClientError, TimeoutError) as exc:
            return _error(502, f"Supabase Storage did not sign the link: {exc}")
        raise web.HTTPTemporaryRedirect(link)
    file = LocalMediaStore(s.media_dir).file_of(path)
    if file is None:
        return _error(404, "the media file is no longer in MEDIA_DIR")
    return web.FileResponse(
        file,
        headers={
            "Content-Type": mime_type or "application/octet-stream",
            "Cache-Control": "private, no-store",
        },
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get(f"{PREFIX}/me", me)
    app.router.add_get(f"{PREFIX}/chats", list_chats)
    app.router.add_get(PREFIX + "/chats/{phone}", read_chat)
    app.router.add_post(PREFIX + "/chats/{phone}/messages", send_message)
    app.router.add_post(PREFIX + "/chats/{phone}/takeover", take_over)
    app.router.add_post(PREFIX + "/chats/{phone}/handback", hand_back)
    app.router.add_get(PREFIX + "/chats/{phone}/media/{message_id}", media)
