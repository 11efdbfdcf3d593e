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
dies with streams hot (and a backlog in them) is covered by the sweep: every sweep_every_s each
worker also reads the next `sweep_streams` registered streams, round robin, so a sweep costs the
same with 10,000 tenants as with 10 and reaches every stream within len(orgs) / sweep_streams
sweeps.

Each read also marks the streams it reads in `keys.claimable(stage)`, in the same round trip and
before the XREADGROUP: the claim path (consumers/runtime.py) visits those streams, the only ones
that can hold pending entries, rather than every registered stream.
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
SWEEP_STREAMS = 100  # registered streams one sweep reads besides the signalled ones


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
        sweep_streams: int = SWEEP_STREAMS,
    ) -> None:
        self.redis = redis
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.read_count = read_count
        self.block_ms = block_ms
        self.sweep_every_s = sweep_every_s
        self.sweep_streams = sweep_streams
        self.hot: set[str] = set()
        self.orgs: list[str] = []  # every registered organization, sorted (for the sweep)
        self._sweep_from = 0  # where the next sweep starts in `orgs`
        self._swept: set[str] = set()  # hot only because the sweep put them there
        self._next_sweep = 0.0
        self._ready = keys.ready(stream)
        self._claimable = keys.claimable(group)

    def _stream(self, org: str) -> str:
        return keys.stream(org, self.stream)

    def _sweep(self) -> set[str]:
        """The next `sweep_streams` registered streams, round robin."""
        orgs = self.orgs
        if len(orgs) <= self.sweep_streams:
            return {self._stream(org) for org in orgs}
        start = self._sweep_from % len(orgs)
        chunk = orgs[start : start + self.sweep_streams]
        chunk += orgs[: self.sweep_streams - len(chunk)]
        self._sweep_from = start + self.sweep_streams
        return {self._stream(org) for org in chunk}

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
            self._swept = self._sweep() - self.hot
            self.hot |= self._swept
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
            # Marked before the read (one Redis runs a pipeline in order): a worker that dies
            # with what it read leaves the stream in the claim path's index. A stream read only
            # for the sweep is marked after the read, and only if it gave entries (rare).
            marked = [s for s in streams if s not in self._swept]
            for stream in marked:
                pipe.zincrby(self._claimable, 1, keys.org_of_key(stream))
            for group in groups:
                pipe.xreadgroup(self.group, self.consumer, {s: ">" for s in group}, count=count)
            popped, *results = await pipe.execute(raise_on_error=False)
        if isinstance(popped, Exception):
            raise popped
        self.hot |= {self._stream(org) for org, _ in popped}  # kept even if the read failed
        marks, results = results[: len(marked)], results[len(marked) :]
        for mark in marks:
            if isinstance(mark, Exception):
                raise mark
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
        found = [stream for stream, entries in replies if entries and stream in self._swept]
        self._swept = set()
        if found:
            await claimable(self.redis, self.group, found)
        return replies


async def claimable(redis: aioredis.Redis, group: Stage, streams: list[str]) -> None:
    """Put streams in the claim path's index (`keys.claimable`): ZINCRBY, so that the claim
    path, which drops a stream seen with nothing pending only if its score has not moved since,
    never drops one that a read delivered to meanwhile."""
    async with redis.pipeline(transaction=False) as pipe:
        for stream in streams:
            pipe.zincrby(keys.claimable(group), 1, keys.org_of_key(stream))
        await pipe.execute()
