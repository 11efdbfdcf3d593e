"""The message catalogs: every language has every text, with the same placeholders, and dates
and system texts come out in the language asked for."""

from __future__ import annotations

import string
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from graph import i18n, replies
from graph.intents import normalize
from storage import org_settings

BOGOTA = ZoneInfo("America/Bogota")


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


@pytest.mark.parametrize("lang", ["en", "pt"])
def test_every_language_has_every_key_with_the_same_placeholders(lang):
    spanish, other = i18n.catalog("es"), i18n.catalog(lang)
    assert set(other) == set(spanish)
    for key, text in spanish.items():
        if isinstance(text, str) and key != "date.clock":  # 12 or 24 hours: a choice per language
            assert _fields(other[key]) == _fields(text), key
        elif isinstance(text, list):
            assert len(other[key]) == len(text), key


def test_dates_are_written_in_the_language_asked_for():
    at = datetime(2027, 3, 4, 15, 0, tzinfo=BOGOTA)
    assert replies.when(at, BOGOTA, "es") == "jueves 4 de marzo, 3:00 p. m."
    assert replies.when(at, BOGOTA, "en") == "Thursday, March 4, 3:00 PM"
    assert replies.when(at, BOGOTA, "pt") == "quinta-feira, 4 de março, 15:00"


def test_the_turn_language_applies_to_everything_below_it():
    at = datetime(2027, 3, 4, 9, 30, tzinfo=BOGOTA)
    with i18n.speaking("pt-BR"):
        assert replies.when(at, BOGOTA) == "quinta-feira, 4 de março, 9:30"
        assert i18n.text("system.apology").startswith("Desculpe")
    assert replies.when(at, BOGOTA) == "jueves 4 de marzo, 9:30 a. m."  # outside: Spanish


def test_a_template_in_the_chat_language_if_the_org_has_one():
    settings = {"reminder_template_id": "rem-es", "reminder_template_id_en": "rem-en"}
    assert org_settings.template_for(settings, "reminder_template_id", "en") == "rem-en"
    assert org_settings.template_for(settings, "reminder_template_id", "pt") == "rem-es"
    assert org_settings.parse({"reminder_template_id_pt": "rem-pt"}) == {
        "reminder_template_id_pt": "rem-pt"
    }


def test_the_reminder_buttons_of_every_language_are_read_back():
    from graph.reminder_answers import _ANSWERS

    for titles in i18n.in_every_language("reminder.buttons").values():
        assert [_ANSWERS[normalize(t)] for t in titles] == ["confirm", "reschedule", "cancel"]
