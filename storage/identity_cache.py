"""Known chats' identities kept in this process's memory, dropped when PostgreSQL says they changed.

Every inbound message used to read its chat identity (and consent) before storing the message:
a round trip and a query per message for rows that change a few times in a chat's life. Here a
known chat's entry is served from memory for up to a day.

In this process, not in Redis: a Redis read would cost the same round trip the cache saves, and
an entry is a few hundred bytes, so a process holds `MAX_ENTRIES` (the busiest chats, least
recently used dropped first) in a few MB. Each process fills its own on its first message of a
chat.

What keeps it right is a change log, not the code that changes rows: the CRM is the same
PostgreSQL, and clinic staff edit contacts and chats in SQL or the Supabase dashboard. Triggers
(storage/migrations/011_identity_changes.sql) log the id of every chat identity, contact or
consent that changes; `run` reads the log about once a second in every process (one indexed
query) and drops the entries those ids belong to. A change made in this process also drops its
entry at once (`drop_row`). Polled rather than LISTENed: behind PgBouncer in transaction mode or
Supabase's pooler a LISTEN is lost with its server session.

- An entry is served only while the last poll succeeded less than `MAX_LAG_S` ago: with
  PostgreSQL unreachable nothing is trusted (every lookup goes to PostgreSQL, and fails as it
  would have). After a gap longer than the log's retention, everything is dropped.
- A poll asks for the changes since the previous poll's start less `SLACK_S`: a change is logged
  when its statement runs and seen once its transaction commits, up to that much later; an entry
  loaded from a snapshot before the commit is dropped by a later poll. A change left uncommitted
  longer than that can be missed; the day's lifetime bounds what that costs.
- Callers decide what they may take from an entry: storage/chats.py serves only chats whose bot
  is on and that have not opted out (a change the other way is read fresh), and the agent and
  the sender read the chat fresh before a turn or a send, so a take-over or an opt-out made a
  moment ago in another process is honoured even before the poll drops the entry.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Generic, TypeVar

from storage.db import Db, returned_row

log = logging.getLogger(__name__)

V = TypeVar("V")
Key = tuple[str, str]  # (organization, phone)

TTL_S = 24 * 3600.0  # an entry's lifetime, whatever the log says
MAX_ENTRIES = 50_000
POLL_S = 1.0
MAX_LAG_S = 5.0  # no successful poll for this long: entries are not served
SLACK_S = 30.0  # how much later than its statement a logged change may commit
RETENTION_S = 3600.0  # the log's rows older than this are trimmed
TRIM_EVERY_S = 300.0


class IdentityCache(Generic[V]):
    """Entries keyed by (organization, phone), each also known by the row ids it was read from
    (its chat identity's and its contact's): the change log names rows by id."""

    def __init__(
        self,
        *,
        ttl_s: float = TTL_S,
        max_entries: int = MAX_ENTRIES,
        max_lag_s: float = MAX_LAG_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.max_lag_s = max_lag_s
        self.clock = clock
        self._entries: OrderedDict[Key, tuple[float, V, tuple[str, ...]]] = OrderedDict()
        self._by_row: dict[str, set[Key]] = {}
        self._synced_at: float | None = None  # when the last successful poll started (clock)
        self._since: datetime | None = None  # and PostgreSQL's time then
        self._trimmed_at = float("-inf")

    def serving(self) -> bool:
        """Whether entries may be trusted: the change log was read a moment ago."""
        return self._synced_at is not None and self.clock() - self._synced_at <= self.max_lag_s

    def get(self, org: str, phone: str) -> V | None:
        if not self.serving():
            return None
        found = self._entries.get((org, phone))
        if found is None:
            return None
        loaded_at, value, _ = found
        if self.clock() - loaded_at >= self.ttl_s:
            self.drop(org, phone)
            return None
        self._entries.move_to_end((org, phone))
        return value

    def get_by_row(self, row_id: str) -> V | None:
        """The entry read from this chat identity or contact, if one is cached."""
        for org, phone in list(self._by_row.get(row_id, ())):
            return self.get(org, phone)
        return None

    def put(self, org: str, phone: str, value: V, rows: Iterable[str | None]) -> None:
        """Keep what was just read from PostgreSQL; `rows`: the ids of the rows it came from."""
        key = (org, phone)
        self.drop(org, phone)
        ids = tuple(r for r in rows if r)
        self._entries[key] = (self.clock(), value, ids)
        for row_id in ids:
            self._by_row.setdefault(row_id, set()).add(key)
        while len(self._entries) > self.max_entries:
            self.drop(*next(iter(self._entries)))

    def drop(self, org: str, phone: str) -> None:
        found = self._entries.pop((org, phone), None)
        if found is None:
            return
        for row_id in found[2]:
            keys = self._by_row.get(row_id)
            if keys is not None:
                keys.discard((org, phone))
                if not keys:
                    del self._by_row[row_id]

    def drop_row(self, row_id: str) -> None:
        """Forget what was read from this chat identity or contact (this process changed it)."""
        for org, phone in list(self._by_row.get(row_id, ())):
            self.drop(org, phone)

    def clear(self) -> None:
        self._entries.clear()
        self._by_row.clear()

    def forget_sync(self) -> None:
        """Serve nothing until the next successful poll (a process that stops polling)."""
        self._synced_at = None
        self._since = None
        self.clear()

    def __len__(self) -> int:
        return len(self._entries)

    async def poll(self, db: Db) -> int:
        """Read the change log once and drop what changed; returns how many rows it named."""
        started = self.clock()
        row = returned_row(
            await db.fetchrow(
                "select now() as now, array(select distinct row_id::text from identity_changes"
                " where changed_at > $1::timestamptz - make_interval(secs => $2)) as changed",
                self._since,
                SLACK_S,
            )
        )
        now: datetime = row["now"]
        changed: list[str] = row["changed"]
        if self._since is None or (now - self._since).total_seconds() > RETENTION_S - SLACK_S:
            self.clear()  # the log no longer covers the gap (or this is the first poll)
        for row_id in changed:
            self.drop_row(row_id)
        self._since = now
        self._synced_at = started
        if started - self._trimmed_at >= TRIM_EVERY_S:
            self._trimmed_at = started
            await db.execute(
                "delete from identity_changes where changed_at < now() - make_interval(secs => $1)",
                RETENTION_S,
            )
        return len(changed)

    async def run(self, db: Db, stop: asyncio.Event, every_s: float = POLL_S) -> None:
        """Poll until `stop`; a failed poll is logged once per outage and tried again."""
        failing = False
        try:
            while not stop.is_set():
                try:
                    await self.poll(db)
                    if failing:
                        log.info("identity cache: the change log is readable again")
                    failing = False
                except Exception as exc:  # noqa: BLE001 - entries stop being served (MAX_LAG_S)
                    if not failing:
                        log.warning("identity cache: cannot read the change log: %r", exc)
                    failing = True
                try:
                    await asyncio.wait_for(stop.wait(), every_s)
                except asyncio.TimeoutError:
                    pass
        finally:
            self.forget_sync()
