"""What the agent stage hands the receptionist for one turn, and what it gets back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TurnInput:
    org: str
    chat: str  # the customer's phone
    contact_id: str
    identity_id: str
    turn_id: str  # stable across redeliveries: booking idempotency keys derive from it
    texts: list[str]  # this turn's messages (processed_text), in the user's order


@dataclass(frozen=True)
class EscalationRequest:
    reason: str  # short, for the advisor
    summary: str  # what the customer wants, one or two lines
    accepted_text: str  # for the customer once the advisor notification is accepted
    failed_text: str  # for the customer if it was not accepted (the bot stays on)
    customer_name: str = "Cliente"  # the first name for the advisor's template, or "Cliente"


@dataclass(frozen=True)
class TurnResult:
    replies: list[str]  # each at most 4096 characters; empty when the escalation carries the text
    escalation: EscalationRequest | None = None
    actions: list[dict[str, Any]] = field(
        default_factory=list
    )  # {"action": name, "data": {...}} of this turn
    experts: list[str] = field(default_factory=list)  # the expert nodes that handled the turn
    tools: list[str] = field(default_factory=list)  # the tools they called, in order
