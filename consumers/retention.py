"""retention: each organization's `retention_*_days` settings (storage/org_settings.py), enforced
by the scheduler role once per RETENTION_EVERY_S.

- retention_messages_days: older chat messages are deleted, their media files first; the chats'
  cached recent messages (Redis) are dropped too, so the prompt never shows a deleted message.
- retention_media_days: older media files are deleted; the message keeps its text (transcript,
  description) and records when its file went.
- retention_dead_letters_days: older dead letters are trimmed (the deployment-wide
  DEAD_LETTER_RETENTION_DAYS still applies: this only shortens it).

However many schedulers run, one does it per interval (a Redis key set for the interval). The
age of a message is measured on Deps.clock; a dead letter's on Redis's clock, which named it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from consumers.understanding import build_store
from ops.deps import Deps
from storage import dead_letters, keys, retention
from storage.media_store import MediaStore

log = logging.getLogger(__name__)

BATCH = 500  # rows per statement: no long transaction, and media deleted before their rows


class Retention:
    def __init__(self, deps: Deps, store: MediaStore | None = None) -> None:
        self.deps = deps
        self.store = store

    async def tick(self) -> dict[str, int]:
        """One run, if no other process ran one within the interval; returns what it deleted."""
        every_ms = max(1, int(self.deps.settings.retention_every_s * 1000))
        if not await self.deps.redis.set(keys.RETENTION_RUN, "1", nx=True, px=every_ms):
            return {}
        return await self.run_once()

    async def run_once(self) -> dict[str, int]:
        deps = self.deps
        store = self.store or build_store(deps)
        now = datetime.fromtimestamp(deps.clock(), timezone.utc)
        totals = {"messages": 0, "media_files": 0, "dead_letters": 0}
        for policy in await retention.policies(deps.pool):
            if policy.messages_days:
                n, files = await self._messages(
                    store, policy.org, now - timedelta(days=policy.messages_days)
                )
                totals["messages"] += n
                totals["media_files"] += files
            if policy.media_days:
                totals["media_files"] += await self._media(
                    store, policy.org, now, now - timedelta(days=policy.media_days)
                )
            if policy.dead_letters_days:
                totals["dead_letters"] += await self._dead_letters(
                    policy.org, policy.dead_letters_days
                )
        if any(totals.values()):
            log.info(
                "retention deleted %(messages)d messages, %(media_files)d media files, "
                "%(dead_letters)d dead letters",
                totals,
            )
        return totals

    async def _messages(self, store: MediaStore, org: str, before: datetime) -> tuple[int, int]:
        deleted = files = 0
        while rows := await retention.old_messages(self.deps.pool, org, before, BATCH):
            paths = [path for _, _, path in rows if path]
            if paths:
                files += await store.delete(paths)
            deleted += await retention.delete_messages(self.deps.pool, org, [i for i, _, _ in rows])
            chats = {phone for _, phone, _ in rows}
            await self.deps.redis.delete(*(keys.recent(org, phone) for phone in chats))
        return deleted, files

    async def _media(self, store: MediaStore, org: str, now: datetime, before: datetime) -> int:
        files = 0
        while rows := await retention.old_media(self.deps.pool, org, before, BATCH):
            files += await store.delete([path for _, path in rows])
            await retention.forget_media(self.deps.pool, org, [i for i, _ in rows], now)
        return files

    async def _dead_letters(self, org: str, days: float) -> int:
        seconds, micros = await self.deps.redis.time()
        now_ms = seconds * 1000 + micros // 1000
        oldest_ms = max(0, now_ms - int(days * dead_letters.DAY_MS))
        return int(
            await self.deps.redis.xtrim(
                keys.dead_letters(org), minid=f"{oldest_ms}-0", approximate=False
            )
        )
