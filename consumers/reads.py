"""What a stage reads: the streams that have work, not every organization's stream.

Reading every organization's stream in each XREADGROUP made every read cost as much as the
number of tenants (with 2,000 organizations, most of a core went to building, sending and
parsing reads of empty streams). Instead, whoever adds an entry to `{org}:<stream>` also signals
the organization on `skytide:ready:<stream>` (storage/streams.signal). A worker keeps a small set
of hot streams: it reads them while they return as many entries as it asked for and drops each
as soon as a read returns fewer; with nothing hot it blocks on the signals (BZPOPMIN), so an idle
worker costs nothing per tenant.

Why nothing is missed: a worker pops a signal before it reads the stream, and a producer signals
after it adds. An entry added after the read comes with a signal after the pop. A worker that
dies with streams hot (and a backlog in them) is covered by `sweep`: every sweep_every_s each
worker reads every known stream once.
"""

from __future__ import annotations

import time

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import ResponseError

from storage import keys
from storage.keys import Stage, Stream
from storage.redis_client import blocking_pop

POP_MAX = 256  # signals taken per read


async def ensure_groups(redis: aioredis.Redis, streams: list[str], group: Stage) -> None:
    """Create the consumer group on each stream that lacks one, in one round trip per 500."""
    for i in range(0, len(streams), 500):
        async with redis.pipeline(transaction=False) as pipe:
            for stream in streams[i : i + 500]:
                pipe.xgroup_create(stream, group, id="0", mkstream=True)
            results = await pipe.execute(raise_on_error=False)
        for result in results:
            if isinstance(result, Exception) and "BUSYGROUP" not in str(result):
                raise result


class ReadSet:
    def __init__(
        self,
        redis: aioredis.Redis,
        stream: Stream,
        group: Stage,
        consumer: str,
        *,
        read_count: int,
        block_ms: int,
        sweep_every_s: float,
    ) -> None:
        self.redis = redis
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.read_count = read_count
        self.block_ms = block_ms
        self.sweep_every_s = sweep_every_s
        self.hot: set[str] = set()
        self.orgs: set[str] = set()  # every registered organization (for the sweep)
        self._next_sweep = 0.0
        self._ready = keys.ready(stream)

    def _stream(self, org: str) -> str:
        return keys.stream(org, self.stream)

    def _by_slot(self, streams: list[str]) -> list[list[str]]:
        """One XREADGROUP names streams of one slot only on a Redis Cluster (organizations'
        streams live in their own slots): there, one read per slot, in the same round trip to
        each node; on one Redis, a single read of them all."""
        if not isinstance(self.redis, RedisCluster):
            return [streams]
        by_slot: dict[int, list[str]] = {}
        for stream in streams:
            by_slot.setdefault(key_slot(stream.encode()), []).append(stream)
        return list(by_slot.values())

    async def read(self, free: int) -> list[tuple[str, list[tuple[str, dict[str, str]]]]]:
        """One read of the hot streams (after waiting for a signal if none is hot)."""
        if time.monotonic() >= self._next_sweep:
            self._next_sweep = time.monotonic() + self.sweep_every_s
            self.hot |= {self._stream(org) for org in self.orgs}
        if not self.hot:
            ready = blocking_pop(
                await self.redis.bzpopmin(self._ready, timeout=self.block_ms / 1000)
            )
            if not ready:
                return []
            self.hot.add(self._stream(ready[1]))
        streams = sorted(self.hot)
        count = max(1, min(self.read_count, free // len(streams) or 1))
        groups = self._by_slot(streams)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zpopmin(self._ready, POP_MAX)
            for group in groups:
                pipe.xreadgroup(self.group, self.consumer, {s: ">" for s in group}, count=count)
            popped, *results = await pipe.execute(raise_on_error=False)
        if isinstance(popped, Exception):
            raise popped
        self.hot |= {self._stream(org) for org, _ in popped}  # kept even if the read failed
        replies: list[tuple[str, list[tuple[str, dict[str, str]]]]] = []
        missing: list[str] = []
        for group, result in zip(groups, results):
            if isinstance(result, ResponseError) and "NOGROUP" in str(result):
                missing += group
            elif isinstance(result, Exception):
                raise result
            else:
                replies += result or []
        if missing:
            # A new organization (or Redis came back empty): create its groups, read again.
            await ensure_groups(self.redis, missing, self.group)
            return []
        # A stream that gave fewer entries than asked for is drained: drop it now rather than
        # confirm with an empty read (a round trip per message). Anything added after this read
        # comes with a signal given after the pop above, so it is not missed.
        full = {stream for stream, entries in replies if len(entries) >= count}
        self.hot = full | {self._stream(org) for org, _ in popped}
        return replies
