"""Send pacing shared across processes: a per-number rate, a per-recipient pace, a cooldown.

GCRA (generic cell rate algorithm) in one Lua script: each key holds the theoretical arrival
time of the next message. The script checks the cooldown, the recipient and the number
together and takes a slot from both only when both allow it, so no slot is wasted. Redis's own
clock is used, so every sender process agrees on the time.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from storage import keys

# KEYS: cooldown, number, recipient. ARGV: number_interval_ms, number_tolerance_ms,
# recipient_interval_ms. Returns 0 when a slot was taken, else the milliseconds to wait.
_ACQUIRE = """
local cooldown = redis.call('PTTL', KEYS[1])
if cooldown > 0 then return cooldown end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local wait = 0
local function check(key, interval, tolerance)
  local tat = math.max(tonumber(redis.call('GET', key) or now), now)
  local allow_at = tat - tolerance
  if now < allow_at then wait = math.max(wait, allow_at - now) end
  return tat
end
local n_interval, n_tolerance = tonumber(ARGV[1]), tonumber(ARGV[2])
local r_interval = tonumber(ARGV[3])
local n_tat = check(KEYS[2], n_interval, n_tolerance)
local r_tat = r_interval > 0 and check(KEYS[3], r_interval, 0) or now
if wait > 0 then return math.ceil(wait) end
redis.call('SET', KEYS[2], tostring(n_tat + n_interval), 'PX', math.ceil(n_tat + n_interval - now + n_tolerance) + 1000)
if r_interval > 0 then
  redis.call('SET', KEYS[3], tostring(r_tat + r_interval), 'PX', math.ceil(r_tat + r_interval - now) + 1000)
end
return 0
"""


@dataclass(frozen=True)
class Pace:
    per_second: float  # the business number's rate
    burst: int  # how many may go back to back before the rate applies
    recipient_interval_ms: int  # at most one message per interval to one person (0: no pace)


async def acquire(redis: aioredis.Redis, org: str, phone: str, pace: Pace) -> int:
    """Take a send slot; returns 0 when taken, else how many ms to wait before asking again."""
    interval_ms = 1000.0 / pace.per_second
    return int(
        await redis.eval(
            _ACQUIRE,
            3,
            keys.send_cooldown(org),
            keys.send_rate(org),
            keys.recipient_pace(org, phone),
            interval_ms,
            interval_ms * max(0, pace.burst - 1),
            pace.recipient_interval_ms,
        )
    )


async def cool_down(redis: aioredis.Redis, org: str, ms: int) -> None:
    """Pause every sender of the organization (after a 429 or error 4001); never shortens one."""
    current = await redis.pttl(keys.send_cooldown(org))
    if current < ms:
        await redis.set(keys.send_cooldown(org), "1", px=ms)
