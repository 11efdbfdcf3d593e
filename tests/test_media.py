"""Media download, the two media stores and the Gemini reader, each against its fake server."""

from __future__ import annotations

import hashlib

import aiohttp
import pytest

from consumers.gemini import GeminiReader, GeminiUnavailable
from consumers.media import MediaDownloader, MediaUnavailable
from ops.settings import Settings
from storage.events import Media
from storage.media_store import (
    LocalMediaStore,
    MediaStoreError,
    MediaTooLarge,
    SupabaseMediaStore,
    object_path,
)
from tests.conftest import eventually
from tests.fakes.gemini import DEFAULT_TRANSCRIPT, FakeGemini
from tests.fakes.supabase_storage import FakeSupabaseStorage
from tests.test_understanding import APP, APP_ID, media_system, gemini, row, webhook  # noqa: F401

KEY = "service-role-key"
DATA = bytes(range(256)) * 300  # 76.8 KB: more than one 64 KB chunk


async def chunks_of(data: bytes, size: int = 1000):
    for i in range(0, len(data), size):
        yield data[i : i + size]


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def storage():
    async with FakeSupabaseStorage(api_key=KEY) as fake:
        yield fake


@pytest.fixture
async def downloaders():
    """Factory: media downloaders, each closed (with its HTTP session) after the test."""
    made: list[MediaDownloader] = []

    def make(**kw) -> MediaDownloader:
        made.append(MediaDownloader(fast_settings(**kw)))
        return made[-1]

    yield make
    for downloader in made:
        await downloader.aclose()


def fast_settings(**kw) -> Settings:
    # The fakes serve media from 127.0.0.1, which only a listed address may be.
    return Settings(
        media_retry_base_s=0.01,
        gemini_retry_base_s=0.01,
        gemini_retry_max_s=0.05,
        media_allowed_hosts="127.0.0.1",
        **kw,
    )


def test_object_path_is_safe_for_base64_ids():
    assert (
        object_path("org", "5215550001111", "wamid.HBg+ab/cd==", ".OGG")
        == "org/5215550001111/wamid.HBg_ab_cd.ogg"
    )


async def test_local_store_streams_hashes_and_refuses_oversize(tmp_path):
    store = LocalMediaStore(tmp_path)
    stored = await store.save("o/c/m.bin", chunks_of(DATA), "application/octet-stream", len(DATA))
    assert (stored.size_bytes, stored.sha256) == (len(DATA), hashlib.sha256(DATA).hexdigest())
    assert (tmp_path / "o/c/m.bin").read_bytes() == DATA
    with pytest.raises(MediaTooLarge):
        await store.save("o/c/big.bin", chunks_of(DATA), "application/octet-stream", len(DATA) - 1)
    # Neither the final name nor a partial file is left behind.
    assert sorted(p.name for p in (tmp_path / "o/c").iterdir()) == ["m.bin"]


async def test_download_retries_5xx_then_stores(gupshup, downloaders, tmp_path):
    url = gupshup.add_media(DATA, "audio/ogg")
    gupshup.fail_media_next(503, times=2)
    downloader = downloaders()
    stored = await downloader.fetch(
        Media(url=url, content_type="audio/ogg; codecs=opus"),
        "voice",
        LocalMediaStore(tmp_path),
        "o/c/m.ogg",
        now_ms=0,
    )
    assert stored.local_path.read_bytes() == DATA
    assert len(gupshup.requests_to("/wa/" + gupshup.app_id)) == 3


async def test_download_gives_up_on_rate_limit_and_oversize_without_retrying(
    gupshup, downloaders, tmp_path
):
    downloader = downloaders()
    store = LocalMediaStore(tmp_path)
    url = gupshup.add_media(DATA, "image/webp")
    gupshup.fail_media_next(429)
    with pytest.raises(MediaUnavailable) as limited:
        await downloader.fetch(Media(url=url), "sticker", store, "o/c/a.webp", now_ms=0)
    with pytest.raises(MediaUnavailable) as too_large:  # stickers: 500 KB at most
        big = gupshup.add_media(b"x" * (500 * 1024 + 1), "image/webp")
        await downloader.fetch(Media(url=big), "sticker", store, "o/c/b.webp", now_ms=0)
    assert (limited.value.reason, too_large.value.reason) == ("rate_limited", "too_large")
    assert len(gupshup.requests_to("/wa/" + gupshup.app_id)) == 2


async def test_download_timeout_is_a_reason_not_a_crash(gupshup, downloaders, tmp_path):
    url = gupshup.add_media(DATA, "audio/ogg", delay_s=2)
    downloader = downloaders(media_timeout_s=0.2)
    with pytest.raises(MediaUnavailable) as exc:
        await downloader.fetch(
            Media(url=url), "audio", LocalMediaStore(tmp_path), "o/c/m.ogg", now_ms=0
        )
    assert exc.value.reason == "timeout"


async def test_supabase_store_speaks_the_storage_api(storage, http, tmp_path):
    store = SupabaseMediaStore(
        http, storage.url, KEY, spool_dir=tmp_path / "spool", retry_base_s=0.01
    )
    storage.fail_next(503)  # one gateway hiccup is retried
    stored = await store.save("org/chat/m.ogg", chunks_of(DATA), "audio/ogg", len(DATA))
    assert storage.objects["chat-media/org/chat/m.ogg"] == (DATA, "audio/ogg")
    upload = storage.requests_to("/storage/v1/object/chat-media/org/chat/m.ogg", "POST")[-1]
    assert (
        upload["headers"]["apiKey"] == KEY and upload["headers"]["Authorization"] == f"Bearer {KEY}"
    )
    assert upload["headers"]["x-upsert"] == "true" and upload["form"]["cacheControl"] == "3600"
    assert upload["files"]["file"][0] == "m.ogg"
    # The local spool is there for Gemini until released.
    assert stored.local_path.read_bytes() == DATA
    await store.release(stored)
    assert not stored.local_path.exists()

    # What we stored is what the official client reads back.
    from supabase import acreate_client

    client = await acreate_client(storage.url, KEY)
    assert await client.storage.from_("chat-media").download("org/chat/m.ogg") == DATA


async def test_supabase_failure_keeps_the_local_copy(storage, http, tmp_path):
    store = SupabaseMediaStore(
        http, storage.url, KEY, spool_dir=tmp_path, attempts=2, retry_base_s=0.01
    )
    storage.fail_next(500, times=2)
    with pytest.raises(MediaStoreError) as exc:
        await store.save("org/chat/m.jpg", chunks_of(DATA), "image/jpeg", len(DATA))
    assert exc.value.local is not None and exc.value.local.local_path.read_bytes() == DATA
    await store.release(exc.value.local)


async def test_pipeline_with_supabase_stores_the_object_path(
    media_system, make_org, gupshup, storage, deps, tmp_path
):
    org = await make_org(APP, app_id=APP_ID)
    async with media_system(supabase_url=storage.url, supabase_service_role_key=KEY) as s:
        from tests.helpers import post_webhook

        body, pid, data = webhook("gupshup_v3_audio.json", gupshup)
        await post_webhook(s.url, body)
        r = await eventually(lambda: row(deps, org, pid), timeout_s=15)
    assert r["processed_text"] == f"[nota de voz] {DEFAULT_TRANSCRIPT}"
    assert r["media_url"] == object_path(org, "917506080480", pid, "ogg")
    assert storage.objects[f"chat-media/{r['media_url']}"][0] == data
    # The spool copy is gone once understood; nothing was written as a local media file.
    assert not [p for p in (tmp_path / "media").rglob("*") if p.is_file()]


async def test_gemini_reads_big_files_through_the_files_api(tmp_path):
    path = tmp_path / "v.mp4"
    path.write_bytes(DATA)
    async with FakeGemini() as fake:
        fake.file_processing_s = 0.3  # the reader waits until the file is ACTIVE
        reader = GeminiReader(
            fast_settings(
                gemini_api_key="k", google_gemini_base_url=fake.url, gemini_inline_max_bytes=1000
            )
        )
        answer = await reader.read(
            org="o", path=path, size_bytes=len(DATA), content_type="video/mp4", prompt="Resume"
        )
        assert answer.text.startswith("Video:")
        assert fake.calls[0].has_file_uri and fake.calls[0].inline_bytes == 0
        assert fake.files == {}  # deleted after use


async def test_gemini_client_errors_are_not_retried(tmp_path):
    path = tmp_path / "a.ogg"
    path.write_bytes(DATA)
    async with FakeGemini() as fake:
        fake.known_models = {"gemini-3.5-flash"}
        reader = GeminiReader(
            fast_settings(
                gemini_api_key="k", google_gemini_base_url=fake.url, gemini_model="gemini-2.0-flash"
            )
        )
        with pytest.raises(GeminiUnavailable) as exc:
            await reader.read(
                org="o",
                path=path,
                size_bytes=len(DATA),
                content_type="audio/ogg",
                prompt="Transcribe",
            )
        assert exc.value.reason == "http_404"
        assert len(fake.requests_to("/v1beta/models/")) == 1
