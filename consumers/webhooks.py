"""webhooks: deliver the CRM's events (`{org}:webhooks`, group `webhooks`) to each endpoint of
the organization, signed, at least once. Run by the scheduler role.

An event is acknowledged once every endpoint answered 2xx; the endpoints that did are noted
(`{org}:webhook-delivered:{event}`), so a retry or a replay goes only to those that did not.
A failed attempt (a non-2xx answer, a refused connection, a timeout) is retried by the
consumer-group runtime with exponential backoff (WEBHOOK_RETRY_BASE_S doubling up to
WEBHOOK_RETRY_MAX_S, WEBHOOK_RETRY_ATTEMPTS attempts), then dead-lettered to `{org}:dead` with
stage `webhooks`, where `skytide dlq list|replay --stage webhooks` finds it. Each attempt is
signed anew, with its own timestamp (docs/operator-api.md, "Webhooks for the CRM").

Known limit: an event waiting for its next attempt keeps its place among the stage's
WEBHOOK_CONCURRENCY entries in flight, so a CRM down for long with more events than that would
hold back the other organizations' webhooks until their attempts run out. A delay queue (a
sorted set of due retries) would lift it; at a clinic's rate of bookings it is far off.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from urllib.parse import urlsplit

import aiohttp

from consumers import staff_notices
from consumers.outcomes import Outcome
from consumers.runtime import Delivery, Poison, Retry, StageConfig
from ops import metrics
from ops.deps import Deps
from storage import keys, streams, webhooks
from storage.events import StreamEvent, WebhookEvent
from storage.keys import Stage, Stream
from storage.orgs import ConnectionsByOrg

log = logging.getLogger(__name__)

USER_AGENT = "Skytide-Webhooks/1"


def stage_config(base: StageConfig, deps: Deps) -> StageConfig:
    """The runtime's settings with the webhooks' own retry budget: a receiver may be down for
    minutes, which no customer message would be made to wait for."""
    s = deps.settings
    base.stage = Stage.WEBHOOKS
    base.concurrency = s.webhook_concurrency
    base.retry_attempts = s.webhook_retry_attempts
    base.retry_base_s = s.webhook_retry_base_s
    base.retry_max_s = s.webhook_retry_max_s
    base.handler_timeout_s = s.webhook_timeout_s * 2 + 5  # one attempt: parallel POSTs
    return base


# In an event's delivered set beside the endpoint ids: the staff's notices are queued.
STAFF_NOTICES = "staff-notices"


class WebhookStage:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self.connections = ConnectionsByOrg(deps.pool)

    async def dead_lettered(self, event: StreamEvent) -> None:
        metrics.webhook_deliveries.labels("dead_lettered").inc()
        if isinstance(event, WebhookEvent):
            log.error(
                "webhook %s %s of %s given up after its retry budget: `skytide dlq list "
                "--stage webhooks`, then `skytide dlq replay --stage webhooks`",
                event.event,
                event.id,
                event.org,
            )

    async def handle(self, event: StreamEvent, delivery: Delivery) -> Outcome | None:
        if not isinstance(event, WebhookEvent):
            raise Poison(f"the webhooks stream carries webhook events, not {event.type}")
        deps = self.deps
        done_key = keys.webhook_delivered(event.org, event.id)
        done = set(await deps.redis.smembers(done_key))
        if STAFF_NOTICES not in done and event.event in staff_notices.WHAT:
            await self._notify_staff(event, done_key)
        endpoints = await webhooks.list_endpoints(deps.pool, event.org)
        if not endpoints:
            metrics.webhook_deliveries.labels("no_endpoint").inc()
            return Outcome.SKIPPED_NO_ENDPOINT
        todo = [e for e in endpoints if e.id not in done]
        if not todo:
            return Outcome.DUPLICATE
        body = event.body()
        results = await asyncio.gather(*(self._post(e, event, body) for e in todo))
        delivered = [e.id for e, error in zip(todo, results) if error is None]
        if delivered:
            async with deps.redis.pipeline(transaction=True) as pipe:
                pipe.sadd(done_key, *delivered)
                pipe.expire(done_key, webhooks.DELIVERED_TTL_S)
                await pipe.execute()
        failed = [
            f"{_where(e.url)}: {error}" for e, error in zip(todo, results) if error is not None
        ]
        if failed:
            raise Retry(
                f"{event.event} {event.id} not taken by {len(failed)} endpoint(s): "
                + "; ".join(failed)
            )
        return None

    async def _notify_staff(self, event: WebhookEvent, done_key: str) -> None:
        """The staff's booking notices, queued once: the event's delivered set remembers them
        like an endpoint, so the retries of a failing CRM endpoint do not queue them again
        (and the sender would send a notice once anyway: its idempotency key)."""
        connection = await self.connections.get(event.org)
        if connection is None:
            return
        for message in staff_notices.notices(event, connection.settings, connection.timezone):
            await streams.publish(self.deps.redis, message, Stream.OUTBOUND)
        async with self.deps.redis.pipeline(transaction=True) as pipe:
            pipe.sadd(done_key, STAFF_NOTICES)
            pipe.expire(done_key, webhooks.DELIVERED_TTL_S)
            await pipe.execute()

    async def _post(
        self, endpoint: webhooks.Endpoint, event: WebhookEvent, body: bytes
    ) -> str | None:
        """One signed attempt; None when the endpoint answered 2xx, else why not."""
        timestamp = int(time.time())  # the receiver compares it with its own clock: real time
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            webhooks.EVENT_ID_HEADER: event.id,
            webhooks.EVENT_TYPE_HEADER: event.event,
            webhooks.TIMESTAMP_HEADER: str(timestamp),
            webhooks.SIGNATURE_HEADER: webhooks.signature(endpoint.secret, timestamp, body),
        }
        timeout = aiohttp.ClientTimeout(total=self.deps.settings.webhook_timeout_s)
        try:
            async with self.deps.http.post(
                endpoint.url, data=body, headers=headers, timeout=timeout, allow_redirects=False
            ) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            metrics.webhook_deliveries.labels("failed").inc()
            return f"{type(exc).__name__}: {exc}"[:300]
        if not 200 <= status < 300:
            metrics.webhook_deliveries.labels("failed").inc()
            return f"HTTP {status}"
        metrics.webhook_deliveries.labels("delivered").inc()
        metrics.webhook_delivery_seconds.observe(max(0.0, self.deps.clock() - _seconds(event)))
        return None


def _where(url: str) -> str:
    """An endpoint as logs and dead letters name it: without its query, which may hold a key."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}"


def _seconds(event: WebhookEvent) -> float:
    return datetime.fromisoformat(event.created_at.replace("Z", "+00:00")).timestamp()
