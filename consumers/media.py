"""Download an inbound media file at once and stream it into the media store.

Gupshup links can die minutes after the webhook (docs/gupshup.md §1.8), so enrich fetches the file
before anything else. Downloads are bounded per process (a semaphore, not a lock: a slow file
holds one slot, other chats keep going), limited in time and in size per kind (WhatsApp's limits,
docs/gupshup.md §3), and retried on 5xx and connection errors. Failures are typed, never raised to
the stage: the message still flows with a placeholder.
"""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp

from ops import metrics
from ops.settings import Settings
from storage.events import Media
from storage.media_store import MediaStore, MediaTooLarge, StoredMedia

log = logging.getLogger(__name__)

MB = 1024 * 1024
# WhatsApp Cloud API limits per kind (docs/gupshup.md §3). Files above them cannot be legitimate.
SIZE_LIMITS_BYTES: dict[str, int] = {
    "image": 5 * MB,
    "sticker": 500 * 1024,  # animated; static ones are 100 KB
    "audio": 16 * MB,
    "voice": 16 * MB,
    "video": 16 * MB,
    "file": 100 * MB,
}
DEFAULT_LIMIT_BYTES = 100 * MB


class MediaUnavailable(Exception):
    """The file could not be fetched; `reason` is a short metric label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason  # expired, not_found, too_large, rate_limited, timeout, server_error, http_NNN


class MediaDownloader:
    """One per process: the semaphore is what bounds concurrent downloads."""

    def __init__(self, http: aiohttp.ClientSession, settings: Settings) -> None:
        self.http = http
        self.concurrency = asyncio.Semaphore(settings.media_concurrency)
        self.timeout_s = settings.media_timeout_s
        self.attempts = max(1, settings.media_attempts)
        self.retry_base_s = settings.media_retry_base_s
        self.chunk_bytes = settings.media_chunk_bytes

    async def fetch(self, media: Media, kind: str, store: MediaStore, path: str,
                    now_ms: int) -> StoredMedia:
        """Download `media` into `store` at `path`; raises MediaUnavailable."""
        if media.expires_at_ms is not None and media.expires_at_ms <= now_ms:
            # Calling a dead link is not free: 20 invalid calls an hour block the app for an hour.
            raise MediaUnavailable("expired", f"link expired at {media.expires_at_ms}")
        limit = SIZE_LIMITS_BYTES.get(kind, DEFAULT_LIMIT_BYTES)
        async with self.concurrency:
            started = time.monotonic()
            try:
                async with asyncio.timeout(self.timeout_s):
                    return await self._attempts(media, store, path, limit)
            except TimeoutError:
                raise MediaUnavailable("timeout", f"no complete download in {self.timeout_s} s") from None
            finally:
                metrics.media_download_seconds.observe(time.monotonic() - started)

    async def _attempts(self, media: Media, store: MediaStore, path: str, limit: int) -> StoredMedia:
        last = ""
        for attempt in range(1, self.attempts + 1):
            try:
                return await self._once(media, store, path, limit)
            except _Transient as exc:
                last = str(exc)
            except (aiohttp.ClientError, ConnectionError) as exc:
                # Includes a connection cut mid-body: the partial file was already discarded.
                last = f"{type(exc).__name__}: {exc}"
            if attempt < self.attempts:
                await asyncio.sleep(self.retry_base_s * 2 ** (attempt - 1))
        raise MediaUnavailable("server_error", last)

    async def _once(self, media: Media, store: MediaStore, path: str, limit: int) -> StoredMedia:
        # Pre-signed link: no auth header (docs/gupshup.md §1.8).
        async with self.http.get(media.url) as resp:
            if resp.status == 200:
                if resp.content_length is not None and resp.content_length > limit:
                    raise MediaUnavailable("too_large", f"{resp.content_length} > {limit} bytes")
                content_type = media.content_type
                if content_type == "application/octet-stream" and resp.content_type:
                    content_type = resp.content_type
                try:
                    return await store.save(path, resp.content.iter_chunked(self.chunk_bytes),
                                            content_type, limit)
                except MediaTooLarge as exc:  # no Content-Length, or a lying one
                    raise MediaUnavailable("too_large", str(exc)) from None
            body = (await resp.text(errors="replace"))[:200]
            if resp.status in (400, 404, 410):
                # Gupshup answers an invalid or expired media id with 400/404 "Invalid Media Id".
                raise MediaUnavailable("not_found", f"HTTP {resp.status}: {body}")
            if resp.status == 429:
                # Gupshup's media 429 is a one-hour penalty for invalid calls: retrying cannot help.
                raise MediaUnavailable("rate_limited", body)
            if resp.status >= 500:
                raise _Transient(f"HTTP {resp.status}: {body}")
            raise MediaUnavailable(f"http_{resp.status}", body)


class _Transient(Exception):
    """A 5xx: worth another attempt."""
