"""The public corpus of how people write (phrasings.txt), read by the shared intent table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from graph.intents import classify

CORPUS = [tuple(part.strip() for part in line.split("|", 1))
          for line in (Path(__file__).parent / "phrasings.txt").read_text(encoding="utf-8").splitlines()
          if line.strip() and not line.startswith("#")]
# "(AR)" and the like mark the region for the reader; they are not part of the message.
REGION = re.compile(r"\s*\((CO|MX|AR|ES)\)\s*$")
INTENTS = {"greeting", "price", "hours", "address", "book", "pick", "name", "confirm", "decline", "reschedule",
           "cancel", "list", "person", "thanks", "goodbye"}


def test_the_corpus_covers_every_intent_with_150_phrasings():
    assert len(CORPUS) >= 150 and {intent for intent, _ in CORPUS} == INTENTS


@pytest.mark.parametrize("intent, text", CORPUS, ids=[f"{i}: {t}" for i, t in CORPUS])
def test_each_phrasing_is_read_as_its_intent(intent, text):
    assert classify(REGION.sub("", text)) == intent
