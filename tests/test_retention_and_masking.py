"""What the system keeps about people is bounded: dead letters are trimmed by count and age,
and neither a log line nor a dead letter's error shows a phone number or a secret."""

from __future__ import annotations

import asyncio
import io
import json
import logging

from consumers.runtime import Poison, StageConfig, StageWorker
from ops.logs import setup_logging
from storage import keys
from storage.events import StatusEvent, encode
from storage.keys import Stage, Stream
from tests.conftest import eventually

ORG = "org-retention"
PHONE = "573001112233"


async def run_poisoned(redis, count: int, **config) -> None:
    """`count` entries through a stage whose handler refuses each one at once."""

    async def handler(event, delivery):
        raise Poison(f"to {PHONE}: apikey=sk-live-abc123 Authorization: Bearer tok-xyz-987 refused")

    worker = StageWorker(
        redis,
        StageConfig(
            stage=Stage.ENRICH,
            block_ms=100,
            claim_every_s=0.2,
            org_refresh_s=0.1,
            **config,
        ),
        handler,
        "c1",
    )
    await redis.sadd(keys.ORG_REGISTRY, ORG)
    for i in range(count):
        await redis.xadd(
            keys.stream(ORG, Stream.INBOUND),
            encode(StatusEvent(org=ORG, provider_id=f"p{i}", status="read", at_ms=1)),
        )
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:

        async def settled():
            groups = await redis.xinfo_groups(keys.stream(ORG, Stream.INBOUND))
            return groups and groups[0]["entries-read"] == count and groups[0]["pending"] == 0

        await eventually(settled)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_dead_letters_are_trimmed_by_count(deps):
    await run_poisoned(deps.redis, 25, dead_letter_max_entries=10)
    assert await deps.redis.xlen(keys.dead_letters(ORG)) == 10


async def test_dead_letters_older_than_the_retention_are_dropped(deps):
    dead = keys.dead_letters(ORG)
    await deps.redis.xadd(dead, {"stage": "enrich", "error": "old"}, id="1000-0")  # 1970
    await run_poisoned(deps.redis, 1, dead_letter_retention_days=14)
    letters = await deps.redis.xrange(dead)
    assert [fields["error"] for _, fields in letters] != ["old"] and len(letters) == 1


async def test_a_dead_letters_error_shows_no_phone_and_no_secret(deps):
    await run_poisoned(deps.redis, 1)
    [(_, fields)] = await deps.redis.xrange(keys.dead_letters(ORG))
    error = fields["error"]
    for secret in (PHONE, "sk-live-abc123", "tok-xyz-987"):
        assert secret not in error
    assert "2233" in error and "refused" in error  # still says what happened, and to whom


def test_log_lines_mask_phones_and_secrets():
    for fmt in ("text", "json"):
        stream = io.StringIO()
        setup_logging("INFO", fmt)
        handler = logging.getLogger().handlers[0]
        handler.setStream(stream)
        log = logging.getLogger("test.masking")
        log.warning(
            "message to %s failed: %s",
            PHONE,
            "url https://x/?token=abc123def&x=1 "
            "apikey: sk-live-abc123 postgresql://user:hunter2@db/x",
        )
        try:
            raise ValueError(f"bad number +{PHONE}")
        except ValueError:
            log.exception("with a traceback")
        out = stream.getvalue()
        if fmt == "json":
            [json.loads(line) for line in out.splitlines()]
        for secret in (PHONE, "abc123def", "sk-live-abc123", "hunter2"):
            assert secret not in out, (fmt, out)
        assert "2233" in out
    setup_logging("INFO", "text")


async def test_readiness_names_a_failing_dependency_without_its_address_or_password(deps):
    from ops import health
    from ops.deps import Deps
    from ops.embedded import free_port
    from storage.redis_client import create_redis

    port = free_port()  # nothing listens there
    redis = create_redis(f"redis://:hunter2-secret@127.0.0.1:{port}/0")
    try:
        checks = await health.check(
            Deps(settings=deps.settings, redis=redis, pool=deps.pool, http=deps.http)
        )
    finally:
        await redis.aclose()
    assert checks["postgres"] == "ok" and checks["redis"].startswith("error: ")
    assert "hunter2" not in checks["redis"] and str(port) not in checks["redis"]
