"""The adaptive quiet window (graph/bursts.py): read over the whole phrasing corpus, and seen in
the due time a message gives its burst."""

from __future__ import annotations

from pathlib import Path

import pytest

from graph import bursts, scenarios
from storage import keys, org_settings, turns
from storage.events import InboundMessage
from tests import clock
from tests.conftest import eventually
from tests.helpers import post_webhook, text_webhook

CORPUS = Path(__file__).parent / "conversations" / "phrasings.txt"


def corpus() -> list[tuple[str, str]]:
    """Every phrasing of the rules part, Spanish, English and Portuguese (the held-out part is
    measured, never required line by line: tests/conversations/test_phrasings.py)."""
    rules, _ = scenarios.load_phrasings(CORPUS)
    return [(p.intent, p.text) for p in rules]


def test_every_request_of_the_corpus_closes_its_burst_sooner_than_a_greeting():
    """A phrasing that asks for something (any intent but a bare greeting) is never read as a
    fragment; every bare greeting is."""
    wrong = []
    for intent, text in corpus():
        read = bursts.completeness("text", text)
        if intent == "greeting" and read != "fragment" and "?" not in text:
            wrong.append((intent, text, read))
        if intent not in ("greeting", "unknown") and read == "fragment":
            wrong.append((intent, text, read))
    assert wrong == []


@pytest.mark.parametrize(
    "text",
    [
        "hola",
        "Buenas",
        "oye",
        "una pregunta",
        "hola, una consulta",
        "Disculpa",
        "buenas tardes, tengo una duda",
        "hi",
        "bom dia",
    ],
)
def test_openers_wait_for_what_follows(text):
    assert bursts.completeness("text", text) == "fragment"


@pytest.mark.parametrize(
    "kind, text, caption, expected",
    [
        ("voice", None, None, "complete"),
        ("image", None, None, "fragment"),
        ("image", None, "así me quedó la uña, ¿la pueden arreglar?", "complete"),
        ("text", "quiero cita para el viernes", None, "complete"),
        ("text", "quiero una cita", None, "neutral"),
        ("text", "gracias", None, "complete"),
        ("text", "la primera", None, "complete"),
        ("text", "y también", None, "neutral"),
        ("button_reply", "Confirmar", None, "complete"),
    ],
)
def test_media_and_replies(kind, text, caption, expected):
    assert bursts.completeness(kind, text, caption) == expected


async def test_a_complete_question_gives_its_burst_a_shorter_window_than_a_greeting(deps):
    from consumers.enrich import debounce_of

    s = deps.settings
    now = 1_000_000
    due = {}
    for chat, text in (("greets", "hola"), ("asks", "¿cuánto cuesta el masaje relajante?")):
        event = InboundMessage(
            org="o",
            phone=chat,
            provider_id=f"p-{chat}",
            kind="text",
            text=text,
            sent_at_ms=now,
            received_at_ms=now,
        )
        await turns.hand_off(
            deps.redis,
            org="o",
            chat=chat,
            provider_id=event.provider_id,
            message_id=f"m-{chat}",
            sent_at_ms=now,
            now_ms=now,
            debounce=debounce_of(deps, event),
        )
        due[chat] = await deps.redis.zscore(keys.due("o"), chat) - now
    assert due["greets"] == s.debounce_seconds * 1000
    assert due["asks"] == pytest.approx(
        s.debounce_seconds * s.debounce_complete_share * 1000, abs=1
    )


async def test_an_organization_sets_its_own_quiet_window(system, make_org, deps):
    """Its settings win over the deployment's DEBOUNCE_*: here a fixed 2 s window, where the
    deployment's (0.3 s in tests, capped at 3 s) would have flushed the greeting at once."""
    org = await make_org("slowclinic", settings={"debounce_seconds": 2, "debounce_adaptive": False})
    async with system() as s:
        before = clock.now_ms()
        await post_webhook(s.url, text_webhook("slowclinic", "573001119999", "hola", "w-1", before))
        due = await eventually(lambda: deps.redis.zscore(keys.due(org), "573001119999"))
        after = clock.now_ms()
    assert before + 2000 <= due <= after + 2000


def test_organization_debounce_settings_are_checked():
    assert org_settings.parse({"debounce_seconds": "4s", "debounce_neutral_share": "0.4"}) == {
        "debounce_seconds": 4.0,
        "debounce_neutral_share": 0.4,
    }
    with pytest.raises(org_settings.BadSetting, match="debounce_complete_share"):
        org_settings.parse({"debounce_complete_share": 2})
