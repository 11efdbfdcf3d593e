"""Gupshup's send API: form-encoded POSTs with an `apikey` header; `message` is a JSON string.

Failures are sorted by what they mean for a resend:
- SendRetryable: Gupshup surely did not take the message (refused connection, 429, 5xx).
- SendRejected: it never will (bad destination, bad app, auth): retrying is pointless.
- SendOutcomeUnknown: the request may have been taken (timeout, dropped connection); sending
  again could make the user read it twice.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import aiohttp

from storage.orgs import Connection


class SendRetryable(Exception):
    def __init__(self, reason: str, retry_after_s: float | None = None,
                 throttled: bool = False) -> None:
        super().__init__(reason)
        self.retry_after_s = retry_after_s
        self.throttled = throttled  # a 429: the whole number must slow down


class SendRejected(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status}: {reason}")
        self.status = status


class SendOutcomeUnknown(Exception):
    pass


@dataclass(frozen=True)
class Accepted:
    message_id: str


def _reason(body: str) -> str:
    try:
        return str(json.loads(body).get("message") or body)[:300]
    except (ValueError, AttributeError):
        return body[:300]


async def _post(http: aiohttp.ClientSession, url: str, connection: Connection,
                form: dict[str, str], timeout_s: float) -> Accepted:
    try:
        async with http.post(url, data=form, headers={"apikey": connection.api_key},
                             timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
            body = await response.text()
            status = response.status
            retry_after = response.headers.get("Retry-After")
    except aiohttp.ClientConnectorError as exc:
        raise SendRetryable(f"cannot connect to Gupshup: {exc}") from exc
    except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
        raise SendOutcomeUnknown(f"{type(exc).__name__} while sending: {exc}") from exc
    if status == 429 or status >= 500:
        raise SendRetryable(f"HTTP {status}: {_reason(body)}",
                            float(retry_after) if retry_after and retry_after.isdigit() else None,
                            throttled=status == 429)
    if status >= 400:
        raise SendRejected(status, _reason(body))
    try:
        # Gupshup serves this JSON as text/html, so parse it whatever the content type says.
        data = json.loads(body)
        return Accepted(message_id=str(data["messageId"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise SendOutcomeUnknown(f"unreadable answer from Gupshup: {body[:200]!r}") from exc


def _base_form(connection: Connection, destination: str) -> dict[str, str]:
    return {"channel": "whatsapp", "source": connection.source_phone,
            "destination": destination, "src.name": connection.app_name}


async def send_text(http: aiohttp.ClientSession, api_url: str, connection: Connection,
                    destination: str, text: str, timeout_s: float) -> Accepted:
    form = _base_form(connection, destination)
    form["message"] = json.dumps({"type": "text", "text": text}, ensure_ascii=False)
    form["disablePreview"] = "true"
    return await _post(http, f"{api_url.rstrip('/')}/wa/api/v1/msg", connection, form, timeout_s)


async def send_quick_reply(http: aiohttp.ClientSession, api_url: str, connection: Connection,
                           destination: str, text: str, buttons: list[str], msgid: str,
                           timeout_s: float) -> Accepted:
    """An interactive quick-reply message: the text and up to three buttons."""
    form = _base_form(connection, destination)
    form["message"] = json.dumps({
        "type": "quick_reply", "msgid": msgid, "content": {"type": "text", "text": text},
        "options": [{"type": "text", "title": title} for title in buttons[:3]]}, ensure_ascii=False)
    return await _post(http, f"{api_url.rstrip('/')}/wa/api/v1/msg", connection, form, timeout_s)


async def send_template(http: aiohttp.ClientSession, api_url: str, connection: Connection,
                        destination: str, template_id: str, params: list[str],
                        timeout_s: float) -> Accepted:
    form = _base_form(connection, destination)
    form["template"] = json.dumps({"id": template_id, "params": params}, ensure_ascii=False)
    return await _post(http, f"{api_url.rstrip('/')}/wa/api/v1/template/msg", connection, form,
                       timeout_s)
