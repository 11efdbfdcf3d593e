"""Development only: POST /chat, the chat page, and the Gupshup simulator sink.

POST /chat turns `{"app", "phone", "name", "text"}` into a real Gupshup v2 text webhook and
sends it through the same path as Gupshup's own callbacks, then answers with the turn's replies
as soon as the agent has put them on the organization's outbound stream: it reads that stream
(never consuming from it), so it works whatever GUPSHUP_API_URL points at. With no
GUPSHUP_API_URL the sender posts to the simulator sink below, which answers like Gupshup and
keeps what was sent to each phone (reminders and other messages no /chat call waits for).
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any, Awaitable, Callable, cast

import redis.asyncio as aioredis
from aiohttp import web

from ingress.common import CONNECTIONS, DEPS, reject
from storage import keys
from storage.events import BadEvent, OutboundMessage, decode
from storage.keys import Stream

CHAT_PAGE = Path(__file__).parent / "chat_page.html"
READ_BLOCK_MS = 1000  # each wait stays far below any Redis client socket timeout
# A stream's entries as this project's client reads them (decode_responses=True, RESP2:
# storage/redis_client.py); redis-py types them for every protocol and decoding at once.
Entries = list[tuple[str, dict[str, str]]]


def _webhook_body(app_name: str, phone: str, name: str, text: str, now_ms: int) -> dict[str, Any]:
    return {
        "app": app_name,
        "timestamp": now_ms,
        "version": 2,
        "type": "message",
        "payload": {
            "id": f"dev-{uuid.uuid4().hex}",
            "source": phone,
            "type": "text",
            "payload": {"text": text},
            "sender": {"phone": phone, "name": name, "country_code": "", "dial_code": phone},
        },
    }


def add_routes(app: web.Application, accept_webhook: Callable[..., Awaitable[object]]) -> None:
    async def chat(request: web.Request) -> web.Response:
        try:
            data = await request.json()
            app_name, phone, text = str(data["app"]), str(data["phone"]), str(data["text"])
        except (ValueError, KeyError, TypeError) as exc:
            return reject(400, f"expected JSON with app, phone, name and text: {exc}")
        connection = await request.app[CONNECTIONS].get(app_name, None)
        if connection is None:
            return reject(404, f"unknown app {app_name!r}")
        deps = request.app[DEPS]
        outbound = keys.stream(connection.org_id, Stream.OUTBOUND)
        # Replies come after this entry.
        last = cast(Entries, await deps.redis.xrevrange(outbound, count=1))
        after = last[0][0] if last else "0-0"
        # The process clock (DEV_CLOCK may have moved it), so the 24-hour window opens with it.
        body = _webhook_body(app_name, phone, str(data.get("name") or "Dev"), text, deps.now_ms())
        outcome = await accept_webhook(request.app, body, connection.webhook_token)
        if isinstance(outcome, web.Response):
            return outcome
        wait_s = deps.settings.chat_wait_s
        replies = await turn_replies(deps.redis, outbound, phone, after, wait_s)
        if replies is None:
            return web.json_response(
                {
                    "error": f"no reply within {wait_s:.0f} s (CHAT_WAIT_S): are the enrich, batcher "
                    "and agent roles running, and is the bot on for this chat?"
                },
                status=504,
            )
        handled = await deps.redis.get(keys.dev_turn_info(connection.org_id, phone))
        return web.json_response(
            {"replies": replies, "handled_by": json.loads(handled) if handled else None}
        )

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=CHAT_PAGE.read_text(), content_type="text/html")

    app.router.add_post("/chat", chat)
    app.router.add_get("/", page)


async def turn_replies(
    redis: aioredis.Redis, outbound: str, phone: str, after: str, wait_s: float
) -> list[str] | None:
    """The texts of the first reply to `phone` queued after entry `after`, None on timeout.

    A turn's replies are written to the stream together (one script), so the entries for this
    chat in the batch that holds the first one are the whole turn.
    """
    deadline = time.monotonic() + wait_s
    while (left_ms := int((deadline - time.monotonic()) * 1000)) > 0:
        found = cast(
            list[tuple[str, Entries]] | None,
            await redis.xread({outbound: after}, count=100, block=min(READ_BLOCK_MS, left_ms)),
        )
        for _, entries in found or []:
            # Only a turn's replies: a scheduled confirmation or reminder (no turn id) can be
            # queued for this chat while the turn runs, and is not the answer to this message.
            mine = [
                event
                for event in map(_outbound, entries)
                if event is not None and event.phone == phone and event.turn_id
            ]
            if mine:
                turn = mine[0].turn_id
                texts: list[str] = []
                for event in mine:
                    if event.turn_id == turn and event.text:
                        texts += [event.text, *event.more_texts]
                return texts
            after = entries[-1][0]
    return None


def _outbound(entry: tuple[str, dict[str, str]]) -> OutboundMessage | None:
    try:
        event = decode(entry[1])
    except BadEvent:
        return None
    return event if isinstance(event, OutboundMessage) else None


def add_simulator(app: web.Application) -> None:
    """A local stand-in for Gupshup's send API, so `make run` needs no account."""

    async def send(request: web.Request) -> web.Response:
        if not request.headers.get("apikey"):
            return web.json_response(
                {"message": "Authentication Failed", "status": "error"}, status=401
            )
        form = await request.post()
        raw = form.get("message") or form.get("template") or "{}"
        if isinstance(raw, web.FileField):  # Gupshup's send API takes form fields, not files
            return web.json_response(
                {"message": "message must be a form field", "status": "error"}, status=400
            )
        message = json.loads(raw)
        text = message.get("text") or json.dumps(message, ensure_ascii=False)
        if message.get("type") == "quick_reply":  # a reminder: its text and its buttons
            text = (
                message["content"]["text"]
                + "\n"
                + " ".join(f"[{o['title']}]" for o in message["options"])
            )
        outbox = keys.simulator_outbox(str(form.get("src.name")), str(form.get("destination")))
        redis = request.app[DEPS].redis
        await redis.rpush(outbox, text)
        await redis.expire(outbox, 600)
        return web.Response(
            text=json.dumps({"status": "submitted", "messageId": str(uuid.uuid4())}),
            content_type="text/html",
        )

    app.router.add_post("/simulator/wa/api/v1/msg", send)
    app.router.add_post("/simulator/wa/api/v1/template/msg", send)
