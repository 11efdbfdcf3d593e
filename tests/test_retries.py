"""The retry budgets of a stage entry: its own failures use up attempts, an outage does not."""

from __future__ import annotations

from consumers.retries import RetryPolicy, Tries
from ops.outages import Dependency

POLICY = RetryPolicy(attempts=3, base_s=0.5, max_s=2.0, outage_max_s=3600.0)


def test_an_entry_failing_on_its_own_is_given_up_after_its_attempts():
    tries = Tries(POLICY)
    waits = []
    while (wait_s := tries.after_own_failure()) is not None:
        waits.append(wait_s)
        tries.attempt += 1
    assert tries.attempt == 3 and len(waits) == 2
    # Jittered within the doubling backoff: half to all of 0.5 s, then of 1 s.
    assert 0.25 <= waits[0] <= 0.5 and 0.5 <= waits[1] <= 1.0


def test_waiting_out_an_outage_uses_up_no_attempt_and_the_backoff_is_capped():
    tries = Tries(POLICY)
    waits = [tries.after_outage(Dependency.GUPSHUP) for _ in range(10)]
    assert all(w is not None and w <= POLICY.max_s for w in waits)
    assert tries.attempt == 1 and tries.waited_on is Dependency.GUPSHUP
    assert tries.after_own_failure() is not None  # its own attempts are all still there


def test_an_outage_longer_than_the_limit_gives_the_entry_up():
    tries = Tries(RetryPolicy(attempts=3, base_s=0.5, max_s=2.0, outage_max_s=0.0))
    assert tries.after_outage(Dependency.POSTGRES) is None
