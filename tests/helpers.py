"""Small helpers shared by the test modules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, TypeVar

import aiohttp
import redis.asyncio as aioredis
from tests import clock

# Provider payloads captured in their exact wire shapes (see docs/gupshup.md).
FIXTURES = Path(__file__).resolve().parent / "fixtures"

T = TypeVar("T")


def strip_notes(value: Any) -> Any:
    """Fixtures carry annotations in keys that start with '_'; the wire never does."""
    if isinstance(value, dict):
        return {k: strip_notes(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, list):
        return [strip_notes(v) for v in value]
    return value


def fixture(name: str, **top: Any) -> dict[str, Any]:
    body: dict[str, Any] = strip_notes(json.loads((FIXTURES / name).read_text()))
    body.update(top)
    return body


def fresh(name: str, **top: Any) -> dict[str, Any]:
    """A v2 fixture sent just now (fixtures are from 2024: their 24-hour window closed long ago)."""
    return fixture(name, timestamp=clock.now_ms(), **top)


def text_webhook(
    app: str, phone: str, text: str, message_id: str, ts_ms: int, name: str = "Ana"
) -> dict[str, Any]:
    """A v2 text message callback shaped like fixtures/gupshup/gupshup_v2_text.json."""
    body = fixture("gupshup/gupshup_v2_text.json", app=app, timestamp=ts_ms)
    body["payload"].update(id=message_id, source=phone)
    body["payload"]["payload"] = {"text": text}
    body["payload"]["sender"].update(phone=phone, name=name)
    return body


async def post_webhook(
    url: str, body: Any, token: str | None = "secret-token", path: str = "/webhooks/gupshup"
) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    async with aiohttp.ClientSession() as session:
        async with session.post(
            url + path, data=data, headers={"Content-Type": "application/json", **headers}
        ) as response:
            return response.status, await response.text()


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """A blocking call (a command, pg_ctl) without stopping the pipeline running in this loop."""
    import asyncio

    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


async def settled(redis: aioredis.Redis, org: str) -> bool:
    """True when the organization's pipeline has nothing left to do: every stream read and
    acknowledged by its group, no burst pending, no turn in flight (what a test waits for
    before it counts what was sent, instead of sleeping)."""
    from storage import keys

    for name in (*keys.PIPELINE_STREAMS, keys.Stream.WEBHOOKS):
        stream = keys.stream(org, name)
        if not await redis.exists(stream):
            continue
        for group in await redis.xinfo_groups(stream):
            if group["pending"] or group.get("lag"):
                return False
    if await redis.zcard(keys.due(org)):
        return False
    async for _ in redis.scan_iter(match=f"{{{org}}}:turn:*", count=1000):
        return False  # a turn lease: a turn is running
    return True
