"""Message status tracking: Gupshup's status events applied to outgoing chat_messages rows.

Events arrive late, out of order and more than once, so the stored status only moves forward
(read never goes back to delivered) and every transition keeps its own time.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TypeAlias

import asyncpg

# Forward order of the stored status. A failure outranks "sent" (it failed after leaving us)
# but not "delivered" or "read" (the user got it: a stray late failure must not hide that).
RANK = ("pending", "sent", "failed", "delivered", "read")
STORED = set(RANK)
# Recorded with their time but not a status of their own.
NOTED_ONLY = {"enqueued", "deleted", "mismatch"}


@dataclass(frozen=True)
class Applied:
    message_id: str
    org: str
    phone: str
    status: str  # the stored status after this event


# Correlate on gsId first (Gupshup's messageId), then on id against both stored ids; write the
# WhatsApp id when an event teaches it to us; move the status forward only.
_APPLY = """
with target as (
  -- three indexed lookups instead of one OR that no index serves
  (select id, 1 as preference from chat_messages
    where organization_id = $1::uuid and direction = 'outbound' and provider_message_id = $2)
  union all
  (select id, 2 from chat_messages
    where organization_id = $1::uuid and direction = 'outbound' and provider_message_id = $3)
  union all
  (select id, 3 from chat_messages
    where organization_id = $1::uuid and direction = 'outbound' and whatsapp_message_id = $3)
  order by preference limit 1
)
update chat_messages m set
  message_status = case
    when $4 = any($5::text[])
     and array_position($5::text[], $4) > array_position($5::text[], m.message_status)
    then $4 else m.message_status end,
  status_times = m.status_times || jsonb_build_object($4, $6::timestamptz),
  whatsapp_message_id = coalesce(m.whatsapp_message_id,
    case when $2::text is not null and $3 <> $2 then $3 end),
  error_code = case when $4 = 'failed' then coalesce($7, m.error_code) else m.error_code end,
  error_reason = case when $4 = 'failed' then coalesce($8, m.error_reason) else m.error_reason end
from target where m.id = target.id
returning m.id::text, m.message_status,
  (select phone from chat_identities i where i.id = m.chat_identity_id) as phone
"""

# _APPLY's arguments: org, gs_id, provider_id, status, the ranks, at, code, reason.
_Args: TypeAlias = tuple[str, str | None, str, str, list[str], datetime, int | None, str | None]
# A caller waiting for its event's row (None: no outgoing message matches).
_Waiting: TypeAlias = tuple[_Args, asyncio.Future[asyncpg.Record | None]]


def _args(
    org: str,
    provider_id: str,
    gs_id: str | None,
    status: str,
    at_ms: int,
    code: int | None,
    reason: str | None,
) -> _Args:
    at = datetime.fromtimestamp(at_ms / 1000, tz=timezone.utc)
    return (org, gs_id, provider_id, status, list(RANK), at, code, reason)


def _applied(org: str, row: asyncpg.Record | None) -> Applied | None:
    if row is None:
        return None
    return Applied(message_id=row["id"], org=org, phone=row["phone"], status=row["message_status"])


async def apply_status(
    pool: asyncpg.Pool,
    *,
    org: str,
    provider_id: str,
    gs_id: str | None,
    status: str,
    at_ms: int,
    code: int | None = None,
    reason: str | None = None,
) -> Applied | None:
    """Apply one status event; None when no outgoing message matches (yet)."""
    args = _args(org, provider_id, gs_id, status, at_ms, code, reason)
    return _applied(org, await pool.fetchrow(_APPLY, *args))


class StatusWriter:
    """Applies status events in small transactions shared by concurrent callers.

    Status events come in floods (four or more per message sent). One commit per event makes
    the WAL flush the limit; here every caller waiting at the same moment shares one commit,
    and each still returns only once its own update is durable.
    """

    def __init__(self, pool: asyncpg.Pool, max_batch: int = 32, max_flushers: int = 8) -> None:
        self.pool = pool
        self.max_batch = max_batch
        self.max_flushers = max_flushers  # batches in flight at once, each on its own connection
        self._waiting: list[_Waiting] = []
        self._flushers: set[asyncio.Task[None]] = set()
        self._active = 0  # flushers still taking work; counted down before they stop looking

    async def apply(
        self,
        *,
        org: str,
        provider_id: str,
        gs_id: str | None,
        status: str,
        at_ms: int,
        code: int | None = None,
        reason: str | None = None,
    ) -> Applied | None:
        future: asyncio.Future[asyncpg.Record | None] = asyncio.get_running_loop().create_future()
        self._waiting.append((_args(org, provider_id, gs_id, status, at_ms, code, reason), future))
        if self._active < self.max_flushers:
            self._start_flusher()
        return _applied(org, await future)

    def _start_flusher(self) -> None:
        self._active += 1
        flusher = asyncio.create_task(self._flush())
        self._flushers.add(flusher)  # keeps a reference until it ends
        flusher.add_done_callback(self._flushers.discard)

    async def _flush(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = (
                    self._waiting[: self.max_batch],
                    self._waiting[self.max_batch :],
                )
                await self._write(batch)
        finally:
            # Counted down in the same step as the last look at `_waiting`: a caller arriving
            # now sees the free place and starts a flusher, so no event is left waiting.
            self._active -= 1

    async def _write(self, batch: list[_Waiting]) -> None:
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                rows = [await conn.fetchrow(_APPLY, *args) for args, _ in batch]
        except Exception:  # noqa: BLE001 - one bad event must not fail its neighbours
            await self._one_by_one(batch)
            return
        for (_, future), row in zip(batch, rows):
            if not future.done():
                future.set_result(row)

    async def _one_by_one(self, batch: list[_Waiting]) -> None:
        for args, future in batch:
            try:
                row = await self.pool.fetchrow(_APPLY, *args)
            except Exception as exc:  # noqa: BLE001 - handed to the caller, who retries
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(row)
