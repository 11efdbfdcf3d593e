"""What a customer's message plainly asks for: the one intent table of the project.

The keyword router (clear_flow) and the offline model (graph/offline.py) both read messages
through this table, so a newcomer adds an intent or a phrasing in one place, and the public
corpus tests/conversations/phrasings.txt checks every phrasing against `classify`.

The router's fast path: a message that says one thing plainly ("hola", "quiero agendar una
cita", "¿dónde quedan?", "quiero hablar con una persona") goes to its expert without a model
request. A message that matches more than one kind, or none, goes to the model router. Being
upset is left to the model: a keyword cannot tell "esto es terrible" from "no es nada terrible".

Texts are compared normalized: lower case, no accents ("Mañana" -> "manana").
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from graph import timeparse
from graph.state import Flow

Intent = Literal[
    "person",
    "upset",
    "cancel",
    "reschedule",
    "list",
    "name",
    "book",
    "price",
    "hours",
    "address",
    "info",
    "pick",
    "confirm",
    "decline",
    "thanks",
    "goodbye",
    "greeting",
    "unknown",
]

_MOVE = r"(?:cambi|mov|muev|corr|pas|aplaz|pospon|postergu|posterg|traslad|adelant|atras|reprogram)"
_MODAL = r"(?:(?:puedes|podes|podrias|pueden|podrian|podras|quiero|queria|quisiera|necesito|tengo que|hay que|me) )?"
_SLOT_WORD = r"(?:cita|turno|reserva|hora|sesion|cupo)"

# Who performs a service, and the whole price list: questions about the business ("info").
_STAFF = (
    r"\bquien(es)? (me )?(hace|hacen|realiza|realizan|atiende|atienden|aplica|aplican|haria|harian|lo hace"
    r"|la hace|los hace|las hace|seria)\b|\bcon quien (seria|me toca|es|me atiendo)\b"
    r"|\bque (especialista|profesional|doctora?|esteticista|cosmetologa)s? (hace|hacen|atiende|atienden|tienen)\b"
    r"|\b(su|el|tu) (equipo|personal)\b"
)
_PRICE_LIST = (
    r"\b(lista|carta|menu|tabla|catalogo) de (precios|servicios|tratamientos)\b"
    r"|\b(cuales son|todos) (los|sus) (precios|servicios|tratamientos)\b"
    r"|\b(servicios|tratamientos) (que )?(tienen|ofrecen|manejan|hay)\b|\btodos los precios\b"
)

# intent -> regex over the normalized text. Order matters in `classify` (ORDER), not here.
VOCAB: dict[str, str] = {
    # An explicit request for a person: "¿Las extensiones son de cabello humano?" is not one.
    "person": r"\b(habl|comunic|pas|atiend|atend|chate|escrib|contact|comuniqu)\w*\b.{0,25}\b(una persona|un humano"
    r"|un asesor|una asesora|un agente|alguien( real)?|una persona real|un operador|una operadora"
    r"|recepcion)\b|\b(persona real|humano real|ser humano)\b"
    r"|^\W*(un |una |con (un |una )?)?(asesor|asesora|humano|persona|operador|agente)( real)?( por ?fa(vor)?)?\W*$",
    "upset": r"\b(queja|reclamo|molest\w*|pesim\w*|terrible|horrible|indignad\w*|estafa|no sirve"
    r"|furios\w*|falta de respeto|me cobraron|reembolso|devolucion|nadie (me )?(responde|contesta)"
    r"|mal servicio|me dejaron|decepcion\w*)\b",
    # A question about the cancellation policy is not a cancellation: "cancel(?!acion)".
    "cancel": r"\b(cancel(?!acion)|anul|desagend|desapart)\w*|\b(borr|elimin|quit)\w*\b.{0,15}\b"
    + _SLOT_WORD
    + r"\b|\b(ya no|no) (voy a poder|vamos a poder|voy a|vamos a|podre|puedo|alcanzo a) (ir|asistir|llegar)\b.{0,20}\b"
    + _SLOT_WORD
    + r"?"
    + r"|\bya no (voy|puedo ir|necesito la "
    + _SLOT_WORD
    + r")\b",
    "reschedule": r"\b(me la|me lo|la|lo) " + _MODAL + _MOVE + r"\w*"
    r"|\b" + _MOVE + r"\w*(la|lo|mela|melo|sela)\b(?! (bien|mal))"
    r"|\b" + _MOVE + r"\w*\b.{0,25}\b(mi|la|el|una|esa|esta) " + _SLOT_WORD + r"\b"
    r"|\b"
    + _MOVE
    + r"\w* (de|la) (fecha|hora|dia)\b|\breprogram\w*|\botro (dia|horario) (para|a) mi\b",
    "list": r"\b(mis citas|mis turnos|mis reservas|que citas tengo|tengo (alguna |una )?(cita|reserva|turno)"
    r"|cuando (es|era|tengo) (mi|la|el) (cita|turno)|a que hora (es|era|tengo) (mi|la|el) (cita|turno)"
    r"|que dia (es|era|tengo) (mi|la|el) (cita|turno)|mi proxima cita|tengo algo (agendado|reservado)"
    r"|para cuando (quede|quedo|quedé) (agendad|citad)\w*|ver (mi|mis) (cita|citas|turno|turnos))\b",
    "name": r"\b(me llamo|me yamo|mi nombre es|a nombre de|soy [^\W\d_]+ [^\W\d_]+$)",
    "book": r"\b(cita|agendar|agenda|agendame|agendeme|agendarme|agendo|reservar|reserva|reservame|separar|separame"
    r"|turno|disponib\w*|tienen algo|hay algo|tenes algo|tienes algo|espacio|cupo|quiero (un|una)"
    r"|me gustaria (un|una)|quisiera (un|una)|mejor (un|una|el|la)|sacar|apartar|apartame|anotame"
    r"|me anotas|me apuntas|apuntame|hay lugar|hay campo|pedir hora|una hora para|me das hora)\b",
    "price": r"cuanto (cuesta|vale|sale|cobran|es|son|esta|me sale|me cobran)|\bprecio|\bvalor\b|\bcosto|\ba como (esta|sale)",
    "hours": r"\b(abren|abierto|abiertos|abiertas|cierran|atienden|horario|hasta que hora|a que hora (abren|cierran))\b",
    "address": r"\bdonde\b|direccion|ubicad|ubicacion|como llego|en que (parte|barrio|zona)|\bsede\b",
    "info": r"\bpago|\bpagar|tarjeta|nequi|daviplata|efectivo|politica|parqueadero|preparaci|que incluye"
    r"|festivo|que servicios|que tratamientos|que hacen|cuanto dura|" + _STAFF + "|" + _PRICE_LIST,
    "pick": r"^\W*(dame |quiero |prefiero )?(la |el )?(opcion |numero |horario )?([1-9]|primera|primero|segunda|segundo"
    r"|tercera|tercero|cuarta|quinta|ultima|ultimo)( porfa| por favor| please)?\W*$|^\W*(la|el) de (las|la) \d|^\W*(esa|ese|esa misma|ese mismo)( porfa| por favor)?\W*$",
    "confirm": r"^\W*(si|sii+|sip|sep|claro|claro que si|confirmo|confirmado|correcto|exacto|de una|hazlo|adelante|yes"
    r"|dale|ok|okay|okey|vale|listo|de acuerdo|perfecto|obvio|por supuesto|va|sale|bueno|esta bien"
    r"|si,? (por favor|porfa|cancelala|cancelalo|confirmo|gracias|dale|claro|esa|ese|agendala|reservala|perfecto))\W*$",
    "decline": r"^\W*(no|nop|nel|mejor no|mejor dejala|mejor dejalo|dejala|dejalo|olvidalo|todavia no"
    r"|aun no|ya no|para nada|negativo|ninguna|ninguno)\b",
    "thanks": r"^\W*((muchas|mil|muchisimas) )?(gracias|grax|graciass+|thanks|te agradezco|muy amable)"
    r"|^\W*(ok|listo|perfecto|genial|super|excelente|dale|bueno|vale),? (muchas |mil )?(gracias|grax)",
    "goodbye": r"\b(nos vemos|hasta (manana|luego|pronto|el|la)|chao|chau|adios|bye|que (estes|este) bien"
    r"|feliz (dia|tarde|noche))\b",
    "greeting": r"^\W*(hola+|holi+s?|ola+|buenas|buen dia|buenos dias|buenas tardes|buenas noches|hey|que tal"
    r"|saludos|alo)\b",
}
RX = {name: re.compile(pattern) for name, pattern in VOCAB.items()}
# Which intent wins when several match: a request names its task before any politeness.
ORDER: tuple[Intent, ...] = (
    "person",
    "upset",
    "cancel",
    "reschedule",
    "list",
    "name",
    "book",
    "price",
    "hours",
    "address",
    "info",
    "pick",
    "confirm",
    "decline",
    "thanks",
    "goodbye",
    "greeting",
)
# Questions about a cancellation's cost are questions ("¿cuánto me cobran por cancelar?").
_POLICY = re.compile(
    r"(cuanto|cobran|cuesta|multa|penal|politica|se cobra).{0,30}cancel|cancel\w*.{0,20}(cuesta|cobran)"
)
_FAREWELL = re.compile(VOCAB["goodbye"] + "|" + r"\bgracias\b")
ORDINALS = {
    "primera": 1,
    "primero": 1,
    "segunda": 2,
    "segundo": 2,
    "tercera": 3,
    "tercero": 3,
    "cuarta": 4,
    "cuarto": 4,
    "quinta": 5,
    "quinto": 5,
}
# Words that are never a customer's name, whatever else the message says.
NOT_NAMES = {
    "si",
    "no",
    "ok",
    "hola",
    "gracias",
    "cita",
    "la",
    "el",
    "primera",
    "segunda",
    "manana",
    "tarde",
    "quiero",
    "que",
    "cuanto",
    "listo",
    "dale",
    "claro",
    "confirmo",
    "perfecto",
    "vale",
    "bueno",
    "buenas",
    "esa",
    "ese",
    "turno",
    "hora",
    "chao",
    "adios",
    "okay",
    "sip",
    "porfa",
    "favor",
    "genial",
    "gracia",
    "nada",
    "ninguna",
    "ninguno",
    "ya",
    "mejor",
    "cual",
    "cuales",
    "algo",
}

# Whether a phrase names a time does not depend on today: any fixed Monday morning will do.
ANY_NOW = datetime(2030, 1, 7, 9, 0)


# Spellings people type for words the table knows ("kiero una sita"): fixed before matching.
TYPOS = {
    "kiero": "quiero",
    "kero": "quiero",
    "qiero": "quiero",
    "kisiera": "quisiera",
    "sita": "cita",
    "sitas": "citas",
    "zita": "cita",
    "q": "que",
    "k": "que",
    "xq": "porque",
    "pq": "porque",
    "ajendar": "agendar",
    "reserbar": "reservar",
}
_WORD = re.compile(r"[a-z]+")


def normalize(text: str) -> str:
    """Lower case, no accents, common misspellings fixed: "Kiero una síta" -> "quiero una cita"."""
    return _WORD.sub(lambda m: TYPOS.get(m.group(0), m.group(0)), timeparse.normalize(text))


def matches(t: str) -> list[Intent]:
    """Every intent of the table the normalized text matches, in ORDER."""
    found: list[Intent] = [name for name in ORDER if RX[name].search(t)]
    if "cancel" in found and _POLICY.search(t):
        found.remove("cancel")
        found.insert(found.index("price") if "price" in found else len(found), "info")
    return found


def classify(text: str) -> Intent:
    """The one thing a message asks for, read without context (normalized or not)."""
    t = normalize(text)
    found = matches(t)
    if not found:
        if mentions_when(t):
            return "book"
        return "unknown"
    first = found[0]
    if first in ("confirm", "decline") and "pick" in found:
        return "pick"
    if first == "greeting" and not greeting_only(t):
        rest = [f for f in found if f != "greeting"]
        return rest[0] if rest else ("book" if mentions_when(t) else "greeting")
    return first


def greeting_only(t: str) -> bool:
    rest = RX["greeting"].sub("", t, count=1)
    rest = RX["thanks"].sub("", rest, count=1)
    return (
        bool(RX["greeting"].search(t) or RX["thanks"].search(t))
        and len(re.findall(r"\w+", rest)) <= 3
        and "?" not in t
    )


def mentions_when(t: str) -> bool:
    return timeparse.parse(t, ANY_NOW).understood


def mentions_day(t: str) -> bool:
    """A day, not only a time: "mañana", "el domingo", "15 de marzo", "15/3", "la otra semana"
    (read by the one date parser, so the offline model and the tools agree on what is a day)."""
    return timeparse.parse(t, ANY_NOW).day_given


def says_no(t: str) -> bool:
    return bool(RX["decline"].search(t))


def says_yes(t: str) -> bool:
    """Only a short, plain yes: "ok pero ¿cuánto me cobran por cancelar?" is a question, not a yes."""
    return bool(RX["confirm"].search(t))


def says_thanks_or_bye(t: str) -> bool:
    """A thanks or a goodbye with nothing else asked: the flow can end here."""
    if "?" in t or any(
        i in matches(t) for i in ("person", "cancel", "reschedule", "list", "book", "price")
    ):
        return False
    return bool(RX["thanks"].search(t) or RX["goodbye"].search(t))


def wants_appointment(t: str) -> bool:
    return any(RX[i].search(t) for i in ("cancel", "reschedule", "list", "book"))


def is_info_question(t: str) -> bool:
    return any(i in ("price", "hours", "address", "info") for i in matches(t))


FactTopic = Literal["horario", "direccion", "personal", "servicios"]
# The business fact a question asks for (business_info's topics), first match wins: "¿con quién
# me atienden el sábado?" asks who, "¿dónde atienden?" asks where.
_FACTS: tuple[tuple[FactTopic, re.Pattern[str]], ...] = (
    ("personal", re.compile(_STAFF)),
    ("servicios", re.compile(_PRICE_LIST + r"|\bque (servicios|tratamientos)\b")),
    ("direccion", RX["address"]),
    (
        "horario",
        re.compile(
            VOCAB["hours"]
            + r"|\bfestivos?\b|\bestan (abiertos|hoy)\b|\ba que hora (estan|trabajan)\b"
        ),
    ),
)


def fact_topic(t: str) -> FactTopic | None:
    """The business fact a normalized question asks for, or None (then the FAQ search answers)."""
    if re.search(r"\b(pago|pagar|pagos|tarjeta|nequi|daviplata|efectivo)\b", t):
        return None  # "¿dónde pago?" asks how to pay, not where we are
    return next((topic for topic, rx in _FACTS if rx.search(t)), None)


def clear_flow(text: str) -> Flow | None:
    """The one expert this message plainly asks for, or None when the model must decide."""
    t = normalize(text)
    kinds: set[Flow] = set()
    found = matches(t)
    if "person" in found:
        kinds.add("escalation")
    if "upset" in found:
        return None
    info = is_info_question(t)
    if info:
        kinds.add("knowledge")
    if wants_appointment(t) and not (info and _POLICY.search(t)):
        kinds.add("appointment")
    elif mentions_when(t):
        # "el viernes a las 3" alone asks for a slot; with a question, a goodbye or opening
        # hours ("¿abren el sábado?", "nos vemos mañana") the model reads it in context.
        if info or _FAREWELL.search(t) or "greeting" in found:
            return None
        kinds.add("appointment")
    if not kinds and greeting_only(t):
        kinds.add("knowledge")
    return kinds.pop() if len(kinds) == 1 else None


def pick_number(t: str) -> int | None:
    """ "la primera", "la 2", "opción 3": the number of an item of the last list shown."""
    # "a primera hora" is a time of day, not the first item.
    if m := re.search(r"\b(" + "|".join(ORDINALS) + r")\b(?! hora)", t):
        if not re.search(r"\b(cuarto|quinto)\b", t) or RX["pick"].search(t):  # "y cuarto" is a time
            return ORDINALS[m.group(1)]
    if m := re.fullmatch(r"\W*(?:la |el |opcion |numero |horario |cita )?([1-9])\W*", t):
        return int(m.group(1))
    if m := re.search(r"\b(?:opcion|numero|la|el) ([1-9])\b(?!\s*(?:de|:|am|pm|y))", t):
        return int(m.group(1))
    return None


_NAME_MARK = re.compile(
    r"(?:me llamo|me yamo|mi nombre es|\bsoy|a nombre de)\s+([^\W\d_][^\d,.!?\n]{1,60})", re.I
)
# Where a name stated in a longer message ends: "soy Ana Díaz y quiero una cita".
_NAME_ENDS = {
    "y",
    "e",
    "quiero",
    "quisiera",
    "necesito",
    "para",
    "de",
    "del",
    "me",
    "te",
    "con",
    "por",
    "busco",
    "tengo",
    "queria",
    "a",
    "el",
    "la",
    "una",
    "un",
    "desde",
    "les",
    "escribo",
    "vengo",
}


# A word that can be a name: a vowel, no letter three times in a row ("mmm", "zzz", "jajaja" are not).
_NAME_LIKE = re.compile(r"^(?!.*(\w)\1\1)(?!(?:ja)+$|(?:je)+$)(?=.*[aeiouy])\w{2,}$")


def extract_name(text: str, explicit: bool = False) -> str | None:
    """The name in "me llamo Laura Gómez", "soy Ana y quiero...", or a message that is only a
    name; with `explicit`, only a name the customer introduced ("me llamo", "soy")."""
    m = _NAME_MARK.search(text)
    if m:
        words = []
        for word in re.findall(r"[^\W\d_]+", m.group(1)):
            if normalize(word) in _NAME_ENDS:
                break
            words.append(word)
    elif explicit:
        return None
    else:
        words = re.findall(r"[^\W\d_]+", text)
        if classify(text) not in ("unknown", "name") or mentions_when(normalize(text)):
            return None
    if not 1 <= len(words) <= 4 or any(
        normalize(w) in NOT_NAMES or not _NAME_LIKE.match(normalize(w)) for w in words
    ):
        return None
    return " ".join(w[:1].upper() + w[1:] for w in words)


def escalation_reason(t: str) -> str:
    found = matches(t)
    if "person" in found:
        return "Pide hablar con una persona"
    if "upset" in found:
        return "Cliente molesto"
    return "El asistente no pudo resolver la solicitud"
