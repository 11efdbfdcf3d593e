"""The customer's language: detected on short WhatsApp messages, remembered per chat."""

from __future__ import annotations

from pathlib import Path

from graph import language

SAMPLES = [
    (label.strip(), text.strip())
    for label, _, text in (
        line.partition("|")
        for line in (Path(__file__).parent / "fixtures" / "languages.txt")
        .read_text(encoding="utf-8")
        .splitlines()
        if line.strip() and not line.startswith("#")
    )
]


def test_the_detector_names_the_language_of_short_messages_and_never_the_wrong_one(capsys):
    assert len(SAMPLES) >= 90
    right = wrong = 0
    for label, text in SAMPLES:
        found = language.detect(text)
        want = None if label == "-" else label
        right += found == want
        # Unsure (None) leaves the chat's language as it was; another language would switch it.
        wrong += found is not None and found != want
    with capsys.disabled():
        print(f"\nlanguage detector: {right}/{len(SAMPLES)} right, {wrong} wrong")
    assert right / len(SAMPLES) >= 0.9
    assert wrong == 0


def test_a_short_message_does_not_change_the_chat_language():
    for short in ("ok", "sí", "1", "la primera", "Laura Gómez", "👍", "gracias"):
        assert language.choose([short], "en", "es") == "en"
    assert language.choose(["sim"], "en", "es") == "en"


def test_a_clear_message_in_another_language_changes_it():
    assert language.choose(["quero marcar uma consulta amanhã"], "en", "es") == "pt"
    assert language.choose(["I would like to book an appointment"], "es", "es") == "en"


def test_a_new_chat_starts_in_what_it_says_else_the_organization_locale():
    assert language.choose(["hi, do you have anything tomorrow?"], None, "es-CO") == "en"
    assert language.choose(["ok"], None, "pt-BR") == "pt"
    assert language.choose(["3"], None, "fr-FR") == "es"  # no catalog for French: Spanish
