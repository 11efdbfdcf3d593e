"""Fake Supabase Storage API (the /storage/v1 part of a Supabase project URL).

Wire format: docs/supabase-storage.md (captured from supabase 2.34.1 /
storage3 2.34.1). Errors use Storage's legacy shape: HTTP 400 with the "real" status as a
*string* in the body, e.g. `{"statusCode": "404", "error": "not_found", ...}`; storage3
builds StorageApiError(message, error, statusCode) from those three keys.
"""

from __future__ import annotations

import secrets
import time
import uuid
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from aiohttp import web

from .base import FakeServer, parse_multipart

PREFIX = "/storage/v1"


def storage_error(
    status_code: str, error: str, message: str, http_status: int = 400
) -> web.Response:
    return web.json_response(
        {"statusCode": status_code, "error": error, "message": message}, status=http_status
    )


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


class FakeSupabaseStorage(FakeServer):
    def __init__(
        self, *, buckets: tuple[str, ...] = ("chat-media",), api_key: str | None = None
    ) -> None:
        super().__init__()
        self.api_key = api_key  # None: any non-empty key is accepted
        self.objects: dict[str, tuple[bytes, str]] = {}  # "bucket/path" -> (data, content type)
        self.buckets: dict[str, dict[str, Any]] = {}
        self._signed: dict[str, tuple[str, float]] = {}  # token -> ("bucket/path", expires_at)
        for name in buckets:
            self.create_bucket(name)

    def create_bucket(self, name: str, *, public: bool = False) -> None:
        now = _now_iso()
        self.buckets[name] = {
            "id": name,
            "name": name,
            "owner": "",
            "public": public,
            "type": "STANDARD",
            "file_size_limit": None,
            "allowed_mime_types": None,
            "created_at": now,
            "updated_at": now,
        }

    def setup_routes(self, router: web.UrlDispatcher) -> None:
        p = PREFIX
        router.add_get(f"{p}/bucket", self._list_buckets)
        router.add_get(f"{p}/bucket/{{bucket}}", self._get_bucket)
        # More specific routes first: "sign", "public", "authenticated" are not buckets.
        router.add_post(f"{p}/object/sign/{{bucket}}/{{path:.+}}", self._sign)
        router.add_post(f"{p}/object/sign/{{bucket}}", self._sign_many)
        router.add_get(f"{p}/object/sign/{{bucket}}/{{path:.+}}", self._get_signed)
        router.add_get(f"{p}/object/public/{{bucket}}/{{path:.+}}", self._get_public)
        router.add_get(f"{p}/object/authenticated/{{bucket}}/{{path:.+}}", self._download)
        router.add_get(f"{p}/object/info/{{bucket}}/{{path:.+}}", self._info)
        router.add_post(f"{p}/object/{{bucket}}/{{path:.+}}", self._upload)
        router.add_put(f"{p}/object/{{bucket}}/{{path:.+}}", self._upload)
        router.add_get(f"{p}/object/{{bucket}}/{{path:.+}}", self._download)
        router.add_delete(f"{p}/object/{{bucket}}", self._remove)

    # -- auth / failures -----------------------------------------------------------------
    def fail_next(self, status: int, times: int = 1, body: dict[str, Any] | None = None) -> None:
        """The next `times` authenticated calls answer `status` with a Storage error body."""
        body = body or {
            "statusCode": str(status),
            "error": "internal",
            "message": "Internal Server Error",
        }
        self.queue_failure(status, times, body)

    async def _guard(self, request: web.Request) -> web.Response | None:
        # The API gateway in front of Storage wants `apikey` (header names are
        # case-insensitive; supabase-py sends `apiKey`) or a Bearer token.
        key = (
            request.headers.get("apikey")
            or request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        )
        if not key:
            return web.json_response(
                {
                    "message": "No API key found in request",
                    "hint": "No `apikey` request header or url param was found.",
                },
                status=401,
            )
        if self.api_key is not None and key != self.api_key:
            return web.json_response({"message": "Invalid API key"}, status=401)
        await self.sleep_delay()
        failure = self.take_failure()
        if failure is not None:
            return web.json_response(failure[1], status=failure[0])
        return None

    def _bucket_missing(self, bucket: str) -> web.Response | None:
        if bucket not in self.buckets:
            return storage_error("404", "Bucket not found", "Bucket not found")
        return None

    # -- buckets -------------------------------------------------------------------------
    async def _list_buckets(self, request: web.Request) -> web.Response:
        return await self._guard(request) or web.json_response(list(self.buckets.values()))

    async def _get_bucket(self, request: web.Request) -> web.Response:
        bucket = request.match_info["bucket"]
        return (
            await self._guard(request)
            or self._bucket_missing(bucket)
            or web.json_response(self.buckets[bucket])
        )

    # -- objects -------------------------------------------------------------------------
    async def _upload(self, request: web.Request) -> web.Response:
        bucket, path = request.match_info["bucket"], request.match_info["path"]
        denied = await self._guard(request) or self._bucket_missing(bucket)
        if denied is not None:
            return denied
        key = f"{bucket}/{path}"
        upsert = request.headers.get("x-upsert", "false").lower() == "true"
        if request.method == "POST" and key in self.objects and not upsert:
            return storage_error("409", "Duplicate", "The resource already exists")
        if request.method == "PUT" and key not in self.objects:
            return storage_error("404", "not_found", "Object not found")

        if request.content_type == "multipart/form-data":
            # storage3 sends fields `cacheControl` and `file` (filename, content type).
            part = parse_multipart(await request.read(), request.headers["Content-Type"]).get(
                "file"
            )
            if part is None:
                return storage_error("400", "InvalidRequest", "No file field in multipart body")
            data, ctype = part[2], part[1]
        else:  # the API also accepts the raw bytes as the body
            data, ctype = await request.read(), request.content_type or "application/octet-stream"
        self.objects[key] = (data, ctype)
        return web.json_response({"Key": key, "Id": str(uuid.uuid4())})

    async def _download(self, request: web.Request) -> web.Response:
        return await self._guard(request) or self._serve(
            request.match_info["bucket"], request.match_info["path"]
        )

    async def _info(self, request: web.Request) -> web.Response:
        # storage3's exists() reads this; a missing object must be statusCode "404" not_found.
        bucket, path = request.match_info["bucket"], request.match_info["path"]
        denied = await self._guard(request) or self._bucket_missing(bucket)
        if denied is not None:
            return denied
        obj = self.objects.get(f"{bucket}/{path}")
        if obj is None:
            return storage_error("404", "not_found", "Object not found")
        now = _now_iso()
        return web.json_response(
            {
                "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{bucket}/{path}")),
                "name": path,
                "bucket_id": bucket,
                "size": len(obj[0]),
                "content_type": obj[1],
                "cache_control": "max-age=3600",
                "created_at": now,
                "updated_at": now,
                "last_modified": now,
                "metadata": {},
            }
        )

    async def _get_public(self, request: web.Request) -> web.Response:
        bucket = request.match_info["bucket"]
        if not self.buckets.get(bucket, {}).get("public"):
            return storage_error("404", "not_found", "Object not found")
        return self._serve(bucket, request.match_info["path"])

    def _serve(self, bucket: str, path: str) -> web.Response:
        missing = self._bucket_missing(bucket)
        if missing is not None:
            return missing
        obj = self.objects.get(f"{bucket}/{path}")
        if obj is None:
            return storage_error("404", "not_found", "Object not found")
        return web.Response(body=obj[0], headers={"Content-Type": obj[1]})

    async def _remove(self, request: web.Request) -> web.Response:
        bucket = request.match_info["bucket"]
        denied = await self._guard(request) or self._bucket_missing(bucket)
        if denied is not None:
            return denied
        body = await request.json()
        removed = []
        for name in body.get("prefixes") or []:
            if self.objects.pop(f"{bucket}/{name}", None) is not None:
                removed.append({"name": name, "bucket_id": bucket, "id": str(uuid.uuid4())})
        return web.json_response(removed)

    # -- signed URLs ---------------------------------------------------------------------
    def _make_token(self, key: str, expires_in: float) -> str:
        token = secrets.token_urlsafe(24)  # real tokens are JWTs; clients treat them as opaque
        self._signed[token] = (key, time.time() + expires_in)
        return token

    async def _sign(self, request: web.Request) -> web.Response:
        bucket, path = request.match_info["bucket"], request.match_info["path"]
        denied = await self._guard(request) or self._bucket_missing(bucket)
        if denied is not None:
            return denied
        if f"{bucket}/{path}" not in self.objects:
            return storage_error("404", "not_found", "Object not found")
        body = await request.json()
        token = self._make_token(f"{bucket}/{path}", float(body.get("expiresIn", 60)))
        # Relative to {SUPABASE_URL}/storage/v1; the client adds that prefix.
        return web.json_response(
            {"signedURL": f"/object/sign/{bucket}/{quote(path)}?token={token}"}
        )

    async def _sign_many(self, request: web.Request) -> web.Response:
        bucket = request.match_info["bucket"]
        denied = await self._guard(request) or self._bucket_missing(bucket)
        if denied is not None:
            return denied
        body = await request.json()
        out = []
        for path in body.get("paths") or []:
            if f"{bucket}/{path}" in self.objects:
                token = self._make_token(f"{bucket}/{path}", float(body.get("expiresIn", 60)))
                url = f"/object/sign/{bucket}/{quote(path)}?token={token}"
                out.append({"error": None, "path": path, "signedURL": url})
            else:
                out.append(
                    {
                        "error": "Either the object does not exist or you do not have access to it",
                        "path": path,
                        "signedURL": None,
                    }
                )
        return web.json_response(out)

    async def _get_signed(self, request: web.Request) -> web.Response:
        # No apikey needed: the token is the credential (this is what a signed URL is for).
        bucket, path = request.match_info["bucket"], request.match_info["path"]
        signed = self._signed.get(request.query.get("token", ""))
        if signed is None or signed[0] != f"{bucket}/{path}":
            return storage_error("400", "InvalidJWT", "invalid signature")
        if time.time() >= signed[1]:
            return storage_error("400", "InvalidJWT", '"exp" claim timestamp check failed')
        return self._serve(bucket, path)
