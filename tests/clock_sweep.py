"""Runs the date-sensitive tests with the session clock (tests/clock.py) at every hour of a day
and on both sides of midnight in Bogotá: `make test-clock` (DAY=2027-03-03 by default; a day
before a public holiday, such as 2026-12-07, is worth a run too). Prints one line per start and
exits non-zero if any run failed."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

# The tests whose outcome depends on the date or hour: bookings, slots, reminders, the
# 24-hour window, conversations that say "mañana".
DATE_SENSITIVE = [
    "tests/test_reminder_buttons.py",
    "tests/test_reminders.py",
    "tests/test_conversation.py",
    "tests/test_graph_offline.py",
    "tests/test_appointments.py",
    "tests/test_holds.py",
    "tests/test_sender.py",
    "tests/test_pipeline.py",
]
BOGOTA = ZoneInfo("America/Bogota")


def starts(day: date) -> list[datetime]:
    hours = [datetime.combine(day, time(h, 0), BOGOTA) for h in range(24)]
    midnight = datetime.combine(day + timedelta(days=1), time(0, 0), BOGOTA)
    return hours + [midnight - timedelta(seconds=30), midnight + timedelta(seconds=30)]


def main() -> int:
    day = date.fromisoformat(os.environ.get("DAY", "2027-03-03"))
    failed = []
    for start in starts(day):
        env = {**os.environ, "TEST_CLOCK_START": start.isoformat()}
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *DATE_SENSITIVE],
            env=env,
            capture_output=True,
            text=True,
        )
        summary = (run.stdout.strip().splitlines() or ["no output"])[-1]
        print(f"{start.isoformat()}  {summary}", flush=True)
        if run.returncode != 0:
            failed.append(start)
            print("\n".join(line for line in run.stdout.splitlines() if line.startswith("FAILED")))
    print(f"{len(failed)} of {len(starts(day))} clock starts failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
