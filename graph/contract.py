"""What the agent stage hands the receptionist for one turn, and what it gets back."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


class TurnSuperseded(Exception):
    """Raised by a turn's `before_effect` when newer messages of the chat came before the turn
    did anything: it is abandoned (its checkpoint dropped) and the next turn reads them all."""


async def no_check() -> None:
    return None


@dataclass(frozen=True)
class TurnInput:
    org: str
    chat: str  # the customer's phone
    contact_id: str
    identity_id: str
    turn_id: str  # stable across redeliveries: booking idempotency keys derive from it
    texts: list[str]  # this turn's messages (processed_text), in the user's order
    # Awaited just before an effect the customer or the clinic would notice (a booking, a
    # cancellation, a move, a confirmation): raises TurnSuperseded if the turn must give way to
    # a newer one (consumers/agent.py; storage/turns.commit). Once it has returned, the turn is
    # committed and never abandoned.
    before_effect: Callable[[], Awaitable[None]] = field(default=no_check, compare=False)


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
