"""Acknowledging stream entries in batches."""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis

log = logging.getLogger(__name__)


class Acker:
    """Acknowledges entries in batches: one XACK per stream for all entries settled meanwhile.

    An acknowledgement only ever follows a durable effect; batching merely delays it by a loop
    turn or two. If the process dies first, the entry is delivered again, and every stage is
    idempotent, so nothing shows twice.
    """

    def __init__(self, redis: aioredis.Redis, group: str) -> None:
        self.redis = redis
        self.group = group
        self._pending: dict[str, list[str]] = {}
        # Entries whose XACK is queued or on the wire: settled, but still in Redis's pending list.
        self._settling: set[tuple[str, str]] = set()
        self._flusher: asyncio.Task[None] | None = None

    def ack(self, stream: str, entry_id: str) -> None:
        self._settling.add((stream, entry_id))
        self._pending.setdefault(stream, []).append(entry_id)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        while self._pending:
            await asyncio.sleep(0)  # let this loop turn's other acks join the batch
            batch, self._pending = self._pending, {}
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for stream, ids in batch.items():
                        pipe.xack(stream, self.group, *ids)
                    await pipe.execute()
            except Exception:  # noqa: BLE001 - unacknowledged entries are claimed back later
                log.exception(
                    "%s: acknowledging %d entries failed; they will be redelivered",
                    self.group,
                    sum(len(ids) for ids in batch.values()),
                )
            finally:
                for stream, ids in batch.items():
                    self._settling.difference_update((stream, entry_id) for entry_id in ids)

    def settling(self, stream: str, entry_id: str) -> bool:
        """True while the entry's acknowledgement is queued or being sent: the claim path must
        leave it alone, or a finished entry would be handled a second time."""
        return (stream, entry_id) in self._settling

    async def close(self) -> None:
        """Wait for the acks in flight (shutdown)."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)
