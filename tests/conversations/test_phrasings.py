"""The public corpus of how people write (phrasings.txt), read by the shared intent table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from graph.intents import classify

HELD_OUT_MARK = "# ==== HELD-OUT"
_TEXT = (Path(__file__).parent / "phrasings.txt").read_text(encoding="utf-8")
_WRITTEN_AGAINST, _, _HELD_OUT = _TEXT.partition(HELD_OUT_MARK)


def _pairs(text: str) -> list[tuple[str, str]]:
    return [
        tuple(part.strip() for part in line.split("|", 1))
        for line in text.splitlines()
        if line.strip() and not line.startswith("#")
    ]


CORPUS = _pairs(_WRITTEN_AGAINST)  # what the intent table is written against
HELD_OUT = _pairs(
    _HELD_OUT.partition("\n")[2]
)  # the marker line's own words are not a phrasing  # never tuned against: measured, not required line by line
# The held-out rate may not fall below this (25/32, 78%, when the split was made): a change that
# helps the corpus but hurts unseen phrasings shows up here. Raise it as the rate grows.
HELD_OUT_MIN_RATE = 0.75
# "(AR)" and the like mark the region for the reader; they are not part of the message.
REGION = re.compile(r"\s*\((CO|MX|AR|ES)\)\s*$")
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
    assert len(CORPUS) >= 150 and {intent for intent, _ in CORPUS} == INTENTS


@pytest.mark.parametrize("intent, text", CORPUS, ids=[f"{i}: {t}" for i, t in CORPUS])
def test_each_phrasing_is_read_as_its_intent(intent, text):
    assert classify(REGION.sub("", text)) == intent


def test_held_out_phrasings_pass_rate(capsys):
    """Phrasings the table was not written against: the rate is the honest measure."""
    assert len(HELD_OUT) >= 30
    failed = [
        (i, t, classify(REGION.sub("", t))) for i, t in HELD_OUT if classify(REGION.sub("", t)) != i
    ]
    rate = 1 - len(failed) / len(HELD_OUT)
    with capsys.disabled():
        print(
            f"\nheld-out phrasings: {len(HELD_OUT) - len(failed)}/{len(HELD_OUT)} ({rate:.0%}); "
            f"missed: {failed}"
        )
    assert rate >= HELD_OUT_MIN_RATE, failed
