"""Where a turn's replies come from: the arrival time and trace of its customer messages.

A turn entry is written by a Lua script from the chat's pending burst (storage/turns.py), so
it cannot carry its messages' trace context; enrich keeps it here by stored message id, and
the agent reads it back, so the reply's end-to-end latency and trace start at the webhook.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from storage import keys
from storage.events import Origin

ORIGIN_TTL_S = 24 * 3600  # far longer than any debounce and turn; then it is not needed


async def remember(redis: aioredis.Redis, org: str, message_id: str, origin: Origin) -> None:
    await redis.set(keys.origin(org, message_id), origin.model_dump_json(), ex=ORIGIN_TTL_S)


async def of_turn(redis: aioredis.Redis, org: str, message_ids: list[str]) -> list[Origin]:
    """The known origins of a turn's messages, first arrived first: its trace is the turn's."""
    if not message_ids:
        return []
    found = [
        Origin.model_validate_json(raw)
        for raw in await redis.mget([keys.origin(org, m) for m in message_ids])
        if raw
    ]
    return sorted(found, key=lambda o: o.received_at_ms)
