"""Development only: POST /chat, the chat page, and the Gupshup simulator sink.

POST /chat turns `{"app", "phone", "name", "text"}` into a real Gupshup v2 text webhook and
sends it through the same path as Gupshup's own callbacks, then waits (bounded) for the bot's
replies. With no GUPSHUP_API_URL the sender posts to the simulator sink below, which answers like
Gupshup and keeps each reply for the chat that is waiting on it.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Awaitable, Callable

from aiohttp import web

from ingress.common import CONNECTIONS, DEPS, reject
from storage import keys

CHAT_PAGE = Path(__file__).parent / "chat_page.html"
MORE_REPLIES_S = 1.5  # after the first reply, how long to wait for the rest of the turn


def _webhook_body(app_name: str, phone: str, name: str, text: str, now_ms: int) -> dict:
    return {
        "app": app_name, "timestamp": now_ms, "version": 2, "type": "message",
        "payload": {
            "id": f"dev-{uuid.uuid4().hex}", "source": phone, "type": "text",
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
        # The process clock (DEV_CLOCK may have moved it), so the 24-hour window opens with it.
        body = _webhook_body(app_name, phone, str(data.get("name") or "Dev"), text, deps.now_ms())
        outbox = keys.simulator_outbox(app_name, phone)
        outcome = await accept_webhook(request.app, body, connection.webhook_token)
        if isinstance(outcome, web.Response):
            return outcome
        replies = await _collect(deps.redis, outbox, deps.settings.chat_wait_s)
        handled = await deps.redis.get(keys.dev_turn_info(connection.org_id, phone)) if replies else None
        return web.json_response({"replies": replies, "handled_by": json.loads(handled) if handled else None})

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=CHAT_PAGE.read_text(), content_type="text/html")

    app.router.add_post("/chat", chat)
    app.router.add_get("/", page)


async def _collect(redis, outbox: str, wait_s: float) -> list[str]:
    replies: list[str] = []
    first = await redis.blpop([outbox], timeout=wait_s)
    if first is None:
        return replies
    replies.append(first[1])
    while True:
        more = await redis.blpop([outbox], timeout=MORE_REPLIES_S)
        if more is None:
            return replies
        replies.append(more[1])


def add_simulator(app: web.Application) -> None:
    """A local stand-in for Gupshup's send API, so `make run` needs no account."""
    async def send(request: web.Request) -> web.Response:
        if not request.headers.get("apikey"):
            return web.json_response({"message": "Authentication Failed", "status": "error"},
                                     status=401)
        form = await request.post()
        message = json.loads(form.get("message") or form.get("template") or "{}")
        text = message.get("text") or json.dumps(message, ensure_ascii=False)
        if message.get("type") == "quick_reply":  # a reminder: its text and its buttons
            text = message["content"]["text"] + "\n" + " ".join(f"[{o['title']}]" for o in message["options"])
        outbox = keys.simulator_outbox(str(form.get("src.name")), str(form.get("destination")))
        redis = request.app[DEPS].redis
        await redis.rpush(outbox, text)
        await redis.expire(outbox, 600)
        return web.Response(text=json.dumps({"status": "submitted", "messageId": str(uuid.uuid4())}),
                            content_type="text/html")

    app.router.add_post("/simulator/wa/api/v1/msg", send)
    app.router.add_post("/simulator/wa/api/v1/template/msg", send)
