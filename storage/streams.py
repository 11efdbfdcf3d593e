"""Putting events on streams, with the dedupe and bookkeeping that must happen atomically."""

from __future__ import annotations

import time
from typing import cast

import redis.asyncio as aioredis
from redis.typing import EncodableT, FieldT

from storage import keys
from storage.redis_client import text
from storage.events import InboundMessage, StatusEvent, StreamEvent, UserEvent, encode
from storage.keys import Stream

# Dedupe, enqueue and (for chat messages) count the entry as "being enriched" in one step, so a
# crash can never leave an event marked as seen but not enqueued.
_INGEST = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) == false then return 0 end
redis.call('XADD', KEYS[2], '*', 'type', ARGV[2], 'data', ARGV[3])
if #KEYS > 2 then
  redis.call('INCR', KEYS[3])
  redis.call('EXPIRE', KEYS[3], ARGV[4])
end
return 1
"""

ENRICHING_TTL_S = 600


def signal(pipe: aioredis.client.Pipeline, org: str, stream: Stream) -> None:
    """Queue, after an XADD to `{org}:<stream>`, the signal that its workers read (consumers/reads.py).

    NX keeps the first signal's time, so the organization waiting longest is served first.
    """
    pipe.zadd(keys.ready(stream), {org: int(time.time() * 1000)}, nx=True)


def dedupe_id(event: StreamEvent) -> tuple[str, str]:
    """(kind, id) that identifies a provider event; deliveries with the same pair are one event."""
    if isinstance(event, InboundMessage):
        return "msg", event.provider_id
    if isinstance(event, StatusEvent):
        return "status", f"{event.gs_id or event.provider_id}:{event.status}"
    if isinstance(event, UserEvent):
        return "user", f"{event.phone}:{event.event}:{event.at_ms}"
    raise TypeError(f"not a provider event: {type(event).__name__}")


async def ingest(
    redis: aioredis.Redis, event: InboundMessage | StatusEvent | UserEvent, dedupe_ttl_s: int
) -> bool:
    """Enqueue a provider event on its organization's inbound stream; False if seen before."""
    kind, event_id = dedupe_id(event)
    stream_keys = [keys.seen(event.org, kind, event_id), keys.stream(event.org, Stream.INBOUND)]
    if isinstance(event, InboundMessage):
        stream_keys.append(keys.enriching(event.org, event.phone))
    fields = encode(event)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.eval(
            _INGEST,
            len(stream_keys),
            *stream_keys,
            dedupe_ttl_s,
            fields["type"],
            fields["data"],
            ENRICHING_TTL_S,
        )
        signal(pipe, event.org, Stream.INBOUND)  # a duplicate's signal only costs one empty read
        added, _ = await pipe.execute()
    return bool(added)


async def publish(redis: aioredis.Redis, event: StreamEvent, stream: Stream) -> str:
    # redis-py types XADD's fields as a dict of its own key types, which a dict[str, str] is not
    # to mypy (dict keys are invariant); it only reads them.
    fields = cast(dict[FieldT, EncodableT], encode(event))
    async with redis.pipeline(transaction=False) as pipe:
        pipe.xadd(keys.stream(event.org, stream), fields)
        signal(pipe, event.org, stream)
        entry_id, _ = await pipe.execute()
    return text(entry_id)
