"""What a customer's message plainly asks for, from Spanish keywords.

The router's fast path: a message that says one thing plainly ("hola", "quiero agendar una
cita", "¿dónde quedan?", "quiero hablar con una persona") goes to its expert without a model
request, which saves the customer a model round trip and the worker a whole agent run. A message
that matches more than one kind, or none, goes to the model router. Being upset is left to the
model: a keyword cannot tell "esto es terrible" from "no es nada terrible".

The offline model (graph/offline_rules.py) reads messages with the same patterns.
Texts are compared normalized: lower case, no accents ("Mañana" -> "manana").
"""

from __future__ import annotations

import re
from datetime import datetime

from graph import timeparse
from graph.state import Flow

# An explicit request for a person: "¿Las extensiones son de cabello humano?" is not one.
ASK_PERSON = re.compile(r"\b(habl|comunic|pas|atiend|atend|chate|escrib)\w*\b.{0,25}\b(una persona|un humano|un asesor|una asesora|un agente"
                        r"|alguien( real)?|una persona real)\b|\b(persona real|humano real)\b")
UPSET = re.compile(r"\b(queja|reclamo|molest\w*|pesim\w*|terrible|horrible|indignad\w*|estafa|no sirve"
                   r"|furios\w*|falta de respeto|me cobraron|reembolso|devolucion|nadie (me )?(responde|contesta)"
                   r"|mal servicio|me dejaron|decepcion\w*)\b")
# A goodbye or thanks that may name a day ("gracias, nos vemos mañana") is not a booking request.
FAREWELL = re.compile(r"\b(nos vemos|hasta (manana|luego|pronto|el|la)|gracias|chao|adios)\b")
OPENING_HOURS = re.compile(r"\b(abren|abierto|abiertos|abiertas|cierran|atienden)\b")
# A yes or a no to "¿Confirmas que cancelo...?": the whole message must be one, short.
YES = re.compile(r"^\W*(si|sip|claro|claro que si|confirmo|confirmado|correcto|exacto|de una|hazlo|adelante|yes"
                 r"|dale|ok|okay|vale|listo|de acuerdo"
                 r"|si,? (por favor|cancelala|cancelalo|confirmo|gracias|dale))\W*$")
NO = re.compile(r"^\W*(no|nop|nel|mejor no|mejor dejala|mejor dejalo|dejala|dejalo|olvidalo|todavia no"
                r"|aun no|ya no|para nada|negativo)\b")
CANCEL = re.compile(r"\b(cancelar|cancela|cancelen|cancelo|anular|anula)\b")
RESCHEDULE = re.compile(r"\b(cambiar|cambia|cambio|reprogramar|reprograma|mover|muevan|correr|aplazar|pasar)\b"
                        r".{0,20}\bcita\b|\breprogram\w*")
LIST = re.compile(r"\b(mis citas|que citas tengo|tengo (alguna )?cita|cuando es mi cita|mi proxima cita)\b")
BOOK = re.compile(r"\b(cita|agendar|agenda|agendame|reservar|reserva|separar|turno|disponib\w*|tienen algo"
                  r"|hay algo|espacio|cupo|quiero (un|una)|me gustaria (un|una)|mejor (un|una|el|la))\b")
INFO = re.compile(r"cuanto (cuesta|vale|sale|cobran|es|son)|\bprecio|\bvalor\b|\bcosto|\bdonde\b|direccion"
                  r"|ubicad|\bpago|\bpagar|tarjeta|nequi|politica|parqueadero|preparaci|que incluye"
                  r"|festivo|horario de atencion|a que hora (abren|cierran)|atienden|que servicios")
GREETING = re.compile(r"^\W*(hola|holi|buenas|buenos dias|buenas tardes|buenas noches|hey|que tal|gracias"
                      r"|muchas gracias|ok|listo|perfecto)\b")

# Whether a phrase names a time does not depend on today: any fixed Monday morning will do.
ANY_NOW = datetime(2030, 1, 7, 9, 0)


def normalize(text: str) -> str:
    return timeparse.normalize(text)


def greeting_only(t: str) -> bool:
    rest = GREETING.sub("", t, count=1)
    return bool(GREETING.search(t)) and len(re.findall(r"\w+", rest)) <= 3 and "?" not in t


def mentions_when(t: str) -> bool:
    return timeparse.parse(t, ANY_NOW).understood


def says_no(t: str) -> bool:
    return bool(NO.search(t))


def says_yes(t: str) -> bool:
    """Only a short, plain yes: "ok pero ¿cuánto me cobran por cancelar?" is a question, not a yes."""
    return bool(YES.search(t))


def wants_appointment(t: str) -> bool:
    return bool(CANCEL.search(t) or RESCHEDULE.search(t) or LIST.search(t) or BOOK.search(t))


def clear_flow(text: str) -> Flow | None:
    """The one expert this message plainly asks for, or None when the model must decide."""
    t = normalize(text)
    kinds: set[Flow] = set()
    if ASK_PERSON.search(t):
        kinds.add("escalation")
    if UPSET.search(t):
        return None
    info = bool(INFO.search(t))
    if info:
        kinds.add("knowledge")
    if wants_appointment(t):
        kinds.add("appointment")
    elif mentions_when(t):
        # "el viernes a las 3" alone asks for a slot; with a question, a goodbye or opening
        # hours ("¿abren el sábado?", "nos vemos mañana") the model reads it in context.
        if info or FAREWELL.search(t) or OPENING_HOURS.search(t) or GREETING.search(t):
            return None
        kinds.add("appointment")
    if not kinds and greeting_only(t):
        kinds.add("knowledge")
    return kinds.pop() if len(kinds) == 1 else None
