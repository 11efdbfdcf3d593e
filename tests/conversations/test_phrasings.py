"""The public corpus of how people write (phrasings.txt), read by the shared intent table, in
Spanish, English and Portuguese."""

from __future__ import annotations

from pathlib import Path

import pytest

from graph import scenarios
from graph.intents import classify

CORPUS, HELD_OUT = scenarios.load_phrasings(Path(__file__).parent / "phrasings.txt")
# The held-out rate may not fall below this (25/32, 78%, when the split was made; Spanish,
# English and Portuguese together since issue 20 item 5): a change that helps the corpus but
# hurts unseen phrasings shows up here. Raise it as the rate grows.
HELD_OUT_MIN_RATE = 0.75
INTENTS = {
    "greeting",
    "price",
    "hours",
    "address",
    "book",
    "pick",
    "name",
    "confirm",
    "decline",
    "reschedule",
    "cancel",
    "list",
    "person",
    "thanks",
    "goodbye",
}


def test_the_corpus_covers_every_intent_with_150_phrasings():
    assert len(CORPUS) >= 150 and {p.intent for p in CORPUS} == INTENTS


@pytest.mark.parametrize("language", ["en", "pt"])
def test_english_and_portuguese_cover_every_intent(language):
    assert {p.intent for p in CORPUS if p.language == language} == INTENTS


@pytest.mark.parametrize(
    "phrasing", CORPUS, ids=[f"{p.language} {p.intent}: {p.text}" for p in CORPUS]
)
def test_each_phrasing_is_read_as_its_intent(phrasing):
    assert classify(phrasing.text) == phrasing.intent


def test_held_out_phrasings_pass_rate(capsys):
    """Phrasings the table was not written against: the rate is the honest measure."""
    assert len(HELD_OUT) >= 30
    failed = [(p.language, p.intent, p.text, classify(p.text)) for p in HELD_OUT]
    failed = [f for f in failed if f[1] != f[3]]
    rate = 1 - len(failed) / len(HELD_OUT)
    with capsys.disabled():
        print("\n" + "\n".join(scenarios.phrasing_lines(Path(__file__).parent / "phrasings.txt")))
        print(f"missed: {failed}")
    assert rate >= HELD_OUT_MIN_RATE, failed
