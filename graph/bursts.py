"""How long to wait for the rest of a burst, read from the message that just came in.

People write on WhatsApp in bursts ("hola" · "una pregunta" · "¿cuánto cuesta el masaje?").
One fixed quiet window makes every customer wait for the slowest typist; this reads each
message with the intent table (graph/intents.py) and chooses:

- complete: a question, a clear request of five words or more, a long message, a one-word
  answer ("sí", "gracias", "la primera"), a voice note, a picture with a caption: the burst
  likely ends here; a short window.
- fragment: a greeting alone, "una pregunta", "oye", a picture without its words: more is
  coming; the full window (DEBOUNCE_SECONDS).
- neither: half the full window.

The burst's due time is reset by each message with that message's window, and the cap
(DEBOUNCE_MAX_WAIT_SECONDS from the burst's first message) still holds, so a customer who keeps
writing is answered by then at the latest. The shares are settings, and an organization may
set its own (`debounce_seconds`, `debounce_adaptive`, `debounce_complete_share`,
`debounce_neutral_share` in its settings, storage/org_settings.py: `Rules.of`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from graph import intents
from ops.settings import Settings

Completeness = Literal["complete", "fragment", "neutral"]

# Openers that announce what follows rather than say it.
_FRAGMENT = re.compile(
    r"^\W*(hola+|holi|buenas?|buen(os|as)? (dias|tardes|noches)|hey|ey|oye|oiga|mira|disculpa|disculpe"
    r"|perdon|una (pregunta|consulta|duda)|tengo una (pregunta|consulta|duda)|consulta|pregunta"
    r"|te (cuento|pregunto|consulto)|le (pregunto|consulto)|quisiera (saber|preguntar)|necesito (saber|preguntar)"
    r"|hi|hello|hey there|good (morning|afternoon|evening)|quick question|a question|oie?|ola|bom dia"
    r"|boa (tarde|noite)|uma (pergunta|duvida)|tudo bem)"
    r"(\W+(hola|buenas|buen(os|as)? (dias|tardes|noches)|una (pregunta|consulta)|por ?fa(vor)?|porfis|hi|hello))*\W*$"
)

# Intents that say what the customer wants, whole: the burst can end on them. Every intent
# the table knows but a greeting, which announces what follows.
_CLEAR = frozenset(intents.ORDER) - {"greeting"}


def _without_greeting(t: str) -> str:
    rest = intents.RX["greeting"].sub(" ", t)
    return re.sub(r"\b(tardes|dias|noches|que tal)\b", " ", rest)


LONG_WORDS = 12  # a message this long carries its own context
ENOUGH_WORDS = 5  # a clear request this long usually says what, and often when


def completeness(kind: str, text: str | None, caption: str | None = None) -> Completeness:
    """What this one message says about the burst it belongs to."""
    if kind in ("audio", "voice"):
        return "complete"  # a voice note is said in one go
    if kind in ("image", "video", "file", "sticker"):
        return "complete" if (caption or "").strip() else "fragment"
    if kind in ("button_reply", "list_reply", "quick_reply", "location", "contact"):
        return "complete"  # a tap or a shared item answers what was asked
    t = intents.normalize(text or "")
    if not t.strip():
        return "fragment"
    rest = _without_greeting(t)
    if _FRAGMENT.match(t) or _FRAGMENT.match(rest) or (rest != t and not re.search(r"\w", rest)):
        return "fragment"
    words = len(t.split())
    if "?" in (text or "") or words >= LONG_WORDS:
        return "complete"
    # A clear request is complete once it says enough ("quiero una cita" is often followed by
    # "para mañana"; "quiero una cita de limpieza facial para mañana" is not).
    if words >= ENOUGH_WORDS and (intents.classify(t) in _CLEAR or intents.mentions_when(t)):
        return "complete"
    if words <= 2 and intents.classify(t) in ("thanks", "goodbye", "confirm", "decline", "pick"):
        return "complete"  # "gracias", "sí", "la primera": a whole answer in a word or two
    return "neutral"


@dataclass(frozen=True)
class Rules:
    """The quiet windows in force for one organization."""

    full_s: float
    adaptive: bool
    complete_share: float
    neutral_share: float

    @classmethod
    def of(cls, settings: Settings, org_settings: Mapping[str, Any] | None = None) -> Rules:
        """The deployment's DEBOUNCE_* settings, each overridden by the organization's own."""
        own = org_settings or {}
        return cls(
            full_s=float(own.get("debounce_seconds", settings.debounce_seconds)),
            adaptive=bool(own.get("debounce_adaptive", settings.debounce_adaptive)),
            complete_share=float(
                own.get("debounce_complete_share", settings.debounce_complete_share)
            ),
            neutral_share=float(own.get("debounce_neutral_share", settings.debounce_neutral_share)),
        )

    def window(self, kind: str, text: str | None, caption: str | None = None) -> tuple[str, float]:
        """What the message reads as, and the quiet window it calls for."""
        if not self.adaptive:
            return "fixed", self.full_s
        read = completeness(kind, text, caption)
        return read, quiet_seconds(read, self.full_s, self.complete_share, self.neutral_share)


def quiet_seconds(
    completeness_: Completeness, full_s: float, complete_share: float, neutral_share: float
) -> float:
    """The quiet window after a message of this kind, from the full (fragment) window."""
    share = {"complete": complete_share, "neutral": neutral_share, "fragment": 1.0}[completeness_]
    return full_s * share
