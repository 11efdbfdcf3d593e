"""Held slots: a time proposed to (or picked by) one chat is not offered to another for
SLOT_HOLD_MIN minutes. The hold ends at booking, when the customer declines, or on expiry.

One sorted set per organization, member "staff|start_ms|end_ms|chat" scored by expiry. Holding
is one Lua script: it drops expired holds and the chat's previous ones, then holds each slot
that no other chat holds (overlap on the same staff member), so two chats racing for the last
slot cannot both hold it. The clock is the caller's (Deps.clock), so tests can move it.
"""

from __future__ import annotations

from datetime import datetime, timezone

import redis.asyncio as aioredis

from storage import keys
from storage.redis_client import members

Held = tuple[str, datetime, datetime]  # staff, start, end

# A chat holds at most this many slots at once (a list offered to it): whatever a model asks
# for, one WhatsApp user cannot take a day's schedule off the market. Each hold also ends the
# chat's earlier ones, so this is the chat's total.
MAX_HELD_PER_CHAT = 5

# KEYS: holds. ARGV: now_ms, expires_ms, chat, max_held, then staff, start_ms, end_ms per slot.
# Returns 1/0 per slot: held by this chat, or not (held by another, or over the chat's cap).
_HOLD = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local chat = ARGV[3]
local others = {}
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local staff, s, e, who = string.match(m, '^([^|]*)|([^|]*)|([^|]*)|(.*)$')
  if who == chat then redis.call('ZREM', KEYS[1], m)
  else table.insert(others, {staff, tonumber(s), tonumber(e)}) end
end
local out = {}
local held, max_held = 0, tonumber(ARGV[4])
for i = 5, #ARGV, 3 do
  local staff, s, e = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local free = 1
  if held >= max_held then free = 0 end
  for _, o in ipairs(others) do
    if free == 1 and o[1] == staff and o[2] < e and s < o[3] then free = 0 break end
  end
  if free == 1 then
    held = held + 1
    redis.call('ZADD', KEYS[1], ARGV[2], staff .. '|' .. ARGV[i + 1] .. '|' .. ARGV[i + 2] .. '|' .. chat)
  end
  table.insert(out, free)
end
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if last[2] then redis.call('PEXPIREAT', KEYS[1], last[2]) end
return out
"""


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _at(ms: str) -> datetime:
    return datetime.fromtimestamp(int(ms) / 1000, timezone.utc)


async def hold(
    redis: aioredis.Redis, org: str, chat: str, slots: list[Held], *, now_ms: int, ttl_ms: int
) -> list[bool]:
    """Hold these slots for this chat (its earlier holds end); False where another chat holds one."""
    args: list[int | str] = [now_ms, now_ms + ttl_ms, chat, MAX_HELD_PER_CHAT]
    for staff, start, end in slots:
        args += [staff, _ms(start), _ms(end)]
    result = await redis.eval(_HOLD, 1, keys.holds(org), *args)
    return [bool(r) for r in result]


async def held_by_others(redis: aioredis.Redis, org: str, chat: str, *, now_ms: int) -> list[Held]:
    """The live holds of every other chat, as busy spans for availability."""
    out = []
    for member in members(await redis.zrangebyscore(keys.holds(org), f"({now_ms}", "+inf")):
        staff, start, end, who = member.split("|", 3)
        if who != chat:
            out.append((staff, _at(start), _at(end)))
    return out


async def release(redis: aioredis.Redis, org: str, chat: str) -> None:
    """The chat's holds end (booked, declined, or the task is over)."""
    await redis.eval(_HOLD, 1, keys.holds(org), 0, 0, chat, 0)
