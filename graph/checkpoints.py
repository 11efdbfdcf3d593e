"""The conversation checkpointer: langgraph-checkpoint-redis on the project's Redis.

A turn may be abandoned after its graph ran (newer messages came before it did anything:
storage/turns.commit); its checkpoint must then not be written, or the next turn would start
from a state that answered messages nobody was told about. Inside `held()`, the saver keeps a
run's checkpoint writes in memory instead of writing them; the agent writes them (`flush`)
once the turn is committed, or drops them with the turn.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import redis.asyncio as aioredis
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata
from langgraph.checkpoint.redis.ashallow import AsyncShallowRedisSaver
from redis.asyncio.cluster import RedisCluster

from graph.kv_checkpoints import KeyValueShallowSaver


class _Holds:
    """Makes a saver's writes wait inside `held()` (outside it: written at once). Mixed in
    before the saver class, so `super()` is the saver that really writes."""

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        writes = _HELD.get()
        if writes is None:
            return await self.write_put(config, checkpoint, metadata, new_versions)
        writes.saver = self
        writes.calls.append(("put", (config, checkpoint, metadata, new_versions)))
        configurable = config["configurable"]
        return {  # what the saver itself answers: the checkpoint the later writes belong to
            "configurable": {
                "thread_id": configurable["thread_id"],
                "checkpoint_ns": configurable.get("checkpoint_ns", ""),
                "checkpoint_id": checkpoint["id"],
            }
        }

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        held_writes = _HELD.get()
        if held_writes is None:
            return await self.write_writes(config, writes, task_id, task_path)
        held_writes.saver = self
        held_writes.calls.append(("writes", (config, list(writes), task_id, task_path)))

    async def write_put(self, *args: Any) -> RunnableConfig:
        result: RunnableConfig = await super().aput(*args)  # type: ignore[misc]
        return result

    async def write_writes(self, *args: Any) -> None:
        await super().aput_writes(*args)  # type: ignore[misc]


@dataclass
class HeldWrites:
    """The checkpoint writes of one turn, in the order LangGraph made them."""

    saver: _Holds | None = None
    # ("put", (config, checkpoint, metadata, versions)) or ("writes", (config, writes, task,
    # path)): replayed in this order, since the saver's writes refer to its latest checkpoint.
    calls: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)

    async def flush(self) -> None:
        """Write what the turn's graph would have written (a turn that wrote nothing: nothing)."""
        calls, self.calls = self.calls, []
        if self.saver is None:
            return
        for kind, args in calls:
            if kind == "put":
                await self.saver.write_put(*args)
            else:
                await self.saver.write_writes(*args)


# Set by `held()` for the task running a turn; LangGraph's tasks inherit it (context copy).
_HELD: ContextVar[HeldWrites | None] = ContextVar("held_checkpoint_writes", default=None)


@contextmanager
def held() -> Iterator[HeldWrites]:
    """Checkpoint writes made inside are kept, not written, until `flush()`."""
    writes = HeldWrites()
    token = _HELD.set(writes)
    try:
        yield writes
    finally:
        _HELD.reset(token)


class HoldingShallowSaver(_Holds, AsyncShallowRedisSaver):
    """AsyncShallowRedisSaver whose writes wait inside `held()`."""


class HoldingKeyValueSaver(_Holds, KeyValueShallowSaver):
    """The cluster's key-value saver (graph/kv_checkpoints.py), its writes waiting likewise."""


async def checkpointer_on(client: aioredis.Redis, ttl_min: int) -> HoldingShallowSaver:
    """A set-up saver whose checkpoints expire ttl_min minutes after their chat's last turn.

    Shallow: only a chat's latest state is ever read, so older checkpoints are not kept (less
    Redis memory, and about 3 ms less per turn in make bench). No refresh on read: every turn
    that reads the checkpoint writes it again at its end, and the write sets the TTL (one
    Redis round trip less per turn).
    """
    saver = HoldingShallowSaver(
        redis_client=client, ttl={"default_ttl": ttl_min, "refresh_on_read": False}
    )
    await saver.asetup()
    return saver


@asynccontextmanager
async def open_checkpointer(
    redis_url: str, ttl_min: int, max_connections: int = 256, cluster: bool = False
) -> AsyncIterator[HoldingShallowSaver | HoldingKeyValueSaver]:
    """The process's checkpointer, on its own client with a blocking pool: hundreds of
    concurrent turns wait for a connection instead of failing with "Too many connections".
    Entered once per process (the connection must outlive every graph that uses it).

    On a Redis Cluster, the key-value saver: the Query Engine's index does not span the nodes of
    an open-source cluster (graph/kv_checkpoints.py).
    """
    if cluster:
        cluster_client = RedisCluster.from_url(redis_url, max_connections=max_connections)
        try:
            yield HoldingKeyValueSaver(cluster_client, ttl_min)
        finally:
            await cluster_client.aclose()
        return
    client = aioredis.Redis(
        connection_pool=aioredis.BlockingConnectionPool.from_url(
            redis_url, max_connections=max_connections, timeout=30
        )
    )
    try:
        yield await checkpointer_on(client, ttl_min)
    finally:
        await client.aclose()
