"""Download an inbound media file at once and stream it into the media store.

Gupshup links can die minutes after the webhook (docs/gupshup.md §1.8), so enrich fetches the file
before anything else. Downloads are bounded per process (a semaphore, not a lock: a slow file
holds one slot, other chats keep going), limited in time and in size per kind (WhatsApp's limits,
docs/gupshup.md §3), and retried on 5xx and connection errors. Failures are typed, never raised to
the stage: the message still flows with a placeholder.

The link is the webhook sender's choice, so only allowed hosts are fetched (media_policy.py),
redirects are followed by hand and checked hop by hop, and an error body is read only up to
ERROR_BODY_BYTES.
"""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
from yarl import URL

from consumers.media_policy import GuardedResolver, HostPolicy, RefusedAddress
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
ERROR_BODY_BYTES = 200  # enough for Gupshup's {"status":"error","message":...}
MAX_REDIRECTS = 3
REDIRECTS = (301, 302, 303, 307, 308)


class MediaUnavailable(Exception):
    """The file could not be fetched; `reason` is a short metric label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        # expired, refused, not_found, too_large, rate_limited, timeout, server_error, http_error
        self.reason = reason


class MediaDownloader:
    """One per process: the semaphore is what bounds concurrent downloads.

    It has its own HTTP session, whose resolver refuses private addresses; `aclose` ends it.
    """

    def __init__(self, settings: Settings) -> None:
        self.policy = HostPolicy(settings.media_allowed_hosts)
        self._http: aiohttp.ClientSession | None = None
        self.concurrency = asyncio.Semaphore(settings.media_concurrency)
        self.timeout_s = settings.media_timeout_s
        self.attempts = max(1, settings.media_attempts)
        self.retry_base_s = settings.media_retry_base_s
        self.chunk_bytes = settings.media_chunk_bytes

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:  # made on first use, inside the running loop
            connector = aiohttp.TCPConnector(resolver=GuardedResolver(self.policy))
            self._http = aiohttp.ClientSession(connector=connector)
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def fetch(
        self, media: Media, kind: str, store: MediaStore, path: str, now_ms: int
    ) -> StoredMedia:
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
                raise MediaUnavailable(
                    "timeout", f"no complete download in {self.timeout_s} s"
                ) from None
            finally:
                metrics.media_download_seconds.observe(time.monotonic() - started)

    async def _attempts(
        self, media: Media, store: MediaStore, path: str, limit: int
    ) -> StoredMedia:
        last = ""
        for attempt in range(1, self.attempts + 1):
            try:
                return await self._once(media, store, path, limit)
            except RefusedAddress as exc:
                raise MediaUnavailable("refused", str(exc)) from None
            except _Transient as exc:
                last = str(exc)
            except aiohttp.ClientConnectorError as exc:
                if isinstance(exc.os_error, RefusedAddress):  # raised by the guarded resolver
                    raise MediaUnavailable("refused", str(exc.os_error)) from None
                last = f"{type(exc).__name__}: {exc}"
            except (aiohttp.ClientError, ConnectionError) as exc:
                # Includes a connection cut mid-body: the partial file was already discarded.
                last = f"{type(exc).__name__}: {exc}"
            if attempt < self.attempts:
                await asyncio.sleep(self.retry_base_s * 2 ** (attempt - 1))
        raise MediaUnavailable("server_error", last)

    async def _once(self, media: Media, store: MediaStore, path: str, limit: int) -> StoredMedia:
        url = media.url
        for _ in range(MAX_REDIRECTS + 1):
            self.policy.check_url(url)
            # Pre-signed link: no auth header (docs/gupshup.md §1.8).
            async with self.http.get(url, allow_redirects=False) as resp:
                location = resp.headers.get("Location")
                if resp.status not in REDIRECTS or not location:
                    return await self._answer(resp, media, store, path, limit)
                url = str(URL(url).join(URL(location)))
        raise MediaUnavailable("not_found", f"more than {MAX_REDIRECTS} redirects")

    async def _answer(
        self, resp: aiohttp.ClientResponse, media: Media, store: MediaStore, path: str, limit: int
    ) -> StoredMedia:
        if resp.status == 200:
            if resp.content_length is not None and resp.content_length > limit:
                raise MediaUnavailable("too_large", f"{resp.content_length} > {limit} bytes")
            content_type = media.content_type
            if content_type == "application/octet-stream" and resp.content_type:
                content_type = resp.content_type
            try:
                return await store.save(
                    path, resp.content.iter_chunked(self.chunk_bytes), content_type, limit
                )
            except MediaTooLarge as exc:  # no Content-Length, or a lying one
                raise MediaUnavailable("too_large", str(exc)) from None
        body = (await resp.content.read(ERROR_BODY_BYTES)).decode(errors="replace")
        if resp.status in (400, 404, 410):
            # Gupshup answers an invalid or expired media id with 400/404 "Invalid Media Id".
            raise MediaUnavailable("not_found", f"HTTP {resp.status}: {body}")
        if resp.status == 429:
            # Gupshup's media 429 is a one-hour penalty for invalid calls: retrying cannot help.
            raise MediaUnavailable("rate_limited", body)
        if resp.status >= 500:
            raise _Transient(f"HTTP {resp.status}: {body}")
        raise MediaUnavailable("http_error", f"HTTP {resp.status}: {body}")


class _Transient(Exception):
    """A 5xx: worth another attempt."""
