"""What the clinic's alerts watch: the customers waiting for a person (counted and aged by the
scheduler's scrape-time sampler) and the time to a person's first answer, observed once per
wait, through the real pipeline and the operator API."""

from __future__ import annotations

from consumers.team_stats import WaitingForPerson
from ops import metrics
from storage import inbox, operators
from tests.conftest import eventually
from tests.test_operator_api import PHONE, OperatorClient, _waiting, say


def _sample(name: str, **labels: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, labels)


async def test_a_waiting_customer_is_counted_until_a_person_answers_and_the_wait_is_observed_once(
    deps, make_org, system, gupshup
):
    org = await make_org("DemoClinic", catalog=True)
    _, token = await operators.add(deps.pool, org, "Ana")
    sampler = WaitingForPerson(deps)
    answered_before = _sample("skytide_staff_first_answer_seconds_count") or 0.0
    async with system(debounce_seconds=0.1) as s:
        api = OperatorClient(s.url, token)
        await say(s.url, gupshup, "hola")  # the bot answers: nobody waits
        await sampler()
        assert _sample("skytide_chats_waiting_for_person", org=org) is None

        assert (await api.call("POST", f"/chats/{PHONE}/takeover", {}))[0] == 200
        await say(s.url, gupshup, "¿hay alguien?", expect=0)
        await eventually(lambda: _waiting(api))
        since = await inbox.waiting_since(deps.pool, org, PHONE)
        assert since is not None
        await sampler()
        assert _sample("skytide_chats_waiting_for_person", org=org) == 1
        waited = _sample("skytide_longest_wait_for_person_seconds", org=org)
        # The webhook's timestamp (the test's clock) and the process clock agree to a second.
        assert waited is not None and 0 <= waited <= deps.clock() - since.timestamp() + 1

        before = len(gupshup.sent)
        asked_at = deps.clock()
        for text in ("Hola, soy Ana.", "¿En qué te ayudo?"):
            status, _ = await api.call("POST", f"/chats/{PHONE}/messages", {"text": text})
            assert status == 202
        answered_at = deps.clock()
        await gupshup.wait_for_sent(before + 2)
        # Two messages, one wait: observed once, as long as the customer waited.
        assert _sample("skytide_staff_first_answer_seconds_count") == answered_before + 1
        observed = _sample("skytide_staff_first_answer_seconds_sum") or 0.0
        assert asked_at - since.timestamp() - 1 <= observed <= answered_at - since.timestamp() + 1

        # Answered: the customer waits no more, and the organization leaves the gauges.
        await eventually(lambda: _answered(deps, org))
        await sampler()
        assert _sample("skytide_chats_waiting_for_person", org=org) is None
        assert _sample("skytide_longest_wait_for_person_seconds", org=org) is None


async def _answered(deps, org: str) -> bool:
    return await inbox.waiting_since(deps.pool, org, PHONE) is None
