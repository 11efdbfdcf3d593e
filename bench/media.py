"""Media benchmarks: enrichment throughput with a slow Gemini, and worker memory on 16 MB files.

python -m bench.media

1. Throughput: MEDIA_MESSAGES voice notes from as many chats go through the real enrich stage
   (download from the fake Gupshup media host, local store, fake Gemini answering after
   GEMINI_DELAY_S), against a baseline of the same number of text messages in the same run.
   If media work ran one at a time it would take MEDIA_MESSAGES * GEMINI_DELAY_S.
2. Memory: a separate worker process (a clean baseline) runs the enrich stage while it stores
   BIG_FILES files of 16 MB each at once; it reports how much its peak RSS (VmHWM) grew.

Prints figures and ratios; asserts nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

from ops.app.wiring import open_deps, run_async, running_system
from ops.deps import Deps
from ops.settings import Settings
from ops.system import services
from storage import keys, streams
from storage.db import migrate
from storage.events import InboundMessage, Media
from storage.orgs import add_org
from tests.fakes.gemini import FakeGemini
from tests.fakes.gupshup import FakeGupshup

MEDIA_MESSAGES = 200
GEMINI_DELAY_S = 0.5
BIG_FILES = 8
BIG_FILE_BYTES = 16 * 1024 * 1024
VOICE_NOTE = b"OggS" + bytes(range(256)) * 32  # 8 KB


def vm_hwm_kb() -> int:
    """Peak resident set size of this process, from /proc (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


async def _count_rows(pool: asyncpg.Pool, org: str) -> int:
    return int(
        await pool.fetchval(
            "select count(*) from chat_messages where organization_id = $1::uuid", org
        )
    )


async def _wait_rows(pool: asyncpg.Pool, org: str, n: int, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while await _count_rows(pool, org) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{n} rows not stored within {timeout_s} s")
        await asyncio.sleep(0.02)


async def _new_org(deps: Deps, label: str) -> str:
    org = await add_org(
        deps.pool,
        name=f"Bench {label}",
        app_name=f"bench-{label}-{os.getpid()}",
        api_key="k",
        source_phone="919999999999",
    )
    await deps.redis.sadd(keys.ORG_REGISTRY, org)
    return org


def _message(org: str, i: int, media: Media | None) -> InboundMessage:
    now_ms = int(time.time() * 1000)
    return InboundMessage(
        org=org,
        provider_id=f"bench-{org[:8]}-{i}",
        phone=f"52155{i:08d}",
        kind="voice" if media else "text",
        text=None if media else f"hola {i}",
        media=media,
        sent_at_ms=now_ms,
        received_at_ms=now_ms,
    )


async def _run_batch(
    settings: Settings, deps: Deps, events: list[InboundMessage], org: str
) -> float:
    """Seconds from enqueueing `events` to their last chat_messages row."""
    async with running_system(settings, roles=("enrich",), deps=deps):
        started = time.perf_counter()
        for event in events:
            await streams.ingest(deps.redis, event, settings.inbound_dedupe_ttl_s)
        await _wait_rows(deps.pool, org, len(events))
        return time.perf_counter() - started


async def throughput(settings: Settings, deps: Deps, gupshup: FakeGupshup) -> None:
    text_org = await _new_org(deps, "text")
    text_s = await _run_batch(
        settings, deps, [_message(text_org, i, None) for i in range(MEDIA_MESSAGES)], text_org
    )
    media_org = await _new_org(deps, "media")
    events = [
        _message(
            media_org,
            i,
            Media(
                url=gupshup.add_media(VOICE_NOTE, "audio/ogg"),
                content_type="audio/ogg; codecs=opus",
            ),
        )
        for i in range(MEDIA_MESSAGES)
    ]
    media_s = await _run_batch(settings, deps, events, media_org)
    stored = await deps.pool.fetchval(
        "select count(*) from chat_messages where organization_id = $1::uuid "
        "and processed_text like '[nota de voz] %'",
        media_org,
    )
    text_rate, media_rate = MEDIA_MESSAGES / text_s, MEDIA_MESSAGES / media_s
    serial_s = MEDIA_MESSAGES * GEMINI_DELAY_S
    print(f"text messages through enrich (baseline): {text_rate:8.1f} msg/s")
    print(
        f"voice notes, Gemini answering in {GEMINI_DELAY_S} s: {media_rate:8.1f} msg/s "
        f"({stored}/{MEDIA_MESSAGES} transcribed; target >= 20 msg/s)"
    )
    print(
        f"  ratio to the text baseline: {media_rate / text_rate:.2f}; "
        f"speed-up over one-at-a-time ({serial_s:.0f} s): {serial_s / media_s:.1f}x",
        flush=True,
    )


async def memory(
    settings: Settings,
    deps: Deps,
    gupshup: FakeGupshup,
    gemini: FakeGemini,
    media_dir: Path,
    *,
    with_gemini: bool,
) -> None:
    org = await _new_org(deps, f"memory-{with_gemini}")
    env = dict(
        os.environ,
        SKYTIDE_ENV="development",
        REDIS_URL=settings.redis_url or "",
        DATABASE_URL=settings.database_url or "",
        MEDIA_ALLOWED_HOSTS="127.0.0.1",
        GEMINI_API_KEY="bench" if with_gemini else "",
        GOOGLE_GEMINI_BASE_URL=gemini.url,
        MEDIA_DIR=str(media_dir),
        LOG_LEVEL="WARNING",
    )
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.media",
        "--worker",
        org,
        str(BIG_FILES),
        stdout=subprocess.PIPE,
        env=env,
    )
    assert worker.stdout is not None
    ready = json.loads(await worker.stdout.readline())
    blob = bytes(range(256)) * (BIG_FILE_BYTES // 256)
    for i in range(BIG_FILES):
        media = Media(url=gupshup.add_media(blob, "video/mp4"), content_type="video/mp4")
        event = _message(org, i, media).model_copy(update={"kind": "video"})
        await streams.ingest(deps.redis, event, settings.inbound_dedupe_ttl_s)
    done = json.loads(await worker.stdout.readline())
    await worker.wait()
    grown_mb = (done["hwm_kb"] - ready["hwm_kb"]) / 1024
    total_mb = BIG_FILES * BIG_FILE_BYTES / 2**20
    how = "then read by Gemini through the Files API" if with_gemini else "no Gemini key"
    print(
        f"worker storing {BIG_FILES} x 16 MB videos at once ({total_mb:.0f} MB, {how}): peak RSS {ready['hwm_kb'] / 1024:.0f} MB -> "
        f"{done['hwm_kb'] / 1024:.0f} MB, grew {grown_mb:.1f} MB "
        f"({grown_mb / total_mb:.2f} of the bytes stored; target < 64 MB)",
        flush=True,
    )


async def worker_main(org: str, expected: int) -> None:
    """The memory bench's worker: enrich only, reporting its peak RSS before and after."""
    settings = Settings()
    async with open_deps(settings) as deps, running_system(settings, roles=("enrich",), deps=deps):
        await asyncio.sleep(0.5)  # let the worker's first reads and imports settle
        print(json.dumps({"hwm_kb": vm_hwm_kb()}), flush=True)
        await _wait_rows(deps.pool, org, expected)
        print(json.dumps({"hwm_kb": vm_hwm_kb()}), flush=True)


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        # The fake Gupshup serves media from 127.0.0.1, which must be listed to be fetched.
        base = Settings(
            skytide_env="development",
            data_dir=Path(tmp),
            media_dir=Path(tmp) / "media",
            log_level="WARNING",
            media_allowed_hosts="127.0.0.1",
        )
        async with services(base) as settings, FakeGupshup() as gupshup, FakeGemini() as gemini:
            gemini.delay_s = GEMINI_DELAY_S
            settings = settings.model_copy(
                update={"gemini_api_key": "bench", "google_gemini_base_url": gemini.url}
            )
            async with open_deps(settings) as deps:
                await migrate(deps.pool)
                await throughput(settings, deps, gupshup)
                gemini.delay_s = 0.0
                for with_gemini in (False, True):
                    await memory(
                        settings,
                        deps,
                        gupshup,
                        gemini,
                        Path(tmp) / f"media-{with_gemini}",
                        with_gemini=with_gemini,
                    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        run_async(worker_main(sys.argv[2], int(sys.argv[3])))
    else:
        run_async(main())
