"""What a customer's message plainly asks for: the one intent table of the project.

The keyword router (clear_flow) and the offline model (graph/offline.py) both read messages
through this table, so a newcomer adds an intent or a phrasing in one place, and the public
corpus tests/conversations/phrasings.txt checks every phrasing against `classify`.

The router's fast path: a message that says one thing plainly ("hola", "quiero agendar una
cita", "¿dónde quedan?", "quiero hablar con una persona") goes to its expert without a model
request. A message that matches more than one kind, or none, goes to the model router. Being
upset is left to the model: a keyword cannot tell "esto es terrible" from "no es nada terrible".

Texts are compared normalized: lower case, no accents ("Mañana" -> "manana").

Spanish, English and Portuguese: each intent's Spanish pattern (VOCAB) and its English and
Portuguese ones (OTHER_LANGUAGES) are one regex, so a customer is understood whatever of the three
they write in, and a chat that mixes them ("ok, quero a primeira") too. The corpus has phrasings
in all three.
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
_EN_SLOT = r"(?:appointment|booking|slot|session|reservation)"
_PT_SLOT = r"(?:consulta|horario|agendamento|reserva|sessao|marcacao)"
# The same intents in English and in Portuguese (normalized: "não" -> "nao", "você" -> "voce").
OTHER_LANGUAGES: dict[str, str] = {
    "person": r"\b(talk|speak|chat|connect|put me through|transfer|pass)\w*\b.{0,25}\b(a person|a human|someone"
    r"|somebody|an agent|a real person|a member of (the|your) (staff|team)|reception|an advisor|a representative"
    r"|a receptionist)\b|\b(real person|human being|live agent|real human)\b"
    r"|\b(fal|convers|pass|transfer|chama)\w*\b.{0,25}\b(uma pessoa|um humano|um atendente|uma atendente"
    r"|alguem|atendente|pessoa real|recepcao|uma pessoa de verdade)\b|\bpessoa de verdade\b"
    r"|^\W*(an? |um |uma )?(agent|human|person|atendente|humano|pessoa)( please| por favor)?\W*$",
    "upset": r"\b(complaint|terrible|horrible|awful|scam|refund|nobody (answers|replies)|furious|disappointed"
    r"|unacceptable|reclamacao|pessimo|pessima|horrivel|golpe|reembolso|ninguem (responde|atende)"
    r"|decepcionad\w*|absurdo|inaceitavel)\b",
    "cancel": r"\bcall off\b|\b(can'?t|cannot|won'?t|wont|will not) (make it|come|go|be able to (come|go|make it))\b"
    r"|\b(delete|remove) my " + _EN_SLOT + r"\b|\bdesmarc\w*"
    r"|\bnao (vou|vamos) (poder )?(ir|comparecer)\b",
    "reschedule": r"\breschedul\w*|\b(change|move|push|postpone|shift|bring forward|switch)\b.{0,25}\b(my|the|an?"
    r"|this|that|our) ("
    + _EN_SLOT[3:-1]
    + r"|time|date|day)\b|\b(move|push|change) it\b|\bpostpone\b"
    r"|\bremarc\w*|\b(mud|troc|transfer|adi|pass)\w*\b.{0,25}\b(minha|a|o|meu|essa|esse|da|do) "
    + _PT_SLOT
    + r"\b|\b(mudar|trocar|alterar) (o|a) (horario|data|dia)\b",
    "list": r"\b(my (appointments|bookings)|what (appointments|bookings) do i have|do i have (an?|any) "
    r"(appointment|booking)|when is my (appointment|booking)|what time is my (appointment|booking)"
    r"|my next (appointment|booking)|see my (appointment|booking)s?|minhas consultas|meus agendamentos"
    r"|quais consultas|(eu )?tenho (alguma|uma) (consulta|reserva|marcacao)|tenho (algo|alguma coisa|horario) marcado"
    r"|quando e (a )?minha consulta|que horas e (a )?minha consulta|minha proxima consulta"
    r"|ver (as )?minhas? (consultas?|agendamentos?))\b",
    "name": r"\b(my name is|my name's|call me|under the name|meu nome e|me chamo|em nome de"
    r"|sou [^\W\d_]+ [^\W\d_]+$)",
    "book": r"\b(book|booking|appointment|reserve|available|availability|any (slots?|openings?|times?|room)"
    r"|free (slots?|times?)|openings|an opening|any opening|schedule (an?|me|my)|i'?d like (an?|to book|to schedule)"
    r"|i want (an?|to book)|i need (an?|to book)|can i (get|have|come|book)|do you have (anything|something|any)"
    r"|is there (anything|something|any|room|space)|marcar|agendar|agende|reservar|uma consulta"
    r"|disponibilidade|disponivel|vaga|vagas|tem (horario|vaga|algo|alguma coisa)|quero (um|uma)"
    r"|gostaria de (um|uma|marcar|agendar)|queria (marcar|agendar)|tem como marcar)\b",
    "price": r"how much|\bprices?\b|\bcosts?\b|\bfees?\b|\brates?\b|quanto (custa|custam|e|sai|fica|cobra|cobram|vale)"
    r"|\bpreco|\bcusto",
    "hours": r"\b(open|opening hours|close|closing|hours|until what time|what time do you|abrem|abre|aberto"
    r"|abertos|fecham|fecha|funcionam|funciona|horario de (atendimento|funcionamento)|ate que horas"
    r"|que horas (abrem|fecham|voces))\b",
    "address": r"\bwhere\b|address|located|location|how do i get|directions|\bonde\b|endereco|localizacao"
    r"|localizad|como chego|em que bairro",
    "info": r"\bpay\b|\bpaying|payment|credit card|\bcards?\b|\bcash\b|policy|parking|preparation"
    r"|what'?s included|what (services|treatments)|which (services|treatments)|how long (does|is|will)"
    r"|\bwho (does|will do|performs|would do|do i see)\b|\bwith whom\b|\byour (team|staff)\b"
    r"|\b(price|service) list\b|\blist of (prices|services)\b|\ball (your )?(prices|services)\b"
    r"|\bservices (do you )?(have|offer)\b|pagamento|\bpagar|cartao|dinheiro|\bpix\b|politica"
    r"|estacionamento|preparo|o que inclui|(quais|que) (servicos|tratamentos)|quanto tempo dura"
    r"|\bquem (faz|atende|vai fazer|realiza)\b|\bcom quem\b|\b(sua|a) equipe\b|(lista|tabela) de precos",
    "pick": r"^\W*(the )?(first|second|third|fourth|fifth|last)( one)?( please| pls)?\W*$"
    r"|^\W*(option|number|#) ?[1-9]\W*$|^\W*the one at \d"
    r"|^\W*(a |o )?(primeira|primeiro|segundo|terceira|terceiro|ultima|ultimo)( opcao)?( por favor)?\W*$"
    r"|^\W*(opcao|numero) [1-9]\W*$|^\W*(essa|esse|essa mesma|esse mesmo|that one|this one)( please| por favor)?\W*$"
    r"|^\W*(a|o) das \d",
    "confirm": r"^\W*(yes|yeah|yep|yup|sure|of course|okay|sounds good|great|go ahead|do it|confirm|confirmed"
    r"|that works|fine|alright|all right|correct|exactly|absolutely|sim|isso|isso mesmo|pode ser|pode|claro"
    r"|com certeza|confirmo|confirmado|beleza|blz|fechado|combinado|perfeito|certo|ta bom|ta|ok"
    r"|(yes|sure),? (please|thanks|thank you|that one|sure|confirm|go ahead)"
    r"|sim,? (por favor|pode|claro|confirmo|obrigad[oa]|essa|esse|pode ser|quero))\W*$",
    "decline": r"^\W*(nope|nah|not really|no thanks|no thank you|not yet|none|neither|never mind|forget it"
    r"|nao|melhor nao|deixa|deixa pra la|esquece|ainda nao|nenhum|nenhuma)\b",
    "thanks": r"^\W*((many|thanks|thank you|thx|ty|cheers|much appreciated|obrigad[oa]|obg|valeu"
    r"|muito obrigad[oa]|agradeco)\b)|^\W*(ok|great|perfect|perfeito|otimo|beleza|certo),? (thanks|thank you"
    r"|obrigad[oa]|valeu)",
    "goodbye": r"\b(bye|goodbye|see you|see ya|have a (nice|good|great) (day|one|afternoon|evening)|take care"
    r"|talk (to you )?later|tchau|ate logo|ate mais|ate amanha|falou|tenha um bom dia)\b",
    "greeting": r"^\W*(hi+|hello|hey|good (morning|afternoon|evening)|greetings|howdy|oi+e?|ola|bom dia|boa tarde"
    r"|boa noite|e ai|tudo bem)\b",
}
RX = {
    name: re.compile(
        f"(?:{pattern})|(?:{OTHER_LANGUAGES[name]})" if name in OTHER_LANGUAGES else pattern
    )
    for name, pattern in VOCAB.items()
}
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
    r"(cuanto|cobran|cuesta|multa|penal|politica|se cobra|how much|fee|charge|policy|penalty|quanto"
    r"|cobram|taxa).{0,30}cancel|cancel\w*.{0,20}(cuesta|cobran|fee|charge|policy|cost|custa|taxa)"
)
_FAREWELL = re.compile(RX["goodbye"].pattern + "|" + r"\b(gracias|thanks|thank you|obrigad[oa])\b")
_OTHER_TIMES = re.compile(
    r"\b(otros? (horarios?|dias?|horas?)|otro dia|otra hora|otra fecha|other (times?|days?|dates?)"
    r"|another (time|day|date)|outros? (horarios?|dias?)|outra (hora|data))\b"
)
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
    "first": 1,
    "second": 2,
    "third": 3,
    "fourth": 4,
    "fifth": 5,
    "primeira": 1,
    "primeiro": 1,
    "terceira": 3,
    "terceiro": 3,
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
    # English and Portuguese
    "yes",
    "yeah",
    "hi",
    "hello",
    "thanks",
    "please",
    "sure",
    "the",
    "first",
    "second",
    "tomorrow",
    "today",
    "sim",
    "nao",
    "oi",
    "ola",
    "obrigado",
    "obrigada",
    "perfeito",
    "beleza",
    "amanha",
    "hoje",
    "pode",
    "isso",
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


def asks_other_times(t: str) -> bool:
    """ "¿otros horarios?", "other times?", "outros horários?": the next days, not these."""
    return bool(_OTHER_TIMES.search(t))


def wants_appointment(t: str) -> bool:
    return any(RX[i].search(t) for i in ("cancel", "reschedule", "list", "book"))


def is_info_question(t: str) -> bool:
    return any(i in ("price", "hours", "address", "info") for i in matches(t))


FactTopic = Literal["horario", "direccion", "personal", "servicios"]
# The business fact a question asks for (business_info's topics), first match wins: "¿con quién
# me atienden el sábado?" asks who, "¿dónde atienden?" asks where.
_STAFF_EN_PT = (
    r"\bwho (does|will do|performs|would do|do i see)\b|\bwith whom\b|\byour (team|staff)\b"
    r"|\bquem (faz|atende|vai fazer|realiza)\b|\bcom quem\b|\b(sua|a) equipe\b"
)
_PRICE_LIST_EN_PT = (
    r"\b(price|service) list\b|\blist of (prices|services)\b|\ball (your )?(prices|services)\b"
    r"|\b(what|which) (services|treatments)\b|\bservices (do you )?(have|offer)\b"
    r"|\b(lista|tabela) de (precos|servicos)\b|\b(quais|que) (servicos|tratamentos)\b"
)
_FACTS: tuple[tuple[FactTopic, re.Pattern[str]], ...] = (
    ("personal", re.compile(_STAFF + "|" + _STAFF_EN_PT)),
    (
        "servicios",
        re.compile(_PRICE_LIST + r"|\bque (servicios|tratamientos)\b|" + _PRICE_LIST_EN_PT),
    ),
    ("direccion", RX["address"]),
    (
        "horario",
        re.compile(
            RX["hours"].pattern
            + r"|\bfestivos?\b|\bestan (abiertos|hoy)\b|\ba que hora (estan|trabajan)\b"
            r"|\b(holidays?|feriados?)\b"
        ),
    ),
)


def fact_topic(t: str) -> FactTopic | None:
    """The business fact a normalized question asks for, or None (then the FAQ search answers)."""
    if re.search(
        r"\b(pago|pagar|pagos|tarjeta|nequi|daviplata|efectivo|pay|payment|card|cash|pagamento"
        r"|cartao|dinheiro|pix)\b",
        t,
    ):
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
    # "segunda-feira", "na quinta" are Portuguese weekdays, not the second or fifth item.
    if m := re.search(
        r"(?<!\bna )(?<!\bnesta )(?<!\bproxima )(?<!\bate )\b("
        + "|".join(ORDINALS)
        + r")\b(?! hora|-feira| feira)",
        t,
    ):
        if not re.search(r"\b(cuarto|quinto)\b", t) or RX["pick"].search(t):  # "y cuarto" is a time
            return ORDINALS[m.group(1)]
    if m := re.fullmatch(
        r"\W*(?:la |el |opcion |numero |horario |cita |the |option |number |no\. |# ?|a |o |opcao )?([1-9])\W*",
        t,
    ):
        return int(m.group(1))
    if m := re.search(
        r"\b(?:opcion|numero|la|el|option|number|opcao) ([1-9])\b(?!\s*(?:de|:|am|pm|y|h\b))", t
    ):
        return int(m.group(1))
    return None


_NAME_MARK = re.compile(
    r"(?:me llamo|me yamo|mi nombre es|\bsoy|a nombre de|my name is|my name's|\bcall me|under the name"
    r"|meu nome (?:e|é)|me chamo|\bsou|em nome de)\s+([^\W\d_][^\d,.!?\n]{1,60})",
    re.I,
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
    "and",
    "i",
    "want",
    "would",
    "need",
    "for",
    "with",
    "please",
    "quero",
    "gostaria",
    "preciso",
    "pra",
    "com",
}


# A word that can be a name: a vowel, no letter three times in a row ("mmm", "zzz", "jajaja" are not).
_NAME_LIKE = re.compile(r"^(?!.*(\w)\1\1)(?!(?:ja)+$|(?:je)+$)(?=.*[aeiouy])\w{2,}$")


# How a name is given in answer to "¿A nombre de quién?": "it's Emma", "this is Emma", "é a Ana".
_NAME_ANSWER = re.compile(
    r"^\W*(?:it[’']?s|this is|é [ao]|sou eu,?)\s+([^\W\d_][^\d,.!?\n]{1,60})$", re.I
)


def extract_name(text: str, explicit: bool = False) -> str | None:
    """The name in "me llamo Laura Gómez", "soy Ana y quiero...", or a message that is only a
    name; with `explicit`, only a name the customer introduced ("me llamo", "soy")."""
    m = _NAME_MARK.search(text) or (None if explicit else _NAME_ANSWER.match(text.strip()))
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
