"""Which language a customer writes in (Spanish, English or Portuguese), and which one a chat is in.

A scorer over words and spellings, not a statistical model: WhatsApp messages are short ("tem
horário amanhã?", "can I book for tomorrow?"), and the general detectors on PyPI are trained on
sentences, need megabytes of n-gram tables, and split Spanish from Portuguese badly on a few words
(they share "agendar", "consulta", "horario", "para", "semana"). What tells them apart here are
the words one language has and the others do not ("você", "não", "amanhã"; "usted", "mañana";
"the", "would", "tomorrow") and spellings (ã, õ, ç, "nh", "lh"; ñ, ¿, ¡).

Measured when it was written, on tests/fixtures/languages.txt (90 labelled short messages, 6 that
say nothing) and on the 375 lines of tests/conversations/phrasings.txt: this scorer 91/96 right,
5 unsure, 0 wrong; 300/375 right, 74 unsure, 1 wrong ("bye" in the Spanish corpus). py3langid
limited to es/en/pt: 89/90 right on the first set, but it always answers, so 47/375 wrong on the
corpus ("ok", "sí", "2", names): each wrong answer would switch a chat's language. langdetect:
78/90. Unsure is harmless here (the chat keeps its language); wrong is not.

A chat keeps its language (`choose`): a message with too little evidence ("ok", "sí", "1",
"Laura Gómez") does not change it, and the organization's `locale` is the language of a chat that
has not said enough yet. tests/test_language.py measures `detect` on a labelled set.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

Lang = Literal["es", "en", "pt"]
LANGS: tuple[Lang, ...] = ("es", "en", "pt")
DEFAULT: Lang = "es"

# Words one language uses and the other two do not (or hardly), normalized (no accents). The
# weight is how sure a word makes us: 2 for a word no other of the three has, 1 for one that is
# a rare word or a typo elsewhere.
_WORDS: dict[Lang, dict[str, float]] = {
    "es": dict.fromkeys(
        "usted ustedes quiero quisiera queria gracias hola buenas buenos cita citas manana hoy "
        "tiene tienen tienes cuanto cuesta cuestan el los las con del al y muy hay puedo puedes "
        "pueden podria necesito hablar persona cambiar mover donde quedan queda direccion precio "
        "cual cuales cuando estoy pero despues noche lunes martes miercoles jueves viernes "
        "limpieza masaje yo eso algo nada dale listo chao adios agendame reservar turno "
        "disponibilidad tambien ya ahora mejor mismo aqui alli asi mucho muchas ninguna ninguno "
        "quiere quieren le les su sus nos vemos hasta luego porfa hacer hace "
        "llamo nombre soy ir voy vamos ella ellos ud".split(),
        2.0,
    )
    | dict.fromkeys("es la un una en de se me te lo tu si que por".split(), 0.5),
    "en": dict.fromkeys(
        "the i im i'm you your is are am to and my can could would like want book booking "
        "appointment appointments please hi hello hey thanks thank yes yeah yep what when where "
        "how much does do it this that with at on tomorrow today afternoon morning evening week "
        "next reschedule price cost open hours address need have get an of be there any "
        "available slot time first second third one sure bye talk someone speak help check see "
        "pls thx cancel change move cleaning massage facial who which will should book hour "
        "wanna gonna let know many for from name call it's its visit day days weekend "
        "human agent real doing good great".split(),
        2.0,
    ),
    "pt": dict.fromkeys(
        "voce voces vc vcs nao sim obrigado obrigada oi bom boa quero gostaria marcar amanha "
        "hoje meu minha meus minhas tem quanto custa custam isso esse essa aqui onde fica ficam "
        "endereco com um muito muita pra do da dos das na nas ao pelo pela falar atendente "
        "pessoa remarcar desmarcar disponivel tchau valeu beleza tudo bem tambem mas depois "
        "terca quarta sexta manha noite preco quais quando pode posso podem ter estou estao "
        "agendamento limpeza massagem horarios consigo obg blz entao ate outra outro "
        "chamo nome sou eu ele ela".split(),
        2.0,
    )
    | dict.fromkeys("e o os as de que para por se ola".split(), 0.5),
}
# Words every one of the three writes or that mean nothing here: they never count.
_NEUTRAL = {"ok", "okay", "1", "2", "3", "facial", "spa"}
# Spellings: (pattern over the raw lower-case text, language, weight).
_SPELLINGS: tuple[tuple[re.Pattern[str], Lang, float], ...] = (
    (re.compile(r"[ãõç]"), "pt", 2.0),
    (re.compile(r"\w(nh|lh)\w"), "pt", 1.0),
    (re.compile(r"\w(ção|ções|cao|coes)\b"), "pt", 2.0),
    (re.compile(r"[ñ¿¡]|\bsí\b"), "es", 2.0),
    (re.compile(r"\w(ción|ciones)\b"), "es", 2.0),
    (re.compile(r"\b\w+'(s|m|re|ll|ve|d|t)\b"), "en", 2.0),
)
_WORD = re.compile(r"[a-z']+")
# A message must bring this much more evidence for one language than for the next to be read
# as it; to move a chat away from the language it is in, SWITCH.
SURE = 1.5
SWITCH = 3.0


def _plain(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def scores(text: str) -> dict[Lang, float]:
    """The evidence for each language in a message."""
    raw = text.lower()
    words = [w.strip("'") for w in _WORD.findall(_plain(text))]
    out: dict[Lang, float] = dict.fromkeys(LANGS, 0.0)
    for word in words:
        if word in _NEUTRAL:
            continue
        for lang in LANGS:
            out[lang] += _WORDS[lang].get(word, 0.0)
    for pattern, lang, weight in _SPELLINGS:
        out[lang] += weight * len(pattern.findall(raw))
    return out


def detect(text: str, margin: float = SURE) -> Lang | None:
    """The language of a message, or None when it does not say enough ("ok", "3", a name)."""
    found = scores(text)
    ranked = sorted(found.items(), key=lambda kv: kv[1], reverse=True)
    (best, top), (_, second) = ranked[0], ranked[1]
    return best if top - second >= margin else None


def choose(texts: list[str], remembered: str | None, default: str | None) -> Lang:
    """The language to answer this turn in: what the customer wrote, if it says so clearly;
    else the chat's language so far; else the organization's."""
    text = "\n".join(t for t in texts if t)
    current = known(remembered)
    if current is None:
        return detect(text) or known(default) or DEFAULT
    said = detect(text, margin=SWITCH)
    return said if said is not None else current


def known(code: str | None) -> Lang | None:
    """ "pt-BR" -> "pt"; None for a language we have no catalog for."""
    base = (code or "").split("-")[0].split("_")[0].lower()
    return next((lang for lang in LANGS if lang == base), None)
