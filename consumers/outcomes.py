"""What became of a stream entry, and of an outgoing message: the values of the `outcome`
labels (dashboards and alerts in deploy/ match them, so a value never changes) and the level
each is logged at.

A stage handler returns an `Outcome` when the entry ended some other way than plainly handled
(None means `ACKED`); the runtime adds its own (`RETRIED`, `DEAD_LETTERED`, ...). Every entry's
fate is logged once by the runtime (consumers/runtime.py `_outcome`) at its outcome's level:
what happens in normal running at DEBUG or INFO, what a person should look at at WARNING or
ERROR.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from types import MappingProxyType
from typing import Final, Mapping


class Outcome(StrEnum):
    """The `outcome` label of skytide_stage_entries_total, and the stage log line's."""

    ACKED = "acked"
    """DEBUG. Handled; its effect is durable and the entry acknowledged."""
    DUPLICATE = "duplicate"
    """INFO. Handled before (a redelivery, a replay, a second copy): nothing is done twice."""
    RETRIED = "retried"
    """WARNING. Failed on its own with its dependencies answering: tried again after a backoff."""
    WAITING_FOR_DEPENDENCY = "waiting_for_dependency"
    """INFO. Failed while a dependency was down: tried again without using up an attempt (the
    outage itself is logged once, at WARNING, by ops/outages.py)."""
    DEAD_LETTERED = "dead_lettered"
    """ERROR. Given up on and moved to `{org}:dead`: a person must look (`skytide dlq`)."""
    HANDED_BACK = "handed_back"
    """INFO. Left pending at shutdown for another worker to claim at once."""
    # enrich
    STORED_WITHOUT_TURN = "stored_without_turn"
    """INFO. A message kept that starts no turn: the chat is taken over, the contact opted out,
    a STOP/START keyword, a reaction."""
    STAFF_MESSAGE = "staff_message"
    """INFO. The clinic's own people wrote to the business number: kept, never answered."""
    UNMATCHED = "unmatched"
    """INFO. A status event for no outgoing message of ours (sent from elsewhere, or erased)."""
    IGNORED = "ignored"
    """INFO. A user event other than an opt-in or opt-out."""
    IGNORED_STAFF = "ignored_staff"
    """INFO. An opt-in or opt-out of a staff phone, which is not a contact with a consent."""
    # agent
    SKIPPED_BOT_OFF = "skipped_bot_off"
    """INFO. A turn of a chat a person took over (or one that no longer exists)."""
    MERGED_INTO_NEXT_TURN = "merged_into_next_turn"
    """INFO. A later turn of the chat is running: this one's messages join the chat's next."""
    RESTARTED = "restarted"
    """INFO. The customer wrote again before the turn sent or booked anything: it gave way, and
    its messages start a new turn with the newer ones (storage/turns.commit)."""
    # sender (also counted in skytide_messages_sent_total, as `Sent`)
    DROPPED = "dropped"
    """INFO. Not sent on purpose: the contact opted out, or the bot is off for the chat."""
    DROPPED_WINDOW = "dropped_window"
    """WARNING. Not sent: outside the 24-hour window with no template that may go instead
    (or a continuation of a reply that went as the template)."""
    IN_DOUBT = "in_doubt"
    """WARNING. The request may have reached Gupshup: evidence is waited for (send doubts)."""
    UNKNOWN_OUTCOME = "unknown_outcome"
    """WARNING. A send given up on while in doubt: a person decides (`skytide dlq unknown`)."""
    # webhooks
    SKIPPED_NO_ENDPOINT = "skipped_no_endpoint"
    """INFO. The organization has no webhook endpoint: nothing to deliver."""

    @property
    def level(self) -> int:
        """The logging level of this outcome's log line."""
        return _LEVELS[self]


_D, _I, _W, _E = logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR
# One level per member, as documented on each (tests/test_outcomes.py checks both agree).
_LEVELS: Final[Mapping[Outcome, int]] = MappingProxyType(
    {
        Outcome.ACKED: _D,
        Outcome.DUPLICATE: _I,
        Outcome.RETRIED: _W,
        Outcome.WAITING_FOR_DEPENDENCY: _I,
        Outcome.DEAD_LETTERED: _E,
        Outcome.HANDED_BACK: _I,
        Outcome.STORED_WITHOUT_TURN: _I,
        Outcome.STAFF_MESSAGE: _I,
        Outcome.UNMATCHED: _I,
        Outcome.IGNORED: _I,
        Outcome.IGNORED_STAFF: _I,
        Outcome.SKIPPED_BOT_OFF: _I,
        Outcome.MERGED_INTO_NEXT_TURN: _I,
        Outcome.RESTARTED: _I,
        Outcome.DROPPED: _I,
        Outcome.DROPPED_WINDOW: _W,
        Outcome.IN_DOUBT: _W,
        Outcome.UNKNOWN_OUTCOME: _W,
        Outcome.SKIPPED_NO_ENDPOINT: _I,
    }
)


class Sent(StrEnum):
    """What became of one outgoing message: the `outcome` label of skytide_messages_sent_total
    (per message part, where a stage entry may hold several parts)."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"
    DROPPED = "dropped"
    DROPPED_WINDOW = "dropped_window"
    IN_DOUBT = "in_doubt"
    UNKNOWN_OUTCOME = "unknown_outcome"

    @property
    def outcome(self) -> Outcome:
        """The sender stage's entry outcome when a send ends this way."""
        return _SENT_OUTCOME[self]


_SENT_OUTCOME: Final[Mapping[Sent, Outcome]] = MappingProxyType(
    {
        Sent.ACCEPTED: Outcome.ACKED,
        Sent.REJECTED: Outcome.DEAD_LETTERED,  # Gupshup refused it: the entry is poison
        Sent.DUPLICATE: Outcome.DUPLICATE,
        Sent.DROPPED: Outcome.DROPPED,
        Sent.DROPPED_WINDOW: Outcome.DROPPED_WINDOW,
        Sent.IN_DOUBT: Outcome.IN_DOUBT,
        Sent.UNKNOWN_OUTCOME: Outcome.UNKNOWN_OUTCOME,
    }
)
