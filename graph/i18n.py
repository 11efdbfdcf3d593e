"""Every text the system itself writes to a customer, in the customer's language.

One catalog per language (graph/locales/es.toml, en.toml, pt.toml): a key, a text with named
placeholders ("{service}"), and lists for the words of dates. Why TOML files and not gettext
.po files: gettext keys a text by its Spanish wording and needs a compile step (msgfmt or
Babel) to ship .mo files; these texts are keyed by what they are for ("reminder.ask"), read with
the standard library's tomllib, and tests/test_i18n.py checks that every language has every key
with the same placeholders, which is what a .po toolchain would check.

The language of a turn is set once (`speaking`) by whoever starts it (the receptionist for a
turn, the scheduler for a reminder); code below it (replies.when, the offline model's replies,
the loop guard) asks `text` without passing the language around. A context variable, so the
concurrent turns of one process never see each other's language.
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from graph.language import DEFAULT, LANGS, Lang, known

LOCALES = Path(__file__).parent / "locales"
_current: ContextVar[Lang] = ContextVar("skytide_language", default=DEFAULT)


@functools.cache
def catalog(lang: Lang) -> dict[str, Any]:
    """The language's catalog, flattened: {"reminder.ask": "..."}."""
    data = tomllib.loads((LOCALES / f"{lang}.toml").read_text(encoding="utf-8"))
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: dict[str, Any]) -> None:
        for key, value in node.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict):
                walk(name + ".", value)
            else:
                flat[name] = value

    walk("", data)
    return flat


def current() -> Lang:
    return _current.get()


@contextmanager
def speaking(lang: str | None) -> Iterator[Lang]:
    """Within this block, texts are in `lang` (a code like "en" or "pt-BR"; unknown: Spanish)."""
    chosen = known(lang) or DEFAULT
    token = _current.set(chosen)
    try:
        yield chosen
    finally:
        _current.reset(token)


def text(key: str, lang: str | None = None, /, **params: Any) -> str:
    """The text `key` in `lang` (default: the current language), its placeholders filled."""
    found = catalog(known(lang) or current())[key]
    return str(found).format(**params) if params else str(found)


def words(key: str, lang: str | None = None) -> list[str]:
    """A list of the catalog (weekday names, button titles) in `lang` or the current language."""
    return list(catalog(known(lang) or current())[key])


def in_every_language(key: str) -> dict[Lang, Any]:
    """The entry in each language: what a customer may write back in any of them (a button)."""
    return {lang: catalog(lang)[key] for lang in LANGS}
