"""The test session's clock: real time moved to a fixed date and hour, the same in every process
the tests start (Settings.clock_offset_s), so that no test depends on when it runs.

The default instant is a Wednesday morning in Bogotá with no public holiday near it;
TEST_CLOCK_START (an ISO 8601 instant with its offset) places the run elsewhere: `make
test-clock` runs the date-sensitive tests at every hour of a day and on both sides of midnight.
"""

from __future__ import annotations

import os
import time
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

DEFAULT_START = "2027-03-03T09:00:00-05:00"  # Wednesday 3 March 2027, 09:00 in Bogotá

START = datetime.fromisoformat(os.environ.get("TEST_CLOCK_START") or DEFAULT_START)
if START.tzinfo is None:
    raise ValueError(f"TEST_CLOCK_START needs a UTC offset: {START.isoformat()}")
OFFSET_S = START.timestamp() - time.time()  # fixed for the session: the clock runs on from START


def now() -> float:
    """Seconds since the epoch on the session's clock."""
    return time.time() + OFFSET_S


def now_ms() -> int:
    return int(now() * 1000)


def now_dt() -> datetime:
    return datetime.fromtimestamp(now(), timezone.utc)


def today(tz: str = "America/Bogota") -> date:
    """The session clock's date where the demo clinic is."""
    return datetime.fromtimestamp(now(), ZoneInfo(tz)).date()
