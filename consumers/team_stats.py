"""The scrape-time sampler of the customers waiting for a person of the clinic (one query per
scrape, run by the scheduler role like the attendance sampler): what the team's alerts watch."""

from __future__ import annotations

from datetime import datetime, timezone

from ops import metrics
from ops.deps import Deps
from storage import inbox


class WaitingForPerson:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    async def __call__(self) -> None:
        waiting = await inbox.waiting_for_person(self.deps.pool)
        now = datetime.fromtimestamp(self.deps.clock(), timezone.utc)
        # An organization whose customers were all answered drops out of the gauges.
        metrics.chats_waiting_for_person.clear()
        metrics.longest_wait_for_person.clear()
        for org, chats, oldest in waiting:
            metrics.chats_waiting_for_person.labels(org).set(chats)
            metrics.longest_wait_for_person.labels(org).set(
                max(0.0, (now - oldest).total_seconds())
            )
