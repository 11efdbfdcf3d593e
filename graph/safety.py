"""Clinical safety that does not depend on a model: an emergency is recognised by its words and
answered at once with the emergency line, and a person of the clinic is told.

A receptionist is not a clinician. Whatever the model would do (or while it is down), a message
that describes bleeding that does not stop, not being able to breathe, an allergic reaction,
chest pain, fainting or a wish to self-harm gets, before anything else, the emergency number
(the organization's `emergency_phone` setting; Colombia's 123 by default) and an escalation to
the advisor. The prompts (graph/prompts.py) forbid diagnoses, dosages and medical advice; this
is the part a keyword can do reliably.
"""

from __future__ import annotations

import re
from typing import Any

from graph import i18n, intents

DEFAULT_EMERGENCY_PHONE = "123"  # Colombia's single emergency line

# Normalized text (lower case, no accents). Present-tense, first-person or about someone here:
# "¿qué hago si tengo una reacción alérgica al tratamiento?" is asked before it happens, but the
# answer is the same: call the emergency line first.
_EMERGENCY = re.compile(
    r"\b(me estoy desangrando|no (me )?para de sangrar|sangr\w* (mucho|demasiado|sin parar)"
    r"|hemorragia|no puedo respirar|no (puede|podemos) respirar|me ahogo|se esta ahogando|me falta el aire"
    r"|reaccion alergica|shock anafilactico|anafilaxia|se me (esta )?(hinchando|cerrando) la (cara|garganta|lengua)"
    r"|dolor (fuerte )?(en el|de) pecho|infarto|me desmaye|se desmayo|perdio el conocimiento|convulsion\w*"
    r"|me quiero (morir|matar)|quiero (suicidarme|quitarme la vida)|me voy a (matar|suicidar)"
    r"|quemadura grave|me queme (la cara|los ojos)"
    r"|i can'?t breathe|cannot breathe|bleeding (a lot|heavily|won'?t stop)|allergic reaction|chest pain"
    r"|nao consigo respirar|reacao alergica|sangrando muito)\b"
)


def is_emergency(texts: list[str]) -> bool:
    return any(_EMERGENCY.search(intents.normalize(text)) for text in texts if text)


def emergency_phone(settings: dict[str, Any]) -> str:
    return str(settings.get("emergency_phone") or DEFAULT_EMERGENCY_PHONE)


def emergency_reply(phone: str) -> str:
    """In the language of the turn (graph/i18n.py)."""
    return i18n.text("system.emergency", phone=phone)
