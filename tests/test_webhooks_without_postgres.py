"""Webhooks are answered without PostgreSQL: the ingress authenticates from the connections
published in Redis, so a PostgreSQL outage loses no message, even across an ingress restarted
in the middle of it; and whatever was taken is answered once PostgreSQL is back.

The issue's experiment stopped PostgreSQL for 90 s and restarted the ingress 40 s in, with a
sender that retried after 10, 30 and 60 s. The same shape runs here shortened: three
organizations each posting a message a second, a sender that retries after 1, 3 and 6 s (the
issue's divided by 10), PostgreSQL down about 20 s, the ingress killed 5 s into the outage and
started again (which takes it about 3 s on a 2-core machine). The outage goes on 12 s after the
restart, longer than the sender's retries, so a webhook that needed PostgreSQL would be lost:
without the published connections (PostgreSQL and the cache's last good answers only) a run
lost 18 of 72 messages, those sent to the restarted ingress, whose cache was empty. It takes
about 35 s of wall time.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field

import aiohttp

from ingress.orgs import ConnectionCache, Unavailable
from ops.embedded import free_port
from storage import dead_letters, keys
from storage.orgs import publish_connections
from tests.conftest import eventually
from tests.helpers import in_thread, settled, text_webhook
from tests import clock

ORGS = 3
EVERY_S = 1.0  # one new message per organization per second
# The provider retried after 10, 30 and 60 s: the same divided by 10, then gave up.
RETRIES_S = (1.0, 3.0, 6.0)
AFTER_RESTART_S = 12.0  # PostgreSQL stays down this long after the ingress is back: > retries


@dataclass
class Feeder:
    """Posts like Gupshup: each message to a new phone (one turn, one reply each), retried
    after RETRIES_S on anything but a 2xx, then given up."""

    url: str
    acked: dict[str, str] = field(default_factory=dict)  # message id -> phone
    lost: list[str] = field(default_factory=list)
    attempts: int = 0

    async def post_until_acked(
        self, http: aiohttp.ClientSession, app: str, token: str, phone: str, message_id: str
    ) -> None:
        body = text_webhook(app, phone, "hola", message_id, clock.now_ms())
        for wait_s in (*RETRIES_S, None):
            self.attempts += 1
            try:
                async with http.post(
                    f"{self.url}/webhooks/gupshup",
                    json=body,
                    headers={"Authorization": f"Bearer {token}"},
                ) as response:
                    if 200 <= response.status < 300:
                        self.acked[message_id] = phone
                        return
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass  # the ingress is restarting
            if wait_s is None:
                self.lost.append(message_id)
                return
            await asyncio.sleep(wait_s)

    async def feed(self, apps: list[tuple[str, str]], stop: asyncio.Event) -> None:
        posts: list[asyncio.Task[None]] = []
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            n = 0
            while not stop.is_set():
                for i, (app, token) in enumerate(apps):
                    phone, message_id = f"5731{i}{n:07d}", f"nopg-{i}-{n}"
                    posts.append(
                        asyncio.create_task(
                            self.post_until_acked(http, app, token, phone, message_id)
                        )
                    )
                n += 1
                try:
                    await asyncio.wait_for(stop.wait(), EVERY_S)
                except asyncio.TimeoutError:
                    pass
            await asyncio.gather(*posts)


def start_ingress(settings, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "CLOCK_OFFSET_S": str(clock.OFFSET_S),
        "REDIS_URL": settings.redis_url,
        "DATABASE_URL": settings.database_url,
        "HTTP_PORT": str(port),
        "LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "ops", "run", "--roles", "ingress"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def _healthy(url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as http, http.get(url + "/healthz") as response:
            return response.status == 200
    except aiohttp.ClientError:
        return False


async def _readiness(url: str) -> dict:
    async with aiohttp.ClientSession() as http, http.get(url + "/readyz") as response:
        return await response.json()


async def _published(deps, n: int) -> bool:
    # n token fields, plus the field that says when they were published
    return await deps.redis.hlen(keys.WEBHOOK_CONNECTIONS) >= n + 1


async def test_a_postgres_outage_with_the_ingress_restarted_in_it_loses_no_message(
    system, make_org, deps, gupshup, embedded, settings
):
    apps = [(f"clinic{i}", f"token-of-clinic-{i}") for i in range(ORGS)]
    orgs = [await make_org(app, token=token) for app, token in apps]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    feeder, stop = Feeder(url), asyncio.Event()
    ingress = start_ingress(settings, port)
    async with system(roles=("enrich", "batcher", "agent", "sender")):
        try:
            # The workers' registry keeper publishes the connections (as `org add` would).
            await eventually(lambda: _published(deps, ORGS), timeout_s=20)
            await eventually(lambda: _healthy(url), timeout_s=30)
            feeding = asyncio.create_task(feeder.feed(apps, stop))
            await asyncio.sleep(3)
            try:
                await in_thread(embedded["postgres"].pause)
                await asyncio.sleep(5)
                # The ingress dies and comes back while PostgreSQL is still down.
                ingress.send_signal(signal.SIGKILL)
                await in_thread(ingress.wait)
                ingress = start_ingress(settings, port)
                await eventually(lambda: _healthy(url), timeout_s=30)
                assert ingress.poll() is None  # it started without PostgreSQL, and stays up
                readiness = await _readiness(url)  # and stays in its load balancer
                assert readiness["ready"] and readiness["postgres"].startswith("error"), readiness
                await asyncio.sleep(AFTER_RESTART_S)
            finally:
                await in_thread(embedded["postgres"].resume)
            await asyncio.sleep(2)  # and a little after it
            stop.set()
            await feeding
            assert feeder.lost == []
            total = len(feeder.acked)
            assert total >= ORGS * 15  # the feed lasted over 17 s, the whole outage
            await gupshup.wait_for_sent(total, timeout_s=120)
            for org in orgs:  # a late duplicate would be out once every stream is settled
                await eventually(lambda org=org: settled(deps.redis, org), timeout_s=60)
        finally:
            stop.set()
            if ingress.poll() is None:
                ingress.send_signal(signal.SIGTERM)
                await in_thread(ingress.wait, 30)
    replies: dict[str, int] = {}
    for sent in gupshup.sent:
        replies[sent.destination] = replies.get(sent.destination, 0) + 1
    assert replies == {phone: 1 for phone in feeder.acked.values()}  # each answered, once
    assert (
        await deps.pool.fetchval("select count(*) from chat_messages where direction = 'inbound'")
        == total
    )
    for org in orgs:
        assert await dead_letters.list_letters(deps.redis, org=org) == []


async def test_the_cache_serves_its_last_good_answer_while_postgres_is_down(
    make_org, deps, embedded
):
    await make_org("clinic", token="token-of-the-clinic")
    now = [0.0]
    cache = ConnectionCache(deps.pool, deps.redis, ttl_s=30, clock=lambda: now[0])
    [known] = await cache.by_token("token-of-the-clinic")  # from PostgreSQL: nothing published
    now[0] += 60  # long expired
    try:
        await in_thread(embedded["postgres"].pause)
        assert await cache.by_token("token-of-the-clinic") == [known]
        # A token never seen and not published cannot be told apart from a new one: 503, retried.
        try:
            await cache.by_token("token-never-seen-000")
            raise AssertionError("an unknown token was decided without PostgreSQL")
        except Unavailable:
            pass
    finally:
        await in_thread(embedded["postgres"].resume)


async def test_a_fresh_ingress_answers_from_the_published_connections_without_postgres(
    make_org, deps, embedded
):
    org = await make_org("clinic", token="token-of-the-clinic", app_id="gs-app-1")
    await publish_connections(deps.redis, deps.pool, deps.now_ms())
    stored = " ".join(await deps.redis.hvals(keys.WEBHOOK_CONNECTIONS))
    assert "token-of-the-clinic" not in stored and "test-api-key" not in stored  # no credential
    cache = ConnectionCache(deps.pool, deps.redis)  # an ingress just started: nothing cached
    try:
        await in_thread(embedded["postgres"].pause)
        [found] = await cache.by_token("token-of-the-clinic")
        assert (found.org_id, found.app_name, found.is_active) == (org, "clinic", True)
        assert (await cache.get(None, "gs-app-1")).org_id == org  # v3 callbacks name the app id
        try:
            await cache.by_token("token-never-seen-000")
            raise AssertionError("an unknown token was decided without PostgreSQL")
        except Unavailable:
            pass
    finally:
        await in_thread(embedded["postgres"].resume)
    # PostgreSQL back: it decides again, and a change made there counts at once.
    await deps.pool.execute("update platform_connections set is_active = false")
    [found] = await ConnectionCache(deps.pool, deps.redis).by_token("token-of-the-clinic")
    assert not found.is_active
