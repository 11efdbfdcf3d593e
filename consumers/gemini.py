"""Gemini (google-genai) as the media reader: transcribe, describe, summarise one stored file.

Each call has a time budget (GEMINI_BUDGET_S, retries included): 429 and 5xx are retried with
jittered backoff while the budget lasts, then the caller falls back to a placeholder. The SDK's
own retries stay off so the budget is the only clock. Facts this relies on (docs/gemini.md):
google-genai 3.x defaults to API v1 and talks through httpx2; inline parts count toward a 20 MB
request limit, larger files go through the Files API; `; codecs=opus` must not reach Gemini.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

import aiohttp

from ops import metrics, tracing
from ops.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")
FILE_POLL_S = 0.5


class GeminiUnavailable(Exception):
    """No answer within the budget; `reason` is a short metric label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason  # budget, rate_limited, server_error, network, blocked, http_NNN


@dataclass
class GeminiAnswer:
    text: str
    model: str
    prompt_tokens: int = 0
    output_tokens: int = 0


def gemini_mime(content_type: str) -> str:
    """`audio/ogg; codecs=opus` -> `audio/ogg`: Gemini rejects MIME parameters."""
    return content_type.split(";", 1)[0].strip().lower() or "application/octet-stream"


def _network_errors() -> tuple[type[BaseException], ...]:
    # google-genai's async client uses aiohttp when it is installed (it is, here), else httpx2
    # (3.x) or httpx (older); a failed connection surfaces as that library's error.
    found: list[type[BaseException]] = [ConnectionError, aiohttp.ClientError]
    for name in ("httpx2", "httpx"):
        try:
            module = __import__(name)
        except ImportError:
            continue
        found.append(module.TransportError)
    return tuple(found)


class GeminiReader:
    """One google-genai client per process, built from settings (never at import time)."""

    def __init__(self, settings: Settings) -> None:
        from google import genai
        from google.genai import errors, types

        self._types = types
        self._api_error = errors.APIError
        self._network = _network_errors()
        self.model = settings.gemini_model
        self.prices = settings.llm_prices
        self.budget_s = settings.gemini_budget_s
        self.retry_base_s = settings.gemini_retry_base_s
        self.retry_max_s = settings.gemini_retry_max_s
        self.inline_max_bytes = settings.gemini_inline_max_bytes
        self.max_output_tokens = settings.gemini_max_output_tokens
        self.concurrency = asyncio.Semaphore(settings.gemini_concurrency)
        self.uploads = asyncio.Semaphore(settings.gemini_upload_concurrency)
        self.client = genai.Client(
            api_key=settings.gemini_api_key,
            http_options=types.HttpOptions(
                base_url=settings.google_gemini_base_url,
                api_version=settings.gemini_api_version,
                timeout=int(settings.gemini_budget_s * 1000),  # milliseconds
            ),
        )

    async def read(
        self, *, org: str, path: Path, size_bytes: int, content_type: str, prompt: str
    ) -> GeminiAnswer:
        """Ask Gemini about one local file; raises GeminiUnavailable."""
        mime = gemini_mime(content_type)
        started = time.monotonic()
        deadline = started + self.budget_s
        try:
            async with asyncio.timeout(self.budget_s):
                async with self.concurrency:
                    with tracing.span(f"gemini {self.model}", model=self.model, mime=mime):
                        return await self._read(org, path, size_bytes, mime, prompt, deadline)
        except TimeoutError:
            metrics.gemini_errors.labels(org, "budget").inc()
            raise GeminiUnavailable("budget", f"no answer within {self.budget_s} s") from None
        except GeminiUnavailable as exc:
            metrics.gemini_errors.labels(org, exc.reason).inc()
            raise
        finally:
            metrics.gemini_seconds.observe(time.monotonic() - started)

    async def _read(
        self, org: str, path: Path, size_bytes: int, mime: str, prompt: str, deadline: float
    ) -> GeminiAnswer:
        types = self._types
        uploaded = None
        if size_bytes <= self.inline_max_bytes:
            data = await asyncio.to_thread(path.read_bytes)
            part = types.Part.from_bytes(data=data, mime_type=mime)
        else:
            uploaded = await self._retrying(org, deadline, lambda: self._upload(path, mime))
            part = types.Part.from_uri(file_uri=uploaded.uri, mime_type=mime)
        try:
            config = types.GenerateContentConfig(
                temperature=0.0, max_output_tokens=self.max_output_tokens
            )
            response = await self._retrying(
                org,
                deadline,
                lambda: self.client.aio.models.generate_content(
                    model=self.model, contents=[part, prompt], config=config
                ),
            )
        finally:
            if uploaded is not None:
                await self._forget(uploaded)
        text = (response.text or "").strip()
        if not text:
            raise GeminiUnavailable("blocked", "empty or blocked answer")
        usage = response.usage_metadata
        prompt_tokens = (usage.prompt_token_count or 0) if usage else 0
        output_tokens = (usage.candidates_token_count or 0) if usage else 0
        metrics.record_gemini(
            self.prices,
            org=org,
            model=self.model,
            prompt_tokens=prompt_tokens,
            output_tokens=output_tokens,
        )
        return GeminiAnswer(
            text=text, model=self.model, prompt_tokens=prompt_tokens, output_tokens=output_tokens
        )

    async def _upload(self, path: Path, mime: str) -> Any:
        """Files API upload (the SDK sends it in 8 MB chunks), then wait until it is ACTIVE."""
        async with self.uploads:
            file = await self.client.aio.files.upload(
                file=str(path), config=self._types.UploadFileConfig(mime_type=mime)
            )
        while str(getattr(file.state, "name", file.state)) == "PROCESSING":
            if file.name is None:  # the API names every upload: without one it cannot be polled
                raise GeminiUnavailable("server_error", "the uploaded file has no name")
            await asyncio.sleep(FILE_POLL_S)  # the outer budget bounds this loop
            file = await self.client.aio.files.get(name=file.name)
        return file

    async def _forget(self, file: Any) -> None:
        # Uploaded files expire after 48 h anyway; deleting now keeps customer media off Google.
        failures: tuple[type[BaseException], ...] = (self._api_error, *self._network)
        try:
            await self.client.aio.files.delete(name=file.name)
        except failures as exc:
            log.info("could not delete Gemini file %s: %s", file.name, exc)

    async def _retrying(self, org: str, deadline: float, call: Callable[[], Awaitable[T]]) -> T:
        attempt = 0
        while True:
            attempt += 1
            try:
                return await call()
            except self._api_error as exc:
                code = int(getattr(exc, "code", 0) or 0)
                if code == 429:
                    reason = "rate_limited"
                elif code >= 500:
                    reason = "server_error"
                else:  # 400, 403, 404 (retired model): another try gives the same answer
                    raise GeminiUnavailable(f"http_{code}", str(exc)[:200]) from None
                detail = str(exc)[:200]
            except self._network as exc:
                reason, detail = "network", f"{type(exc).__name__}: {exc}"
            pause_s = min(self.retry_max_s, self.retry_base_s * 2 ** (attempt - 1))
            pause_s *= random.uniform(0.5, 1.0)  # jitter: many workers hit one quota
            metrics.gemini_errors.labels(org, f"retried_{reason}").inc()
            if time.monotonic() + pause_s >= deadline:
                raise GeminiUnavailable(reason, detail)
            log.info(
                "gemini %s (attempt %d), retrying in %.2f s: %s", reason, attempt, pause_s, detail
            )
            await asyncio.sleep(pause_s)
