"""Local HTTP fakes of the external services (real servers on 127.0.0.1, no mocks)."""

from .base import FakeServer
from .gemini import FakeGemini, GeminiRequest
from .gupshup import FakeGupshup, SentMessage
from .openai import FakeOpenAI, text, tool_call
from .supabase_storage import FakeSupabaseStorage

__all__ = [
    "FakeServer",
    "FakeGemini",
    "GeminiRequest",
    "FakeGupshup",
    "SentMessage",
    "FakeOpenAI",
    "text",
    "tool_call",
    "FakeSupabaseStorage",
]
