"""Redis at maxmemory (noeviction): the ingress refuses webhooks with a 503 before Redis refuses
their writes, the stages wait instead of dead-lettering, and the pipeline drains once memory is
back. Every message sent is answered once."""

from __future__ import annotations

import aiohttp

from storage import dead_letters
from tests import clock
from tests.conftest import eventually
from tests.helpers import post_webhook, settled, text_webhook


async def test_redis_at_maxmemory_refuses_webhooks_then_drains(system, make_org, gupshup, deps):
    org = await make_org("clinic")
    phones = [f"5730002{i:05d}" for i in range(6)]
    async with system(debounce_seconds=0.5) as s:
        # Three messages are queued, then Redis fills up before their turns write anything.
        for i, phone in enumerate(phones[:3]):
            status, _ = await post_webhook(
                s.url, text_webhook("clinic", phone, "hola", f"m-{i}", clock.now_ms())
            )
            assert status == 200
        used = int((await deps.redis.info("memory"))["used_memory"])
        try:
            await deps.redis.config_set("maxmemory", max(1, used // 2))  # every write refused
            later = [
                text_webhook("clinic", phone, "hola", f"m-{i + 3}", clock.now_ms())
                for i, phone in enumerate(phones[3:])
            ]
            refused = await eventually(lambda: _status(s.url, later[0], 503), timeout_s=10)
            assert refused["retry_after"] and "retry" in refused["error"]
            assert await dead_letters.list_letters(deps.redis, org=org) == []
        finally:
            await deps.redis.config_set("maxmemory", 0)
        for body in later:  # Gupshup retries a 503
            await eventually(lambda body=body: _status(s.url, body, 200), timeout_s=10)
        await gupshup.wait_for_sent(len(phones), timeout_s=60)
        await eventually(lambda: settled(deps.redis, org), timeout_s=20)
    answered = {}
    for m in gupshup.sent:
        answered[m.destination] = answered.get(m.destination, 0) + 1
    assert answered == {phone: 1 for phone in phones}
    assert await dead_letters.list_letters(deps.redis, org=org) == []


async def _status(url: str, body, expected: int):
    """The answer's body and Retry-After when the webhook got `expected`, else None."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            url + "/webhooks/gupshup", json=body, headers={"Authorization": "Bearer secret-token"}
        ) as r,
    ):
        if r.status != expected:
            return None
        answer = await r.json() if r.content_type == "application/json" else {}
        return {**answer, "retry_after": r.headers.get("Retry-After"), "status": r.status}
