"""Fake Gupshup: outbound send API, status callbacks to our webhook, media file manager, and the
partner API's read / typing-indicator event.

Wire format follows docs/gupshup.md sections 1 and 2 and the payloads in
tests/fixtures/gupshup/. Things the real service does that clients trip over, and that
this fake reproduces on purpose:
- the send API takes application/x-www-form-urlencoded, with `message`/`template` being
  JSON documents serialised into a single form field;
- the success answer is JSON served as `text/html`;
- status callbacks come later and separately, and status `id` switches from the Gupshup
  messageId (enqueued) to the WhatsApp id (sent/delivered/read, with `gsId`);
- media links need no auth, die (404) and rate-limit (429) after repeated invalid calls.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Coroutine, Literal

import aiohttp
from aiohttp import web

from .base import FakeServer

AUTH_FAILED = {"message": "Authentication Failed", "status": "error"}
INVALID_DESTINATION = {"message": "Invalid Destination", "status": "error"}
INVALID_APP = {"message": "Invalid App Details", "status": "error"}
INVALID_MEDIA = {"status": "error", "message": "Invalid Media Id"}

# Default bodies for fail_next(status) when no body is given (docs/gupshup.md §2.1).
DEFAULT_ERROR_BODIES: dict[int, dict[str, str]] = {
    400: INVALID_DESTINATION,
    401: AUTH_FAILED,
    429: {"status": "error", "message": "Too Many Requests"},
    500: {"status": "error", "message": "Internal server error"},
    502: {"status": "error", "message": "Bad Gateway"},
    503: {"status": "error", "message": "Service Unavailable"},
}

FAILURE_REASONS = {
    1002: "Number Does Not Exists On WhatsApp",
    1012: "Number Opted Out",
    4001: "API Rate Limited",
    131047: "Message failed to send because more than 24 hours have passed since the "
    "customer last replied to this number.",
    131026: "Message Undeliverable.",
}

Layout = Literal["v2", "v2_bsuid", "v3"]

MEDIA_INVALID_LIMIT = 20  # invalid media calls per hour before the 429 cooldown
MEDIA_COOLDOWN_S = 3600.0
MEDIA_CHUNK = 64 * 1024


@dataclass
class SentMessage:
    kind: Literal["session", "template"]
    source: str
    destination: str
    app: str  # the `src.name` form field
    message: dict[str, Any] | None
    template: dict[str, Any] | None
    message_id: str
    apikey: str
    received_at: float
    form: dict[str, str] = field(default_factory=dict)  # every raw form field, as sent


@dataclass
class _Media:
    data: bytes
    content_type: str
    expires_at: float | None
    delay_s: float


def fake_wamid() -> str:
    # Real wamids are base64 of a protobuf; shape only matters for "don't parse it".
    return "wamid.HBgM" + base64.b64encode(os.urandom(24)).decode()


class FakeGupshup(FakeServer):
    def __init__(
        self,
        *,
        app_name: str = "SkytideTest",
        app_id: str | None = None,
        api_key: str | None = None,
        callback_url: str | None = None,
        callback_token: str | None = None,
    ) -> None:
        super().__init__()
        self.app_name = app_name  # `app` field of callbacks
        self.app_id = app_id or str(uuid.uuid4())  # in media URLs and v3 gs_app_id
        self.api_key = api_key  # None: any non-empty apikey is accepted
        self.business_phone = "919999999999"
        self.waba_id = "112535025189792"
        self.phone_number_id = "158072934066266"

        self.sent: list[SentMessage] = []
        self._sent_cond = asyncio.Condition()

        # Status callbacks (docs/gupshup.md §1.5). The real delay is ~5 s; tests keep it short.
        self.callback_url = callback_url
        self.callback_token = callback_token
        self.callback_delay_s = 0.05
        self.callback_layout: Layout = "v2"
        self.callback_statuses: tuple[str, ...] = ("enqueued", "sent", "delivered", "read")
        self.callback_fail_code = 1002  # used when "failed" is in callback_statuses
        # Every callback POST made: (payload, HTTP status or None on connection error).
        self.callbacks: list[tuple[dict[str, Any], int | None]] = []
        self.wamids: dict[str, str] = {}  # messageId -> wamid used in its callbacks
        self.user_ids: dict[str, str] = {}  # destination -> BSUID (v2_bsuid layout)
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

        # Faults of a Gupshup that does not say what it did with a send (see the methods below).
        self._hang_until = 0.0
        self._fail_after_delivery: tuple[float, int] = (0.0, 502)  # (until, status)
        self._late_answer: tuple[float, float] = (0.0, 20.0)  # (until, answer after s)
        self.hung: int = 0  # send requests held and never answered (nothing delivered)

        # Partner API "Mark message as Read/Typing indicator": every request (app id, its
        # Authorization header, the JSON it carried); answered 200 unless scripted otherwise.
        self.partner_token = "partner-app-token"
        self.events: list[tuple[str, str, Any]] = []
        self.event_status = 200

        # Media file manager.
        self.media: dict[str, _Media] = {}
        self._media_failures: deque[tuple[int, Any]] = deque()
        self._invalid_media_calls: deque[float] = deque()
        self._media_blocked_until = 0.0

    def setup_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/wa/api/v1/msg", self._handle_session)
        router.add_post("/wa/api/v1/template/msg", self._handle_template)
        router.add_get("/wa/{app_id}/wa/media/{media_id}", self._handle_media)
        router.add_post("/partner/app/{app_id}/v1/event", self._handle_event)

    async def on_start(self) -> None:
        self._session = aiohttp.ClientSession()

    async def on_stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    # -- scripting ---------------------------------------------------------------------
    def fail_next(self, status: int, times: int = 1, body: dict[str, Any] | None = None) -> None:
        """The next `times` send calls answer `status` (recorded in requests, not in sent)."""
        if body is None:
            body = DEFAULT_ERROR_BODIES.get(status, {"status": "error", "message": "Error"})
        self.queue_failure(status, times, body)

    def fail_media_next(
        self, status: int, times: int = 1, body: dict[str, Any] | None = None
    ) -> None:
        for _ in range(times):
            self._media_failures.append(
                (
                    status,
                    body
                    or DEFAULT_ERROR_BODIES.get(status, {"status": "error", "message": "Error"}),
                )
            )

    def hang_for(self, seconds: float) -> None:
        """For `seconds`, send requests are read and never answered, and nothing is delivered:
        a Gupshup that accepts connections and hangs."""
        self._hang_until = time.monotonic() + seconds

    def deliver_then_fail_for(self, seconds: float, status: int = 502) -> None:
        """For `seconds`, every send is delivered (recorded in `sent`, its status callbacks
        posted) and then answered `status`: a gateway that fails after Gupshup took the message."""
        self._fail_after_delivery = (time.monotonic() + seconds, status)

    def deliver_then_answer_late_for(self, seconds: float, answer_after_s: float = 20.0) -> None:
        """For `seconds`, every send is delivered (and its callbacks posted) at once, and answered
        only after `answer_after_s`: slower than a client's read timeout."""
        self._late_answer = (time.monotonic() + seconds, answer_after_s)

    async def wait_for_sent(self, n: int, timeout_s: float = 2.0) -> list[SentMessage]:
        async with self._sent_cond:
            await asyncio.wait_for(self._sent_cond.wait_for(lambda: len(self.sent) >= n), timeout_s)
        return list(self.sent)

    async def drain_callbacks(self, timeout_s: float = 2.0) -> None:
        """Wait until every scheduled status callback has been posted."""
        if self._tasks:
            await asyncio.wait_for(
                asyncio.gather(*list(self._tasks), return_exceptions=True), timeout_s
            )

    # -- send API ------------------------------------------------------------------------
    async def _handle_session(self, request: web.Request) -> web.Response:
        return await self._handle_send(request, "session")

    async def _handle_template(self, request: web.Request) -> web.Response:
        return await self._handle_send(request, "template")

    async def _handle_send(
        self, request: web.Request, kind: Literal["session", "template"]
    ) -> web.Response:
        apikey = request.headers.get("apikey", "")
        if not apikey or (self.api_key is not None and apikey != self.api_key):
            return _gupshup_json(AUTH_FAILED, 401)
        if (hang_s := self._hang_until - time.monotonic()) > 0:
            self.hung += 1
            await asyncio.sleep(hang_s)  # the client gave up long ago; it gets no answer
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=503)
        await self.sleep_delay()
        failure = self.take_failure()
        if failure is not None:
            return _gupshup_json(failure[1], failure[0])

        # Only form fields are read: a JSON body (the classic client bug) finds no
        # `destination` and gets "Invalid Destination", as a form-only server would.
        form: dict[str, str] = {}
        if request.content_type == "application/x-www-form-urlencoded":
            form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        destination = form.get("destination", "")
        if not destination.isdigit():  # E.164 without '+'
            return _gupshup_json(INVALID_DESTINATION, 400)
        if not form.get("source") or not form.get("src.name"):
            return _gupshup_json(INVALID_APP, 400)
        try:
            message = json.loads(form["message"]) if "message" in form else None
            template = json.loads(form["template"]) if "template" in form else None
        except ValueError:
            return _gupshup_json(
                {"status": "error", "message": "Invalid Message"}, 400
            )  # [inferred]
        if (kind == "session" and not isinstance(message, dict)) or (
            kind == "template" and not isinstance(template, dict)
        ):
            return _gupshup_json(
                {"status": "error", "message": "Invalid Message"}, 400
            )  # [inferred]

        msg = SentMessage(
            kind=kind,
            source=form["source"],
            destination=destination,
            app=form["src.name"],
            message=message,
            template=template,
            message_id=str(uuid.uuid4()),
            apikey=apikey,
            received_at=time.time(),
            form=form,
        )
        async with self._sent_cond:
            self.sent.append(msg)
            self._sent_cond.notify_all()
        if self.callback_url:
            self._spawn(self._run_callbacks(msg))
        now = time.monotonic()
        fail_until, fail_status = self._fail_after_delivery
        if now < fail_until:
            return _gupshup_json(
                DEFAULT_ERROR_BODIES.get(fail_status, {"status": "error"}), fail_status
            )
        late_until, answer_after_s = self._late_answer
        if now < late_until:
            await asyncio.sleep(answer_after_s)
        return _gupshup_json({"status": "submitted", "messageId": msg.message_id}, 200)

    # -- status callbacks ------------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_callbacks(self, msg: SentMessage) -> None:
        # One task per message, statuses posted strictly in order (the real service does
        # not guarantee order; use post_status() to test out-of-order delivery).
        for status in self.callback_statuses:
            await asyncio.sleep(self.callback_delay_s)
            code = self.callback_fail_code if status == "failed" else None
            await self.post_status(msg.message_id, status, layout=self.callback_layout, code=code)

    def build_status(
        self,
        message_id: str,
        status: str,
        *,
        layout: Layout = "v2",
        code: int | None = None,
        reason: str | None = None,
        wamid: str | None = None,
        ts: int | None = None,
        destination: str | None = None,
        failed_async: bool = False,
    ) -> dict[str, Any]:
        """Build one status callback body (see post_status)."""
        if destination is None:
            destination = next(
                (m.destination for m in self.sent if m.message_id == message_id), "919876543210"
            )
        kind = next((m.kind for m in self.sent if m.message_id == message_id), "session")
        if wamid is None:
            # One WhatsApp-side id per message, reused by its sent/delivered/read events.
            # The 2026 BSUID examples show a UUID there instead of a `wamid.` string.
            wamid = self.wamids.setdefault(
                message_id, str(uuid.uuid4()) if layout == "v2_bsuid" else fake_wamid()
            )
        now = time.time()
        ts = int(now) if ts is None else ts
        if status == "failed":
            code = 1002 if code is None else code
            reason = reason or FAILURE_REASONS.get(code, "Message failed")
        if layout == "v3":
            return self._status_v3(message_id, status, wamid, ts, destination, code, reason, now)

        inner: dict[str, Any] = {"type": status, "destination": destination}
        if status == "enqueued":
            # `id` is the Gupshup messageId; there is no gsId and no ts yet.
            inner = {"id": message_id, **inner}
            inner["payload"] = {"whatsappMessageId": "gBEG" + uuid.uuid4().hex[:23], "type": kind}
        elif status == "failed":
            # Sync failure: `id` = messageId. Async (after reaching WhatsApp): `gsId` only.
            inner = ({"gsId": message_id} if failed_async else {"id": message_id}) | inner
            inner["payload"] = {"code": code, "reason": reason}
        else:
            inner = {"id": wamid, "gsId": message_id, **inner}
            conversation = {"id": uuid.uuid4().hex, "expiresAt": ts + 86400, "type": "Service"}
            pricing = {"policy": "CBP", "category": "Service"}
            if layout == "v2_bsuid":
                # 2026 BSUID layout: ts inside payload.payload; conversation/pricing/userId
                # beside it (partner-docs /docs/bsuid).
                inner["payload"] = {"ts": ts}
                if status == "sent":
                    inner["conversation"] = conversation
                    inner["pricing"] = pricing | {
                        "policy": "PMP",
                        "category": "service",
                        "type": "regular",
                    }
            else:
                inner["ts"] = ts
                if status == "sent":
                    inner["payload"] = {"conversation": conversation, "pricing": pricing}
                elif status == "delivered":
                    inner["payload"] = {"conversation": {"id": conversation["id"]}}
        if layout == "v2_bsuid":
            inner["userId"] = self.user_ids.setdefault(
                destination, f"IN.{uuid.uuid4().int % 10**16}"
            )
        return {
            "app": self.app_name,
            "timestamp": int(now * 1000),
            "version": 2,
            "type": "message-event",
            "payload": inner,
        }

    def _status_v3(
        self,
        message_id: str,
        status: str,
        wamid: str,
        ts: int,
        destination: str,
        code: int | None,
        reason: str | None,
        now: float,
    ) -> dict[str, Any]:
        st: dict[str, Any] = {
            "gs_id": message_id,
            "id": wamid,
            "recipient_id": destination,
            "status": status,
            # Gupshup's extra `enqueued` status carries a ms *number*; the rest seconds *string*.
            "timestamp": int(now * 1000) if status == "enqueued" else str(ts),
        }
        if status == "sent":
            st["conversation"] = {"expiration_timestamp": str(ts + 86400), "id": uuid.uuid4().hex}
        elif status == "delivered":
            st["conversation"] = {"id": uuid.uuid4().hex}
        elif status == "failed":
            st["errors"] = [
                {
                    "code": code,
                    "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
                    "title": reason,
                }
            ]
        value: dict[str, Any] = {"messaging_product": "whatsapp", "statuses": [st]}
        entry: dict[str, Any] = {"changes": [{"field": "messages", "value": value}]}
        # The documented `enqueued` sample (Gupshup-only status) has neither `metadata`
        # nor the WABA `entry[].id`; the Meta statuses have both.
        if status != "enqueued":
            value["metadata"] = {
                "display_phone_number": self.business_phone,
                "phone_number_id": self.phone_number_id,
            }
            entry["id"] = self.waba_id
        return {
            "entry": [entry],
            "gs_app_id": self.app_id,
            "object": "whatsapp_business_account",
        }

    async def post_status(
        self,
        message_id: str,
        status: str,
        *,
        layout: Layout = "v2",
        code: int | None = None,
        reason: str | None = None,
        wamid: str | None = None,
        ts: int | None = None,
        destination: str | None = None,
        failed_async: bool = False,
    ) -> int | None:
        """POST one status callback to callback_url; returns the webhook's HTTP status.

        layout: "v2" (ts on payload level, fixtures gupshup_message_event_*.json),
        "v2_bsuid" (2026: ts in payload.payload, plus userId), "v3" (Meta statuses[]
        with gs_id, fixtures gupshup_v3_status_*.json). A v2 `failed` is the sync variant
        (`id` = messageId) unless failed_async=True (`gsId` only); v3 puts code/reason in
        errors[]. Unknown `status` values (deleted, mismatch, ...) get the generic shape.
        """
        body = self.build_status(
            message_id,
            status,
            layout=layout,
            code=code,
            reason=reason,
            wamid=wamid,
            ts=ts,
            destination=destination,
            failed_async=failed_async,
        )
        return await self.post_event(body)

    async def post_event(self, payload: dict[str, Any]) -> int | None:
        """POST any raw JSON to callback_url (inbound messages, user/platform events...)."""
        if not self.callback_url:
            raise RuntimeError("callback_url is not set")
        if self._session is None:
            raise RuntimeError("server not started")
        headers = {"Authorization": f"Bearer {self.callback_token}"} if self.callback_token else {}
        try:
            async with self._session.post(
                self.callback_url,
                json=payload,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=10),
            ) as resp:
                await resp.read()
                status: int | None = resp.status
        except (aiohttp.ClientError, asyncio.TimeoutError):
            status = None
        self.callbacks.append((payload, status))
        return status

    # -- media file manager -------------------------------------------------------------
    def add_media(
        self,
        data: bytes,
        content_type: str,
        *,
        expires_after_s: float | None = None,
        delay_s: float = 0,
        file_name: str | None = None,
    ) -> str:
        media_id = str(uuid.uuid4())
        expires_at = time.monotonic() + expires_after_s if expires_after_s is not None else None
        self.media[media_id] = _Media(data, content_type, expires_at, delay_s)
        url = f"{self.url}/wa/{self.app_id}/wa/media/{media_id}?download=false"
        return url + (f"&fileName={file_name}" if file_name else "")

    def expire_media(self, url_or_id: str) -> None:
        media_id = url_or_id.split("?")[0].rsplit("/", 1)[-1]
        if media_id in self.media:
            self.media[media_id].expires_at = time.monotonic() - 1

    async def _handle_event(self, request: web.Request) -> web.Response:
        return await _event_reply(self, request)

    async def _handle_media(self, request: web.Request) -> web.StreamResponse:
        now = time.monotonic()
        if now < self._media_blocked_until:
            return self._media_rate_limited()
        if self._media_failures:
            status, body = self._media_failures.popleft()
            return _gupshup_json(body, status)

        media = self.media.get(request.match_info["media_id"])
        if (
            media is None
            or request.match_info["app_id"] != self.app_id
            or (media.expires_at is not None and now >= media.expires_at)
        ):
            # Count invalid calls in a sliding hour; over the limit -> 1 h cooldown.
            self._invalid_media_calls.append(now)
            while (
                self._invalid_media_calls and self._invalid_media_calls[0] < now - MEDIA_COOLDOWN_S
            ):
                self._invalid_media_calls.popleft()
            if len(self._invalid_media_calls) > MEDIA_INVALID_LIMIT:
                self._media_blocked_until = now + MEDIA_COOLDOWN_S
                return self._media_rate_limited()
            return _gupshup_json(INVALID_MEDIA, 404)

        if media.delay_s:
            await asyncio.sleep(media.delay_s)
        # Streamed in chunks with an explicit Content-Length, like a file server would.
        resp = web.StreamResponse(status=200, headers={"Content-Type": media.content_type})
        resp.content_length = len(media.data)
        await resp.prepare(request)
        for i in range(0, len(media.data), MEDIA_CHUNK):
            await resp.write(media.data[i : i + MEDIA_CHUNK])
        await resp.write_eof()
        return resp

    def _media_rate_limited(self) -> web.Response:
        epoch = int(time.time() + (self._media_blocked_until - time.monotonic()))
        msg = f"Api rate limit reached due to multiple invalid calls. New quota will be available on {epoch}"
        return _gupshup_json({"status": "error", "message": msg}, 429)


async def _event_reply(fake: FakeGupshup, request: web.Request) -> web.Response:
    """POST /partner/app/{appId}/v1/event, as partner-docs.gupshup.io documents it: the partner
    app token in Authorization (no "Bearer"), a JSON body (its sample labels it form-encoded)
    {"type": "message-event", "message": {"messaging_product": "whatsapp", "status": "read",
    "message_id": ..., "typing_indicator": {"type": "text"}}}; 200 {"status": "success"}."""
    raw = await request.text()
    try:
        body = json.loads(raw)
    except ValueError:
        return _gupshup_json({"message": "Invalid JSON payload", "status": "error"}, 400)
    fake.events.append(
        (request.match_info["app_id"], request.headers.get("Authorization", ""), body)
    )
    if request.headers.get("Authorization") != fake.partner_token:
        return _gupshup_json({"status": "error", "message": "Invalid token"}, 401)
    if request.match_info["app_id"] != fake.app_id:
        return _gupshup_json({"status": "error", "message": "Invalid app"}, 400)
    message = body.get("message") if isinstance(body, dict) else None
    if (
        body.get("type") != "message-event"
        or not isinstance(message, dict)
        or message.get("status") != "read"
        or not message.get("message_id")
    ):
        return _gupshup_json({"message": "Outbound event not supported", "status": "error"}, 400)
    if fake.event_status != 200:
        return _gupshup_json(
            {"status": "error", "message": "Internal server error"}, fake.event_status
        )
    return _gupshup_json({"status": "success"}, 200)


def _gupshup_json(body: Any, status: int) -> web.Response:
    # Gupshup serves its JSON as text/html (docs/gupshup.md §2.1): clients must not rely on
    # the content type (aiohttp's resp.json() raises ContentTypeError on it by default).
    return web.Response(text=json.dumps(body), status=status, content_type="text/html")
