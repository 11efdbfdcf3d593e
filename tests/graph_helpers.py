"""Shared pieces of the conversation tests: a fixed clock, the Redis checkpointer, a chat driver."""

from __future__ import annotations

import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from graph.checkpoints import HoldingKeyValueSaver, checkpointer_on
from graph.contract import TurnInput, TurnResult
from graph.receptionist import Receptionist
from storage import chats, memory

BOGOTA = ZoneInfo("America/Bogota")
NOW = datetime(2027, 3, 3, 10, 0, tzinfo=BOGOTA)  # a Wednesday morning


async def redis_saver(settings):
    """The production checkpointer on a client of its own (a new one acts as a restarted worker):
    on a cluster, the key-value one."""
    if settings.redis_cluster:
        return HoldingKeyValueSaver(
            RedisCluster.from_url(settings.redis_url), settings.checkpoint_ttl_min
        )
    return await checkpointer_on(
        aioredis.Redis.from_url(settings.redis_url), settings.checkpoint_ttl_min
    )


class Chat:
    """One customer talking to a Receptionist, the way the pipeline drives it."""

    def __init__(
        self, deps, receptionist: Receptionist, org: str, phone: str = "573001112233"
    ) -> None:
        self.deps, self.receptionist, self.org, self.phone = deps, receptionist, org, phone
        self.identity = None
        self.results: list[TurnResult] = []

    async def say(self, *texts: str, turn_id: str | None = None) -> TurnResult:
        if self.identity is None:
            self.identity = await chats.upsert_identity(self.deps.pool, self.org, self.phone, None)
        for text in texts:  # what enrich does for each stored inbound message
            await memory.remember(self.deps.redis, self.org, self.phone, "user", text)
        turn = TurnInput(
            org=self.org,
            chat=self.phone,
            contact_id=self.identity.contact_id,
            identity_id=self.identity.id,
            turn_id=turn_id or uuid.uuid4().hex,
            texts=list(texts),
        )
        result = await self.receptionist.run_turn(turn)
        for reply in result.replies:  # what the sender does for each sent reply
            await memory.remember(self.deps.redis, self.org, self.phone, "assistant", reply)
        self.results.append(result)
        return result

    @property
    def actions(self) -> list[str]:
        return [a["action"] for a in self.results[-1].actions]

    @property
    def text(self) -> str:
        return "\n".join(self.results[-1].replies)
