"""The consumer-group runtime: read, order, retry, claim back, dead-letter, drain.

One `StageWorker` serves one stage (a consumer group named after it) over every organization's
stream. Fairness: one XREADGROUP reads at most `read_count` entries from each organization's
stream, so a tenant with a backlog of 10,000 gets no more per read than a tenant with one
message. Order: entries with the same chat key run one after another; different chats run
concurrently up to `concurrency`. An entry is acknowledged only after its handler returned, so
its effect is durable; a worker that dies leaves its entries pending, and another worker claims
them back after `claim_idle_ms`.

The claim checks visit the streams in `keys.claimable(stage)`, which every read marks before it
delivers (consumers/reads.py), not every registered stream: an idle tenant costs no command. A
stream seen with nothing pending leaves the index. As a safety net (a mark lost with Redis, or
written after its read on a Cluster, where a pipeline's order across nodes is not kept) the next
`sweep_streams` registered streams are checked every `claim_sweep_every_s`, round robin.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, cast

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT, FieldT, StreamIdT

from consumers.acks import Acker
from consumers.outcomes import Outcome
from consumers.reads import SWEEP_STREAMS, ReadSet, claimable, ensure_groups
from consumers.retries import RetryPolicy, Tries
from ops import metrics
from ops.outages import Dependency, Outages, dependency_of
from storage import dead_letters, keys
from storage.events import (
    BadEvent,
    DeadLetter,
    StreamEvent,
    chat_key,
    decode,
    encode_dead_letter,
)
from storage.keys import STAGE_STREAM, Stage, Stream
from storage.redis_client import PendingEntry, claimed, text_set

log = logging.getLogger(__name__)


class Retry(Exception):
    """A transient failure: the entry is tried again after a backoff."""


class Poison(Exception):
    """The entry can never succeed: it goes to the dead-letter stream at once."""


class HandlerTimeout(Exception):
    """The handler ran past the stage's time limit (HANDLER_TIMEOUT_S): tried again."""


@dataclass(frozen=True)
class Delivery:
    stream: str
    entry_id: str
    deliveries: int  # how many times Redis has handed this entry to a consumer
    attempt: int = 1  # in-process attempt number


Handler = Callable[[StreamEvent, Delivery], Awaitable[Outcome | None]]
"""Returns None (acked) or how else the entry ended (`Outcome.DUPLICATE`, ...); raises Retry or
Poison."""


@dataclass
class StageConfig:
    stage: Stage  # the consumer group; it reads the stream STAGE_STREAM pairs it with
    concurrency: int = 64
    read_count: int = 16
    block_ms: int = 1000
    claim_idle_ms: int = 30_000
    claim_every_s: float = 5.0
    max_deliveries: int = 5
    retry_attempts: int = 4
    retry_base_s: float = 0.5
    retry_max_s: float = 10.0
    drain_timeout_s: float = 20.0
    org_refresh_s: float = 2.0
    dead_letter_max_entries: int = 10_000
    dead_letter_retention_days: float = 14.0
    handler_timeout_s: float = 180.0
    dependency_outage_max_s: float = 900.0
    sweep_every_s: float = 10.0  # read the next sweep_streams streams, signalled or not
    sweep_streams: int = SWEEP_STREAMS
    claim_sweep_every_s: float = 60.0  # check the next sweep_streams streams for stale entries
    registry_reload_s: float = 60.0  # read the whole registry, even if its size did not change

    @property
    def stream(self) -> Stream:
        return STAGE_STREAM[self.stage]

    @property
    def retries(self) -> RetryPolicy:
        return RetryPolicy(
            attempts=self.retry_attempts,
            base_s=self.retry_base_s,
            max_s=self.retry_max_s,
            outage_max_s=self.dependency_outage_max_s,
        )


@dataclass
class _Entry:
    stream: str
    entry_id: str
    fields: dict[str, str]
    deliveries: int
    started: float = field(default_factory=time.monotonic)
    event: StreamEvent | None = None  # decoded once, at dispatch
    decode_error: str | None = None


async def ensure_group(redis: aioredis.Redis, stream: str, group: str) -> None:
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


class StageWorker:
    def __init__(
        self,
        redis: aioredis.Redis,
        config: StageConfig,
        handler: Handler,
        consumer: str,
        on_dead_letter: Callable[[StreamEvent], Awaitable[None]] | None = None,
        outages: Outages | None = None,
    ) -> None:
        self.redis = redis
        self.outages = outages  # shared by the process's stages: which dependencies are down
        # Dependencies this stage met down: its reads slow down until they answer again.
        self._waiting_on: set[Dependency] = set()
        self._outage_pause_s = 0.0
        self.config = config
        self.handler = handler
        self.consumer = consumer
        self.on_dead_letter = on_dead_letter  # the stage's own clean-up for an entry given up on
        self.acker = Acker(redis, config.stage)
        self._orgs: set[str] = set()
        self._queues: dict[str, deque[_Entry]] = {}
        self._runners: dict[str, asyncio.Task[None]] = {}
        # (stream, entry id) -> entry, queued or running. Never the id alone: two organizations'
        # streams hand out the same id when they are written in the same millisecond, and an
        # entry taken for a duplicate was ignored until the claim path rescued it (the 30 s stall).
        self._in_flight: dict[tuple[str, str], _Entry] = {}
        self._slots = asyncio.Semaphore(config.concurrency)
        self._capacity = asyncio.Event()
        self._capacity.set()
        self._stopping = False
        self._reads = ReadSet(
            redis,
            config.stream,
            config.stage,
            consumer,
            read_count=config.read_count,
            block_ms=config.block_ms,
            sweep_every_s=config.sweep_every_s,
            sweep_streams=config.sweep_streams,
        )
        self._registry_size = -1
        self._registry_loaded = 0.0
        self._claim_sweep_from = 0
        self._read_from: set[str] = set()  # streams read since the last trim

    @property
    def group(self) -> Stage:
        return self.config.stage

    # ---- discovery -------------------------------------------------------------------------

    async def _refresh_orgs(self) -> None:
        """Reread the registry when its size changed, and every registry_reload_s anyway: read
        every org_refresh_s, 10,000 organizations made 20,000 members a second to parse for the
        four stages of one process. (A new organization's entries do not wait for this: their
        signal names it.)"""
        size = await self.redis.scard(keys.ORG_REGISTRY)
        if size == self._registry_size and (
            time.monotonic() - self._registry_loaded < self.config.registry_reload_s
        ):
            return
        orgs = set(text_set(await self.redis.smembers(keys.ORG_REGISTRY)))
        new = [keys.stream(org, self.config.stream) for org in orgs - self._orgs]
        await ensure_groups(self.redis, new, self.group)
        self._orgs = orgs
        self._reads.orgs = sorted(orgs)
        self._registry_size, self._registry_loaded = len(orgs), time.monotonic()

    # ---- main loops ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set, then drain in-flight work or hand it back."""
        await self._refresh_orgs()
        housekeeping = asyncio.create_task(self._housekeeping(stop))
        try:
            await self._read_loop(stop)
        finally:
            self._stopping = True
            housekeeping.cancel()
            await asyncio.gather(housekeeping, return_exceptions=True)
            await self._drain()

    async def _read_loop(self, stop: asyncio.Event) -> None:
        outage_s = 0.0
        while not stop.is_set():
            if len(self._in_flight) >= self.config.concurrency:
                self._capacity.clear()
                await _wait_any(self._capacity.wait(), stop.wait())
                continue
            if self._waiting_on:
                await self._slow_down(stop)
            try:
                replies = await self._reads.read(self.config.concurrency - len(self._in_flight))
                outage_s = 0.0
            except (RedisConnectionError, RedisTimeoutError) as exc:
                # Redis restarting or failing over: keep trying; never let the stage die.
                outage_s = min(self.config.retry_max_s, max(0.1, outage_s * 2))
                metrics.dependency_errors.labels(Dependency.REDIS, type(exc).__name__).inc()
                log.warning(
                    "%s: cannot read from Redis (%s); again in %.1fs", self.group, exc, outage_s
                )
                await _wait_any(stop.wait(), asyncio.sleep(outage_s))
                continue
            for stream, entries in replies:
                self._read_from.add(stream)
                for entry_id, fields in entries:
                    self._dispatch(_Entry(stream, entry_id, fields, deliveries=1))

    async def _slow_down(self, stop: asyncio.Event) -> None:
        """While a dependency this stage met is down, pause between reads: entries read now
        would only wait too. The entries in flight keep retrying on their own."""
        self._waiting_on &= set(await self.outages.recheck()) if self.outages else set()
        if not self._waiting_on:
            self._outage_pause_s = 0.0
            return
        self._outage_pause_s = min(self.config.retry_max_s, max(0.25, self._outage_pause_s * 2))
        await _wait_any(stop.wait(), asyncio.sleep(self._outage_pause_s))

    async def _housekeeping(self, stop: asyncio.Event) -> None:
        last_claim = last_sweep = 0.0
        while not stop.is_set():
            try:
                await self._refresh_orgs()
                if time.monotonic() - last_claim >= self.config.claim_every_s:
                    last_claim = time.monotonic()
                    await self._keep_own_entries()
                    await self._claim_stale()
                    if time.monotonic() - last_sweep >= self.config.claim_sweep_every_s:
                        last_sweep = time.monotonic()
                        await self._claim_sweep()
                    # Only streams this worker read from have anything new to trim.
                    read_from, self._read_from = self._read_from, set()
                    for stream in sorted(read_from):
                        await self._trim(stream)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: housekeeping failed; will try again", self.group)
            await _wait_any(stop.wait(), asyncio.sleep(self.config.org_refresh_s))

    # ---- claiming back, keeping, trimming ---------------------------------------------------

    async def _claim_stale(self) -> None:
        """Take over entries another consumer left pending longer than claim_idle_ms, in the
        streams of the claim index; drop from it those with nothing pending.

        One round trip per 500 streams looks at them all; only a stream with stale entries
        costs more.
        """
        index = keys.claimable(self.group)
        marked = {
            keys.stream(org, self.config.stream): score
            for org, score in text_scores(await self.redis.zrange(index, 0, -1, withscores=True))
        }
        idle = await self._check(list(marked))
        if idle:
            # Only if its score has not moved since the ZRANGE: a read that delivered entries
            # meanwhile marked it again (reads.claimable), and it stays.
            async with self.redis.pipeline(transaction=False) as pipe:
                for stream in idle:
                    pipe.eval(_UNMARK, 1, index, keys.org_of_key(stream), repr(marked[stream]))
                await pipe.execute()

    async def _claim_sweep(self) -> None:
        """The safety net: the next sweep_streams registered streams, round robin; one found
        with entries pending (its mark lost) goes back into the index."""
        streams = self._streams()
        if len(streams) > self.config.sweep_streams:
            start = self._claim_sweep_from % len(streams)
            self._claim_sweep_from = start + self.config.sweep_streams
            streams = (streams[start:] + streams[:start])[: self.config.sweep_streams]
        idle = await self._check(streams)
        lost = [stream for stream in streams if stream not in idle]
        if lost:
            await claimable(self.redis, self.group, lost)

    def _streams(self) -> list[str]:
        return [keys.stream(org, self.config.stream) for org in self._reads.orgs]

    async def _check(self, streams: list[str]) -> set[str]:
        """Claim the stale entries of these streams; the streams with nothing pending at all."""
        empty: set[str] = set()
        for i in range(0, len(streams), 500):
            chunk = streams[i : i + 500]
            async with self.redis.pipeline(transaction=False) as pipe:
                for stream in chunk:
                    pipe.xpending(stream, self.group)
                    pipe.xpending_range(
                        stream,
                        self.group,
                        min="-",
                        max="+",
                        count=100,
                        idle=self.config.claim_idle_ms,
                    )
                found = await pipe.execute(raise_on_error=False)
            for n, stream in enumerate(chunk):
                summary, pending = found[2 * n], found[2 * n + 1]
                if isinstance(pending, ResponseError) and "NOGROUP" in str(pending):
                    empty.add(stream)  # no group yet: a read answering NOGROUP creates it
                    continue
                for result in (summary, pending):
                    if isinstance(result, Exception):
                        raise result
                if not summary["pending"]:
                    empty.add(stream)
                if pending:
                    await self._claim_items(stream, pending)
        return empty

    async def _claim_items(self, stream: str, pending: list[PendingEntry]) -> None:
        for item in pending:
            entry_id = item["message_id"]
            if (stream, entry_id) in self._in_flight or self.acker.settling(stream, entry_id):
                continue  # ours: being handled, or handled and its XACK on the way
            ids: list[StreamIdT] = [entry_id]
            taken = await self.redis.xclaim(
                stream, self.group, self.consumer, self.config.claim_idle_ms, ids
            )
            for claimed_id, fields in claimed(taken):
                deliveries = int(item["times_delivered"]) + 1
                entry = _Entry(stream, claimed_id, fields or {}, deliveries)
                if not fields:  # deleted from the stream while pending: nothing left to do
                    await self.redis.xack(stream, self.group, claimed_id)
                    continue
                metrics.stage_claimed.labels(self.group).inc()
                log.warning(
                    "%s: claimed %s %s from %s (delivery %d)",
                    self.group,
                    stream,
                    claimed_id,
                    item["consumer"],
                    deliveries,
                )
                if deliveries > self.config.max_deliveries:
                    await self._dead_letter(
                        entry,
                        None,
                        f"delivered {deliveries - 1} times "
                        "without being acknowledged (worker crashed or hung)",
                    )
                else:
                    self._dispatch(entry)

    async def _keep_own_entries(self) -> None:
        """Reset the idle time of long-running entries so no other worker claims them."""
        threshold = time.monotonic() - self.config.claim_idle_ms / 2000
        by_stream: dict[str, list[StreamIdT]] = {}
        for entry in list(self._in_flight.values()):
            if entry.started < threshold:
                by_stream.setdefault(entry.stream, []).append(entry.entry_id)
        for stream, ids in by_stream.items():
            await self.redis.xclaim(stream, self.group, self.consumer, 0, ids, justid=True)

    async def _trim(self, stream: str) -> None:
        """Drop acknowledged entries: everything older than the oldest pending or unread one.

        The pending summary and the group's last-delivered id are read in one MULTI: read one
        after the other, a worker could read new entries in between, and a floor taken from
        the later last-delivered id would cut those entries while they are still pending.
        """
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xpending(stream, self.group)
            pipe.xinfo_groups(stream)
            summary, groups = await pipe.execute()
        if summary["pending"]:
            floor = summary["min"]
        else:
            group = next((g for g in groups if g["name"] == self.group), None)
            if group is None:
                return
            floor = group["last-delivered-id"]
            if floor == "0-0":
                return
            # last-delivered itself is acknowledged here; keep it, drop what is older.
        await self.redis.xtrim(stream, minid=floor, approximate=True)

    # ---- dispatch and handling ------------------------------------------------------------

    def _dispatch(self, entry: _Entry) -> None:
        if (entry.stream, entry.entry_id) in self._in_flight:
            return
        try:
            entry.event = decode(entry.fields)
            key = chat_key(entry.event)
        except BadEvent as exc:
            entry.decode_error = str(exc)
            key = f"bad:{entry.entry_id}"
        self._in_flight[(entry.stream, entry.entry_id)] = entry
        metrics.stage_in_flight.labels(self.group).set(len(self._in_flight))
        self._queues.setdefault(key, deque()).append(entry)
        if key not in self._runners:
            self._runners[key] = asyncio.create_task(self._run_key(key))

    async def _run_key(self, key: str) -> None:
        """Handle one chat's entries in order; the task ends when its queue is empty.

        An entry left pending (shutdown, or an ack that failed) stops its chat's queue: the
        entries behind it stay in flight and are handed back together, so their order holds.
        """
        queue = self._queues[key]
        try:
            while queue:
                entry = queue[0]
                try:
                    async with self._slots:
                        finished = await self._handle(entry)
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001 - an ack or dead-letter write failed
                    log.exception(
                        "%s: could not settle %s %s; it stays pending",
                        self.group,
                        entry.stream,
                        entry.entry_id,
                    )
                    finished = False
                if not finished:
                    self._abandon(queue)
                    return
                queue.popleft()
                self._release(entry)
        finally:
            if not queue:
                self._queues.pop(key, None)
            self._runners.pop(key, None)

    def _abandon(self, queue: deque[_Entry]) -> None:
        """Leave these entries pending for another worker, in order, without waiting for them."""
        if not self._stopping:
            # Not shutting down: let the normal claim path retry them after claim_idle_ms.
            for entry in queue:
                self._release(entry)
            queue.clear()

    def _release(self, entry: _Entry) -> None:
        self._in_flight.pop((entry.stream, entry.entry_id), None)
        metrics.stage_in_flight.labels(self.group).set(len(self._in_flight))
        self._capacity.set()

    async def _handle(self, entry: _Entry) -> bool:
        """Handle one entry; True once it is settled (acknowledged or dead-lettered).

        A failure while a dependency is down is waited out (up to dependency_outage_max_s)
        without using up the entry's attempts: only an entry that fails on its own, with its
        dependencies answering, goes to the dead-letter stream after retry_attempts.
        """
        started = time.monotonic()
        event = entry.event
        if event is None:
            await self._dead_letter(entry, None, entry.decode_error or "undecodable entry")
            return True
        if event.org != keys.org_of_key(entry.stream):
            # Put there by hand or by an edited replay: handling it would act on another
            # tenant's data (and its clean-up too, so the event is not passed on).
            await self._dead_letter(
                entry,
                None,
                f"the entry names organization {event.org!r}, "
                f"not the one of its stream {entry.stream}",
            )
            return True
        tries = Tries(self.config.retries)
        while True:
            delivery = Delivery(entry.stream, entry.entry_id, entry.deliveries, tries.attempt)
            try:
                outcome = await self._call(event, delivery)
            except asyncio.CancelledError:
                raise
            except Poison as exc:
                await self._dead_letter(entry, event, f"poison: {exc}")
                return True
            except Exception as exc:  # noqa: BLE001 - the loop boundary: every failure is retried
                reason = f"{type(exc).__name__}: {exc}"
                dependency = await self._dependency_down(exc, reason)
                if dependency is not None:
                    wait_s = tries.after_outage(dependency)
                    if wait_s is None:
                        await self._dead_letter(
                            entry,
                            event,
                            (
                                f"{dependency} was down for {tries.outage_s():.0f}s "
                                f"(DEPENDENCY_OUTAGE_MAX_S): {reason}"
                            ),
                        )
                        return True
                    metrics.outage_retries.labels(self.group, dependency).inc()
                    self._outcome(
                        Outcome.WAITING_FOR_DEPENDENCY, entry, reason, attempt=tries.attempt
                    )
                    if self._stopping:
                        return False
                    await asyncio.sleep(wait_s)
                    continue
                wait_s = tries.after_own_failure()
                if wait_s is None:
                    log.error(
                        "%s: %s %s failed on its last attempt",
                        self.group,
                        entry.stream,
                        entry.entry_id,
                        exc_info=not isinstance(exc, Retry),
                    )
                    await self._dead_letter(entry, event, reason)
                    return True
                self._outcome(
                    Outcome.RETRIED,
                    entry,
                    reason,
                    attempt=tries.attempt,
                    exc_info=not isinstance(exc, Retry),
                )
                if self._stopping:
                    return False  # left pending: handed back with the rest of its chat
                await asyncio.sleep(wait_s)
                tries.attempt += 1
                continue
            if self.outages is not None:
                self._outage_over(self.outages, tries.waited_on)
            self.acker.ack(entry.stream, entry.entry_id)
            metrics.stage_seconds.labels(self.group).observe(time.monotonic() - started)
            metrics.stage_latency.labels(self.group).observe(_age_s(entry.entry_id))
            self._outcome(outcome or Outcome.ACKED, entry)
            return True

    def _outage_over(self, outages: Outages, waited_on: Dependency | None) -> None:
        """An entry succeeded: the dependency it waited for is back, and so are those without a
        probe (Gupshup, the model) that this stage met down. Without this, an outage whose
        entries ended otherwise (dead-lettered, rejected) would slow the stage's reads and show
        in /readyz for good; one that is still down is marked again by its next failure."""
        if waited_on:
            outages.mark_up(waited_on)
        for dependency in self._waiting_on - set(outages.probes):
            outages.mark_up(dependency)

    async def _call(self, event: StreamEvent, delivery: Delivery) -> Outcome | None:
        """The handler, within the stage's time limit: a hung call is retried, not waited on."""
        limit = asyncio.timeout(self.config.handler_timeout_s)
        try:
            async with limit:
                return await self.handler(event, delivery)
        except TimeoutError:
            if not limit.expired():
                raise  # a timeout inside the handler (a statement, a request): its own error
            metrics.handler_timeouts.labels(self.group).inc()
            raise HandlerTimeout(
                f"the handler ran longer than {self.config.handler_timeout_s}s (HANDLER_TIMEOUT_S)"
            ) from None

    async def _dependency_down(self, exc: Exception, reason: str) -> Dependency | None:
        """The dependency whose outage caused this failure, or None: the entry's own failure.

        An exception that names no dependency (a timeout, a bug) is checked against the live
        dependencies: if one of them does not answer now, the entry is not to blame.
        """
        dependency = dependency_of(exc)
        if self.outages is None:
            return dependency
        if dependency is not None:
            self.outages.mark_down(dependency, reason)
        else:
            dependency = await self.outages.failing()
        if dependency is not None:
            self._waiting_on.add(dependency)
        return dependency

    async def _dead_letter(self, entry: _Entry, event: StreamEvent | None, error: str) -> None:
        org = keys.org_of_key(entry.stream)
        now_ms = int(time.time() * 1000)
        record = encode_dead_letter(
            DeadLetter(
                org=org,
                id="",
                stage=self.group,
                stream=entry.stream,
                entry_id=entry.entry_id,
                error=dead_letters.redact_error(error),
                deliveries=entry.deliveries,
                failed_at_ms=now_ms,
                payload=entry.fields,
            )
        )

        async def move() -> None:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.xadd(keys.dead_letters(org), cast(dict[FieldT, EncodableT], record))
                dead_letters.queue_trim(
                    pipe,
                    org,
                    now_ms=now_ms,
                    max_entries=self.config.dead_letter_max_entries,
                    retention_days=self.config.dead_letter_retention_days,
                )
                pipe.xack(entry.stream, self.group, entry.entry_id)
                await pipe.execute()

        await _shielded(move())
        self._outcome(Outcome.DEAD_LETTERED, entry, error)
        if self.on_dead_letter and event is not None:
            try:
                await self.on_dead_letter(event)
            except Exception:  # noqa: BLE001 - the dead letter itself is safe already
                log.exception(
                    "%s: clean-up after dead-lettering %s failed", self.group, entry.entry_id
                )

    def _outcome(
        self,
        outcome: Outcome,
        entry: _Entry,
        error: str | None = None,
        *,
        attempt: int | None = None,
        exc_info: bool = False,
    ) -> None:
        """Every entry's fate goes through here: one log format at the outcome's level, one
        metric."""
        metrics.stage_entries.labels(self.group, outcome).inc()
        log.log(
            outcome.level,
            "stage=%s outcome=%s stream=%s id=%s deliveries=%d%s%s",
            self.group,
            outcome,
            entry.stream,
            entry.entry_id,
            entry.deliveries,
            f" attempt={attempt}" if attempt else "",
            f" error={error!r}" if error else "",
            exc_info=exc_info,
        )

    # ---- shutdown --------------------------------------------------------------------------

    async def _drain(self) -> None:
        """Let in-flight entries finish for a while, then hand the rest back at once."""
        runners = list(self._runners.values())
        if runners:
            log.info("%s: draining %d entries", self.group, len(self._in_flight))
            done, still = await asyncio.wait(runners, timeout=self.config.drain_timeout_s)
            for task in still:
                task.cancel()
            await asyncio.gather(*still, return_exceptions=True)
        await self.acker.close()
        left = list(self._in_flight.values())
        if left:
            # Mark them idle for longer than claim_idle_ms: the next claim by any worker takes them.
            for entry in left:
                await _shielded(
                    self.redis.xclaim(
                        entry.stream,
                        self.group,
                        self.consumer,
                        0,
                        [entry.entry_id],
                        idle=self.config.claim_idle_ms + 1,
                        justid=True,
                    )
                )
                self._outcome(Outcome.HANDED_BACK, entry)
            self._in_flight.clear()


# Drop a stream from the claim index unless a read marked it again since it was looked at.
_UNMARK = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) == tonumber(ARGV[2]) then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
"""


def text_scores(reply: Any) -> list[tuple[str, float]]:
    """ZRANGE ... WITHSCORES."""
    return [(m.decode() if isinstance(m, bytes) else m, float(score)) for m, score in reply]


def _age_s(entry_id: str) -> float:
    """Seconds since the entry was added: its id starts with Redis's clock in milliseconds."""
    return max(0.0, time.time() - int(entry_id.split("-", 1)[0]) / 1000)


async def _shielded(awaitable: Awaitable[object]) -> object:
    """Acks and dead-letter writes finish even when the task is being cancelled."""
    return await asyncio.shield(asyncio.ensure_future(awaitable))


async def _wait_any(*awaitables: Awaitable[object]) -> None:
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
