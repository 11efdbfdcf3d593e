"""What the agent reads of a message: its text, or what its media says.

Every kind of message yields a processed_text that says where it came from, so the agent can tell
a transcription from typed text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from ops.deps import Deps
from storage.events import InboundMessage

# The label each kind carries in processed_text, in the users' language (Spanish first).
KIND_LABELS = {
    "image": "imagen", "audio": "audio", "voice": "nota de voz", "video": "video",
    "file": "documento", "sticker": "sticker", "location": "ubicación", "contact": "contacto",
    "button_reply": "botón", "list_reply": "opción de lista", "quick_reply": "botón",
    "reaction": "reacción", "unknown": "mensaje no soportado",
}


@dataclass
class Understanding:
    processed_text: str
    media_type: str | None = None
    media_url: str | None = None
    media_mime_type: str | None = None
    media_size_bytes: int | None = None
    media_sha256: str | None = None
    artifacts: dict[str, Any] = field(default_factory=dict)


def placeholder(event: InboundMessage) -> str:
    label = KIND_LABELS.get(event.kind, event.kind)
    caption = f" {event.caption}" if event.caption else ""
    return f"[{label}: contenido no disponible]{caption}"


async def understand(deps: Deps, event: InboundMessage) -> Understanding:
    """Text as typed; other kinds as their readable line or a clear placeholder."""
    if event.kind == "text":
        return Understanding(processed_text=event.text or "")
    if event.text:  # replies, locations and contacts already have a readable line
        label = KIND_LABELS.get(event.kind, event.kind)
        text = event.text if event.text.startswith("[") else f"[{label}] {event.text}"
        return Understanding(processed_text=text)
    return Understanding(processed_text=placeholder(event), media_type=event.kind,
                         media_mime_type=event.media.content_type if event.media else None)


def build_understander(deps: Deps) -> Callable[[Deps, InboundMessage], Awaitable[Understanding]]:
    """The understanding step enrich uses, built once per process with its clients."""
    return understand
