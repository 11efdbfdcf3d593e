"""Bursts as people type them on WhatsApp: (seconds after the previous message, text).

Kinds: a single complete question; fragments before the question (gaps of 1 to 12 s); a
correction right after a request; a second question sent while the first is being answered.
The reply-time benchmark (bench/replytime.py) plays each in its own chat.
"""

from __future__ import annotations

Burst = tuple[str, list[tuple[float, str]]]  # kind, messages

BURSTS: list[Burst] = [
    ("single", [(0, "hola, ¿cuánto cuesta el masaje relajante?")]),
    ("single", [(0, "¿A qué hora abren el sábado?")]),
    ("single", [(0, "quiero una cita de limpieza facial para el viernes en la tarde")]),
    ("single", [(0, "¿Dónde quedan?")]),
    ("single", [(0, "Buenas tardes, quisiera saber el precio de la manicure spa")]),
    ("single", [(0, "quiero hablar con una persona")]),
    ("fragments", [(0, "hola"), (2, "una pregunta"), (3, "¿cuánto vale la pedicure?")]),
    ("fragments", [(0, "buenas"), (6, "¿tienen cita para mañana?")]),
    ("fragments", [(0, "Hola"), (1.5, "buenos días"), (4, "quiero agendar un masaje")]),
    ("fragments", [(0, "oye"), (9, "¿hacen depilación láser?")]),
    ("fragments", [(0, "hola buenas"), (12, "¿me puedes dar el precio del facial?")]),
    ("fragments", [(0, "disculpa"), (3, "tengo una duda"), (5, "¿aceptan tarjeta?")]),
    ("correction", [(0, "quiero una cita para el jueves"), (3, "perdón, el viernes")]),
    ("correction", [(0, "¿cuánto cuesta el masaje?"), (2, "el relajante")]),
    ("correction", [(0, "agéndame manicure mañana a las 3"), (4, "mejor a las 4")]),
    ("second", [(0, "¿cuánto cuesta la limpieza facial?"), (5, "¿y dónde quedan?")]),
    ("second", [(0, "¿abren los domingos?"), (7, "¿y los festivos?")]),
    ("second", [(0, "hola"), (2, "¿cuánto cuesta el masaje relajante?"), (8, "¿hay parqueadero?")]),
]
