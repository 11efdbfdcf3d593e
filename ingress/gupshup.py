"""Turn one Gupshup webhook body (format v2 or v3) into stream events.

Pure parsing: no I/O. The HTTP handler decides what to do with `MalformedPayload`
and with the `ignored` kinds; this module only says what the body means.
Shapes follow docs/gupshup.md §1.3–1.7; each format has its module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ingress.gupshup_fields import MalformedPayload, Parsed, opt_str
from ingress.gupshup_v2 import parse_v2
from ingress.gupshup_v3 import parse_v3

__all__ = ["AppRef", "MalformedPayload", "Parsed", "identify_app", "parse_webhook"]


@dataclass(frozen=True)
class AppRef:
    """Which Gupshup app sent the body: v2 names it, v3 gives its id."""

    name: str | None
    gs_app_id: str | None
    format: Literal["v2", "v3"]


def identify_app(body: dict[str, Any]) -> AppRef:
    """Tell the format and the app apart before any parsing, so the caller can find the org."""
    if not isinstance(body, dict):
        raise MalformedPayload("body is not a JSON object")
    if body.get("object") == "whatsapp_business_account":
        return AppRef(name=None, gs_app_id=opt_str(body.get("gs_app_id")), format="v3")
    # v2 always names the app; a body with a type and a payload is v2 even without it.
    if "app" in body or (isinstance(body.get("type"), str) and "payload" in body):
        return AppRef(
            name=opt_str(body.get("app")), gs_app_id=opt_str(body.get("appId")), format="v2"
        )
    raise MalformedPayload(
        "body is neither format v2 (no 'app') nor v3 (no 'object': 'whatsapp_business_account')"
    )


def parse_webhook(body: dict[str, Any], org: str, received_at_ms: int) -> Parsed:
    """All events in one webhook body. Unknown kinds land in `ignored`, never raise."""
    ref = identify_app(body)
    out = Parsed()
    if ref.format == "v3":
        parse_v3(body, org, received_at_ms, out)
    else:
        parse_v2(body, org, received_at_ms, out)
    return out
