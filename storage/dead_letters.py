"""Dead letters you can act on: list them, read one, put them back on their stream.

A dead letter keeps the original entry's fields under `payload.*`, with the stage, the stream,
the error and the delivery count beside them (the record and its encoding: storage/events.py,
written by consumers/runtime.py). Replaying is safe:
every stage is idempotent, so an entry that had half-succeeded does not repeat its effect.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from ops.logs import mask
from storage import keys, streams
from storage.events import (
    BadEvent,
    DeadLetter as DeadLetter,  # re-exported: callers name it dead_letters.DeadLetter
    InboundMessage,
    StreamEvent,
    decode,
    decode_dead_letter,
)
from storage.keys import Stage, Stream
from storage.redis_client import entries, text_set

# Put the original entry back and remove the dead letter in one step: a replay is never lost
# and never doubled.
_REPLAY = """
if redis.call('XDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
local fields = {}
for i = 2, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('XADD', KEYS[2], '*', unpack(fields))
return 1
"""


async def list_letters(
    redis: aioredis.Redis, *, org: str | None = None, stage: str | None = None, limit: int = 1000
) -> list[DeadLetter]:
    orgs = [org] if org else sorted(text_set(await redis.smembers(keys.ORG_REGISTRY)))
    letters: list[DeadLetter] = []
    for each in orgs:
        for entry_id, fields in entries(await redis.xrange(keys.dead_letters(each), count=limit)):
            letter = decode_dead_letter(each, entry_id, fields)
            if stage is None or letter.stage == stage:
                letters.append(letter)
    return letters


async def get_letter(redis: aioredis.Redis, ref: str) -> DeadLetter | None:
    org, _, entry_id = ref.partition("/")
    if not entry_id:
        return None
    found = entries(await redis.xrange(keys.dead_letters(org), min=entry_id, max=entry_id))
    return decode_dead_letter(org, *found[0]) if found else None


async def replay(redis: aioredis.Redis, letter: DeadLetter) -> bool:
    """Put the entry back on the stream it came from; False if someone replayed it already."""
    if not letter.stream or keys.org_of_key(letter.stream) != letter.org:
        raise ValueError(f"dead letter {letter.ref} names no stream of its organization")
    stream = keys.stream_of_key(letter.stream)  # ValueError for a stream that is none of ours
    args: list[str] = [letter.id]
    for name, value in letter.payload.items():
        args += [name, value]
    async with redis.pipeline(transaction=False) as pipe:
        pipe.eval(_REPLAY, 2, keys.dead_letters(letter.org), letter.stream, *args)
        streams.signal(pipe, letter.org, stream)
        replayed, _ = await pipe.execute()
    return bool(replayed)


# ---- retention: what a dead letter may hold, and for how long --------------------------------

DAY_MS = 24 * 3600 * 1000
MAX_ERROR_CHARS = 2000


def redact_error(error: str) -> str:
    """The error as a dead letter keeps it: phone numbers and credentials masked, bounded.

    The payload itself is kept whole (a replay needs it); the retention below bounds how long.
    """
    return mask(error[: MAX_ERROR_CHARS * 2])[:MAX_ERROR_CHARS]


def queue_trim(
    pipe: aioredis.client.Pipeline,
    org: str,
    *,
    now_ms: int,
    max_entries: int,
    retention_days: float,
) -> None:
    """Queue on `pipe` the trims that keep an organization's dead letters to the newest
    `max_entries` and to the last `retention_days` (exact trims: dead letters are few)."""
    key = keys.dead_letters(org)
    pipe.xtrim(key, maxlen=max_entries, approximate=False)
    oldest_ms = max(0, now_ms - int(retention_days * DAY_MS))
    pipe.xtrim(key, minid=f"{oldest_ms}-0", approximate=False)


# ---- replay that does what a first delivery would do ------------------------------------------

# An inbound message given up on was marked "handed to the batcher" without joining a turn (so
# it would not hold its chat back). Its replay forgets that mark and counts the message as being
# enriched again, in the same step that puts it back: the replayed message joins a turn.
# KEYS: dead letters, stream, handed, enriching. ARGV: letter id, provider id, enriching ttl,
# then the entry's fields.
_REPLAY_INBOUND = """
if redis.call('XDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SREM', KEYS[3], ARGV[2])
redis.call('INCR', KEYS[4])
redis.call('EXPIRE', KEYS[4], ARGV[3])
local fields = {}
for i = 4, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('XADD', KEYS[2], '*', unpack(fields))
return 1
"""

_ENRICHING_TTL_S = 600


@dataclass(frozen=True)
class Replayed:
    letter: DeadLetter
    outcome: str  # "put back" or "already replayed"
    detail: str  # what the entry is, for the operator

    def line(self) -> str:
        return f"{self.letter.ref}  stage={self.letter.stage}  {self.outcome}: {self.detail}"


def _describe(letter: DeadLetter) -> tuple[str, StreamEvent | None]:
    try:
        event = decode(letter.payload)
    except BadEvent as exc:
        return f"undecodable entry ({exc})", None
    about = (
        getattr(event, "phone", None)
        or getattr(event, "chat", None)
        or getattr(event, "provider_id", None)
        or getattr(event, "id", "")
    )
    return f"{event.type} ({about}) on {letter.stream}", event


async def replay_letter(redis: aioredis.Redis, letter: DeadLetter) -> Replayed:
    """Put the entry back so that it has a first delivery's effect, and say what was done."""
    detail, event = _describe(letter)
    if letter.stage == Stage.ENRICH and isinstance(event, InboundMessage):
        if keys.org_of_key(letter.stream) != letter.org or event.org != letter.org:
            # An edited or foreign payload must not reach another tenant's keys.
            raise ValueError(f"dead letter {letter.ref} names no stream of its organization")
        args: list[str] = [letter.id, event.provider_id, str(_ENRICHING_TTL_S)]
        for name, value in letter.payload.items():
            args += [name, value]
        done = bool(
            await redis.eval(
                _REPLAY_INBOUND,
                4,
                keys.dead_letters(letter.org),
                letter.stream,
                keys.handed(letter.org, event.phone),
                keys.enriching(letter.org, event.phone),
                *args,
            )
        )
        if done:  # the stage's workers read signalled streams (consumers/reads.py)
            async with redis.pipeline(transaction=False) as pipe:
                streams.signal(pipe, letter.org, Stream.INBOUND)
                await pipe.execute()
    else:
        done = await replay(redis, letter)
    return Replayed(letter, "put back" if done else "already replayed", detail)
