"""A chat's life between messages and turns, as atomic Redis scripts.

hand_off   (enrich)  a stored message joins its chat's pending burst and sets the due time;
                     landing while a turn is in flight, it marks that turn as having newer
                     messages (`{org}:turn-newer:{chat}`).
flush      (batcher) a due burst becomes a turn on `{org}:turns`, unless a turn is in flight.
commit     (agent)   before a turn's first effect (a booking, its replies): if newer messages
                     came and the turn has done nothing yet, the turn is abandoned and its
                     messages go back in front of the burst (the next turn reads them all);
                     otherwise the turn is committed for good, redeliveries included.
finish     (agent)   a turn's replies go on `{org}:outbound` once, the lease is released, and
                     messages that arrived meanwhile are scheduled for the next turn.

Each is one Lua script, so a crash between two steps cannot lose a burst or start a turn twice.
All keys of one call carry the same `{org}` hash tag: legal in Redis Cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from storage import due, keys, streams
from storage.events import OutboundMessage, encode
from storage.keys import Stream
from storage.redis_client import optional_text, text

HANDED_TTL_S = 7 * 24 * 3600
TURN_DONE_TTL_S = 7 * 24 * 3600
NEWER_TTL_S = 24 * 3600  # the next flush deletes it; the TTL only keeps a lost one from lingering

# KEYS: handed, pending, batch, due, enriching, pending_chars, turn_lease, turn_newer
# ARGV: provider_id, message_id (or ''), score_ms, now_ms, debounce_ms, max_wait_ms,
#       max_messages, chat, handed_ttl_s, chars, newer_ttl_s
_HAND_OFF = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('EXPIRE', KEYS[1], ARGV[9])
local left = redis.call('DECR', KEYS[5])
if left <= 0 then redis.call('DEL', KEYS[5]) end
if ARGV[2] == '' then return 1 end
redis.call('HSET', KEYS[6], ARGV[2], ARGV[10])
local now = tonumber(ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
redis.call('HSETNX', KEYS[3], 'first_ms', now)
redis.call('HSET', KEYS[3], 'last_ms', now)
local count = redis.call('HINCRBY', KEYS[3], 'count', 1)
local first = tonumber(redis.call('HGET', KEYS[3], 'first_ms'))
local due = math.min(now + tonumber(ARGV[5]), first + tonumber(ARGV[6]))
if count >= tonumber(ARGV[7]) then due = now end
redis.call('ZADD', KEYS[4], due, ARGV[8])
-- kept for `commit`: a turn abandoned for this message is formed again when this burst is due
redis.call('HSET', KEYS[3], 'due_ms', due)
if redis.call('EXISTS', KEYS[7]) == 1 then redis.call('SET', KEYS[8], '1', 'EX', ARGV[11]) end
return 1
"""

# KEYS: pending, batch, due, enriching, turn_lease, turns_stream, pending_chars, turn_newer
# ARGV: chat, now_ms, lease_ms, max_wait_ms, retry_ms, org, max_messages, max_chars
#
# The turn's id is derived from what it covers (organization, chat, message ids), so a turn
# formed again after Redis lost its last writes is the same turn: the same idempotency keys for
# its bookings and replies. A turn takes at most max_messages messages and max_chars characters
# (at least one message); the rest stays pending for the next turn, which `finish` schedules.
_FLUSH = """
local chat = ARGV[1]
local lease_ms = redis.call('PTTL', KEYS[5])
if lease_ms > 0 then
  -- `finish` brings it forward when the turn ends; if the turn never ends (its worker gave up),
  -- the chat comes due again when the lease runs out, so no message is stranded.
  redis.call('ZADD', KEYS[3], tonumber(ARGV[2]) + lease_ms, chat)
  return 'busy'
end
local candidates = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[7]) - 1)
if #candidates == 0 then
  redis.call('ZREM', KEYS[3], chat)
  redis.call('DEL', KEYS[2], KEYS[7])
  return 'empty'
end
local now = tonumber(ARGV[2])
local first = tonumber(redis.call('HGET', KEYS[2], 'first_ms') or now)
local enriching = tonumber(redis.call('GET', KEYS[4]) or '0')
if enriching > 0 and now < first + tonumber(ARGV[4]) then
  -- an earlier message of this chat is still being understood (a voice note, say): wait for it
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[5]), chat)
  return 'waiting'
end
local ids, chars, max_chars = {}, 0, tonumber(ARGV[8])
for _, id in ipairs(candidates) do
  local n = tonumber(redis.call('HGET', KEYS[7], id) or '0')
  if #ids > 0 and chars + n > max_chars then break end
  chars = chars + n
  ids[#ids + 1] = id
end
redis.call('ZREM', KEYS[1], unpack(ids))
redis.call('HDEL', KEYS[7], unpack(ids))
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('DEL', KEYS[1], KEYS[2], KEYS[7]) end
redis.call('ZREM', KEYS[3], chat)
local turn_id = redis.sha1hex(ARGV[6] .. '|' .. chat .. '|' .. table.concat(ids, ','))
redis.call('SET', KEYS[5], turn_id, 'PX', ARGV[3])
redis.call('DEL', KEYS[8])  -- what the new turn reads is not newer than it
local turn = cjson.encode({type='turn', org=ARGV[6], chat=chat, turn_id=turn_id, message_ids=ids})
redis.call('XADD', KEYS[6], '*', 'type', 'turn', 'data', turn)
return 'started'
"""

# KEYS: turn_done, turn_lease, outbound_stream, pending, batch, due
# ARGV: turn_id, chat, now_ms, debounce_ms, max_wait_ms, done_ttl_s, then (type, data) pairs
_FINISH = """
local sent = 0
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[6]) then
  for i = 7, #ARGV, 2 do
    redis.call('XADD', KEYS[3], '*', 'type', ARGV[i], 'data', ARGV[i + 1])
    sent = sent + 1
  end
end
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
if redis.call('ZCARD', KEYS[4]) > 0 then
  local now = tonumber(ARGV[3])
  local first = tonumber(redis.call('HGET', KEYS[5], 'first_ms') or now)
  local last = tonumber(redis.call('HGET', KEYS[5], 'last_ms') or now)
  local due = math.max(now, math.min(last + tonumber(ARGV[4]), first + tonumber(ARGV[5])))
  redis.call('ZADD', KEYS[6], due, ARGV[2])
  return {sent, due}
end
return {sent, 0}
"""

# KEYS: turn_lease, pending, due. ARGV: turn_id, lease_ms, now_ms, chat, message ids...
# The agent takes its turn's lease when it starts (it was set at flush; the turn may have waited
# on the stream longer than the lease). If another turn of the chat holds it, this turn's
# messages go back to the front of the pending burst instead of running alongside it.
_TAKE = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
for i = 5, #ARGV do redis.call('ZADD', KEYS[2], 0, ARGV[i]) end
redis.call('ZADD', KEYS[3], tonumber(ARGV[3]) + redis.call('PTTL', KEYS[1]), ARGV[4])
return 0
"""

# KEYS: committed, turn_newer, turn_done, turn_lease, pending, batch, due
# ARGV: turn_id, chat, now_ms, first_ms, max_wait_ms, ttl_s, message ids...
#
# One decision per turn, kept under the turn's id: a redelivered turn that was committed stays
# committed (its booking may be in PostgreSQL already), one that was abandoned stays abandoned
# (turn-done says so, and the runtime's duplicate check skips it). A burst whose first message
# is older than max_wait_ms is not restarted again: a customer who never stops writing is still
# answered, at the latest a turn after the debounce's cap.
_COMMIT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return {'committed', 0} end
if redis.call('GET', KEYS[3]) == 'abandoned' then return {'abandoned', 0} end
local now, first = tonumber(ARGV[3]), tonumber(ARGV[4])
if redis.call('EXISTS', KEYS[2]) == 0 or now >= first + tonumber(ARGV[5]) then
  redis.call('SET', KEYS[1], '1', 'EX', ARGV[6])
  return {'committed', 0}
end
redis.call('SET', KEYS[3], 'abandoned', 'EX', ARGV[6])
-- the turn's messages go back in front of the newer ones (scored by when they were sent)
for i = 7, #ARGV do redis.call('ZADD', KEYS[5], i - 7, ARGV[i]) end
redis.call('HINCRBY', KEYS[6], 'count', #ARGV - 6)
local burst_first = tonumber(redis.call('HGET', KEYS[6], 'first_ms') or now)
if first < burst_first then
  burst_first = first
  redis.call('HSET', KEYS[6], 'first_ms', first)
end
if redis.call('GET', KEYS[4]) == ARGV[1] then redis.call('DEL', KEYS[4]) end
local due = tonumber(redis.call('HGET', KEYS[6], 'due_ms') or now)
due = math.max(now, math.min(due, burst_first + tonumber(ARGV[5])))
redis.call('ZADD', KEYS[7], due, ARGV[2])
return {'abandoned', due}
"""

# KEYS: turn_lease. ARGV: turn_id, lease_ms
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


@dataclass(frozen=True)
class Debounce:
    quiet_ms: int
    max_wait_ms: int
    max_messages: int


async def hand_off(
    redis: aioredis.Redis,
    *,
    org: str,
    chat: str,
    provider_id: str,
    message_id: str | None,
    sent_at_ms: int,
    now_ms: int,
    debounce: Debounce,
    chars: int = 0,
) -> bool:
    """Mark an inbound entry enriched; with a message id, add it to the chat's burst.

    Idempotent on provider_id: a redelivered entry is neither counted nor added twice.
    """
    async with redis.pipeline(transaction=False) as pipe:
        pipe.eval(
            _HAND_OFF,
            8,
            keys.handed(org, chat),
            keys.pending(org, chat),
            keys.batch(org, chat),
            keys.due(org),
            keys.enriching(org, chat),
            keys.pending_chars(org, chat),
            keys.turn_lease(org, chat),
            keys.turn_newer(org, chat),
            provider_id,
            message_id or "",
            sent_at_ms,
            now_ms,
            debounce.quiet_ms,
            debounce.max_wait_ms,
            debounce.max_messages,
            chat,
            HANDED_TTL_S,
            chars,
            NEWER_TTL_S,
        )
        if message_id:  # the chat is due at now_ms or later: tell the batcher, same round trip
            due.signal(pipe, org, now_ms)
        handed, *_ = await pipe.execute()
    return bool(handed)


async def flush(
    redis: aioredis.Redis,
    *,
    org: str,
    chat: str,
    now_ms: int,
    lease_ms: int,
    max_wait_ms: int,
    max_messages: int,
    max_chars: int,
    retry_ms: int = 250,
) -> str:
    """Start a turn for a due chat; returns started, busy, waiting or empty."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.eval(
            _FLUSH,
            8,
            keys.pending(org, chat),
            keys.batch(org, chat),
            keys.due(org),
            keys.enriching(org, chat),
            keys.turn_lease(org, chat),
            keys.stream(org, Stream.TURNS),
            keys.pending_chars(org, chat),
            keys.turn_newer(org, chat),
            chat,
            now_ms,
            lease_ms,
            max_wait_ms,
            retry_ms,
            org,
            max_messages,
            max_chars,
        )
        streams.signal(pipe, org, Stream.TURNS)  # in the same round trip, whatever the outcome
        outcome, _ = await pipe.execute()
    return text(outcome)


async def finish(
    redis: aioredis.Redis,
    *,
    org: str,
    chat: str,
    turn_id: str,
    replies: list[OutboundMessage],
    now_ms: int,
    debounce: Debounce,
) -> int:
    """Enqueue a turn's replies exactly once and end the turn; returns how many were enqueued."""
    args: list[str] = []
    for reply in replies:
        fields = encode(reply)
        args += [fields["type"], fields["data"]]
    async with redis.pipeline(transaction=False) as pipe:
        pipe.eval(
            _FINISH,
            6,
            keys.turn_done(org, turn_id),
            keys.turn_lease(org, chat),
            keys.stream(org, Stream.OUTBOUND),
            keys.pending(org, chat),
            keys.batch(org, chat),
            keys.due(org),
            turn_id,
            chat,
            now_ms,
            debounce.quiet_ms,
            debounce.max_wait_ms,
            TURN_DONE_TTL_S,
            *args,
        )
        if replies:
            streams.signal(pipe, org, Stream.OUTBOUND)
        (sent, due_ms), *_ = await pipe.execute()
    if due_ms:  # messages came in during the turn: the chat is due again
        await due.signal_now(redis, org, int(due_ms))
    return int(sent)


async def take_lease(
    redis: aioredis.Redis,
    *,
    org: str,
    chat: str,
    turn_id: str,
    message_ids: list[str],
    now_ms: int,
    lease_ms: int,
) -> bool:
    """Hold the chat for this turn; False (messages put back for the next turn) if another has it."""
    taken = bool(
        await redis.eval(
            _TAKE,
            3,
            keys.turn_lease(org, chat),
            keys.pending(org, chat),
            keys.due(org),
            turn_id,
            lease_ms,
            now_ms,
            chat,
            *message_ids,
        )
    )
    if not taken:  # the messages wait for the turn in flight; due when its lease ends, or sooner
        await due.signal_now(redis, org, now_ms)
    return taken


async def commit(
    redis: aioredis.Redis,
    *,
    org: str,
    chat: str,
    turn_id: str,
    message_ids: list[str],
    first_ms: int,
    now_ms: int,
    max_wait_ms: int,
) -> bool:
    """Before a turn's first effect: True, it goes on (committed for good); False, it was
    abandoned for newer messages of its chat, which the next turn reads together with its own.
    first_ms is when the turn's first message arrived."""
    outcome, due_ms = await redis.eval(
        _COMMIT,
        7,
        keys.turn_committed(org, turn_id),
        keys.turn_newer(org, chat),
        keys.turn_done(org, turn_id),
        keys.turn_lease(org, chat),
        keys.pending(org, chat),
        keys.batch(org, chat),
        keys.due(org),
        turn_id,
        chat,
        now_ms,
        first_ms,
        max_wait_ms,
        TURN_DONE_TTL_S,
        *message_ids,
    )
    if due_ms:  # abandoned now: the batcher forms the next turn when the burst is due
        await due.signal_now(redis, org, int(due_ms))
    return bool(outcome == "committed")


async def extend_lease(
    redis: aioredis.Redis, *, org: str, chat: str, turn_id: str, lease_ms: int
) -> bool:
    return bool(await redis.eval(_EXTEND, 1, keys.turn_lease(org, chat), turn_id, lease_ms))


async def turn_in_flight(redis: aioredis.Redis, org: str, chat: str) -> str | None:
    return optional_text(await redis.get(keys.turn_lease(org, chat)))


# KEYS: turn_lease, pending, due. ARGV: turn_id, chat, now_ms
# A turn given up on (dead-lettered) lets its chat go: the lease is dropped and messages that
# arrived meanwhile come due at once. The turn is not marked done, so its replay still runs it.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
if redis.call('ZCARD', KEYS[2]) > 0 then redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2]) end
return 1
"""


async def release_lease(
    redis: aioredis.Redis, *, org: str, chat: str, turn_id: str, now_ms: int
) -> None:
    """Let the chat's next messages start a turn now instead of after the lease runs out."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.eval(
            _RELEASE,
            3,
            keys.turn_lease(org, chat),
            keys.pending(org, chat),
            keys.due(org),
            turn_id,
            chat,
            now_ms,
        )
        due.signal(pipe, org, now_ms)  # the batcher's index (storage/due.py), same round trip
        await pipe.execute()
