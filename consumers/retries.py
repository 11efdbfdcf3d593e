"""When a failed entry is tried again, and when it is given up on.

Two budgets, kept apart: an entry that fails on its own (its dependencies answering) has
`retry_attempts` attempts, with exponential backoff between them; an entry that fails while a
dependency is down waits the outage out, for up to `dependency_outage_max_s`, without using up
an attempt (ops/outages.py tells the two apart). Only the first kind is the entry's fault.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from ops.outages import Dependency


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int  # RETRY_ATTEMPTS: tries of an entry that fails on its own
    base_s: float  # RETRY_BASE_S: the first backoff, doubled at each try
    max_s: float  # RETRY_MAX_S: the longest backoff
    outage_max_s: float  # DEPENDENCY_OUTAGE_MAX_S: how long an outage is waited out

    def backoff_s(self, tries: int) -> float:
        """The wait before try `tries + 1`, jittered so that the retries of many entries that
        failed together (an outage) spread out instead of arriving together."""
        base = min(self.max_s, self.base_s * 2.0 ** (tries - 1))
        return base / 2 + random.random() * base / 2


@dataclass
class Tries:
    """One entry's failures while a worker holds it (a redelivery starts afresh)."""

    policy: RetryPolicy
    attempt: int = 1  # this try's number, counting only the entry's own failures
    outage_tries: int = 0
    outage_since: float = 0.0  # time.monotonic() of the first failure during an outage
    waited_on: Dependency | None = None  # the dependency last waited for

    def after_own_failure(self) -> float | None:
        """Seconds to wait before the next attempt, or None: that was the last one. (The
        caller counts the attempt once it is made: a worker stopping meanwhile makes none.)"""
        if self.attempt >= self.policy.attempts:
            return None
        return self.policy.backoff_s(self.attempt)

    def after_outage(self, dependency: Dependency) -> float | None:
        """Seconds to wait before trying again while `dependency` is down, or None: the
        entry has waited DEPENDENCY_OUTAGE_MAX_S and is given up on."""
        self.waited_on = dependency
        self.outage_since = self.outage_since or time.monotonic()
        if self.outage_s() >= self.policy.outage_max_s:
            return None
        self.outage_tries += 1
        return self.policy.backoff_s(self.outage_tries)

    def outage_s(self) -> float:
        """How long the entry has been waiting for its dependencies."""
        return time.monotonic() - self.outage_since if self.outage_since else 0.0
