"""Where inbound media files live: a local folder (MEDIA_DIR) or Supabase Storage (`chat-media`).

Files arrive as a stream of chunks and are written as they come, hashing on the way, so a
16 MB video never sits whole in memory. Both stores keep a local copy for the understanding step
(Gemini reads it from disk) until `release` is called; the object path `{org}/{chat}/{message}.{ext}`
is what chat_messages.media_url records, never a public URL (the bucket is private).
Wire format of Supabase Storage: docs/supabase-storage.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Protocol

import aiohttp

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class MediaTooLarge(Exception):
    """The file grew past the limit for its kind while it was being written."""

    def __init__(self, limit_bytes: int) -> None:
        super().__init__(f"media is larger than {limit_bytes} bytes")
        self.limit_bytes = limit_bytes


class MediaStoreError(Exception):
    """The store did not keep the file; `local` is the downloaded copy, still usable, if any."""

    def __init__(self, message: str, local: "StoredMedia | None" = None) -> None:
        super().__init__(message)
        self.local = local


@dataclass
class StoredMedia:
    path: str  # object path inside the store: {org}/{chat}/{message}.{ext}
    size_bytes: int
    sha256: str  # hex
    local_path: Path  # a readable copy on this machine until release()


def object_path(org: str, chat: str, message: str, ext: str) -> str:
    """`{org}/{chat}/{message}.{ext}`, with characters a path or URL would choke on replaced.

    WhatsApp ids can be base64 (`+`, `/`, `=`), and a `/` in a message id would add a folder.
    """
    parts = [_UNSAFE.sub("_", p).strip("._") or "_" for p in (org, chat, message)]
    ext = _UNSAFE.sub("", ext.lstrip(".")).lower() or "bin"
    return f"{parts[0]}/{parts[1]}/{parts[2]}.{ext}"


class MediaStore(Protocol):
    async def save(
        self, path: str, chunks: AsyncIterator[bytes], content_type: str, max_bytes: int
    ) -> StoredMedia: ...

    async def release(self, stored: StoredMedia) -> None: ...

    async def delete(self, paths: list[str]) -> int: ...

    async def paths_under(self, folder: str) -> list[str]: ...


async def write_chunks(
    target: Path, chunks: AsyncIterator[bytes], max_bytes: int
) -> tuple[int, str]:
    """Write chunks to `target` through a temporary name; returns (size, sha256 hex).

    The temporary name makes a half-written file invisible: a crash or a too-large file
    leaves no truncated media under the final name.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
    digest = hashlib.sha256()
    size = 0
    try:
        with open(partial, "wb") as out:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise MediaTooLarge(max_bytes)
                digest.update(chunk)
                # A 64 KB write lands in the page cache in microseconds: not worth a thread hop.
                out.write(chunk)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return size, digest.hexdigest()


class LocalMediaStore:
    """Files under MEDIA_DIR; the stored file is its own local copy."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    async def save(
        self, path: str, chunks: AsyncIterator[bytes], content_type: str, max_bytes: int
    ) -> StoredMedia:
        target = self.root / path
        size, sha256 = await write_chunks(target, chunks, max_bytes)
        return StoredMedia(path=path, size_bytes=size, sha256=sha256, local_path=target)

    async def release(self, stored: StoredMedia) -> None:
        return None  # the local file is the stored media

    async def delete(self, paths: list[str]) -> int:
        """Removes these objects (missing ones are fine) and the folders they leave empty;
        returns how many files were removed."""
        removed = 0
        for path in paths:
            target = self._inside(path)
            if target is None:
                continue
            try:
                target.unlink()
                removed += 1
            except FileNotFoundError:
                pass
            for folder in target.parents:  # {org}/{chat}/ names the phone: empty, it goes too
                if folder == self.root or self.root not in folder.parents:
                    break
                try:
                    folder.rmdir()
                except OSError:
                    break  # not empty (or gone)
        return removed

    async def paths_under(self, folder: str) -> list[str]:
        """Every object under `folder` (half-written `.part` files included)."""
        base = self._inside(folder)
        if base is None or not base.is_dir():
            return []
        return sorted(str(p.relative_to(self.root)) for p in base.rglob("*") if p.is_file())

    def _inside(self, path: str) -> Path | None:
        """The file for an object path, or None for a path that would leave the root."""
        target = (self.root / path).resolve()
        root = self.root.resolve()
        return target if root in target.parents else None

    def file_of(self, path: str) -> Path | None:
        """The stored file of `path`, None when absent or when the path would leave the root (a
        stored path is ours, but a row edited by hand must not open the rest of the disk)."""
        root = self.root.resolve()
        target = (root / path).resolve()
        return target if target.is_relative_to(root) and target.is_file() else None


class SupabaseMediaStore:
    """Supabase Storage through its HTTP API (the same requests `storage3` makes).

    The file is spooled to a local temporary file first (hashing it on the way), then uploaded
    from disk: aiohttp streams a file object in chunks, so memory stays flat, and the spool
    doubles as the copy Gemini reads.
    """

    def __init__(
        self,
        http: aiohttp.ClientSession,
        url: str,
        service_key: str,
        *,
        bucket: str = "chat-media",
        spool_dir: Path,
        attempts: int = 3,
        retry_base_s: float = 0.5,
        timeout_s: float = 120.0,
    ) -> None:
        self.http = http
        self.base = url.rstrip("/") + "/storage/v1"
        self.key = service_key
        self.bucket = bucket
        self.spool_dir = Path(spool_dir)
        self.attempts = attempts
        self.retry_base_s = retry_base_s
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def save(
        self, path: str, chunks: AsyncIterator[bytes], content_type: str, max_bytes: int
    ) -> StoredMedia:
        spool = self.spool_dir / f"{uuid.uuid4().hex}-{path.rsplit('/', 1)[-1]}"
        size, sha256 = await write_chunks(spool, chunks, max_bytes)
        stored = StoredMedia(path=path, size_bytes=size, sha256=sha256, local_path=spool)
        try:
            await self._upload(stored, content_type)
        except MediaStoreError as exc:
            exc.local = stored  # the caller can still understand it, then release() it
            raise
        except BaseException:
            spool.unlink(missing_ok=True)
            raise
        return stored

    async def release(self, stored: StoredMedia) -> None:
        stored.local_path.unlink(missing_ok=True)

    async def delete(self, paths: list[str]) -> int:
        """Removes these objects (`DELETE /object/{bucket}` with their paths; missing ones are
        fine); returns how many Storage removed. Raises MediaStoreError when it refuses."""
        removed = 0
        headers = {"apiKey": self.key, "Authorization": f"Bearer {self.key}"}
        for i in range(0, len(paths), 1000):  # Storage removes at most 1,000 per request
            async with self.http.delete(
                f"{self.base}/object/{self.bucket}",
                headers=headers,
                json={"prefixes": paths[i : i + 1000]},
                timeout=self.timeout,
            ) as resp:
                text = await resp.text()
                if resp.status >= 300:
                    raise MediaStoreError(
                        f"Supabase Storage delete failed: HTTP {resp.status}: {text[:200]}"
                    )
                try:
                    removed += len(json.loads(text) or [])
                except ValueError:
                    pass
        return removed

    async def paths_under(self, folder: str) -> list[str]:
        """Objects are found by the rows that name them: listing the bucket is not done here."""
        return []

    async def signed_url(self, path: str, expires_s: int) -> str:
        """A link that reads the object for `expires_s` without the service key (the bucket is
        private): what a person's browser is sent to."""
        headers = {"apiKey": self.key, "Authorization": f"Bearer {self.key}"}
        async with self.http.post(
            f"{self.base}/object/sign/{self.bucket}/{path}",
            json={"expiresIn": expires_s},
            headers=headers,
            timeout=self.timeout,
        ) as response:
            if response.status != 200:
                raise MediaStoreError(
                    f"signing {path} failed: HTTP {response.status} {(await response.text())[:200]}"
                )
            signed: str = (await response.json())["signedURL"]
        return self.base + signed

    async def _upload(self, stored: StoredMedia, content_type: str) -> None:
        url = f"{self.base}/object/{self.bucket}/{stored.path}"
        # Redelivered entries upload the same path again: upsert makes that harmless.
        headers = {"apiKey": self.key, "Authorization": f"Bearer {self.key}", "x-upsert": "true"}
        last = ""
        for attempt in range(1, self.attempts + 1):
            try:
                with open(stored.local_path, "rb") as body:
                    form = aiohttp.FormData()
                    form.add_field("cacheControl", "3600")
                    form.add_field(
                        "file",
                        body,
                        filename=stored.path.rsplit("/", 1)[-1],
                        content_type=content_type,
                    )
                    async with self.http.post(
                        url, data=form, headers=headers, timeout=self.timeout
                    ) as resp:
                        text = await resp.text()
                        if resp.status < 300:
                            return
                        last = f"HTTP {resp.status}: {text[:200]}"
                        # Storage reports most errors as 400 with the real status in the body;
                        # only gateway-level 5xx and 429 are worth another try.
                        if resp.status != 429 and resp.status < 500:
                            break
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            if attempt < self.attempts:
                await asyncio.sleep(self.retry_base_s * 2 ** (attempt - 1))
        raise MediaStoreError(f"Supabase Storage upload of {stored.path} failed: {last}")
