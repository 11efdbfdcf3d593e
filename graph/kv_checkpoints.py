"""A shallow conversation checkpointer on plain Redis keys, for a Redis Cluster.

langgraph-checkpoint-redis finds checkpoints through the Query Engine (FT.SEARCH). On an
open-source Redis Cluster an index lives on the one node FT.CREATE reached and covers only that
node's keys (tried on Redis 8.2: the other primaries answer "no such index", and a search on the
first finds nothing stored elsewhere); a coordinated index is a feature of Redis Enterprise and
Redis Cloud. So in cluster mode the receptionist keeps its state with this saver instead: the
chat's latest checkpoint in one hash and that checkpoint's pending writes in another, both named
with the thread id as their hash tag, so a thread's keys share one slot and are written in one
MULTI.

Shallow, like the saver it replaces (graph/checkpoints.py): only the latest checkpoint of a
thread is kept, which is all a turn reads. Every write sets the TTL. The key prefixes are the
ones the erasure knows (storage/keys.py, CHECKPOINT_KEY_PREFIXES).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Sequence
from typing import Any

import ormsgpack
import redis.asyncio as aioredis
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_checkpoint_metadata,
)


def _bytes(value: bytes | str) -> bytes:
    """The saver's client is binary; a decoding client would hand back text."""
    return value if isinstance(value, bytes) else value.encode()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# The thread id in a hash tag: a thread's two keys share one slot (and chats spread over the
# cluster's nodes).
def _checkpoint_key(thread: str, ns: str) -> str:
    return f"checkpoint:{{{thread}}}:{ns}"


def _writes_key(thread: str, ns: str, checkpoint_id: str) -> str:
    return f"checkpoint_write:{{{thread}}}:{ns}:{checkpoint_id}"


class KeyValueShallowSaver(BaseCheckpointSaver[str]):
    """The latest checkpoint of each thread, on plain keys (no index): cluster-safe."""

    def __init__(self, client: aioredis.Redis | Any, ttl_min: int) -> None:
        super().__init__()
        self.client = client  # binary (no decode_responses): checkpoints are bytes
        self.ttl_s = int(ttl_min * 60)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        conf = config["configurable"]
        thread, ns = conf["thread_id"], conf.get("checkpoint_ns", "")
        saved = await self.client.hgetall(_checkpoint_key(thread, ns))
        if not saved:
            return None
        checkpoint_id = _text(saved[b"id"])
        wanted = get_checkpoint_id(config)
        if wanted and wanted != checkpoint_id:
            return None  # shallow: older checkpoints are not kept
        writes = await self.client.hgetall(_writes_key(thread, ns, checkpoint_id))
        pending = sorted(
            (ormsgpack.unpackb(_bytes(v)) for v in writes.values()), key=lambda w: (w[0], w[1])
        )
        parent = _text(saved.get(b"parent", b""))
        return CheckpointTuple(
            config={
                "configurable": {
                    "thread_id": thread,
                    "checkpoint_ns": ns,
                    "checkpoint_id": checkpoint_id,
                }
            },
            checkpoint=self.serde.loads_typed(
                (_text(saved[b"type"]), _bytes(saved[b"checkpoint"]))
            ),
            metadata=self.serde.loads_typed((_text(saved[b"mtype"]), _bytes(saved[b"metadata"]))),
            parent_config=(
                {
                    "configurable": {
                        "thread_id": thread,
                        "checkpoint_ns": ns,
                        "checkpoint_id": parent,
                    }
                }
                if parent
                else None
            ),
            pending_writes=[
                (task_id, channel, self.serde.loads_typed((kind, data)))
                for _, _, task_id, channel, kind, data in pending
            ],
        )

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """The one checkpoint of the thread (a shallow saver has no history to list)."""
        if config is None or limit == 0:
            return
        found = await self.aget_tuple(config)
        if found is None:
            return
        if filter and any(found.metadata.get(k) != v for k, v in filter.items()):
            return
        if (
            before
            and get_checkpoint_id(before)
            and found.config["configurable"]["checkpoint_id"] >= str(get_checkpoint_id(before))
        ):
            return
        yield found

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        conf = config["configurable"]
        thread, ns = conf["thread_id"], conf.get("checkpoint_ns", "")
        parent = conf.get("checkpoint_id") or ""
        kind, data = self.serde.dumps_typed(checkpoint)
        mkind, mdata = self.serde.dumps_typed(get_checkpoint_metadata(config, metadata))
        key = _checkpoint_key(thread, ns)
        previous = await self.client.hget(key, "id")
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(
                key,
                mapping={
                    "id": checkpoint["id"],
                    "parent": parent,
                    "type": kind,
                    "checkpoint": data,
                    "mtype": mkind,
                    "metadata": mdata,
                },
            )
            pipe.expire(key, self.ttl_s)
            if previous and _text(previous) != checkpoint["id"]:
                # The writes of the checkpoint this one replaces are never read again.
                pipe.delete(_writes_key(thread, ns, _text(previous)))
            await pipe.execute()
        return {
            "configurable": {
                "thread_id": thread,
                "checkpoint_ns": ns,
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
        conf = config["configurable"]
        thread, ns = conf["thread_id"], conf.get("checkpoint_ns", "")
        key = _writes_key(thread, ns, conf["checkpoint_id"])
        fields: dict[str, bytes] = {}
        special: set[str] = set()
        for idx, (channel, value) in enumerate(writes):
            index = WRITES_IDX_MAP.get(channel, idx)
            kind, data = self.serde.dumps_typed(value)
            field = f"{task_id}:{index}"
            if index < 0:
                special.add(field)  # an error, an interrupt...: the latest one wins
            fields[field] = ormsgpack.packb([task_id, index, task_id, channel, kind, data])
        if not fields:
            return
        async with self.client.pipeline(transaction=True) as pipe:
            for field, packed in fields.items():
                if field in special:
                    pipe.hset(key, field, packed)
                else:  # a write already saved for this task and index is kept (as InMemorySaver)
                    pipe.hsetnx(key, field, packed)
            pipe.expire(key, self.ttl_s)
            await pipe.execute()

    async def adelete_thread(self, thread_id: str) -> None:
        key = _checkpoint_key(thread_id, "")
        previous = await self.client.hget(key, "id")
        doomed = [key] + ([_writes_key(thread_id, "", _text(previous))] if previous else [])
        await self.client.delete(*doomed)

    def get_next_version(self, current: str | None, channel: None) -> str:
        # As langgraph's own savers: a counter, then a random tie-breaker.
        number = 0 if current is None else int(str(current).split(".")[0])
        return f"{number + 1:032}.{random.random():016}"
