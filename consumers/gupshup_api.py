"""Gupshup's send API: form-encoded POSTs with an `apikey` header; `message` is a JSON string.

Failures are sorted by what they mean for a resend:
- SendRetryable: Gupshup surely did not take the message: the request never left (refused
  connection, DNS, a connect timeout: nothing was written, see ops/http_phases.py) or Gupshup
  refused it (429, 503).
- SendRejected: it never will (bad destination, bad app, auth): retrying is pointless.
- SendOutcomeUnknown: the request was written and may have been taken (a read timeout, a dropped
  connection, a 500, 502, 504 or other 5xx, an unreadable answer): sending again at once could make the user read it
  twice. The sender puts it in doubt and looks for evidence (storage/send_doubts.py).
- SendAbandoned: the caller's hook refused to let the request be written (another handler is
  sending the same message); nothing was sent.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from typing import Awaitable, Callable

import aiohttp

from ops import http_phases
from storage.orgs import Connection

BeforeWrite = Callable[[], Awaitable[None]]


class SendRetryable(Exception):
    def __init__(
        self, reason: str, retry_after_s: float | None = None, throttled: bool = False
    ) -> None:
        super().__init__(reason)
        self.retry_after_s = retry_after_s
        self.throttled = throttled  # a 429: the whole number must slow down


class SendRejected(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status}: {reason}")
        self.status = status


class SendOutcomeUnknown(Exception):
    pass


class SendAbandoned(Exception):
    """Raised by a before-write hook: the request must not be written."""


@dataclass(frozen=True)
class Accepted:
    message_id: str


def _reason(body: str) -> str:
    try:
        return str(json.loads(body).get("message") or body)[:300]
    except (ValueError, AttributeError):
        return body[:300]


@dataclass(frozen=True)
class Timeouts:
    total_s: float
    connect_s: float  # DNS, TCP and TLS: a send that times out here never left


async def _post(
    http: aiohttp.ClientSession,
    url: str,
    connection: Connection,
    form: dict[str, str],
    timeouts: Timeouts,
    before_write: BeforeWrite,
) -> Accepted:
    if not http_phases.installed(http):
        # Without the hook every failure would look like "never left" and be sent again.
        raise RuntimeError("the HTTP session has no ops.http_phases trace config")
    phase = http_phases.BeforeWrite(before_write)
    try:
        async with http.post(
            url,
            data=form,
            headers={"apikey": connection.api_key},
            timeout=aiohttp.ClientTimeout(total=timeouts.total_s, connect=timeouts.connect_s),
            trace_request_ctx=phase,
        ) as response:
            body = await response.text()
            status = response.status
            retry_after = response.headers.get("Retry-After")
    except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
        what = f"{type(exc).__name__}: {exc}"
        if not phase.ran:  # failed before a byte was written: Gupshup saw nothing
            raise SendRetryable(f"cannot reach Gupshup ({what})") from exc
        raise SendOutcomeUnknown(f"outcome unknown: {what} after the request was written") from exc
    if status in (429, 503):
        # Refusals: too many requests, or "unavailable" (overloaded, down for maintenance), both
        # answered before the message is handled. Gupshup did not take it: retried as an outage.
        raise SendRetryable(
            f"HTTP {status}: {_reason(body)}",
            float(retry_after) if retry_after and retry_after.isdigit() else None,
            throttled=status == 429,
        )
    if status >= 500:
        # A server error (500) or a gateway's (502, 504) can come after the message was taken
        # and queued: sending again at once is what duplicated every reply when Gupshup answered
        # 502 after accepting.
        raise SendOutcomeUnknown(f"outcome unknown: HTTP {status}: {_reason(body)}")
    if status >= 400:
        raise SendRejected(status, _reason(body))
    try:
        # Gupshup serves this JSON as text/html, so parse it whatever the content type says.
        data = json.loads(body)
        return Accepted(message_id=str(data["messageId"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise SendOutcomeUnknown(
            f"outcome unknown: unreadable answer from Gupshup: {body[:200]!r}"
        ) from exc


def _base_form(connection: Connection, destination: str) -> dict[str, str]:
    return {
        "channel": "whatsapp",
        "source": connection.source_phone,
        "destination": destination,
        "src.name": connection.app_name,
    }


async def send_text(
    http: aiohttp.ClientSession,
    api_url: str,
    connection: Connection,
    destination: str,
    text: str,
    timeouts: Timeouts,
    before_write: BeforeWrite,
) -> Accepted:
    form = _base_form(connection, destination)
    form["message"] = json.dumps({"type": "text", "text": text}, ensure_ascii=False)
    form["disablePreview"] = "true"
    return await _post(
        http, f"{api_url.rstrip('/')}/wa/api/v1/msg", connection, form, timeouts, before_write
    )


async def send_quick_reply(
    http: aiohttp.ClientSession,
    api_url: str,
    connection: Connection,
    destination: str,
    text: str,
    buttons: list[str],
    msgid: str,
    timeouts: Timeouts,
    before_write: BeforeWrite,
) -> Accepted:
    """An interactive quick-reply message: the text and up to three buttons."""
    form = _base_form(connection, destination)
    form["message"] = json.dumps(
        {
            "type": "quick_reply",
            "msgid": msgid,
            "content": {"type": "text", "text": text},
            "options": [{"type": "text", "title": title} for title in buttons[:3]],
        },
        ensure_ascii=False,
    )
    return await _post(
        http, f"{api_url.rstrip('/')}/wa/api/v1/msg", connection, form, timeouts, before_write
    )


async def send_template(
    http: aiohttp.ClientSession,
    api_url: str,
    connection: Connection,
    destination: str,
    template_id: str,
    params: list[str],
    timeouts: Timeouts,
    before_write: BeforeWrite,
) -> Accepted:
    form = _base_form(connection, destination)
    form["template"] = json.dumps({"id": template_id, "params": params}, ensure_ascii=False)
    return await _post(
        http,
        f"{api_url.rstrip('/')}/wa/api/v1/template/msg",
        connection,
        form,
        timeouts,
        before_write,
    )
