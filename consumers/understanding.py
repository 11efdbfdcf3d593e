"""What the agent reads of a message: its text, or what its media says.

Every kind of message yields a processed_text that says where it came from (`[nota de voz] ...`,
`[imagen] ... — pie de foto: "..."`), so the agent can tell a transcription from typed text and
read an unclear one back before acting on it. Media is downloaded and stored first (links die
fast), then read by Gemini when a key is configured; any failure gives a clear placeholder and a
metric, never a failed entry.
"""

from __future__ import annotations

import logging
import mimetypes
import re
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from consumers.gemini import GeminiReader, GeminiUnavailable, gemini_mime
from consumers.media import MediaDownloader, MediaUnavailable
from ops import metrics
from ops.deps import Deps
from storage.events import InboundMessage
from storage.media_store import (
    LocalMediaStore,
    MediaStore,
    MediaStoreError,
    StoredMedia,
    SupabaseMediaStore,
    object_path,
)

log = logging.getLogger(__name__)

# The label each kind carries in processed_text, in the users' language (Spanish first).
KIND_LABELS = {
    "image": "imagen",
    "audio": "audio",
    "voice": "nota de voz",
    "video": "video",
    "file": "documento",
    "sticker": "sticker",
    "location": "ubicación",
    "contact": "contacto",
    "button_reply": "botón",
    "list_reply": "opción de lista",
    "quick_reply": "botón",
    "reaction": "reacción",
    "unknown": "mensaje no soportado",
}
MEDIA_KINDS = {"image", "audio", "voice", "video", "file", "sticker"}
MAX_UNDERSTOOD_CHARS = 2000  # a long PDF summary must not crowd the agent's prompt

# What the placeholder says is missing when there is no reading of the file.
_MISSING = {
    "voice": "transcripción no disponible",
    "audio": "transcripción no disponible",
    "image": "descripción no disponible",
    "sticker": "descripción no disponible",
    "video": "descripción no disponible",
    "file": "resumen no disponible",
}
_DOWNLOAD_FAILED = {
    "too_large": "archivo demasiado grande"
}  # other reasons: "no se pudo descargar"

_TRANSCRIBE = (
    "Transcribe literalmente este audio, en el idioma en que se habla (no lo traduzcas). "
    "Devuelve solo la transcripción, sin comentarios. Marca con [inaudible] lo que no se entienda."
)
_DESCRIBE_IMAGE = (
    "Eres el asistente de recepción de un negocio que da citas (clínica, spa, salón). "
    "Describe en pocas frases, en español, lo que muestra esta imagen y lo que puede importar "
    "para atender al cliente (servicios, precios, fechas, horarios, productos, documentos). "
    "Copia textualmente todo texto legible que contenga."
)
_SUMMARISE_VIDEO = (
    "Eres el asistente de recepción de un negocio que da citas (clínica, spa, salón). "
    "Resume en pocas frases, en español, lo que muestra este video y transcribe lo que se dice "
    "en él, en su idioma original."
)
_SUMMARISE_DOCUMENT = (
    "Eres el asistente de recepción de un negocio que da citas (clínica, spa, salón). "
    "Resume en español, en no más de cinco frases, de qué trata este documento y sus datos "
    "clave (nombres, fechas, precios, servicios, importes)."
)

# MIME types Gemini reads (ai.google.dev docs on audio, vision, video and documents).
_GEMINI_IMAGE = {"image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"}
_GEMINI_AUDIO = {
    "audio/ogg",
    "audio/mpeg",
    "audio/mp3",
    "audio/wav",
    "audio/x-wav",
    "audio/aac",
    "audio/flac",
    "audio/aiff",
    "audio/mp4",
    "audio/x-m4a",
    "audio/opus",
}
_GEMINI_VIDEO = {
    "video/mp4",
    "video/mpeg",
    "video/mov",
    "video/quicktime",
    "video/avi",
    "video/x-flv",
    "video/mpg",
    "video/webm",
    "video/wmv",
    "video/3gpp",
}
_GEMINI_DOCUMENT = {"application/pdf", "text/plain"}

_EXTENSIONS = {
    "audio/ogg": "ogg",
    "audio/opus": "opus",
    "audio/mpeg": "mp3",
    "audio/mp4": "m4a",
    "audio/aac": "aac",
    "audio/amr": "amr",
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "video/mp4": "mp4",
    "video/3gpp": "3gp",
    "application/pdf": "pdf",
    "text/plain": "txt",
}
_SPACES = re.compile(r"\s+")


@dataclass
class Understanding:
    processed_text: str
    media_type: str | None = None
    media_url: str | None = None
    media_mime_type: str | None = None
    media_size_bytes: int | None = None
    media_sha256: str | None = None
    artifacts: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- texts


def media_label(event: InboundMessage) -> str:
    """`documento: precios.pdf` for files (the name helps the agent), the kind's label otherwise."""
    label = KIND_LABELS.get(event.kind, event.kind)
    if event.kind == "file" and event.media and event.media.filename:
        return f"{label}: {event.media.filename}"
    return label


def with_caption(text: str, event: InboundMessage) -> str:
    if not event.caption:
        return text
    name = "pie de foto" if event.kind in ("image", "video", "sticker") else "comentario"
    return f'{text} — {name}: "{event.caption.strip()}"'


def placeholder(event: InboundMessage, missing: str | None = None) -> str:
    label = media_label(event)
    missing = missing or _MISSING.get(event.kind, "contenido no disponible")
    # A file's label already has a colon: "[documento: a.pdf — resumen no disponible]" reads better.
    sep = " — " if ":" in label else ": "
    return with_caption(f"[{label}{sep}{missing}]", event)


def readable_line(event: InboundMessage) -> str:
    """Text, replies, locations, contacts and reactions: no I/O needed."""
    if event.kind == "text":
        return event.text or ""
    label = KIND_LABELS.get(event.kind, event.kind)
    if event.kind == "unknown":
        wire = event.raw.get("type") if isinstance(event.raw, dict) else None
        return f"[{label}: {wire}]" if isinstance(wire, str) and wire else f"[{label}]"
    if event.text:  # the parser already made a line ("[ubicación] lat ..."), or a button title
        return event.text if event.text.startswith("[") else f"[{label}] {event.text}"
    return placeholder(event)


def prompt_for(
    event: InboundMessage, mime: str, size_bytes: int, max_document_bytes: int
) -> str | None:
    """What to ask Gemini about this file, or None when Gemini cannot read it."""
    if mime in _GEMINI_AUDIO:
        return _TRANSCRIBE
    if mime in _GEMINI_IMAGE:
        return _DESCRIBE_IMAGE
    if mime in _GEMINI_VIDEO:
        return _SUMMARISE_VIDEO
    if mime in _GEMINI_DOCUMENT and size_bytes <= max_document_bytes:
        return _SUMMARISE_DOCUMENT
    return None


def extension(event: InboundMessage) -> str:
    media = event.media
    if media and media.filename and "." in media.filename:
        return media.filename.rsplit(".", 1)[1]
    mime = gemini_mime(media.content_type if media else "")
    return _EXTENSIONS.get(mime) or (mimetypes.guess_extension(mime) or ".bin").lstrip(".")


def _clean(text: str) -> str:
    text = _SPACES.sub(" ", text).strip()
    return text if len(text) <= MAX_UNDERSTOOD_CHARS else text[: MAX_UNDERSTOOD_CHARS - 1] + "…"


# ---------------------------------------------------------------- the understander


async def understand(deps: Deps, event: InboundMessage) -> Understanding:
    """Without clients: readable lines, and placeholders for media (nothing is downloaded)."""
    if event.kind in MEDIA_KINDS:
        return Understanding(
            processed_text=placeholder(event),
            media_type=event.kind,
            media_mime_type=event.media.content_type if event.media else None,
        )
    return Understanding(processed_text=readable_line(event))


def build_store(deps: Deps) -> MediaStore:
    s = deps.settings
    if s.supabase_url and s.supabase_service_role_key:
        return SupabaseMediaStore(
            deps.http,
            s.supabase_url,
            s.supabase_service_role_key,
            bucket=s.supabase_bucket,
            spool_dir=s.media_dir / ".spool",
            attempts=s.media_attempts,
            retry_base_s=s.media_retry_base_s,
            timeout_s=max(s.media_timeout_s, 30.0),
        )
    return LocalMediaStore(s.media_dir)


class Understander:
    """Download, store and read media; built once per process with its clients."""

    def __init__(self, deps: Deps) -> None:
        s = deps.settings
        self.store = build_store(deps)
        self.downloader = MediaDownloader(s)
        self.gemini = GeminiReader(s) if s.gemini_api_key else None
        self.max_document_bytes = s.gemini_max_document_bytes

    async def aclose(self) -> None:
        await self.downloader.aclose()
        if self.gemini is not None:
            await self.gemini.client.aio.aclose()

    async def __call__(self, deps: Deps, event: InboundMessage) -> Understanding:
        if event.kind not in MEDIA_KINDS:
            if event.kind == "unknown":
                # Kept with its raw payload so a later version can read it; counted to notice new types.
                metrics.media_messages.labels(event.org, "unknown", "unsupported").inc()
                return Understanding(
                    processed_text=readable_line(event),
                    media_type="unknown",
                    artifacts={"raw": event.raw},
                )
            return Understanding(processed_text=readable_line(event))
        return await self.media(deps, event)

    async def media(self, deps: Deps, event: InboundMessage) -> Understanding:
        org, kind = event.org, event.kind
        mime = event.media.content_type if event.media else None
        base = Understanding(processed_text="", media_type=kind, media_mime_type=mime)
        if event.media is None:
            metrics.media_messages.labels(org, kind, "no_media").inc()
            base.processed_text = placeholder(event, "no se pudo descargar")
            return base
        path = object_path(org, event.phone, event.provider_id, extension(event))
        try:
            stored = await self.downloader.fetch(event.media, kind, self.store, path, deps.now_ms())
        except MediaUnavailable as exc:
            log.info("media of %s not downloaded: %s", event.provider_id, exc)
            metrics.media_messages.labels(org, kind, f"download_{exc.reason}").inc()
            base.processed_text = placeholder(
                event, _DOWNLOAD_FAILED.get(exc.reason, "no se pudo descargar")
            )
            base.artifacts = {"media_error": exc.reason}
            return base
        except MediaStoreError as exc:
            log.warning("media of %s not stored: %s", event.provider_id, exc)
            metrics.media_messages.labels(org, kind, "store_failed").inc()
            base.artifacts = {"media_error": "store_failed"}
            if exc.local is None:
                base.processed_text = placeholder(event, "no se pudo guardar")
                return base
            stored, stored_ok = exc.local, False
        else:
            stored_ok = True
            metrics.media_bytes.labels(org).inc(stored.size_bytes)
            base.media_url = stored.path
        base.media_size_bytes, base.media_sha256 = stored.size_bytes, stored.sha256
        try:
            base.processed_text, result = await self.read(event, stored, base.artifacts)
        finally:
            await self.store.release(stored)
        metrics.media_messages.labels(org, kind, result if stored_ok else "store_failed").inc()
        return base

    async def read(
        self, event: InboundMessage, stored: StoredMedia, artifacts: dict[str, Any]
    ) -> tuple[str, str]:
        """(processed_text, metric result) from Gemini, or the placeholder."""
        mime = gemini_mime(event.media.content_type if event.media else "")
        prompt = prompt_for(event, mime, stored.size_bytes, self.max_document_bytes)
        if self.gemini is None:
            return placeholder(event), "stored"
        if prompt is None:
            artifacts["understanding"] = "unsupported_type"
            return placeholder(event), "unsupported_type"
        try:
            answer = await self.gemini.read(
                org=event.org,
                path=stored.local_path,
                size_bytes=stored.size_bytes,
                content_type=mime,
                prompt=prompt,
            )
        except GeminiUnavailable as exc:
            log.info("gemini could not read %s: %s", event.provider_id, exc)
            artifacts["understanding"] = f"gemini_{exc.reason}"
            return placeholder(event), f"gemini_{exc.reason}"
        artifacts["understanding"] = {
            "by": answer.model,
            "prompt_tokens": answer.prompt_tokens,
            "output_tokens": answer.output_tokens,
        }
        return with_caption(f"[{media_label(event)}] {_clean(answer.text)}", event), "understood"


def build_understander(deps: Deps) -> Callable[[Deps, InboundMessage], Awaitable[Understanding]]:
    """The understanding step enrich uses, built once per process with its clients."""
    return Understander(deps)
